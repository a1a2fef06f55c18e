// JWS compact verification (HS256, RS256, ES256) and HS256 signing.
//
// Threads: everything here is a pure function of its arguments. A jwt_key is
// immutable once made and may be shared by any number of threads; OpenSSL 3
// allows concurrent use of an EVP_PKEY that nobody modifies.
//
// Order of checks in verify_jwt: size, shape and base64url, header and `alg`,
// signature, and only then the payload's JSON. Claims are never parsed
// before the signature over them has been checked.

#include "protocol/jwt.hpp"

#include <nlohmann/json.hpp>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <limits>
#include <utility>

namespace tidings::protocol {

namespace {

using json = nlohmann::json;

// One fixed text per failed check: clients and logs learn which check
// failed, never what the token or its claims contained.
namespace msg {
constexpr const char* malformed = "malformed token";
constexpr const char* alg = "algorithm not allowed";
constexpr const char* signature = "bad signature";
constexpr const char* expired = "token expired";
constexpr const char* not_yet_valid = "token not yet valid";
constexpr const char* issuer = "issuer mismatch";
constexpr const char* audience = "audience mismatch";
constexpr const char* sub = "missing sub";
constexpr const char* too_large = "token too large";
constexpr const char* exp = "missing exp";
} // namespace msg

error_info unauthorized(const char* why) {
  return {"UNAUTHORIZED", why};
}

// Key errors happen while loading configuration, not on the wire, so they
// get their own code rather than one from the client-facing error table.
error_info invalid_key(const char* why) {
  return {"INVALID_KEY", why};
}

template <auto Free>
struct ossl_deleter {
  template <class T>
  void operator()(T* ptr) const {
    Free(ptr);
  }
};

using pkey_ptr = std::unique_ptr<EVP_PKEY, ossl_deleter<EVP_PKEY_free>>;
using bio_ptr = std::unique_ptr<BIO, ossl_deleter<BIO_free>>;
using md_ctx_ptr = std::unique_ptr<EVP_MD_CTX, ossl_deleter<EVP_MD_CTX_free>>;
using ecdsa_sig_ptr = std::unique_ptr<ECDSA_SIG, ossl_deleter<ECDSA_SIG_free>>;
using bignum_ptr = std::unique_ptr<BIGNUM, ossl_deleter<BN_free>>;

constexpr std::size_t sha256_size = 32;
constexpr std::size_t es256_half = 32; // P-256 scalars are 32 bytes

std::string_view alg_name(jwt_alg alg) {
  switch (alg) {
  case jwt_alg::hs256:
    return "HS256";
  case jwt_alg::rs256:
    return "RS256";
  case jwt_alg::es256:
    return "ES256";
  }
  return {};
}

// --- base64url ---------------------------------------------------------------

constexpr char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z')
    return c - 'A';
  if (c >= 'a' && c <= 'z')
    return c - 'a' + 26;
  if (c >= '0' && c <= '9')
    return c - '0' + 52;
  if (c == '-')
    return 62;
  if (c == '_')
    return 63;
  return -1;
}

// --- claims helpers ----------------------------------------------------------

// Saturating, so that hostile `exp` values or a huge configured leeway
// cannot overflow into the opposite verdict.
std::int64_t saturating_add(std::int64_t a, std::int64_t b) {
  constexpr auto hi = std::numeric_limits<std::int64_t>::max();
  constexpr auto lo = std::numeric_limits<std::int64_t>::min();
  if (b > 0 && a > hi - b)
    return hi;
  if (b < 0 && a < lo - b)
    return lo;
  return a + b;
}

// RFC 7519 NumericDate: seconds, possibly fractional. Fractions are floored;
// a sub-second difference is far below any leeway.
std::optional<std::int64_t> numeric_date(const json& value) {
  constexpr auto hi = std::numeric_limits<std::int64_t>::max();
  constexpr auto lo = std::numeric_limits<std::int64_t>::min();
  if (value.is_number_unsigned()) {
    auto u = value.get<std::uint64_t>();
    return u > static_cast<std::uint64_t>(hi) ? hi
                                              : static_cast<std::int64_t>(u);
  }
  if (value.is_number_integer())
    return value.get<std::int64_t>();
  if (value.is_number_float()) {
    double d = std::floor(value.get<double>());
    if (!std::isfinite(d))
      return std::nullopt;
    // 2^63 is exact as a double; anything at or beyond it saturates.
    if (d >= 9223372036854775808.0)
      return hi;
    if (d <= -9223372036854775808.0)
      return lo;
    return static_cast<std::int64_t>(d);
  }
  return std::nullopt;
}

const std::string* string_member(const json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || !it->is_string())
    return nullptr;
  return &it->get_ref<const std::string&>();
}

