// History store tests. The behaviour suite runs against every implementation
// (TEMPLATE_TEST_CASE over small fixtures); SQLite-only tests cover restart,
// unclean shutdown, migrations and WAL. Single-threaded.
#include "persistence/memory_store.hpp"
#include "persistence/sqlite_store.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

using namespace tidings;
using namespace tidings::persistence;
namespace fs = std::filesystem;

namespace {

constexpr auto u64_max = std::numeric_limits<std::uint64_t>::max();

// A fresh directory, removed with everything in it at scope exit.
struct temp_dir {
  fs::path path;
  temp_dir() {
    auto tmpl = (fs::temp_directory_path() / "tidings-persist-XXXXXX").string();
    if (char* p = ::mkdtemp(tmpl.data()))
      path = p;
    REQUIRE(!path.empty());
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const char* name) const { return (path / name).string(); }
};

stored_event ev(const std::string& room, std::uint64_t offset,
                std::int64_t ts = 0, const std::string& publish_id = "") {
  stored_event e;
  e.room = room;
  e.offset = offset;
  e.timestamp_ms = ts;
  e.type = "progress";
  e.event = offset % 2 ? "job:update" : "";
  e.data = R"({"n":)" + std::to_string(offset) + R"(,"s":"é \"q\""})";
  e.publish_id = publish_id;
  return e;
}

std::vector<std::uint64_t> offsets(const std::vector<stored_event>& evs) {
  std::vector<std::uint64_t> out;
  for (const auto& e : evs)
    out.push_back(e.offset);
  return out;
}

using offs = std::vector<std::uint64_t>;

void require_same(const stored_event& a, const stored_event& b) {
  CHECK(a.room == b.room);
  CHECK(a.offset == b.offset);
  CHECK(a.timestamp_ms == b.timestamp_ms);
  CHECK(a.type == b.type);
  CHECK(a.event == b.event);
  CHECK(a.data == b.data);
  CHECK(a.publish_id == b.publish_id);
}

std::unique_ptr<sqlite_store> open_sqlite(const std::string& path,
                                          durability mode = durability::full) {
  auto r = sqlite_store::open(sqlite_options{path, mode});
  INFO((r ? std::string{} : r.error().code + ": " + r.error().message));
  REQUIRE(r);
  return std::move(*r);
}

// Raw access to a database file, bypassing the store.
struct raw_db {
  sqlite3* db = nullptr;
  explicit raw_db(const std::string& path) {
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  }
  raw_db(const raw_db&) = delete;
  raw_db& operator=(const raw_db&) = delete;
  ~raw_db() { sqlite3_close(db); }
  void exec(const char* sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
    INFO(sql << ": " << (err ? err : ""));
    sqlite3_free(err);
    REQUIRE(rc == SQLITE_OK);
  }
  std::string text(const char* sql) {
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql, -1, &s, nullptr) == SQLITE_OK);
    std::string out;
    if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
      out = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    return out;
  }
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs `body` in a child process. `body` must end the child with _exit
// while its store is still in scope: no destructor runs, so the store is left
// open exactly as after a crash. Returns whether the child exited with 0.
bool crash_after(const std::function<void()>& body) {
  pid_t pid = ::fork();
  if (pid == 0) {
    body();
    ::_exit(2); // body returned: its locals were destroyed, not a crash
  }
  if (pid < 0)
    return false;
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Fixtures: each makes one store of its kind.
struct memory_fixture {
  std::unique_ptr<history_store> make() {
    return std::make_unique<memory_store>();
  }
};

struct sqlite_file_fixture {
  temp_dir dir;
  std::unique_ptr<history_store> make() {
    return open_sqlite(dir.file("history.db"));
  }
};

struct sqlite_normal_fixture {
  temp_dir dir;
  std::unique_ptr<history_store> make() {
    return open_sqlite(dir.file("history.db"), durability::normal);
  }
};

struct sqlite_memory_fixture {
  std::unique_ptr<history_store> make() { return open_sqlite(":memory:"); }
};

#define STORE_TEST(name)                                                       \
  TEMPLATE_TEST_CASE(name, "[persistence]", memory_fixture,                    \
                     sqlite_file_fixture, sqlite_normal_fixture,               \
                     sqlite_memory_fixture)

} // namespace

// --- behaviour suite, every implementation ----------------------------------

STORE_TEST("position creates an epoch at offset 0 and is stable") {
  TestType fx;
  auto store = fx.make();
  auto a = store->position("job:a");
  REQUIRE(a);
  CHECK_FALSE(a->epoch.empty());
  CHECK(a->offset == 0);

  auto again = store->position("job:a");
  REQUIRE(again);
  CHECK(again->epoch == a->epoch);
  CHECK(again->offset == 0);

  auto b = store->position("job:b");
  REQUIRE(b);
  CHECK(b->epoch != a->epoch);

  SECTION("appending keeps the epoch and moves the offset") {
    REQUIRE(store->append({ev("job:a", 1), ev("job:a", 2)}));
    auto after = store->position("job:a");
    REQUIRE(after);
    CHECK(after->epoch == a->epoch);
    CHECK(after->offset == 2);
  }
}

STORE_TEST("append and read_since") {
  TestType fx;
  auto store = fx.make();
  std::vector<stored_event> first{ev("job:a", 1, 100, "p1"),
                                  ev("job:a", 2, 200), ev("job:a", 3, 300)};
  REQUIRE(store->append(first));
  REQUIRE(store->append({ev("job:a", 4, 400), ev("job:a", 5, 500, "p5")}));

  SECTION("everything, in order, fields intact") {
    auto all = store->read_since("job:a", 0, 100);
    REQUIRE(all);
    REQUIRE(offsets(*all) == offs{1, 2, 3, 4, 5});
    for (std::size_t i = 0; i < first.size(); ++i)
      require_same((*all)[i], first[i]);
    require_same((*all)[4], ev("job:a", 5, 500, "p5"));
  }
  SECTION("after") {
    auto r = store->read_since("job:a", 2, 100);
    REQUIRE(r);
    CHECK(offsets(*r) == offs{3, 4, 5});
  }
  SECTION("limit") {
    auto r = store->read_since("job:a", 1, 2);
    REQUIRE(r);
    CHECK(offsets(*r) == offs{2, 3});
    auto none = store->read_since("job:a", 0, 0);
    REQUIRE(none);
    CHECK(none->empty());
  }
  SECTION("nothing after the last offset") {
    for (std::uint64_t after : {std::uint64_t{5}, std::uint64_t{6}, u64_max}) {
      auto r = store->read_since("job:a", after, 100);
      REQUIRE(r);
      CHECK(r->empty());
    }
  }
  SECTION("unknown room reads empty") {
    auto r = store->read_since("job:zzz", 0, 100);
    REQUIRE(r);
    CHECK(r->empty());
  }
  SECTION("an empty batch is fine") {
    REQUIRE(store->append({}));
    auto pos = store->position("job:a");
    REQUIRE(pos);
    CHECK(pos->offset == 5);
  }
}

STORE_TEST("offsets that do not continue the room are rejected atomically") {
  TestType fx;
  auto store = fx.make();
  REQUIRE(store->append({ev("job:a", 1), ev("job:a", 2)}));
  auto before = store->position("job:a");
  REQUIRE(before);

  std::vector<stored_event> bad;
  SECTION("repeat") {
    bad = {ev("job:a", 2)};
  }
  SECTION("gap") {
    bad = {ev("job:a", 4)};
  }
  SECTION("offset 0") {
    bad = {ev("job:a", 0)};
  }
  SECTION("new room not starting at 1") {
    bad = {ev("job:new", 2)};
  }
  SECTION("good then bad: neither is stored") {
    bad = {ev("job:a", 3), ev("job:a", 5)};
  }
  SECTION("repeat inside the batch") {
    bad = {ev("job:a", 3), ev("job:a", 3)};
  }
  SECTION("bad event in another room rolls back the first room") {
    bad = {ev("job:a", 3), ev("job:new", 1), ev("job:new", 3)};
  }

  auto r = store->append(bad);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == "OFFSET_CONFLICT");

  auto a = store->read_since("job:a", 0, 100);
  REQUIRE(a);
  CHECK(offsets(*a) == offs{1, 2});
  auto fresh = store->read_since("job:new", 0, 100);
  REQUIRE(fresh);
  CHECK(fresh->empty());
  auto after = store->position("job:a");
  REQUIRE(after);
  CHECK(after->offset == 2);
  CHECK(after->epoch == before->epoch);

  // The store is still usable (no transaction left open).
  REQUIRE(store->append({ev("job:a", 3), ev("job:new", 1)}));
  auto now = store->read_since("job:a", 0, 100);
  REQUIRE(now);
  CHECK(offsets(*now) == offs{1, 2, 3});
}

