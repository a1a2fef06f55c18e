// Options and helpers shared by the client subcommands (token, publish,
// tail, demo). They read the same TIDINGS_* variables as `serve`, so one
// environment configures both ends.
#pragma once

#include "app/options.hpp"
#include "protocol/result.hpp"

#include <cstdint>
#include <string>

namespace tidings::app {

/// --host, --port (client side: where the server is).
void add_server_options(options& o);
/// --token, or --jwt-secret with --sub/--rooms/--admin to mint one.
void add_token_options(options& o);

/// The token to present: --token, else one minted from --jwt-secret.
result<std::string> client_token(const options& o);

std::uint16_t port_of(const options& o);

/// Refuses hosts that are not loopback (the CLI tools are for dev use).
bool is_loopback_host(const std::string& host);

} // namespace tidings::app