bool array_has_string(const json& value, std::string_view wanted) {
  if (!value.is_array())
    return false;
  return std::any_of(value.begin(), value.end(), [&](const json& item) {
    return item.is_string() && item.get_ref<const std::string&>() == wanted;
  });
}

bool audience_contains(const json& payload, const std::string& wanted) {
  auto it = payload.find("aud");
  if (it == payload.end())
    return false;
  if (it->is_string())
    return it->get_ref<const std::string&>() == wanted;
  return array_has_string(*it, wanted);
}

std::optional<json> parse_object(const std::string& text) {
  try {
    auto value = json::parse(text);
    if (value.is_object())
      return value;
  } catch (const json::exception&) {
    // Falls through: invalid JSON is just a malformed token.
  }
  return std::nullopt;
}

// Applies the policy and maps the payload to claims. Signature already ok.
result<claims> read_claims(const json& payload, const jwt_policy& policy,
                           std::int64_t now) {
  const std::int64_t leeway = std::max<std::int64_t>(policy.leeway_seconds, 0);
  claims out;
  if (auto it = payload.find("exp"); it != payload.end()) {
    auto exp = numeric_date(*it);
    if (!exp)
      return unauthorized(msg::malformed);
    if (*exp <= saturating_add(now, -leeway))
      return unauthorized(msg::expired);
    out.exp = exp;
  } else if (policy.require_exp) {
    return unauthorized(msg::exp);
  }
  if (auto it = payload.find("nbf"); it != payload.end()) {
    auto nbf = numeric_date(*it);
    if (!nbf)
      return unauthorized(msg::malformed);
    if (*nbf > saturating_add(now, leeway))
      return unauthorized(msg::not_yet_valid);
  }
  if (policy.issuer) {
    auto iss = string_member(payload, "iss");
    if (iss == nullptr || *iss != *policy.issuer)
      return unauthorized(msg::issuer);
  }
  if (policy.audience && !audience_contains(payload, *policy.audience))
    return unauthorized(msg::audience);
  auto sub = string_member(payload, "sub");
  if (sub == nullptr || sub->empty())
    return unauthorized(msg::sub);
  out.sub = *sub;
  // Unexpected shapes grant less rather than failing: a non-array `rooms`
  // or a non-string entry simply grants nothing.
  if (auto it = payload.find("rooms"); it != payload.end() && it->is_array())
    for (const auto& room : *it)
      if (room.is_string())
        out.rooms.push_back(room.get<std::string>());
  auto role = string_member(payload, "role");
  auto roles = payload.find("roles");
  out.admin = (role != nullptr && *role == "admin") ||
              (roles != payload.end() && array_has_string(*roles, "admin"));
  if (auto plan = string_member(payload, "plan"))
    out.plan = *plan;
  return out;
}

// --- signatures --------------------------------------------------------------

bool hmac_sha256(std::string_view secret, std::string_view data,
                 unsigned char (&mac)[EVP_MAX_MD_SIZE], unsigned int& len) {
  if (secret.empty() || secret.size() > INT_MAX)
    return false;
  return HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
              reinterpret_cast<const unsigned char*>(data.data()), data.size(),
              mac, &len) != nullptr;
}

bool evp_verify_sha256(EVP_PKEY* key, std::string_view data,
                       std::string_view sig) {
  md_ctx_ptr ctx{EVP_MD_CTX_new()};
  return ctx &&
         EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) ==
             1 &&
         EVP_DigestVerify(
             ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()),
             sig.size(), reinterpret_cast<const unsigned char*>(data.data()),
             data.size()) == 1;
}

// JWS carries ES256 signatures as raw R||S (RFC 7518 §3.4); OpenSSL's
// verifier wants an ASN.1 DER ECDSA-Sig-Value.
std::optional<std::string> es256_raw_to_der(std::string_view raw) {
  if (raw.size() != 2 * es256_half)
    return std::nullopt;
  auto bytes = reinterpret_cast<const unsigned char*>(raw.data());
  ecdsa_sig_ptr sig{ECDSA_SIG_new()};
  bignum_ptr r{BN_bin2bn(bytes, es256_half, nullptr)};
  bignum_ptr s{BN_bin2bn(bytes + es256_half, es256_half, nullptr)};
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r.get(), s.get()) != 1)
    return std::nullopt;
  // ECDSA_SIG_set0 took ownership of r and s.
  r.release();
  s.release();
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(sig.get(), &der);
  if (len <= 0)
    return std::nullopt;
  std::string out(reinterpret_cast<const char*>(der),
                  static_cast<std::size_t>(len));
  OPENSSL_free(der);
  return out;
}

