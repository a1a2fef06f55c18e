// The application behind the transport: routes HTTP requests to the API and
// turns each WebSocket session into a connection actor. Called on transport
// I/O threads; it never blocks them: anything that needs an actor's answer
// runs in one long-lived relay actor that completes the responder
// (publishes, operation events and reads, history pages; gateway.cpp).
//
// Endpoints:
//   GET  /healthz              200 {"status":"ok"}
//   GET  /metrics              Prometheus text
//   POST /api/v1/publish       Bearer <api key>; body → {"room_id","offset"}
//   GET  /api/v1/ws/stats      Bearer <JWT> → {"total_connections",
//                              "user_connections","active_rooms"}
//   GET  /api/v1/ws/rooms      Bearer <JWT> → {"active_rooms":[…],
//                              "total_rooms"} (admins: all; others: own)
//   GET  /api/v1/cluster[?room=kind:id…]
//                              Bearer <JWT> → members and placement
//                              (actors/cluster_api.hpp)
//   GET  /api/v1/rooms/{room_id}/history?since=&limit=
//                              Bearer <JWT>, subscribe ACL → {"room_id",
//                              "epoch","offset","events":[event frames]}
//   POST /api/v1/operations    Bearer <api key>; {"id","kind","owner",
//                              "meta"?} → 201 {"id","kind","owner",
//                              "room_id","state","offset","epoch"}
//   POST /api/v1/operations/{id}/events
//                              Bearer <api key>; publish body without
//                              room_id → {"room_id","offset"}
//   GET  /api/v1/operations/{id}
//                              Bearer <api key>, or a JWT of the owner or
//                              one the room's ACL admits → the same object
//                              as the 201 above
//   GET  /api/v1/sse/{channel}/{id}, /api/v1/runs/{run_id}/events
//                              SSE and long-poll (actors/stream_http.hpp)
//   WS   /api/v1/ws[?token=]   the native protocol (protocol/native.hpp)
//                              or seed S0's (dialect_s0.hpp), per connection
//   WS   /ws/operations/{id}?token=
//                              seed S3's operation socket (dialect_s3.hpp)
//   WS   <socket kind prefix>… actors registered with
//                              kind_registry::add_socket_kind (/ws/scan/)
#pragma once

#include "actors/connection.hpp"
#include "actors/extension.hpp"
#include "actors/node_state.hpp"
#include "actors/stream_http.hpp"
#include "transport/seam.hpp"

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include <atomic>
#include <functional>
#include <memory>
#include <string>

namespace tidings::actors {

class cluster_api;

struct gateway_config {
  std::shared_ptr<const connection_config> conn;
  std::string api_key; // empty: the publish API refuses every request
  std::string node_id;
  std::shared_ptr<const kind_registry> kinds;
  /// Extra Prometheus text appended to /metrics (transport counters).
  std::function<std::string()> extra_metrics;
  /// Serves GET /api/v1/cluster (404 when null).
  std::shared_ptr<cluster_api> cluster;
  /// SSE and long-poll (actors/stream_http.hpp).
  stream_http_config streams;
};

class gateway : public transport::application {
 public:
  gateway(caf::actor_system& sys, caf::actor directory, caf::actor writer,
          node_state& node, gateway_config cfg);
  ~gateway() override;

  /// Stops the actor that waits for the answers of API requests; later
  /// publishes, operation calls and history pages answer `unavailable`.
  /// Called before the actor system waits for its actors to finish.
  void stop();

  void handle_http(transport::http_request req,
                   transport::http_responder respond) override;
  std::optional<transport::http_response>
  check_upgrade(const transport::http_request& req) override;
  std::shared_ptr<transport::connection_handler>
  open(const transport::http_request& req,
       std::shared_ptr<transport::frame_sink> sink) override;

 private:
  void publish(transport::http_request& req,
               transport::http_responder& respond);
  std::optional<protocol::claims> bearer_claims(const std::string& header);
  bool api_key_ok(const std::string& authorization) const;
  void operations(std::string_view rest, transport::http_request& req,
                  transport::http_responder& respond);
  void history(std::string_view path, std::string_view query,
               const std::string& authorization,
               transport::http_responder& respond);

  caf::actor_system& sys_;
  caf::actor directory_;
  caf::actor writer_;
  caf::actor relay_; // answers API requests that wait for actors
  std::atomic<bool> stopped_{false};
  node_state& node_;
  gateway_config cfg_;
  std::atomic<std::uint64_t> next_conn_{1};
  std::string conn_prefix_;
  std::unique_ptr<stream_http> streams_; // SSE and long-poll routes
};

} // namespace tidings::actors
