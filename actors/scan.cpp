#include "actors/scan.hpp"

#include "actors/messages.hpp"
#include "protocol/dialect_s3.hpp"
#include "protocol/errors.hpp"

#include <caf/all.hpp>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <memory>
#include <optional>
#include <sys/stat.h>
#include <vector>

namespace tidings::actors {

namespace {

using scan_step_atom = caf::atom_constant<caf::atom("scan_step")>;
using protocol::scan_error;

struct dir_closer {
  void operator()(DIR* d) const {
    if (d)
      closedir(d);
  }
};

/// One scan in progress.
struct scan_run {
  std::uint64_t number = 0;
  bool recursive = true;
  std::vector<std::string> pending; // directories still to read
  std::unique_ptr<DIR, dir_closer> dir;
  std::string dir_path;
  std::vector<protocol::scan_file> files;
  std::uint64_t count = 0;
  std::uint64_t total_size = 0;
  std::vector<std::string> warnings;
  std::string last_path;
  std::chrono::steady_clock::time_point last_progress{};
};

struct scan_state {
  std::shared_ptr<transport::frame_sink> sink;
  std::shared_ptr<const scan_config> cfg;
  std::optional<scan_run> run;
  std::uint64_t runs = 0;
  static inline const char* name = "scan";
};

using scan_actor = caf::stateful_actor<scan_state>;

void send_frame(scan_actor* self, std::string bytes) {
  self->state.sink->deliver(transport::make_frame(std::move(bytes)));
}

void fail(scan_actor* self, scan_error err) {
  self->state.run.reset();
  send_frame(self, protocol::encode_s3_scan_error(err));
}

std::optional<std::string> real_path(const std::string& path, int* err) {
  char buf[PATH_MAX];
  if (!::realpath(path.c_str(), buf)) {
    *err = errno;
    return std::nullopt;
  }
  return std::string{buf};
}

void warn(scan_run& run, const scan_config& cfg, const std::string& path) {
  if (run.warnings.size() < cfg.max_warnings)
    run.warnings.push_back(protocol::scan_permission_warning(path));
}

/// Checks and resolves the requested path, then queues the first step.
void start(scan_actor* self, const protocol::s3_scan_start& req) {
  auto& st = self->state;
  if (st.run)
    return send_frame(
        self, protocol::encode_s3_scan_error(scan_error::already_running));
  auto lexical = protocol::resolve_scan_path(st.cfg->root, req.path);
  if (auto* err = std::get_if<scan_error>(&lexical))
    return send_frame(self, protocol::encode_s3_scan_error(*err));
  int err = 0;
  auto real = real_path(std::get<std::string>(lexical), &err);
  if (!real)
    return send_frame(self, protocol::encode_s3_scan_error(
                                err == EACCES ? scan_error::permission_denied
                                              : scan_error::not_found));
  // A link inside the root may point anywhere: check the target again.
  auto again = protocol::resolve_scan_path(st.cfg->root, *real);
  if (!std::holds_alternative<std::string>(again) ||
      std::get<std::string>(again) != *real)
    return send_frame(
        self, protocol::encode_s3_scan_error(scan_error::path_not_allowed));
  struct stat sb {};
  if (::stat(real->c_str(), &sb) != 0)
    return send_frame(self,
                      protocol::encode_s3_scan_error(scan_error::not_found));
  if (!S_ISDIR(sb.st_mode))
    return send_frame(
        self, protocol::encode_s3_scan_error(scan_error::not_a_directory));
  std::unique_ptr<DIR, dir_closer> dir{::opendir(real->c_str())};
  if (!dir)
    return send_frame(self, protocol::encode_s3_scan_error(
                                errno == EACCES ? scan_error::permission_denied
                                                : scan_error::not_found));
  scan_run run;
  run.number = ++st.runs;
  run.recursive = req.recursive;
  run.dir = std::move(dir);
  run.dir_path = *real;
  st.run = std::move(run);
  self->send(self, scan_step_atom::value, st.runs);
}

/// Reads the next entry of the open directory (opening the next pending
/// one first if needed); false when the walk is done.
bool next_entry(scan_run& run, const scan_config& cfg, dirent** out) {
  for (;;) {
    if (!run.dir) {
      if (run.pending.empty())
        return false;
      run.dir_path = std::move(run.pending.back());
      run.pending.pop_back();
      run.dir.reset(::opendir(run.dir_path.c_str()));
      if (!run.dir) {
        warn(run, cfg, run.dir_path);
        continue;
      }
    }
    errno = 0;
    if (auto* e = ::readdir(run.dir.get())) {
      std::string_view name = e->d_name;
      if (name == "." || name == "..")
        continue;
      *out = e;
      return true;
    }
    run.dir.reset();
  }
}

std::string child_path(const std::string& dir, std::string_view name) {
  std::string out = dir;
  if (out.empty() || out.back() != '/')
    out += '/';
  out += name;
  return out;
}

void finish(scan_actor* self) {
  auto& run = *self->state.run;
  send_frame(self, protocol::encode_s3_scan_completed(
                       run.files, run.count, run.total_size, run.warnings));
  self->state.run.reset();
}

void step(scan_actor* self, std::uint64_t number) {
  auto& st = self->state;
  if (!st.run || st.run->number != number)
    return; // cancelled, or a step of an earlier scan
  auto& run = *st.run;
  const auto& cfg = *st.cfg;
  for (std::size_t i = 0; i < cfg.entries_per_step; ++i) {
    dirent* e = nullptr;
    if (!next_entry(run, cfg, &e))
      return finish(self);
    struct stat sb {};
    // Links are not followed: neither a linked file nor a linked directory
    // may lead out of the root.
    if (::fstatat(dirfd(run.dir.get()), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) !=
        0)
      continue;
    auto path = child_path(run.dir_path, e->d_name);
    if (S_ISDIR(sb.st_mode)) {
      if (run.recursive)
        run.pending.push_back(std::move(path));
      continue;
    }
    if (!S_ISREG(sb.st_mode))
      continue;
    if (++run.count > cfg.max_files)
      return fail(self, scan_error::too_many_files);
    run.total_size += static_cast<std::uint64_t>(sb.st_size);
    if (run.files.size() < cfg.max_listed) {
      auto ext = protocol::scan_extension(path);
      run.files.push_back(protocol::scan_file{
          path, static_cast<std::uint64_t>(sb.st_size),
          static_cast<std::int64_t>(sb.st_mtim.tv_sec) * 1000 +
              sb.st_mtim.tv_nsec / 1000000,
          std::move(ext)});
    }
    run.last_path = std::move(path);
  }
  // At most ten progress frames a second, however fast the walk.
  auto now = std::chrono::steady_clock::now();
  if (now - run.last_progress >= std::chrono::milliseconds(100)) {
    run.last_progress = now;
    // `total` is what is known so far: the files found plus one for each
    // directory still to read (the real total is known only at the end).
    send_frame(self,
               protocol::encode_s3_scan_progress(
                   run.count, run.count + run.pending.size(), run.last_path));
  }
  self->send(self, scan_step_atom::value, number);
}

void on_text(scan_actor* self, const std::string& text) {
  auto cmd = protocol::decode_s3_scan(text);
  if (auto* err = std::get_if<scan_error>(&cmd))
    return send_frame(self, protocol::encode_s3_scan_error(*err));
  if (auto* req = std::get_if<protocol::s3_scan_start>(&cmd))
    return start(self, *req);
  if (!self->state.run)
    return send_frame(self,
                      protocol::encode_s3_scan_error(scan_error::not_running));
  fail(self, scan_error::cancelled);
}

caf::behavior scan(scan_actor* self,
                   std::shared_ptr<transport::frame_sink> sink,
                   std::shared_ptr<const scan_config> cfg) {
  self->state.sink = std::move(sink);
  self->state.cfg = std::move(cfg);
  return {
      [=](text_atom, const std::string& text) { on_text(self, text); },
      [=](scan_step_atom, std::uint64_t number) { step(self, number); },
      [=](closed_atom) {
        self->state.run.reset();
        self->quit();
      },
  };
}

} // namespace

socket_factory make_scan_socket(scan_config cfg) {
  if (!cfg.root.empty()) {
    int err = 0;
    auto real = real_path(cfg.root, &err);
    struct stat sb {};
    if (real && ::stat(real->c_str(), &sb) == 0 && S_ISDIR(sb.st_mode))
      cfg.root = *real;
    else
      cfg.root.clear();
  }
  auto shared = std::make_shared<const scan_config>(std::move(cfg));
  return [shared](caf::actor_system& sys, socket_request req) -> caf::actor {
    if (shared->root.empty()) {
      const auto& e = protocol::describe(protocol::close_reason::scan_disabled);
      req.sink->close(static_cast<std::uint16_t>(e.code), e.reason);
      return {};
    }
    return sys.spawn(scan, std::move(req.sink), shared);
  };
}

} // namespace tidings::actors