// PEM_read_bio_PUBKEY in OpenSSL 3 decodes through OSSL_DECODER and accepts
// both "PUBLIC KEY" (SubjectPublicKeyInfo) and "RSA PUBLIC KEY" (PKCS#1);
// the tests check both. Private-key PEM is refused.
pkey_ptr read_public_pem(std::string_view pem) {
  if (pem.size() > INT_MAX)
    return nullptr;
  bio_ptr bio{BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))};
  if (!bio)
    return nullptr;
  pkey_ptr key{PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr)};
  ERR_clear_error();
  return key;
}

} // namespace

// --- jwt_key -----------------------------------------------------------------

struct jwt_key::impl {
  jwt_alg alg;
  std::string secret; // HS256 only
  pkey_ptr pkey;      // RS256 / ES256 only

  ~impl() { OPENSSL_cleanse(secret.data(), secret.size()); }
};

namespace {

bool signature_ok(const jwt_key::impl& key, std::string_view input,
                  std::string_view sig) {
  switch (key.alg) {
  case jwt_alg::hs256: {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    // Constant-time compare: timing must not reveal a matching prefix.
    return hmac_sha256(key.secret, input, mac, len) && len == sha256_size &&
           sig.size() == sha256_size &&
           CRYPTO_memcmp(mac, sig.data(), sha256_size) == 0;
  }
  case jwt_alg::rs256:
    return evp_verify_sha256(key.pkey.get(), input, sig);
  case jwt_alg::es256: {
    auto der = es256_raw_to_der(sig);
    return der && evp_verify_sha256(key.pkey.get(), input, *der);
  }
  }
  return false;
}

// Failed OpenSSL calls leave entries on the calling thread's error queue;
// other code on that thread (TLS in transport/) reads that queue, so stale
// entries from a rejected token must not stay behind.
bool verify_and_clear(const jwt_key::impl& key, std::string_view input,
                      std::string_view sig) {
  bool ok = signature_ok(key, input, sig);
  if (!ok)
    ERR_clear_error();
  return ok;
}

} // namespace

jwt_key::jwt_key() = default;
jwt_key::jwt_key(const jwt_key&) = default;
jwt_key& jwt_key::operator=(const jwt_key&) = default;
jwt_key::jwt_key(jwt_key&&) noexcept = default;
jwt_key& jwt_key::operator=(jwt_key&&) noexcept = default;
jwt_key::~jwt_key() = default;

jwt_alg jwt_key::alg() const {
  return impl_->alg;
}

result<jwt_key> jwt_key::hs256(std::string secret) {
  if (secret.empty())
    return invalid_key("empty HS256 secret");
  if (secret.size() > INT_MAX)
    return invalid_key("HS256 secret too long");
  auto data = std::make_shared<impl>();
  data->alg = jwt_alg::hs256;
  data->secret = std::move(secret);
  jwt_key key;
  key.impl_ = std::move(data);
  return key;
}

result<jwt_key> jwt_key::rs256_pem(std::string_view pem) {
  auto pkey = read_public_pem(pem);
  if (!pkey)
    return invalid_key("invalid PEM public key");
  if (!EVP_PKEY_is_a(pkey.get(), "RSA"))
    return invalid_key("RS256 needs an RSA public key");
  // RFC 7518 §3.3: RS256 keys must have at least 2048 bits.
  if (EVP_PKEY_get_bits(pkey.get()) < 2048)
    return invalid_key("RSA key shorter than 2048 bits");
  auto data = std::make_shared<impl>();
  data->alg = jwt_alg::rs256;
  data->pkey = std::move(pkey);
  jwt_key key;
  key.impl_ = std::move(data);
  return key;
}

result<jwt_key> jwt_key::es256_pem(std::string_view pem) {
  auto pkey = read_public_pem(pem);
  if (!pkey)
    return invalid_key("invalid PEM public key");
  char group[64] = {};
  std::size_t group_len = 0;
  // ES256 is ECDSA on P-256 only; another curve would verify fine with
  // OpenSSL but is not what the algorithm name promises.
  if (!EVP_PKEY_is_a(pkey.get(), "EC") ||
      EVP_PKEY_get_group_name(pkey.get(), group, sizeof(group), &group_len) !=
          1 ||
      OBJ_sn2nid(group) != NID_X9_62_prime256v1) {
    ERR_clear_error();
    return invalid_key("ES256 needs an EC P-256 public key");
  }
  auto data = std::make_shared<impl>();
  data->alg = jwt_alg::es256;
  data->pkey = std::move(pkey);
  jwt_key key;
  key.impl_ = std::move(data);
  return key;
}

