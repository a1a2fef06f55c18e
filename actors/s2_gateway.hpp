// The application behind seed S2's own listener (`--s2-port`): every
// WebSocket on that port, whatever its path (S2's clients connect to bare
// `ws://host:port`), becomes an S2 connection actor (s2_connection.hpp).
// Plain HTTP requests get 404. Called on transport I/O threads; never
// blocks them. Origin, connection-count, message-size and keepalive rules
// are the listener's transport settings (server_options).
#pragma once

#include "actors/node_state.hpp"
#include "actors/s2_connection.hpp"
#include "transport/seam.hpp"

#include <caf/fwd.hpp>

#include <atomic>
#include <memory>
#include <string>

namespace tidings::actors {

struct s2_gateway_config {
  std::shared_ptr<const protocol::jwt_key> key;
  protocol::jwt_policy policy;
  std::string api_key; // also accepted as an S2 token; empty: JWTs only
  s2_config rules;
};

class s2_gateway : public transport::application {
 public:
  s2_gateway(caf::actor_system& sys, caf::actor directory, node_state& node,
             s2_gateway_config cfg);
  ~s2_gateway() override;

  void handle_http(transport::http_request req,
                   transport::http_responder respond) override;
  std::optional<transport::http_response>
  check_upgrade(const transport::http_request& req) override;
  std::shared_ptr<transport::connection_handler>
  open(const transport::http_request& req,
       std::shared_ptr<transport::frame_sink> sink) override;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace tidings::actors