STORE_TEST("one batch may span rooms") {
  TestType fx;
  auto store = fx.make();
  auto a_epoch = store->position("job:a");
  REQUIRE(a_epoch);
  REQUIRE(store->append({ev("job:a", 1), ev("job:b", 1), ev("job:a", 2),
                         ev("job:c", 1), ev("job:b", 2)}));
  auto a = store->position("job:a");
  auto b = store->position("job:b");
  auto c = store->position("job:c");
  REQUIRE((a && b && c));
  CHECK(a->offset == 2);
  CHECK(b->offset == 2);
  CHECK(c->offset == 1);
  CHECK(a->epoch == a_epoch->epoch);
  // Rooms first seen in append got an epoch, and keep it.
  CHECK_FALSE(b->epoch.empty());
  CHECK(b->epoch != a->epoch);
  auto b_again = store->position("job:b");
  REQUIRE(b_again);
  CHECK(b_again->epoch == b->epoch);

  auto rb = store->read_since("job:b", 0, 100);
  REQUIRE(rb);
  CHECK(offsets(*rb) == offs{1, 2});
  for (const auto& e : *rb)
    CHECK(e.room == "job:b");
  auto rc = store->read_since("job:c", 0, 100);
  REQUIRE(rc);
  CHECK(offsets(*rc) == offs{1});
}

STORE_TEST("find_publish_id gives the first offset with that id") {
  TestType fx;
  auto store = fx.make();
  REQUIRE(store->append({ev("job:a", 1, 0, "x"), ev("job:a", 2, 0, ""),
                         ev("job:a", 3, 0, "x"), ev("job:a", 4, 0, "y"),
                         ev("job:b", 1, 0, "x")}));
  auto find = [&](const char* room, const char* id) {
    auto r = store->find_publish_id(room, id);
    REQUIRE(r);
    return *r;
  };
  CHECK(find("job:a", "x") == std::optional<std::uint64_t>{1});
  CHECK(find("job:a", "y") == std::optional<std::uint64_t>{4});
  CHECK(find("job:b", "x") == std::optional<std::uint64_t>{1});
  CHECK_FALSE(find("job:a", "z"));
  CHECK_FALSE(find("job:c", "x"));
  CHECK_FALSE(find("job:a", "")); // empty means "no id"

  SECTION("trimmed events are no longer found") {
    auto n = store->trim("job:a", 2, 0);
    REQUIRE(n);
    CHECK(*n == 2);
    CHECK(find("job:a", "x") == std::optional<std::uint64_t>{3});
    CHECK(find("job:b", "x") == std::optional<std::uint64_t>{1});
  }
}

STORE_TEST("trim by count and by age") {
  TestType fx;
  auto store = fx.make();
  std::vector<stored_event> batch;
  for (std::uint64_t i = 1; i <= 10; ++i)
    batch.push_back(ev("job:a", i, static_cast<std::int64_t>(i) * 1000));
  REQUIRE(store->append(batch));
  REQUIRE(store->append({ev("job:other", 1, 1)}));
  auto epoch = store->position("job:a");
  REQUIRE(epoch);

  auto trim = [&](std::uint64_t keep, std::int64_t min_ts) {
    auto r = store->trim("job:a", keep, min_ts);
    REQUIRE(r);
    return *r;
  };
  auto first = [&](const char* room = "job:a") {
    auto r = store->first_offset(room);
    REQUIRE(r);
    return *r;
  };
  auto stored = [&]() {
    auto r = store->read_since("job:a", 0, 100);
    REQUIRE(r);
    return offsets(*r);
  };

  CHECK(first() == std::optional<std::uint64_t>{1});

  SECTION("by count") {
    CHECK(trim(3, 0) == 7);
    CHECK(first() == std::optional<std::uint64_t>{8});
    CHECK(stored() == offs{8, 9, 10});
    CHECK(trim(3, 0) == 0);
    CHECK(trim(u64_max, 0) == 0);
  }
  SECTION("by age") {
    CHECK(trim(u64_max, 4500) == 4);
    CHECK(first() == std::optional<std::uint64_t>{5});
    CHECK(trim(u64_max, 5000) == 0); // ts == bound is not older
    CHECK(first() == std::optional<std::uint64_t>{5});
  }
  SECTION("either bound deletes") {
    CHECK(trim(8, 4500) == 4); // age says more
    CHECK(first() == std::optional<std::uint64_t>{5});
    CHECK(trim(3, 5500) == 3); // count says more
    CHECK(stored() == offs{8, 9, 10});
  }
  SECTION("everything: the last offset and epoch stay") {
    CHECK(trim(0, 0) == 10);
    CHECK_FALSE(first());
    CHECK(stored().empty());
    auto pos = store->position("job:a");
    REQUIRE(pos);
    CHECK(pos->offset == 10);
    CHECK(pos->epoch == epoch->epoch);
    auto reused = store->append({ev("job:a", 1)});
    REQUIRE_FALSE(reused);
    CHECK(reused.error().code == "OFFSET_CONFLICT");
    REQUIRE(store->append({ev("job:a", 11)}));
    CHECK(first() == std::optional<std::uint64_t>{11});
  }
  SECTION("everything by age") {
    CHECK(trim(u64_max, 1000000) == 10);
    CHECK_FALSE(first());
    auto pos = store->position("job:a");
    REQUIRE(pos);
    CHECK(pos->offset == 10);
  }
  SECTION("other rooms are untouched") {
    trim(0, 1000000);
    CHECK(first("job:other") == std::optional<std::uint64_t>{1});
  }
  SECTION("unknown room") {
    auto r = store->trim("job:none", 0, 0);
    REQUIRE(r);
    CHECK(*r == 0);
    CHECK_FALSE(first("job:none"));
  }
}

STORE_TEST("trim by age keeps stored history contiguous") {
  TestType fx;
  auto store = fx.make();
  // Timestamps out of order: event 3 is old but 2 is not. Deleting only 1
  // and 3 would leave a hole a reader starting at first_offset cannot see.
  REQUIRE(store->append({ev("job:a", 1, 1000), ev("job:a", 2, 9000),
                         ev("job:a", 3, 1000), ev("job:a", 4, 9000),
                         ev("job:a", 5, 9000)}));
  auto n = store->trim("job:a", u64_max, 5000);
  REQUIRE(n);
  CHECK(*n == 3);
  auto first = store->first_offset("job:a");
  REQUIRE(first);
  CHECK(*first == std::optional<std::uint64_t>{4});
  auto rest = store->read_since("job:a", 0, 100);
  REQUIRE(rest);
  CHECK(offsets(*rest) == offs{4, 5});
}

// --- memory store
// -------------------------------------------------------------

TEST_CASE("memory store epochs", "[persistence]") {
  SECTION("default epochs count up") {
    memory_store store;
    CHECK(store.position("a")->epoch == "mem-1");
    CHECK(store.position("b")->epoch == "mem-2");
    CHECK(store.position("a")->epoch == "mem-1");
  }
  SECTION("make_epoch is used when given") {
    int n = 0;
    memory_store store([&] { return "e" + std::to_string(++n); });
    REQUIRE(store.append({ev("x", 1)}));
    CHECK(store.position("x")->epoch == "e1");
    CHECK(store.position("y")->epoch == "e2");
    CHECK(n == 2);
  }
}

// --- SQLite store only
// ----------------------------------------------------------

TEST_CASE("sqlite epochs are 16 lowercase hex digits", "[persistence]") {
  auto store = open_sqlite(":memory:");
  std::set<std::string> seen;
  for (int i = 0; i < 20; ++i) {
    auto pos = store->position("job:" + std::to_string(i));
    REQUIRE(pos);
    CHECK(pos->epoch.size() == 16);
    CHECK(pos->epoch.find_first_not_of("0123456789abcdef") ==
          std::string::npos);
    seen.insert(pos->epoch);
  }
  CHECK(seen.size() == 20);
}

TEST_CASE("sqlite store survives a restart", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("sub/dir/history.db"); // parents are created
  auto mode = GENERATE(durability::full, durability::normal);
  std::vector<stored_event> events{ev("job:a", 1, 10, "p"), ev("job:a", 2, 20),
                                   ev("job:a", 3, 30), ev("job:b", 1, 40)};
  room_position a, b, c;
  {
    auto store = open_sqlite(path, mode);
    CHECK(store->opened_clean());
    CHECK(store->schema_version() >= 1);
    REQUIRE(store->append(events));
    a = *store->position("job:a");
    b = *store->position("job:b");
    c = *store->position("job:c"); // a room without events
  }
  auto store = open_sqlite(path, mode);
  CHECK(store->opened_clean());
  auto a2 = store->position("job:a");
  auto b2 = store->position("job:b");
  auto c2 = store->position("job:c");
  REQUIRE((a2 && b2 && c2));
  CHECK(a2->epoch == a.epoch);
  CHECK(a2->offset == 3);
  CHECK(b2->epoch == b.epoch);
  CHECK(b2->offset == 1);
  CHECK(c2->epoch == c.epoch);
  CHECK(c2->offset == 0);

  auto ra = store->read_since("job:a", 0, 100);
  REQUIRE(ra);
  REQUIRE(ra->size() == 3);
  for (std::size_t i = 0; i < 3; ++i)
    require_same((*ra)[i], events[i]);
  auto pid = store->find_publish_id("job:a", "p");
  REQUIRE(pid);
  CHECK(*pid == std::optional<std::uint64_t>{1});

  auto conflict = store->append({ev("job:a", 3)});
  REQUIRE_FALSE(conflict);
  CHECK(conflict.error().code == "OFFSET_CONFLICT");
  REQUIRE(store->append({ev("job:a", 4)}));
}