// --- verify / sign -----------------------------------------------------------

result<claims> verify_jwt(std::string_view token, const jwt_key& key,
                          const jwt_policy& policy, std::int64_t now_seconds) {
  // Checked before anything else so a huge input costs nothing to reject.
  if (token.size() > policy.max_token_size)
    return unauthorized(msg::too_large);
  auto dot1 = token.find('.');
  if (dot1 == std::string_view::npos)
    return unauthorized(msg::malformed);
  auto dot2 = token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos ||
      token.find('.', dot2 + 1) != std::string_view::npos)
    return unauthorized(msg::malformed);
  auto header_text = base64url_decode(token.substr(0, dot1));
  if (!header_text)
    return unauthorized(msg::malformed);
  auto header = parse_object(*header_text);
  if (!header)
    return unauthorized(msg::malformed);
  // Pinning: the key decides the algorithm, the token only has to agree.
  // This is what stops `none` and HS256-with-the-RSA-public-key tokens.
  auto alg = string_member(*header, "alg");
  if (alg == nullptr || *alg != alg_name(key.alg()))
    return unauthorized(msg::alg);
  // RFC 7515 §4.1.11: extensions listed in `crit` must be understood; we
  // understand none.
  if (header->contains("crit"))
    return unauthorized(msg::malformed);
  auto payload_text = base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1));
  auto sig = base64url_decode(token.substr(dot2 + 1));
  if (!payload_text || !sig)
    return unauthorized(msg::malformed);
  if (!verify_and_clear(key.get(), token.substr(0, dot2), *sig))
    return unauthorized(msg::signature);
  auto payload = parse_object(*payload_text);
  if (!payload)
    return unauthorized(msg::malformed);
  try {
    return read_claims(*payload, policy, now_seconds);
  } catch (const json::exception&) {
    // read_claims checks types before every access; this is a backstop so
    // a JSON exception can never leave the codec.
    return unauthorized(msg::malformed);
  }
}

std::string sign_hs256(const token_request& req, std::string_view secret) {
  json payload = {
      {"sub", req.sub},
      {"rooms", req.rooms},
      {"iat", req.iat},
      {"exp", saturating_add(req.iat, req.ttl_seconds)},
  };
  if (req.admin)
    payload["role"] = "admin";
  if (!req.plan.empty())
    payload["plan"] = req.plan;
  if (req.issuer)
    payload["iss"] = *req.issuer;
  if (req.audience)
    payload["aud"] = *req.audience;
  // `replace`: a claim with invalid UTF-8 must not make dump() throw.
  auto body = payload.dump(-1, ' ', false, json::error_handler_t::replace);
  auto token = base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + '.' +
               base64url_encode(body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  // No error channel in the signature: an empty or oversized secret (which
  // jwt_key::hs256 would refuse anyway) yields an empty token.
  if (!hmac_sha256(secret, token, mac, len))
    return {};
  token += '.';
  token +=
      base64url_encode({reinterpret_cast<const char*>(mac), std::size_t{len}});
  return token;
}

// --- base64url ---------------------------------------------------------------

std::string base64url_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() * 4 + 2) / 3);
  auto byte = [&](std::size_t i) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(in[i]));
  };
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    auto n = (byte(i) << 16) | (byte(i + 1) << 8) | byte(i + 2);
    out += b64_alphabet[(n >> 18) & 63];
    out += b64_alphabet[(n >> 12) & 63];
    out += b64_alphabet[(n >> 6) & 63];
    out += b64_alphabet[n & 63];
  }
  auto rest = in.size() - i;
  if (rest == 1) {
    auto n = byte(i) << 16;
    out += b64_alphabet[(n >> 18) & 63];
    out += b64_alphabet[(n >> 12) & 63];
  } else if (rest == 2) {
    auto n = (byte(i) << 16) | (byte(i + 1) << 8);
    out += b64_alphabet[(n >> 18) & 63];
    out += b64_alphabet[(n >> 12) & 63];
    out += b64_alphabet[(n >> 6) & 63];
  }
  return out;
}

std::optional<std::string> base64url_decode(std::string_view in) {
  // One character alone carries 6 bits, less than a byte: never valid.
  if (in.size() % 4 == 1)
    return std::nullopt;
  std::string out;
  out.reserve(in.size() / 4 * 3 + 2);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = b64_value(c);
    if (v < 0)
      return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
      acc &= (1u << bits) - 1;
    }
  }
  // Leftover bits must be zero: otherwise several strings decode to the same
  // bytes, and a signature could be re-encoded into a "different" token.
  if (acc != 0)
    return std::nullopt;
  return out;
}

} // namespace tidings::protocol
