// JWT (JWS compact) verification and HS256 signing with OpenSSL's EVP API.
// Pure: the current time is passed in, nothing is logged, tokens never
// appear in error messages.
#pragma once

#include "protocol/claims.hpp"
#include "protocol/result.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tidings::protocol {

/// The one algorithm a key accepts (pinned: a token's `alg` header must
/// match it exactly; `none` is never accepted).
enum class jwt_alg { hs256, rs256, es256 };

/// A verification key bound to its algorithm.
class jwt_key {
 public:
  /// HS256 with a shared secret (at least 32 bytes recommended; empty fails).
  static result<jwt_key> hs256(std::string secret);
  /// RS256 from a PEM public key (SubjectPublicKeyInfo or RSA PUBLIC KEY).
  static result<jwt_key> rs256_pem(std::string_view pem);
  /// ES256 (P-256) from a PEM public key.
  static result<jwt_key> es256_pem(std::string_view pem);

  jwt_alg alg() const;

  jwt_key(const jwt_key&);
  jwt_key& operator=(const jwt_key&);
  jwt_key(jwt_key&&) noexcept;
  jwt_key& operator=(jwt_key&&) noexcept;
  ~jwt_key();

  struct impl;
  const impl& get() const { return *impl_; }

 private:
  jwt_key();
  std::shared_ptr<const impl> impl_;
};

struct jwt_policy {
  std::int64_t leeway_seconds = 30;
  std::optional<std::string> issuer;   // when set, `iss` must equal it
  std::optional<std::string> audience; // when set, `aud` (string or array)
                                       // must contain it
  bool require_exp = false;            // reject tokens without `exp`
  std::size_t max_token_size = 8192;   // longer tokens are rejected unread
};

/// Verifies signature, `alg`, `exp`, `nbf`, `iss`, `aud`; requires a
/// non-empty string `sub`. Errors use code "UNAUTHORIZED" and a short fixed
/// message saying which check failed (e.g. "token expired").
result<claims> verify_jwt(std::string_view token, const jwt_key& key,
                          const jwt_policy& policy, std::int64_t now_seconds);

/// Claims to put in a dev token minted by `tidings token`.
struct token_request {
  std::string sub;
  std::vector<std::string> rooms;
  bool admin = false;
  std::string plan;
  std::int64_t iat = 0;
  std::int64_t ttl_seconds = 3600;
  std::optional<std::string> issuer;
  std::optional<std::string> audience;
};

/// Signs an HS256 token (header {"alg":"HS256","typ":"JWT"}).
std::string sign_hs256(const token_request& req, std::string_view secret);

/// Base64url without padding, both ways; decode rejects invalid input.
std::string base64url_encode(std::string_view in);
std::optional<std::string> base64url_decode(std::string_view in);

} // namespace tidings::protocol
