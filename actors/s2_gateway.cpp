#include "actors/s2_gateway.hpp"

#include "actors/messages.hpp"
#include "protocol/publish_request.hpp"

#include <caf/all.hpp>

#include <cstdio>
#include <random>

namespace tidings::actors {

namespace {

// Apart from the gateway's connection ids and stream_http's (1 << 62 up):
// a room keys its subscribers by conn_id.
constexpr std::uint64_t conn_id_base = std::uint64_t{3} << 62;

} // namespace

struct s2_gateway::impl {
  caf::actor_system& sys;
  caf::actor directory;
  node_state& node;
  s2_gateway_config cfg;
  std::atomic<std::uint64_t> next_conn{0};
  std::string prefix; // random per process, in client ids
};

s2_gateway::s2_gateway(caf::actor_system& sys, caf::actor directory,
                       node_state& node, s2_gateway_config cfg)
    : impl_(new impl{sys, std::move(directory), node, std::move(cfg), {}, {}}) {
  std::random_device rd;
  char buf[20];
  std::snprintf(buf, sizeof buf, "%08x", rd());
  impl_->prefix = buf;
}

s2_gateway::~s2_gateway() = default;

void s2_gateway::handle_http(transport::http_request,
                             transport::http_responder respond) {
  transport::http_response r;
  r.status = 404;
  r.body = protocol::encode_http_error(protocol::error_code::not_found,
                                       "this port speaks S2 WebSocket only");
  respond(std::move(r));
}

std::optional<transport::http_response>
s2_gateway::check_upgrade(const transport::http_request&) {
  return std::nullopt; // any path: S2 clients use the bare host:port
}

std::shared_ptr<transport::connection_handler>
s2_gateway::open(const transport::http_request&,
                 std::shared_ptr<transport::frame_sink> sink) {
  auto& im = *impl_;
  auto n = im.next_conn.fetch_add(1, std::memory_order_relaxed) + 1;
  s2_connection_args args;
  args.conn_id = conn_id_base + n;
  // S2's examples show a UUID ("client-uuid"); any unique text will do.
  args.client_id = "client-" + im.prefix + "-" + std::to_string(n);
  args.sink = std::move(sink);
  args.key = im.cfg.key;
  args.policy = im.cfg.policy;
  args.api_key = im.cfg.api_key;
  args.cfg = im.cfg.rules;
  auto conn =
      spawn_s2_connection(im.sys, std::move(args), im.directory, im.node);
  return std::make_shared<actor_handler>(std::move(conn));
}

} // namespace tidings::actors
