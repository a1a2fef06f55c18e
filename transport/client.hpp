// Small blocking clients for the CLI (publish, tail, demo, token checks).
// Loopback-only tools in app/ use these; Beast stays in client.cpp.
#pragma once

#include "protocol/result.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tidings::transport {

struct http_reply {
  unsigned status = 0;
  std::string body;
};

/// One HTTP/1.1 request on a fresh connection. Errors: code "CONNECT" or
/// "IO" with a short message.
result<http_reply>
http_call(const std::string& host, std::uint16_t port,
          const std::string& method, const std::string& target,
          const std::vector<std::pair<std::string, std::string>>& headers,
          const std::string& body, std::chrono::milliseconds timeout);

/// A blocking WebSocket client.
class ws_client {
 public:
  ws_client();
  ~ws_client();
  ws_client(const ws_client&) = delete;
  ws_client& operator=(const ws_client&) = delete;

  /// Errors: "CONNECT"; "HANDSHAKE" when the server answered without
  /// upgrading (the message carries the HTTP status).
  result<bool> connect(const std::string& host, std::uint16_t port,
                       const std::string& target);
  result<bool> send(const std::string& text);
  /// Next message; error code "CLOSED" (message carries the close code and
  /// reason) when the server closed, "TIMEOUT" when `timeout` passed.
  /// After a TIMEOUT the client stays usable: the read stays pending and the
  /// next read() continues it. Server pings are answered only while a
  /// read() or send() runs.
  result<std::string> read(std::chrono::milliseconds timeout);
  void close();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace tidings::transport