namespace {

struct positions {
  room_position a, b, c;
};

// Opens cleanly, stores some history, closes; then a second process opens the
// file in `mode`, appends more and dies without closing. Returns the
// positions seen before the crash.
positions crash_scenario(const std::string& path, durability mode,
                         bool real_crash) {
  positions before;
  {
    auto store = open_sqlite(path, mode);
    REQUIRE(store->append({ev("job:a", 1), ev("job:a", 2), ev("job:b", 1)}));
    before.a = *store->position("job:a");
    before.b = *store->position("job:b");
    before.c = *store->position("job:c");
  }
  if (real_crash) {
    REQUIRE(crash_after([&] {
      auto r = sqlite_store::open(sqlite_options{path, mode});
      if (!r || !(*r)->append({ev("job:a", 3), ev("job:b", 2)}))
        ::_exit(1);
      ::_exit(0); // before `r` goes out of scope and closes the store
    }));
  } else {
    // The same state a crash leaves: the marker still says "open".
    {
      auto store = open_sqlite(path, mode);
      REQUIRE(store->append({ev("job:a", 3), ev("job:b", 2)}));
    }
    raw_db raw(path);
    raw.exec("UPDATE meta SET value = '0' WHERE key = 'clean'");
  }
  return before;
}

} // namespace

TEST_CASE("sqlite unclean shutdown", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("history.db");
  auto real_crash = GENERATE(true, false);
  INFO("real crash: " << real_crash);

  SECTION("FULL keeps every epoch") {
    auto before = crash_scenario(path, durability::full, real_crash);
    auto store = open_sqlite(path, durability::full);
    CHECK_FALSE(store->opened_clean());
    CHECK(store->position("job:a")->epoch == before.a.epoch);
    CHECK(store->position("job:b")->epoch == before.b.epoch);
    CHECK(store->position("job:c")->epoch == before.c.epoch);
    CHECK(store->position("job:a")->offset == 3);
    CHECK(store->position("job:b")->offset == 2);
  }
  SECTION("NORMAL gives every room a new epoch and keeps offsets") {
    auto before = crash_scenario(path, durability::normal, real_crash);
    room_position a, b, c;
    {
      auto store = open_sqlite(path, durability::normal);
      CHECK_FALSE(store->opened_clean());
      a = *store->position("job:a");
      b = *store->position("job:b");
      c = *store->position("job:c");
      CHECK(a.epoch != before.a.epoch);
      CHECK(b.epoch != before.b.epoch);
      CHECK(c.epoch != before.c.epoch);
      CHECK(a.offset == 3);
      CHECK(b.offset == 2);
      CHECK(c.offset == 0);
      auto ra = store->read_since("job:a", 0, 100);
      REQUIRE(ra);
      CHECK(offsets(*ra) == offs{1, 2, 3});
    }
    // Closed cleanly this time: the new epochs stay.
    auto store = open_sqlite(path, durability::normal);
    CHECK(store->opened_clean());
    CHECK(store->position("job:a")->epoch == a.epoch);
    CHECK(store->position("job:b")->epoch == b.epoch);
    CHECK(store->position("job:c")->epoch == c.epoch);
  }
}

TEST_CASE("sqlite schema migrations", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("history.db");

  SECTION("a file at user_version 0 without tables migrates") {
    {
      raw_db raw(path);
      raw.exec("CREATE TABLE scratch(x); DROP TABLE scratch;"
               " PRAGMA user_version = 0;");
    }
    int version = 0;
    {
      auto store = open_sqlite(path);
      version = store->schema_version();
      CHECK(version >= 1);
      REQUIRE(store->append({ev("job:a", 1)}));
    }
    raw_db raw(path);
    CHECK(raw.text("PRAGMA user_version") == std::to_string(version));
    for (const char* table : {"rooms", "events", "meta"}) {
      INFO(table);
      std::string sql =
          std::string("SELECT count(*) FROM sqlite_master WHERE name = '") +
          table + "'";
      CHECK(raw.text(sql.c_str()) == "1");
    }
    // Reopening a current file runs nothing and keeps the data.
    auto store = open_sqlite(path);
    CHECK(store->schema_version() == version);
    CHECK(store->position("job:a")->offset == 1);
  }
  SECTION("a file from a newer version is refused and left untouched") {
    {
      raw_db raw(path);
      raw.exec("CREATE TABLE future(x); PRAGMA user_version = 999;");
    }
    auto bytes = read_bytes(path);
    auto r = sqlite_store::open(sqlite_options{path, durability::full});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == "STORE");
    CHECK_THAT(r.error().message, Catch::Contains("999"));
    CHECK(read_bytes(path) == bytes);
    CHECK_FALSE(fs::exists(path + "-wal"));
    raw_db raw(path);
    CHECK(raw.text("PRAGMA user_version") == "999");
    CHECK(raw.text("PRAGMA journal_mode") == "delete");
  }
  SECTION("a file that is not a database is an error, not a crash") {
    {
      std::ofstream out(path, std::ios::binary);
      out << std::string(4096, 'x');
    }
    auto r = sqlite_store::open(sqlite_options{path, durability::full});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == "STORE");
  }
}

TEST_CASE("sqlite store runs in WAL mode", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("history.db");
  auto mode = GENERATE(durability::full, durability::normal);
  auto store = open_sqlite(path, mode);
  REQUIRE(store->append({ev("job:a", 1)}));
  raw_db raw(path);
  CHECK(raw.text("PRAGMA journal_mode") == "wal");
  CHECK(fs::exists(path + "-wal"));
}

TEST_CASE("sqlite open errors are values", "[persistence]") {
  auto r = sqlite_store::open(
      sqlite_options{"/proc/tidings-no-such-dir/history.db", durability::full});
  REQUIRE_FALSE(r);
  CHECK(r.error().code == "STORE");
  CHECK_FALSE(r.error().message.empty());
}

// --- snapshots and operations, every implementation -------------------------

namespace {

std::optional<snapshot> snap_of(history_store& store, const std::string& room) {
  auto r = store.get_snapshot(room);
  INFO((r ? std::string{} : r.error().code + ": " + r.error().message));
  REQUIRE(r);
  return *r;
}

void require_snapshot(history_store& store, const std::string& room,
                      std::uint64_t offset, const std::string& state) {
  auto s = snap_of(store, room);
  INFO("room " << room);
  REQUIRE(s);
  CHECK(s->offset == offset);
  CHECK(s->state == state);
}

std::string code_of(const result<bool>& r) {
  return r ? std::string{"ok"} : r.error().code;
}

operation_record op(const std::string& id, std::int64_t created_ms = 1000) {
  operation_record o;
  o.id = id;
  o.kind = "pipeline";
  o.owner = "user-1";
  o.meta_json = R"({"name":"build \"é\"","n":[1,2]})";
  o.created_ms = created_ms;
  return o;
}

void require_same(const operation_record& a, const operation_record& b) {
  CHECK(a.id == b.id);
  CHECK(a.kind == b.kind);
  CHECK(a.owner == b.owner);
  CHECK(a.meta_json == b.meta_json);
  CHECK(a.created_ms == b.created_ms);
}

std::optional<operation_record> op_of(history_store& store,
                                      const std::string& id) {
  auto r = store.get_operation(id);
  INFO((r ? std::string{} : r.error().code + ": " + r.error().message));
  REQUIRE(r);
  return *r;
}

} // namespace

