// The application's handle on a session (a WebSocket, an HTTP stream): a
// frame_sink holding a weak_ptr, so a session ends with its connection
// whatever the application keeps. Once the session is gone, deliver()
// returns false and close() does nothing.
#pragma once

#include "transport/seam.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>

namespace tidings::transport {

template <class Session>
class weak_sink final : public frame_sink {
 public:
  explicit weak_sink(std::weak_ptr<Session> session)
      : session_(std::move(session)) {}

  bool deliver(frame f) override {
    auto s = session_.lock();
    return s && s->deliver(std::move(f));
  }

  void close(std::uint16_t code, std::string_view reason) override {
    if (auto s = session_.lock())
      s->close(code, reason);
  }

  std::size_t queued_bytes() const override {
    auto s = session_.lock();
    return s ? s->queued_bytes() : 0;
  }

  std::size_t max_queued_bytes() const override {
    auto s = session_.lock();
    return s ? s->max_queued_bytes() : 0;
  }

 private:
  std::weak_ptr<Session> session_;
};

} // namespace tidings::transport