STORE_TEST("snapshot put, get and overwrite") {
  TestType fx;
  auto store = fx.make();
  CHECK_FALSE(snap_of(*store, "job:a"));
  REQUIRE(store->append({ev("job:a", 1), ev("job:a", 2), ev("job:a", 3)}));
  CHECK_FALSE(snap_of(*store, "job:a")); // events alone make no snapshot

  REQUIRE(store->put_snapshot("job:a", 2, R"({"status":"running"})"));
  require_snapshot(*store, "job:a", 2, R"({"status":"running"})");

  SECTION("a later offset replaces it") {
    REQUIRE(store->put_snapshot("job:a", 3, R"({"status":"done"})"));
    require_snapshot(*store, "job:a", 3, R"({"status":"done"})");
  }
  SECTION("the same offset replaces the state") {
    REQUIRE(store->put_snapshot("job:a", 2, R"({"status":"x \"é\""})"));
    require_snapshot(*store, "job:a", 2, R"({"status":"x \"é\""})");
  }
  SECTION("other rooms have their own") {
    CHECK_FALSE(snap_of(*store, "job:b"));
    REQUIRE(store->append({ev("job:b", 1)}));
    REQUIRE(store->put_snapshot("job:b", 1, "{}"));
    require_snapshot(*store, "job:b", 1, "{}");
    require_snapshot(*store, "job:a", 2, R"({"status":"running"})");
  }
  SECTION("a room without events takes a snapshot at offset 0 only") {
    CHECK(code_of(store->put_snapshot("job:new", 1, "{}")) ==
          "OFFSET_CONFLICT");
    CHECK_FALSE(snap_of(*store, "job:new"));
    REQUIRE(store->put_snapshot("job:new", 0, R"({"status":"pending"})"));
    require_snapshot(*store, "job:new", 0, R"({"status":"pending"})");
    auto pos = store->position("job:new");
    REQUIRE(pos);
    CHECK(pos->offset == 0);
    REQUIRE(store->append({ev("job:new", 1)}));
    REQUIRE(store->put_snapshot("job:new", 1, R"({"status":"running"})"));
    require_snapshot(*store, "job:new", 1, R"({"status":"running"})");
  }
}

STORE_TEST("snapshot offsets never go back nor past the last event") {
  TestType fx;
  auto store = fx.make();
  REQUIRE(store->append({ev("job:a", 1), ev("job:a", 2), ev("job:a", 3),
                         ev("job:a", 4), ev("job:a", 5)}));
  REQUIRE(store->put_snapshot("job:a", 4, "s4"));

  SECTION("stale") {
    CHECK(code_of(store->put_snapshot("job:a", 3, "s3")) == "SNAPSHOT_STALE");
    CHECK(code_of(store->put_snapshot("job:a", 0, "s0")) == "SNAPSHOT_STALE");
  }
  SECTION("past the last offset") {
    CHECK(code_of(store->put_snapshot("job:a", 6, "s6")) == "OFFSET_CONFLICT");
    CHECK(code_of(store->put_snapshot("job:a", u64_max, "s")) ==
          "OFFSET_CONFLICT");
  }
  require_snapshot(*store, "job:a", 4, "s4");
  // Refusals leave the store usable.
  REQUIRE(store->put_snapshot("job:a", 5, "s5"));
  require_snapshot(*store, "job:a", 5, "s5");
  auto pos = store->position("job:a");
  REQUIRE(pos);
  CHECK(pos->offset == 5);
}

STORE_TEST("append with snapshots commits events and snapshots together") {
  TestType fx;
  auto store = fx.make();
  REQUIRE(
      store->append({ev("job:a", 1), ev("job:a", 2)}, {{"job:a", 2, "s2"}}));
  require_snapshot(*store, "job:a", 2, "s2");
  auto before = store->position("job:a");
  REQUIRE(before);

  auto stored = [&](const char* room) {
    auto r = store->read_since(room, 0, 100);
    REQUIRE(r);
    return offsets(*r);
  };

  SECTION("a snapshot may name events of the same batch, in a new room") {
    REQUIRE(store->append({ev("job:b", 1), ev("job:a", 3), ev("job:b", 2)},
                          {{"job:b", 2, "b2"}, {"job:a", 3, "s3"}}));
    require_snapshot(*store, "job:a", 3, "s3");
    require_snapshot(*store, "job:b", 2, "b2");
    CHECK(stored("job:b") == offs{1, 2});
  }
  SECTION("snapshots alone") {
    REQUIRE(store->append({}, {{"job:a", 2, "again"}}));
    require_snapshot(*store, "job:a", 2, "again");
  }
  SECTION("several for one room: the last one stays") {
    REQUIRE(store->append({ev("job:a", 3), ev("job:a", 4)},
                          {{"job:a", 3, "s3"}, {"job:a", 4, "s4"}}));
    require_snapshot(*store, "job:a", 4, "s4");
  }

  SECTION("refused batches store nothing") {
    std::vector<stored_event> events;
    std::vector<snapshot_update> snaps;
    std::string code;
    SECTION("a conflicting event") {
      events = {ev("job:a", 3), ev("job:a", 5)};
      snaps = {{"job:a", 3, "new"}};
      code = "OFFSET_CONFLICT";
    }
    SECTION("a conflicting event in another room") {
      events = {ev("job:a", 3), ev("job:b", 2)};
      snaps = {{"job:a", 3, "new"}, {"job:b", 0, "b0"}};
      code = "OFFSET_CONFLICT";
    }
    SECTION("a stale snapshot") {
      events = {ev("job:a", 3)};
      snaps = {{"job:a", 1, "old"}};
      code = "SNAPSHOT_STALE";
    }
    SECTION("a snapshot past the batch") {
      events = {ev("job:a", 3)};
      snaps = {{"job:a", 4, "new"}};
      code = "OFFSET_CONFLICT";
    }
    SECTION("a bad snapshot after good ones") {
      events = {ev("job:a", 3), ev("job:b", 1)};
      snaps = {{"job:a", 3, "new"}, {"job:b", 1, "b1"}, {"job:c", 1, "c1"}};
      code = "OFFSET_CONFLICT";
    }
    SECTION("going back within one call") {
      events = {ev("job:a", 3), ev("job:a", 4)};
      snaps = {{"job:a", 4, "s4"}, {"job:a", 3, "s3"}};
      code = "SNAPSHOT_STALE";
    }
    INFO("expected " << code);
    CHECK(code_of(store->append(events, snaps)) == code);
    CHECK(stored("job:a") == offs{1, 2});
    CHECK(stored("job:b").empty());
    require_snapshot(*store, "job:a", 2, "s2");
    CHECK_FALSE(snap_of(*store, "job:b"));
    CHECK_FALSE(snap_of(*store, "job:c"));
    auto after = store->position("job:a");
    REQUIRE(after);
    CHECK(after->offset == 2);
    CHECK(after->epoch == before->epoch);
    auto b = store->position("job:b");
    REQUIRE(b);
    CHECK(b->offset == 0);

    // No transaction left open.
    REQUIRE(store->append({ev("job:a", 3)}, {{"job:a", 3, "s3"}}));
    CHECK(stored("job:a") == offs{1, 2, 3});
    require_snapshot(*store, "job:a", 3, "s3");
  }
}

STORE_TEST("trim never deletes a snapshot") {
  TestType fx;
  auto store = fx.make();
  std::vector<stored_event> batch;
  for (std::uint64_t i = 1; i <= 10; ++i)
    batch.push_back(ev("job:a", i, static_cast<std::int64_t>(i) * 1000));
  REQUIRE(store->append(batch, {{"job:a", 10, "s10"}}));

  SECTION("by count") {
    auto n = store->trim("job:a", 0, 0);
    REQUIRE(n);
    CHECK(*n == 10);
  }
  SECTION("by age") {
    auto n = store->trim("job:a", u64_max, 1000000);
    REQUIRE(n);
    CHECK(*n == 10);
  }
  require_snapshot(*store, "job:a", 10, "s10");
  // The bound is the room's last offset, not the events still stored.
  REQUIRE(store->put_snapshot("job:a", 10, "again"));
  require_snapshot(*store, "job:a", 10, "again");
  CHECK(code_of(store->put_snapshot("job:a", 11, "s11")) == "OFFSET_CONFLICT");
}

STORE_TEST("operations: create, get, idempotent create, conflict") {
  TestType fx;
  auto store = fx.make();
  CHECK_FALSE(op_of(*store, "op-1"));

  auto created = store->create_operation(op("op-1"));
  REQUIRE(created);
  CHECK(*created); // stored now
  auto got = op_of(*store, "op-1");
  REQUIRE(got);
  require_same(*got, op("op-1"));

  SECTION("an identical create is ok and keeps the first record") {
    auto again = store->create_operation(op("op-1", 2000));
    REQUIRE(again);
    CHECK_FALSE(*again); // already there
    auto still = op_of(*store, "op-1");
    REQUIRE(still);
    CHECK(still->created_ms == 1000);
  }
  SECTION("a different record under the same id is refused") {
    auto other = op("op-1");
    SECTION("kind") {
      other.kind = "workflow";
    }
    SECTION("owner") {
      other.owner = "user-2";
    }
    SECTION("meta") {
      other.meta_json = "{}";
    }
    CHECK(code_of(store->create_operation(other)) == "OPERATION_EXISTS");
    auto still = op_of(*store, "op-1");
    REQUIRE(still);
    require_same(*still, op("op-1"));
    // No transaction left open.
    REQUIRE(store->create_operation(op("op-2")));
  }
  SECTION("other ids are independent") {
    auto two = op("op-2", 5);
    two.meta_json = "";
    REQUIRE(store->create_operation(two));
    auto got2 = op_of(*store, "op-2");
    REQUIRE(got2);
    require_same(*got2, two);
    auto got1 = op_of(*store, "op-1");
    REQUIRE(got1);
    require_same(*got1, op("op-1"));
  }
}

// --- snapshots, operations and schema v2, SQLite only -----------------------

TEST_CASE("sqlite snapshots and operations survive a restart",
          "[persistence]") {
  temp_dir dir;
  auto path = dir.file("history.db");
  auto mode = GENERATE(durability::full, durability::normal);
  {
    auto store = open_sqlite(path, mode);
    REQUIRE(
        store->append({ev("job:a", 1), ev("job:a", 2)}, {{"job:a", 2, "a2"}}));
    REQUIRE(store->append({ev("job:b", 1)}));
    REQUIRE(store->put_snapshot("job:b", 1, "b1"));
    REQUIRE(store->create_operation(op("op-1")));
  }
  auto store = open_sqlite(path, mode);
  require_snapshot(*store, "job:a", 2, "a2");
  require_snapshot(*store, "job:b", 1, "b1");
  CHECK_FALSE(snap_of(*store, "job:c"));
  auto got = op_of(*store, "op-1");
  REQUIRE(got);
  require_same(*got, op("op-1"));
  // The stored ones still bound what comes next.
  CHECK(code_of(store->put_snapshot("job:a", 1, "a1")) == "SNAPSHOT_STALE");
  CHECK(code_of(store->create_operation(op("op-1"))) == "ok");
  auto changed = op("op-1");
  changed.owner = "user-2";
  CHECK(code_of(store->create_operation(changed)) == "OPERATION_EXISTS");
}

TEST_CASE("sqlite keeps a snapshot with its events through a crash",
          "[persistence]") {
  temp_dir dir;
  auto path = dir.file("history.db");
  REQUIRE(crash_after([&] {
    auto r = sqlite_store::open(sqlite_options{path, durability::full});
    if (!r ||
        !(*r)->append({ev("job:a", 1), ev("job:a", 2)}, {{"job:a", 2, "a2"}}) ||
        !(*r)->create_operation(op("op-1")))
      ::_exit(1);
    ::_exit(0); // before `r` goes out of scope and closes the store
  }));
  auto store = open_sqlite(path);
  CHECK_FALSE(store->opened_clean());
  require_snapshot(*store, "job:a", 2, "a2");
  CHECK(store->position("job:a")->offset == 2);
  auto got = op_of(*store, "op-1");
  REQUIRE(got);
  require_same(*got, op("op-1"));
}

namespace {

// The v1 schema exactly as the v1 migration creates it. Frozen here on
// purpose: migrations must upgrade files that earlier builds wrote.
constexpr const char* v1_schema = R"sql(
CREATE TABLE rooms(
  room TEXT PRIMARY KEY NOT NULL,
  epoch TEXT NOT NULL,
  last_offset INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE events(
  room TEXT NOT NULL,
  offset INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  type TEXT NOT NULL,
  event TEXT NOT NULL,
  data TEXT NOT NULL,
  publish_id TEXT NOT NULL DEFAULT '',
  PRIMARY KEY(room, offset)
) WITHOUT ROWID;
CREATE INDEX events_publish_id ON events(room, publish_id)
  WHERE publish_id != '';
CREATE TABLE meta(
  key TEXT PRIMARY KEY NOT NULL,
  value TEXT NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 1;
)sql";

// A v1 file as a v1 build leaves it after a clean shutdown.
void make_v1_file(const std::string& path) {
  raw_db raw(path);
  raw.exec("PRAGMA journal_mode=WAL");
  raw.exec(v1_schema);
  raw.exec(R"sql(
INSERT INTO rooms VALUES('job:a', '00000000000000aa', 3),
                        ('job:b', '00000000000000bb', 5),
                        ('job:c', '00000000000000cc', 0);
INSERT INTO events VALUES
  ('job:a', 1, 100, 'progress', 'job:update', '{"n":1}', 'p1'),
  ('job:a', 2, 200, 'progress', '', '{"n":2}', ''),
  ('job:a', 3, 300, 'status', 'job:completed', '{"n":3}', 'p3'),
  ('job:b', 5, 500, 'progress', '', '{"n":5}', '');
INSERT INTO meta VALUES('clean', '1');
)sql");
}

std::string count_tables(raw_db& raw, const char* table) {
  std::string sql =
      std::string("SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                  " AND name = '") +
      table + "'";
  return raw.text(sql.c_str());
}

} // namespace

TEST_CASE("sqlite migrates a v1 file to v2 keeping its data", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("history.db");
  make_v1_file(path);
  {
    raw_db raw(path);
    REQUIRE(raw.text("PRAGMA user_version") == "1");
    REQUIRE(count_tables(raw, "snapshots") == "0");
  }
  {
    auto store = open_sqlite(path);
    CHECK(store->schema_version() == 2);
    CHECK(store->opened_clean());

    auto a = store->position("job:a");
    auto b = store->position("job:b");
    auto c = store->position("job:c");
    REQUIRE((a && b && c));
    CHECK(a->epoch == "00000000000000aa");
    CHECK(a->offset == 3);
    CHECK(b->epoch == "00000000000000bb");
    CHECK(b->offset == 5);
    CHECK(c->epoch == "00000000000000cc");
    CHECK(c->offset == 0);

    auto ra = store->read_since("job:a", 0, 100);
    REQUIRE(ra);
    REQUIRE(offsets(*ra) == offs{1, 2, 3});
    CHECK((*ra)[0].timestamp_ms == 100);
    CHECK((*ra)[0].event == "job:update");
    CHECK((*ra)[2].type == "status");
    CHECK((*ra)[2].data == R"({"n":3})");
    auto pid = store->find_publish_id("job:a", "p3");
    REQUIRE(pid);
    CHECK(*pid == std::optional<std::uint64_t>{3});
    auto fb = store->first_offset("job:b");
    REQUIRE(fb);
    CHECK(*fb == std::optional<std::uint64_t>{5});

    // Existing rooms start without a snapshot; the new tables work.
    CHECK_FALSE(snap_of(*store, "job:a"));
    CHECK(code_of(store->put_snapshot("job:a", 4, "s")) == "OFFSET_CONFLICT");
    REQUIRE(store->append({ev("job:a", 4)}, {{"job:a", 4, "a4"}}));
    REQUIRE(store->put_snapshot("job:b", 5, "b5"));
    REQUIRE(store->create_operation(op("op-1")));
  }
  {
    raw_db raw(path);
    CHECK(raw.text("PRAGMA user_version") == "2");
    CHECK(count_tables(raw, "snapshots") == "1");
    CHECK(count_tables(raw, "operations") == "1");
    CHECK(raw.text("SELECT count(*) FROM events") == "5");
  }
  // Reopening a v2 file runs nothing and keeps everything.
  auto store = open_sqlite(path);
  CHECK(store->schema_version() == 2);
  CHECK(store->position("job:a")->offset == 4);
  CHECK(store->position("job:a")->epoch == "00000000000000aa");
  require_snapshot(*store, "job:a", 4, "a4");
  require_snapshot(*store, "job:b", 5, "b5");
  auto got = op_of(*store, "op-1");
  REQUIRE(got);
  require_same(*got, op("op-1"));
}

TEST_CASE("a failed v2 migration leaves the v1 file as it was",
          "[persistence]") {
  temp_dir dir;
  auto path = dir.file("history.db");
  make_v1_file(path);
  {
    // Makes the second statement of the v2 step fail after the first ran.
    raw_db raw(path);
    raw.exec("CREATE TABLE operations(x)");
  }
  auto r = sqlite_store::open(sqlite_options{path, durability::full});
  REQUIRE_FALSE(r);
  CHECK(r.error().code == "STORE");
  raw_db raw(path);
  CHECK(raw.text("PRAGMA user_version") == "1");
  CHECK(count_tables(raw, "snapshots") == "0");
  CHECK(raw.text("SELECT count(*) FROM events") == "4");
  CHECK(raw.text("SELECT last_offset FROM rooms WHERE room = 'job:b'") == "5");
}

// --- replication, every implementation --------------------------------------

namespace {

// A replicated event: distinct timestamp, type, data and publish_id per
// offset and `tag`, so a read-back shows which copy is stored.
stored_event rev(const std::string& room, std::uint64_t offset,
                 const std::string& tag = "r") {
  auto e = ev(room, offset, 1000 + static_cast<std::int64_t>(offset) * 10,
              tag + "-" + std::to_string(offset));
  e.type = offset % 3 ? "progress" : "status";
  e.data = R"({"n":)" + std::to_string(offset) + R"(,"tag":")" + tag +
           R"(","s":"é \"q\""})";
  return e;
}

// `count` events after `after`, as an owner sends them.
replica_batch rbatch(const std::string& room, const std::string& epoch,
                     std::uint64_t after, std::uint64_t count,
                     bool reset = false, const std::string& tag = "r") {
  replica_batch b;
  b.room = room;
  b.epoch = epoch;
  b.after = after;
  b.reset = reset;
  for (std::uint64_t i = 1; i <= count; ++i)
    b.events.push_back(rev(room, after + i, tag));
  return b;
}

replica_batch with_snapshot(replica_batch b, std::uint64_t offset,
                            const std::string& state) {
  b.snapshots.push_back({b.room, offset, state});
  return b;
}

// "ok:5 no:3" for outcomes {true, 5}, {false, 3}.
std::string describe(const std::vector<replica_outcome>& outs) {
  std::string s;
  for (const auto& o : outs)
    s += (s.empty() ? "" : " ") + std::string(o.ok ? "ok:" : "no:") +
         std::to_string(o.last);
  return s;
}

std::string replicated(history_store& store,
                       const std::vector<replica_batch>& batches) {
  auto r = store.replicate(batches);
  INFO((r ? std::string{} : r.error().code + ": " + r.error().message));
  REQUIRE(r);
  return describe(*r);
}

std::string replicate_code(history_store& store,
                           const std::vector<replica_batch>& batches) {
  auto r = store.replicate(batches);
  return r ? "ok " + describe(*r) : r.error().code;
}

room_position pos_of(history_store& store, const std::string& room) {
  auto r = store.position(room);
  REQUIRE(r);
  return *r;
}

std::vector<stored_event> events_of(history_store& store,
                                    const std::string& room) {
  auto r = store.read_since(room, 0, 1000);
  REQUIRE(r);
  return *r;
}

offs stored_offsets(history_store& store, const std::string& room) {
  return offsets(events_of(store, room));
}

std::optional<std::uint64_t> first_of(history_store& store,
                                      const std::string& room) {
  auto r = store.first_offset(room);
  REQUIRE(r);
  return *r;
}

std::optional<std::uint64_t> publish_id_of(history_store& store,
                                           const std::string& room,
                                           const std::string& id) {
  auto r = store.find_publish_id(room, id);
  REQUIRE(r);
  return *r;
}

std::set<std::string> room_set(history_store& store) {
  auto r = store.rooms();
  REQUIRE(r);
  return {r->begin(), r->end()};
}

void require_events(history_store& store, const std::string& room,
                    const std::vector<stored_event>& want) {
  auto got = events_of(store, room);
  INFO("room " << room);
  REQUIRE(offsets(got) == offsets(want));
  for (std::size_t i = 0; i < got.size(); ++i)
    require_same(got[i], want[i]);
}

// Everything a store holds, read without creating rooms.
struct store_view {
  std::set<std::string> rooms;
  std::map<std::string, room_position> pos;
  std::map<std::string, std::vector<stored_event>> events;
  std::map<std::string, std::optional<snapshot>> snaps;
};

store_view view_of(history_store& store) {
  store_view v;
  v.rooms = room_set(store);
  for (const auto& room : v.rooms) {
    v.pos[room] = pos_of(store, room);
    v.events[room] = events_of(store, room);
    v.snaps[room] = snap_of(store, room);
  }
  return v;
}

void require_unchanged(history_store& store, const store_view& before) {
  auto now = view_of(store);
  REQUIRE(now.rooms == before.rooms);
  for (const auto& room : before.rooms) {
    INFO("room " << room);
    CHECK(now.pos[room].epoch == before.pos.at(room).epoch);
    CHECK(now.pos[room].offset == before.pos.at(room).offset);
    require_events(store, room, before.events.at(room));
    const auto& s = before.snaps.at(room);
    REQUIRE(now.snaps[room].has_value() == s.has_value());
    if (s) {
      CHECK(now.snaps[room]->offset == s->offset);
      CHECK(now.snaps[room]->state == s->state);
    }
  }
}

} // namespace

STORE_TEST("replicate into an unknown room takes the batch's epoch") {
  TestType fx;
  auto store = fx.make();
  auto after = GENERATE(as<std::uint64_t>{}, 0, 4);
  INFO("after " << after);
  auto b = rbatch("job:r", "E1", after, 3);
  CHECK(replicated(*store, {b}) == "ok:" + std::to_string(after + 3));

  auto pos = pos_of(*store, "job:r");
  CHECK(pos.epoch == "E1");
  CHECK(pos.offset == after + 3);
  require_events(*store, "job:r", b.events);
  CHECK(first_of(*store, "job:r") == after + 1);
  CHECK(publish_id_of(*store, "job:r", "r-" + std::to_string(after + 2)) ==
        after + 2);
  CHECK_FALSE(publish_id_of(*store, "job:r", "r-" + std::to_string(after)));
  CHECK_FALSE(snap_of(*store, "job:r"));
  CHECK(room_set(*store).count("job:r") == 1);
  // Reading from the middle works as for appended events.
  auto tail = store->read_since("job:r", after + 2, 100);
  REQUIRE(tail);
  CHECK(offsets(*tail) == offs{after + 3});
}

STORE_TEST("replicate appends a batch that continues the room") {
  TestType fx;
  auto store = fx.make();
  auto first = rbatch("job:r", "E1", 0, 3);
  CHECK(replicated(*store, {first}) == "ok:3");

  SECTION("with events") {
    auto next = rbatch("job:r", "E1", 3, 2);
    CHECK(replicated(*store, {next}) == "ok:5");
    auto want = first.events;
    want.insert(want.end(), next.events.begin(), next.events.end());
    require_events(*store, "job:r", want);
    auto pos = pos_of(*store, "job:r");
    CHECK(pos.epoch == "E1");
    CHECK(pos.offset == 5);
    CHECK(first_of(*store, "job:r") == std::optional<std::uint64_t>{1});
  }
  SECTION("without events") {
    CHECK(replicated(*store, {rbatch("job:r", "E1", 3, 0)}) == "ok:3");
    require_events(*store, "job:r", first.events);
    CHECK(pos_of(*store, "job:r").offset == 3);
  }
}

STORE_TEST("replicate refuses a gap and writes nothing") {
  TestType fx;
  auto store = fx.make();
  auto first = with_snapshot(rbatch("job:r", "E1", 0, 3), 3, "s3");
  CHECK(replicated(*store, {first}) == "ok:3");
  auto before = view_of(*store);

  auto gap = GENERATE(as<std::uint64_t>{}, 4, 10);
  INFO("after " << gap);
  auto b = with_snapshot(rbatch("job:r", "E1", gap, 2), gap + 2, "later");
  CHECK(replicated(*store, {b}) == "no:3");
  require_unchanged(*store, before);
  CHECK_FALSE(publish_id_of(*store, "job:r", "r-" + std::to_string(gap + 1)));
  require_snapshot(*store, "job:r", 3, "s3");

  // The owner fills the gap from the outcome's last offset.
  CHECK(replicated(*store, {rbatch("job:r", "E1", 3, gap - 3), b}) ==
        "ok:" + std::to_string(gap) + " ok:" + std::to_string(gap + 2));
  CHECK(stored_offsets(*store, "job:r").size() == gap + 2);
  require_snapshot(*store, "job:r", gap + 2, "later");
}

STORE_TEST("replicate refuses an overlap and drops nothing") {
  TestType fx;
  auto store = fx.make();
  auto first = with_snapshot(rbatch("job:r", "E1", 0, 5), 5, "s5");
  CHECK(replicated(*store, {first}) == "ok:5");
  auto before = view_of(*store);

  auto after = GENERATE(as<std::uint64_t>{}, 0, 2, 4);
  auto count = GENERATE(as<std::uint64_t>{}, 0, 1, 3);
  INFO("after " << after << ", " << count << " events");
  // Other content at the same offsets: the replica must keep its own.
  auto b = rbatch("job:r", "E1", after, count, false, "other");
  if (count > 0)
    b = with_snapshot(b, after + count, "other");
  CHECK(replicated(*store, {b}) == "no:5");
  require_unchanged(*store, before);
  require_events(*store, "job:r", first.events);
  require_snapshot(*store, "job:r", 5, "s5");
  CHECK_FALSE(
      publish_id_of(*store, "job:r", "other-" + std::to_string(after + 1)));
}

STORE_TEST("replicate with another epoch drops the room and continues") {
  TestType fx;
  auto store = fx.make();
  std::vector<stored_event> own;
  for (std::uint64_t i = 1; i <= 5; ++i)
    own.push_back(ev("job:r", i, 10, "old-" + std::to_string(i)));
  REQUIRE(store->append(own, {{"job:r", 4, "s4"}}));
  auto old_epoch = pos_of(*store, "job:r").epoch;
  REQUIRE(old_epoch != "E2");

  auto after = GENERATE(as<std::uint64_t>{}, 0, 2, 5, 7);
  INFO("after " << after);
  auto b = rbatch("job:r", "E2", after, 2);
  CHECK(replicated(*store, {b}) == "ok:" + std::to_string(after + 2));
  auto pos = pos_of(*store, "job:r");
  CHECK(pos.epoch == "E2");
  CHECK(pos.offset == after + 2);
  require_events(*store, "job:r", b.events);
  CHECK(first_of(*store, "job:r") == after + 1);
  CHECK_FALSE(snap_of(*store, "job:r"));
  for (std::uint64_t i = 1; i <= 5; ++i)
    CHECK_FALSE(publish_id_of(*store, "job:r", "old-" + std::to_string(i)));

  SECTION("the new epoch is kept: a later batch in it continues") {
    CHECK(replicated(*store, {rbatch("job:r", "E2", after + 2, 1)}) ==
          "ok:" + std::to_string(after + 3));
    CHECK(pos_of(*store, "job:r").epoch == "E2");
    CHECK(stored_offsets(*store, "job:r") ==
          offs{after + 1, after + 2, after + 3});
  }
  SECTION("and a gap in the new epoch is refused") {
    CHECK(replicated(*store, {rbatch("job:r", "E2", after + 3, 1)}) ==
          "no:" + std::to_string(after + 2));
  }
}

STORE_TEST("replicate with reset in the same epoch drops and continues") {
  TestType fx;
  auto store = fx.make();
  auto first = with_snapshot(rbatch("job:r", "E1", 0, 5), 5, "s5");
  CHECK(replicated(*store, {first}) == "ok:5");
  REQUIRE(store->append({ev("job:other", 1)}));
  auto other_before = events_of(*store, "job:other");

  auto after = GENERATE(as<std::uint64_t>{}, 0, 2, 5, 9);
  INFO("after " << after);
  auto b = rbatch("job:r", "E1", after, 2, true, "reset");
  CHECK(replicated(*store, {b}) == "ok:" + std::to_string(after + 2));
  auto pos = pos_of(*store, "job:r");
  CHECK(pos.epoch == "E1");
  CHECK(pos.offset == after + 2);
  require_events(*store, "job:r", b.events);
  CHECK(first_of(*store, "job:r") == after + 1);
  CHECK_FALSE(snap_of(*store, "job:r"));
  CHECK_FALSE(publish_id_of(*store, "job:r", "r-1"));
  // Other rooms are untouched.
  require_events(*store, "job:other", other_before);
}

STORE_TEST("replicate with reset and no events leaves the room at after") {
  TestType fx;
  auto store = fx.make();
  auto first = with_snapshot(rbatch("job:r", "E1", 0, 5), 5, "s5");
  CHECK(replicated(*store, {first}) == "ok:5");

  auto epoch = GENERATE(as<std::string>{}, "E1", "E2");
  auto after = GENERATE(as<std::uint64_t>{}, 0, 3, 8);
  INFO("epoch " << epoch << ", after " << after);
  CHECK(replicated(*store, {rbatch("job:r", epoch, after, 0, true)}) ==
        "ok:" + std::to_string(after));
  auto pos = pos_of(*store, "job:r");
  CHECK(pos.epoch == epoch);
  CHECK(pos.offset == after);
  CHECK(stored_offsets(*store, "job:r").empty());
  CHECK_FALSE(first_of(*store, "job:r"));
  CHECK_FALSE(snap_of(*store, "job:r"));
  // The room continues from `after`, by append as by replication.
  CHECK(code_of(store->append({ev("job:r", after)})) == "OFFSET_CONFLICT");
  CHECK(code_of(store->append({ev("job:r", after + 2)})) == "OFFSET_CONFLICT");
  REQUIRE(store->append({ev("job:r", after + 1)}));
  CHECK(stored_offsets(*store, "job:r") == offs{after + 1});
}

STORE_TEST("replicate stores a batch's snapshots with its events") {
  TestType fx;
  auto store = fx.make();
  CHECK(replicated(*store, {with_snapshot(rbatch("job:r", "E1", 4, 3), 7,
                                          "s7")}) == "ok:7");
  require_snapshot(*store, "job:r", 7, "s7");

  SECTION("a continuing batch replaces it") {
    CHECK(replicated(*store, {with_snapshot(rbatch("job:r", "E1", 7, 2), 9,
                                            R"({"x":"é \"q\""})")}) == "ok:9");
    require_snapshot(*store, "job:r", 9, R"({"x":"é \"q\""})");
  }
  SECTION("a continuing batch without a snapshot keeps it") {
    CHECK(replicated(*store, {rbatch("job:r", "E1", 7, 2)}) == "ok:9");
    require_snapshot(*store, "job:r", 7, "s7");
  }
  SECTION("a batch of only a snapshot at the last offset") {
    CHECK(replicated(*store, {with_snapshot(rbatch("job:r", "E1", 7, 0), 7,
                                            "again")}) == "ok:7");
    require_snapshot(*store, "job:r", 7, "again");
  }
  SECTION("a reset batch brings its own") {
    CHECK(replicated(*store, {with_snapshot(rbatch("job:r", "E1", 20, 1, true),
                                            21, "s21")}) == "ok:21");
    require_snapshot(*store, "job:r", 21, "s21");
  }
  SECTION("several rooms in one call") {
    CHECK(replicated(*store,
                     {with_snapshot(rbatch("job:a", "Ea", 0, 2), 2, "a2"),
                      with_snapshot(rbatch("job:r", "E1", 7, 1), 8, "s8")}) ==
          "ok:2 ok:8");
    require_snapshot(*store, "job:a", 2, "a2");
    require_snapshot(*store, "job:r", 8, "s8");
  }
  // The stored snapshot bounds appends as any other does.
  auto last = pos_of(*store, "job:r").offset;
  CHECK(code_of(store->put_snapshot("job:r", last + 1, "x")) ==
        "OFFSET_CONFLICT");
}

namespace {

// The state the malformed-call tests start from: a replicated room with a
// snapshot and an appended room.
void seed_for_refusals(history_store& store) {
  REQUIRE(replicated(store, {with_snapshot(rbatch("job:a", "Ea", 0, 3), 3,
                                           "a3")}) == "ok:3");
  REQUIRE(store.append({ev("job:b", 1), ev("job:b", 2)}, {{"job:b", 2, "b2"}}));
}

} // namespace

STORE_TEST("replicate refuses a snapshot past its events and applies nothing") {
  TestType fx;
  auto store = fx.make();
  seed_for_refusals(*store);
  auto before = view_of(*store);

  std::vector<replica_batch> call;
  SECTION("past the batch's events") {
    call = {with_snapshot(rbatch("job:a", "Ea", 3, 2), 6, "a6")};
  }
  SECTION("in a batch without events") {
    call = {with_snapshot(rbatch("job:a", "Ea", 3, 0), 4, "a4")};
  }
  SECTION("in a new room") {
    call = {with_snapshot(rbatch("job:new", "En", 0, 1), 2, "n2")};
  }
  SECTION("after good batches of the same call") {
    call = {rbatch("job:new", "En", 0, 2), rbatch("job:a", "Ea", 3, 1),
            with_snapshot(rbatch("job:b", "Eb", 5, 1), 7, "b7")};
  }
  SECTION("before a good batch of the same call") {
    call = {with_snapshot(rbatch("job:a", "Ea", 3, 1), 5, "a5"),
            rbatch("job:new", "En", 0, 2)};
  }
  SECTION("in a reset batch: the room is not dropped") {
    call = {with_snapshot(rbatch("job:a", "Ea", 0, 1, true), 2, "a2")};
  }
  SECTION("in another epoch: the room is not dropped") {
    call = {with_snapshot(rbatch("job:b", "Eb", 9, 1), 11, "b11")};
  }
  SECTION("a snapshot of another room") {
    auto b = rbatch("job:a", "Ea", 3, 1);
    b.snapshots.push_back({"job:b", 1, "b1"});
    call = {rbatch("job:new", "En", 0, 1), b};
  }
  CHECK(replicate_code(*store, call) == "OFFSET_CONFLICT");
  require_unchanged(*store, before);

  // No transaction left open.
  CHECK(replicated(*store, {with_snapshot(rbatch("job:a", "Ea", 3, 1), 4,
                                          "a4")}) == "ok:4");
  require_snapshot(*store, "job:a", 4, "a4");
}

STORE_TEST("replicate refuses events that do not follow after or are of "
           "another room and applies nothing") {
  TestType fx;
  auto store = fx.make();
  seed_for_refusals(*store);
  auto before = view_of(*store);

  std::vector<replica_batch> call;
  SECTION("an offset skipped") {
    auto b = rbatch("job:a", "Ea", 3, 1);
    b.events.push_back(rev("job:a", 6));
    call = {b};
  }
  SECTION("the first event at after") {
    auto b = rbatch("job:a", "Ea", 3, 0);
    b.events = {rev("job:a", 3), rev("job:a", 4)};
    call = {b};
  }
  SECTION("an offset repeated") {
    auto b = rbatch("job:a", "Ea", 3, 1);
    b.events.push_back(rev("job:a", 4));
    call = {b};
  }
  SECTION("descending offsets") {
    auto b = rbatch("job:a", "Ea", 3, 0);
    b.events = {rev("job:a", 5), rev("job:a", 4)};
    call = {b};
  }
  SECTION("offset 0 in a new room") {
    auto b = rbatch("job:new", "En", 0, 0);
    b.events = {rev("job:new", 0)};
    call = {b};
  }
  SECTION("an event of another room") {
    auto b = rbatch("job:a", "Ea", 3, 1);
    b.events.push_back(rev("job:b", 5));
    call = {b};
  }
  SECTION("only events of another room") {
    auto b = rbatch("job:new", "En", 0, 0);
    b.events = {rev("job:b", 1)};
    call = {b};
  }
  SECTION("in a reset batch: the room is not dropped") {
    auto b = rbatch("job:a", "Ea", 0, 0, true);
    b.events = {rev("job:a", 2)};
    call = {b};
  }
  SECTION("in another epoch: the room is not dropped") {
    auto b = rbatch("job:b", "Eb", 0, 1);
    b.events.push_back(rev("job:b", 3));
    call = {b};
  }
  SECTION("after good batches of the same call") {
    auto b = rbatch("job:b", "Eb", 0, 1);
    b.events.push_back(rev("job:b", 3));
    call = {rbatch("job:new", "En", 0, 2), rbatch("job:a", "Ea", 3, 2), b};
  }
  SECTION("before a good batch of the same call") {
    auto b = rbatch("job:a", "Ea", 3, 1);
    b.events.push_back(rev("job:a", 6));
    call = {b, rbatch("job:new", "En", 0, 2)};
  }
  CHECK(replicate_code(*store, call) == "OFFSET_CONFLICT");
  require_unchanged(*store, before);
  CHECK_FALSE(publish_id_of(*store, "job:a", "r-4"));

  // No transaction left open.
  CHECK(replicated(*store, {rbatch("job:a", "Ea", 3, 1)}) == "ok:4");
}

STORE_TEST("replicate applies several batches in order, one outcome each") {
  TestType fx;
  auto store = fx.make();
  CHECK(replicated(*store, {rbatch("job:a", "Ea", 0, 3),
                            rbatch("job:b", "Eb", 0, 2)}) == "ok:3 ok:2");

  auto gap = rbatch("job:b", "Eb", 5, 1, false, "gap");
  auto a1 = rbatch("job:a", "Ea", 3, 2);
  auto a2 = rbatch("job:a", "Ea", 5, 1); // continues the batch before it
  auto b_ok = rbatch("job:b", "Eb", 2, 2);
  auto c = rbatch("job:c", "Ec", 0, 1);
  CHECK(replicated(*store, {a1, gap, a2, b_ok, c}) ==
        "ok:5 no:2 ok:6 ok:4 ok:1");

  CHECK(stored_offsets(*store, "job:a") == offs{1, 2, 3, 4, 5, 6});
  CHECK(stored_offsets(*store, "job:b") == offs{1, 2, 3, 4});
  CHECK(stored_offsets(*store, "job:c") == offs{1});
  CHECK_FALSE(publish_id_of(*store, "job:b", "gap-6"));
  CHECK(pos_of(*store, "job:a").offset == 6);
  CHECK(pos_of(*store, "job:b").offset == 4);
  CHECK(pos_of(*store, "job:c").epoch == "Ec");

  SECTION("the gap batch applies once filled") {
    CHECK(replicated(*store, {rbatch("job:b", "Eb", 4, 1), gap}) ==
          "ok:5 ok:6");
    CHECK(stored_offsets(*store, "job:b") == offs{1, 2, 3, 4, 5, 6});
    CHECK(publish_id_of(*store, "job:b", "gap-6") ==
          std::optional<std::uint64_t>{6});
  }
  SECTION("an overlap and a gap of one call, both refused") {
    CHECK(replicated(*store, {rbatch("job:a", "Ea", 2, 1, false, "x"),
                              rbatch("job:b", "Eb", 9, 1)}) == "no:6 no:4");
    CHECK(stored_offsets(*store, "job:a") == offs{1, 2, 3, 4, 5, 6});
    CHECK_FALSE(publish_id_of(*store, "job:a", "x-3"));
  }
  SECTION("an empty call") {
    CHECK(replicated(*store, {}).empty());
  }
}

STORE_TEST("append continues from the replicated last offset") {
  TestType fx;
  auto store = fx.make();
  CHECK(replicated(*store, {with_snapshot(rbatch("job:r", "E1", 4, 3), 7,
                                          "s7")}) == "ok:7");

  for (auto bad : {std::uint64_t{1}, std::uint64_t{5}, std::uint64_t{7},
                   std::uint64_t{9}}) {
    INFO("offset " << bad);
    CHECK(code_of(store->append({ev("job:r", bad)})) == "OFFSET_CONFLICT");
  }
  CHECK(code_of(store->put_snapshot("job:r", 6, "s6")) == "SNAPSHOT_STALE");
  REQUIRE(store->append({ev("job:r", 8, 80, "p8")}, {{"job:r", 8, "s8"}}));
  auto pos = pos_of(*store, "job:r");
  CHECK(pos.epoch == "E1"); // append keeps the replicated epoch
  CHECK(pos.offset == 8);
  CHECK(stored_offsets(*store, "job:r") == offs{5, 6, 7, 8});
  require_snapshot(*store, "job:r", 8, "s8");
  CHECK(publish_id_of(*store, "job:r", "p8") ==
        std::optional<std::uint64_t>{8});

  // And replication continues from what append stored.
  CHECK(replicated(*store, {rbatch("job:r", "E1", 7, 1)}) == "no:8");
  CHECK(replicated(*store, {rbatch("job:r", "E1", 8, 1)}) == "ok:9");
}

STORE_TEST("replicate drops a snapshot at offset 0 when it starts anew") {
  TestType fx;
  auto store = fx.make();
  // An operation's initial state, stored before any event.
  REQUIRE(store->put_snapshot("job:r", 0, R"({"status":"pending"})"));
  auto epoch = pos_of(*store, "job:r").epoch;
  auto reset = GENERATE(false, true);
  INFO((reset ? "reset in the same epoch" : "another epoch"));
  auto b = rbatch("job:r", reset ? epoch : epoch + "-other", 3, 1, reset);
  CHECK(replicated(*store, {b}) == "ok:4");
  require_events(*store, "job:r", b.events);
  // "the room's events and snapshot are dropped": the owner's snapshot (if
  // any) comes with the batch; a state folded from no events must not stay.
  CHECK_FALSE(snap_of(*store, "job:r"));
}

// --- replication, SQLite only -----------------------------------------------

TEST_CASE("sqlite keeps replicated history across a restart", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("history.db");
  auto mode = GENERATE(durability::full, durability::normal);
  auto a = with_snapshot(rbatch("job:a", "Ea", 4, 3), 7, "a7");
  auto b = rbatch("job:b", "Eb", 0, 2);
  auto c = rbatch("job:c", "Ec", 5, 0, true);
  {
    auto store = open_sqlite(path, mode);
    REQUIRE(store->append({ev("job:b", 1), ev("job:b", 2), ev("job:b", 3)}));
    CHECK(replicated(*store, {a, b, c}) == "ok:7 ok:2 ok:5");
  }
  auto store = open_sqlite(path, mode);
  CHECK(store->opened_clean());
  CHECK(room_set(*store) == std::set<std::string>{"job:a", "job:b", "job:c"});
  auto pa = pos_of(*store, "job:a");
  CHECK(pa.epoch == "Ea");
  CHECK(pa.offset == 7);
  require_events(*store, "job:a", a.events);
  require_snapshot(*store, "job:a", 7, "a7");
  CHECK(publish_id_of(*store, "job:a", "r-6") ==
        std::optional<std::uint64_t>{6});
  auto pb = pos_of(*store, "job:b");
  CHECK(pb.epoch == "Eb");
  CHECK(pb.offset == 2);
  require_events(*store, "job:b", b.events);
  auto pc = pos_of(*store, "job:c");
  CHECK(pc.epoch == "Ec");
  CHECK(pc.offset == 5);
  CHECK(stored_offsets(*store, "job:c").empty());

  // The reopened store goes on where replication left it.
  CHECK(replicated(*store, {rbatch("job:a", "Ea", 6, 2, false, "x"),
                            rbatch("job:a", "Ea", 7, 1),
                            rbatch("job:c", "Ec", 6, 1)}) == "no:7 ok:8 no:5");
  REQUIRE(store->append({ev("job:c", 6)}));
}
