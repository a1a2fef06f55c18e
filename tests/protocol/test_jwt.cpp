// Tests for protocol/jwt: base64url, HS256 round trips, and the rejection
// matrix. RS256/ES256 keys are generated here and tokens are signed by a
// small test-only signer, so no fixture files or external tools are needed.

#include "protocol/jwt.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/encoder.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace tidings::protocol;
using json = nlohmann::json;

namespace {

constexpr std::int64_t now = 1'700'000'000;
const std::string secret = "0123456789abcdef0123456789abcdef";

struct pkey_free {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_free>;

// Generated once per run: RSA-2048 generation is the slowest thing here.
EVP_PKEY* rsa_key() {
  static const pkey_ptr key{EVP_RSA_gen(2048)};
  REQUIRE(key);
  return key.get();
}

EVP_PKEY* ec_key() {
  static const pkey_ptr key{EVP_EC_gen("P-256")};
  REQUIRE(key);
  return key.get();
}

std::string public_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio{BIO_new(BIO_s_mem()),
                                                &BIO_free};
  REQUIRE(PEM_write_bio_PUBKEY(bio.get(), key) == 1);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

// "-----BEGIN RSA PUBLIC KEY-----" (PKCS#1), as older tooling writes it.
std::string pkcs1_public_pem(EVP_PKEY* key) {
  std::unique_ptr<OSSL_ENCODER_CTX, decltype(&OSSL_ENCODER_CTX_free)> ctx{
      OSSL_ENCODER_CTX_new_for_pkey(key, EVP_PKEY_PUBLIC_KEY, "PEM",
                                    "type-specific", nullptr),
      &OSSL_ENCODER_CTX_free};
  REQUIRE(ctx);
  unsigned char* data = nullptr;
  std::size_t len = 0;
  REQUIRE(OSSL_ENCODER_to_data(ctx.get(), &data, &len) == 1);
  std::string out(reinterpret_cast<char*>(data), len);
  OPENSSL_free(data);
  return out;
}

std::string private_pem(EVP_PKEY* key) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio{BIO_new(BIO_s_mem()),
                                                &BIO_free};
  REQUIRE(PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr,
                                   nullptr) == 1);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

// --- test-only signer --------------------------------------------------------

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  REQUIRE(HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
               reinterpret_cast<const unsigned char*>(data.data()), data.size(),
               mac, &len) != nullptr);
  return std::string(reinterpret_cast<char*>(mac), len);
}

std::string evp_sign_sha256(EVP_PKEY* key, std::string_view data) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx{EVP_MD_CTX_new(),
                                                              &EVP_MD_CTX_free};
  REQUIRE(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) ==
          1);
  auto in = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t len = 0;
  REQUIRE(EVP_DigestSign(ctx.get(), nullptr, &len, in, data.size()) == 1);
  std::string sig(len, '\0');
  REQUIRE(EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(&sig[0]),
                         &len, in, data.size()) == 1);
  sig.resize(len);
  return sig;
}

// OpenSSL signs ECDSA as DER; JWS wants R||S, each left-padded to 32 bytes.
std::string der_to_raw(const std::string& der) {
  auto p = reinterpret_cast<const unsigned char*>(der.data());
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig{
      d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())),
      &ECDSA_SIG_free};
  REQUIRE(sig);
  std::string raw(64, '\0');
  auto out = reinterpret_cast<unsigned char*>(&raw[0]);
  REQUIRE(BN_bn2binpad(ECDSA_SIG_get0_r(sig.get()), out, 32) == 32);
  REQUIRE(BN_bn2binpad(ECDSA_SIG_get0_s(sig.get()), out + 32, 32) == 32);
  return raw;
}

std::string signing_input(std::string_view header, std::string_view payload) {
  return base64url_encode(header) + '.' + base64url_encode(payload);
}

std::string
hs256_token(const std::string& payload, std::string_view key,
            const std::string& header = R"({"alg":"HS256","typ":"JWT"})") {
  auto input = signing_input(header, payload);
  return input + '.' + base64url_encode(hmac_sha256(key, input));
}

std::string
rs256_token(const std::string& payload,
            const std::string& header = R"({"alg":"RS256","typ":"JWT"})") {
  auto input = signing_input(header, payload);
  return input + '.' + base64url_encode(evp_sign_sha256(rsa_key(), input));
}

std::string es256_raw_sig(const std::string& input) {
  return der_to_raw(evp_sign_sha256(ec_key(), input));
}

std::string es256_token(const std::string& payload) {
  auto input = signing_input(R"({"alg":"ES256","typ":"JWT"})", payload);
  return input + '.' + base64url_encode(es256_raw_sig(input));
}

// --- helpers -----------------------------------------------------------------

json base_claims() {
  return {{"sub", "alice"}, {"exp", now + 600}};
}

jwt_key hs_key(const std::string& s = secret) {
  auto key = jwt_key::hs256(s);
  REQUIRE(key.ok());
  return *key;
}

jwt_key rs_key() {
  auto key = jwt_key::rs256_pem(public_pem(rsa_key()));
  REQUIRE(key.ok());
  return *key;
}

jwt_key es_key() {
  auto key = jwt_key::es256_pem(public_pem(ec_key()));
  REQUIRE(key.ok());
  return *key;
}

// "ok" or "CODE: message", so a failed CHECK shows what actually happened.
std::string outcome(const tidings::result<claims>& r) {
  return r.ok() ? "ok" : r.error().code + ": " + r.error().message;
}

std::string verify_hs(const json& payload, const jwt_policy& policy = {}) {
  return outcome(
      verify_jwt(hs256_token(payload.dump(), secret), hs_key(), policy, now));
}

std::string replace_segment(const std::string& token, int index,
                            const std::string& segment) {
  auto dot1 = token.find('.');
  auto dot2 = token.find('.', dot1 + 1);
  if (index == 0)
    return segment + token.substr(dot1);
  if (index == 1)
    return token.substr(0, dot1 + 1) + segment + token.substr(dot2);
  return token.substr(0, dot2 + 1) + segment;
}

std::string signature_of(const std::string& token) {
  auto sig = base64url_decode(token.substr(token.rfind('.') + 1));
  REQUIRE(sig);
  return *sig;
}

// Flips one bit in the middle of the decoded signature and re-encodes, so
// the token stays well-formed and only the signature check can catch it.
std::string flip_signature_byte(const std::string& token) {
  auto sig = signature_of(token);
  sig[sig.size() / 2] = static_cast<char>(sig[sig.size() / 2] ^ 0x01);
  return replace_segment(token, 2, base64url_encode(sig));
}

const std::string unauthorized = "UNAUTHORIZED: ";

} // namespace

TEST_CASE("base64url matches RFC 4648 vectors without padding", "[protocol]") {
  const std::pair<std::string, std::string> vectors[] = {
      {"", ""},
      {"f", "Zg"},
      {"fo", "Zm8"},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg"},
      {"fooba", "Zm9vYmE"},
      {"foobar", "Zm9vYmFy"},
      {"\xfb\xff", "-_8"},
      {std::string("\0\0\0", 3), "AAAA"},
  };
  SECTION("encode") {
    for (const auto& [plain, encoded] : vectors)
      CHECK(base64url_encode(plain) == encoded);
  }
  SECTION("decode") {
    for (const auto& [plain, encoded] : vectors) {
      auto decoded = base64url_decode(encoded);
      REQUIRE(decoded);
      CHECK(*decoded == plain);
    }
  }
  SECTION("every byte value survives a round trip") {
    std::string all;
    for (int i = 0; i < 256; ++i)
      all += static_cast<char>(i);
    for (std::size_t len = 0; len <= all.size(); len += 37) {
      auto part = all.substr(all.size() - len);
      auto decoded = base64url_decode(base64url_encode(part));
      REQUIRE(decoded);
      CHECK(*decoded == part);
    }
  }
  SECTION("decode rejects padding, foreign characters and bad lengths") {
    for (const char* bad : {"Zg==", "Zm8=", "Zm9v=", "Zm+v", "Zm/v", "Zm9 v",
                            "Zm9v\n", "Z", "Zm9vY", "Zm*v", "\xc3\xa9"})
      CHECK_FALSE(base64url_decode(bad));
    // A lone final character holds 6 bits; "A" has all of them zero, so
    // only the length check can refuse it.
    for (const char* bad : {"A", "Zm9vA", "AAAAA"})
      CHECK_FALSE(base64url_decode(bad));
  }
  SECTION("decode rejects non-zero trailing bits") {
    // "Zh" and "Zm9" would otherwise decode like "Zg" and "Zm8".
    CHECK_FALSE(base64url_decode("Zh"));
    CHECK_FALSE(base64url_decode("Zm9"));
  }
}

TEST_CASE("HS256 tokens round trip through sign and verify", "[protocol]") {
  token_request req;
  req.sub = "alice";
  req.rooms = {"execution:42", "workflow:*"};
  req.admin = true;
  req.plan = "pro";
  req.iat = now;
  req.ttl_seconds = 600;
  req.issuer = "tidings";
  req.audience = "browsers";
  auto token = sign_hs256(req, secret);

  SECTION("verify gives back the claims") {
    jwt_policy policy;
    policy.issuer = "tidings";
    policy.audience = "browsers";
    policy.require_exp = true;
    auto r = verify_jwt(token, hs_key(), policy, now);
    REQUIRE(outcome(r) == "ok");
    CHECK(r->sub == "alice");
    CHECK(r->rooms == std::vector<std::string>{"execution:42", "workflow:*"});
    CHECK(r->admin);
    CHECK(r->plan == "pro");
    CHECK(r->exp == now + 600);
  }
  SECTION("the header is exactly the fixed one") {
    auto header = base64url_decode(token.substr(0, token.find('.')));
    REQUIRE(header);
    CHECK(*header == R"({"alg":"HS256","typ":"JWT"})");
  }
  SECTION("the payload holds the requested claims") {
    auto dot1 = token.find('.');
    auto dot2 = token.find('.', dot1 + 1);
    auto text = base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1));
    REQUIRE(text);
    auto payload = json::parse(*text);
    CHECK(payload == json{{"sub", "alice"},
                          {"rooms", {"execution:42", "workflow:*"}},
                          {"role", "admin"},
                          {"plan", "pro"},
                          {"iat", now},
                          {"exp", now + 600},
                          {"iss", "tidings"},
                          {"aud", "browsers"}});
  }
  SECTION("optional claims are left out when not asked for") {
    token_request plain;
    plain.sub = "bob";
    plain.iat = now;
    auto plain_token = sign_hs256(plain, secret);
    auto dot1 = plain_token.find('.');
    auto dot2 = plain_token.find('.', dot1 + 1);
    auto text = base64url_decode(plain_token.substr(dot1 + 1, dot2 - dot1 - 1));
    REQUIRE(text);
    CHECK(json::parse(*text) == json{{"sub", "bob"},
                                     {"rooms", json::array()},
                                     {"iat", now},
                                     {"exp", now + 3600}});
    auto r = verify_jwt(plain_token, hs_key(), {}, now);
    REQUIRE(outcome(r) == "ok");
    CHECK(r->sub == "bob");
    CHECK(r->rooms.empty());
    CHECK_FALSE(r->admin);
    CHECK(r->plan.empty());
  }
  SECTION("a token signed with another secret does not verify") {
    auto other = sign_hs256(req, "another secret of reasonable length!");
    CHECK(outcome(verify_jwt(other, hs_key(), {}, now)) ==
          unauthorized + "bad signature");
  }
}

TEST_CASE("payload claims map onto claims", "[protocol]") {
  auto verify = [](const json& payload) {
    auto r = verify_jwt(hs256_token(payload.dump(), secret), hs_key(), {}, now);
    REQUIRE(outcome(r) == "ok");
    return *r;
  };
  auto p = base_claims();

  SECTION("non-string rooms are ignored") {
    p["rooms"] = {"user:alice", 7, nullptr, {"x"}, "execution:1"};
    CHECK(verify(p).rooms ==
          std::vector<std::string>{"user:alice", "execution:1"});
  }
  SECTION("rooms that are not an array grant nothing") {
    p["rooms"] = "execution:1";
    CHECK(verify(p).rooms.empty());
  }
  SECTION("no exp leaves exp empty") {
    p.erase("exp");
    CHECK_FALSE(verify(p).exp);
  }
  SECTION("admin from role") {
    p["role"] = "admin";
    CHECK(verify(p).admin);
  }
  SECTION("admin from roles") {
    p["roles"] = {"viewer", "admin"};
    CHECK(verify(p).admin);
  }
  SECTION("other roles are not admin") {
    p["role"] = "viewer";
    p["roles"] = {"Admin", "viewer", 1};
    CHECK_FALSE(verify(p).admin);
  }
  SECTION("a non-string plan is ignored") {
    p["plan"] = 3;
    CHECK(verify(p).plan.empty());
  }
}

TEST_CASE("a signature that does not match is rejected", "[protocol]") {
  auto token = hs256_token(base_claims().dump(), secret);
  REQUIRE(outcome(verify_jwt(token, hs_key(), {}, now)) == "ok");

  SECTION("one flipped signature byte") {
    CHECK(outcome(verify_jwt(flip_signature_byte(token), hs_key(), {}, now)) ==
          unauthorized + "bad signature");
  }
  SECTION("payload changed after signing") {
    auto p = base_claims();
    p["sub"] = "mallory";
    auto forged = replace_segment(token, 1, base64url_encode(p.dump()));
    CHECK(outcome(verify_jwt(forged, hs_key(), {}, now)) ==
          unauthorized + "bad signature");
  }
  SECTION("empty signature") {
    CHECK(outcome(verify_jwt(replace_segment(token, 2, ""), hs_key(), {},
                             now)) == unauthorized + "bad signature");
  }
  SECTION("truncated signature") {
    auto sig = signature_of(token).substr(0, 16);
    CHECK(outcome(verify_jwt(replace_segment(token, 2, base64url_encode(sig)),
                             hs_key(), {}, now)) ==
          unauthorized + "bad signature");
  }
  SECTION("another secret") {
    CHECK(outcome(verify_jwt(token, hs_key(secret + "x"), {}, now)) ==
          unauthorized + "bad signature");
  }
}

TEST_CASE("the algorithm is pinned by the key", "[protocol]") {
  const auto payload = base_claims().dump();
  const std::string not_allowed = unauthorized + "algorithm not allowed";

  SECTION("alg none with an empty signature") {
    auto token = signing_input(R"({"alg":"none","typ":"JWT"})", payload) + '.';
    CHECK(outcome(verify_jwt(token, hs_key(), {}, now)) == not_allowed);
    CHECK(outcome(verify_jwt(token, rs_key(), {}, now)) == not_allowed);
    CHECK(outcome(verify_jwt(token, es_key(), {}, now)) == not_allowed);
  }
  SECTION("alg spelled differently, missing or not a string") {
    for (const char* header :
         {R"({"alg":"hs256"})", R"({"alg":"HS256 "})", R"({"alg":"HS384"})",
          R"({"typ":"JWT"})", R"({"alg":null})", R"({"alg":["HS256"]})"})
      CHECK(outcome(verify_jwt(hs256_token(payload, secret, header), hs_key(),
                               {}, now)) == not_allowed);
  }
  SECTION("HS256 signed with the RSA public key PEM, given to an RS256 key") {
    auto pem = public_pem(rsa_key());
    auto token = hs256_token(payload, pem);
    // The token is a valid HS256 token for that "secret"; only pinning
    // stops it.
    REQUIRE(outcome(verify_jwt(token, hs_key(pem), {}, now)) == "ok");
    CHECK(outcome(verify_jwt(token, rs_key(), {}, now)) == not_allowed);
  }
  SECTION("RS256 token given to an HS256 key") {
    auto token = rs256_token(payload);
    REQUIRE(outcome(verify_jwt(token, rs_key(), {}, now)) == "ok");
    CHECK(outcome(verify_jwt(token, hs_key(), {}, now)) == not_allowed);
  }
  SECTION("ES256 and RS256 keys refuse each other's tokens") {
    CHECK(outcome(verify_jwt(es256_token(payload), rs_key(), {}, now)) ==
          not_allowed);
    CHECK(outcome(verify_jwt(rs256_token(payload), es_key(), {}, now)) ==
          not_allowed);
  }
  SECTION("HS256 token given to an ES256 key") {
    CHECK(outcome(verify_jwt(hs256_token(payload, secret), es_key(), {},
                             now)) == not_allowed);
  }
}

TEST_CASE("RS256 tokens verify with the RSA public key", "[protocol]") {
  const auto token = rs256_token(base_claims().dump());

  SECTION("valid token, SubjectPublicKeyInfo PEM") {
    auto r = verify_jwt(token, rs_key(), {}, now);
    REQUIRE(outcome(r) == "ok");
    CHECK(r->sub == "alice");
  }
  SECTION("valid token, RSA PUBLIC KEY PEM") {
    auto pem = pkcs1_public_pem(rsa_key());
    REQUIRE(pem.rfind("-----BEGIN RSA PUBLIC KEY-----", 0) == 0);
    auto key = jwt_key::rs256_pem(pem);
    REQUIRE(key.ok());
    CHECK(outcome(verify_jwt(token, *key, {}, now)) == "ok");
  }
  SECTION("one flipped signature byte") {
    CHECK(outcome(verify_jwt(flip_signature_byte(token), rs_key(), {}, now)) ==
          unauthorized + "bad signature");
  }
  SECTION("payload changed after signing") {
    auto p = base_claims();
    p["role"] = "admin";
    auto forged = replace_segment(token, 1, base64url_encode(p.dump()));
    CHECK(outcome(verify_jwt(forged, rs_key(), {}, now)) ==
          unauthorized + "bad signature");
  }
  SECTION("truncated signature") {
    auto sig = signature_of(token);
    sig.pop_back();
    CHECK(outcome(verify_jwt(replace_segment(token, 2, base64url_encode(sig)),
                             rs_key(), {}, now)) ==
          unauthorized + "bad signature");
  }
}

TEST_CASE("ES256 tokens use raw R||S signatures", "[protocol]") {
  const auto token = es256_token(base_claims().dump());
  REQUIRE(signature_of(token).size() == 64);

  SECTION("valid token") {
    auto r = verify_jwt(token, es_key(), {}, now);
    REQUIRE(outcome(r) == "ok");
    CHECK(r->sub == "alice");
  }
  SECTION("one flipped signature byte") {
    CHECK(outcome(verify_jwt(flip_signature_byte(token), es_key(), {}, now)) ==
          unauthorized + "bad signature");
  }
  SECTION("payload changed after signing") {
    auto p = base_claims();
    p["sub"] = "mallory";
    auto forged = replace_segment(token, 1, base64url_encode(p.dump()));
    CHECK(outcome(verify_jwt(forged, es_key(), {}, now)) ==
          unauthorized + "bad signature");
  }
  SECTION("a DER signature is not accepted in place of R||S") {
    auto input = token.substr(0, token.rfind('.'));
    auto der = evp_sign_sha256(ec_key(), input);
    CHECK(outcome(verify_jwt(input + '.' + base64url_encode(der), es_key(), {},
                             now)) == unauthorized + "bad signature");
  }
  SECTION("wrong signature lengths") {
    auto sig = signature_of(token);
    for (const auto& bad :
         {sig.substr(0, 63), sig + std::string(1, '\0'), std::string(),
          std::string(1, '\0') + sig.substr(0, 63)})
      CHECK(outcome(verify_jwt(replace_segment(token, 2, base64url_encode(bad)),
                               es_key(), {}, now)) ==
            unauthorized + "bad signature");
  }
  SECTION("all-zero R and S") {
    CHECK(
        outcome(verify_jwt(
            replace_segment(token, 2, base64url_encode(std::string(64, '\0'))),
            es_key(), {}, now)) == unauthorized + "bad signature");
  }
}

TEST_CASE("exp and nbf are checked with leeway", "[protocol]") {
  jwt_policy policy; // 30 s leeway by default
  auto p = base_claims();

  SECTION("expired beyond the leeway") {
    p["exp"] = now - 31;
    CHECK(verify_hs(p, policy) == unauthorized + "token expired");
  }
  SECTION("exp exactly at now - leeway is expired") {
    p["exp"] = now - 30;
    CHECK(verify_hs(p, policy) == unauthorized + "token expired");
  }
  SECTION("expired but within the leeway is accepted") {
    p["exp"] = now - 29;
    CHECK(verify_hs(p, policy) == "ok");
  }
  SECTION("no leeway") {
    policy.leeway_seconds = 0;
    p["exp"] = now;
    CHECK(verify_hs(p, policy) == unauthorized + "token expired");
    p["exp"] = now + 1;
    CHECK(verify_hs(p, policy) == "ok");
  }
  SECTION("not yet valid beyond the leeway") {
    p["nbf"] = now + 31;
    CHECK(verify_hs(p, policy) == unauthorized + "token not yet valid");
  }
  SECTION("nbf within the leeway is accepted") {
    p["nbf"] = now + 30;
    CHECK(verify_hs(p, policy) == "ok");
  }
  SECTION("fractional NumericDates are accepted") {
    p["exp"] = static_cast<double>(now) + 60.5;
    p["nbf"] = static_cast<double>(now) - 0.5;
    CHECK(verify_hs(p, policy) == "ok");
  }
  SECTION("a huge exp does not overflow into expired") {
    p["exp"] = 1e300;
    CHECK(verify_hs(p, policy) == "ok");
    p["exp"] = std::numeric_limits<std::uint64_t>::max();
    CHECK(verify_hs(p, policy) == "ok");
  }
  SECTION("a huge negative exp is expired") {
    p["exp"] = -1e300;
    CHECK(verify_hs(p, policy) == unauthorized + "token expired");
  }
  SECTION("non-numeric exp or nbf") {
    p["exp"] = "tomorrow";
    CHECK(verify_hs(p, policy) == unauthorized + "malformed token");
    p = base_claims();
    p["nbf"] = nullptr;
    CHECK(verify_hs(p, policy) == unauthorized + "malformed token");
  }
  SECTION("missing exp when required") {
    p.erase("exp");
    CHECK(verify_hs(p, policy) == "ok");
    policy.require_exp = true;
    CHECK(verify_hs(p, policy) == unauthorized + "missing exp");
  }
}

TEST_CASE("iss and aud are checked when configured", "[protocol]") {
  jwt_policy policy;
  auto p = base_claims();

  SECTION("issuer") {
    policy.issuer = "tidings";
    p["iss"] = "tidings";
    CHECK(verify_hs(p, policy) == "ok");
    p["iss"] = "someone-else";
    CHECK(verify_hs(p, policy) == unauthorized + "issuer mismatch");
    p["iss"] = {"tidings"};
    CHECK(verify_hs(p, policy) == unauthorized + "issuer mismatch");
    p.erase("iss");
    CHECK(verify_hs(p, policy) == unauthorized + "issuer mismatch");
  }
  SECTION("audience as a string") {
    policy.audience = "browsers";
    p["aud"] = "browsers";
    CHECK(verify_hs(p, policy) == "ok");
    p["aud"] = "services";
    CHECK(verify_hs(p, policy) == unauthorized + "audience mismatch");
    p.erase("aud");
    CHECK(verify_hs(p, policy) == unauthorized + "audience mismatch");
  }
  SECTION("audience as an array") {
    policy.audience = "browsers";
    p["aud"] = {"services", "browsers"};
    CHECK(verify_hs(p, policy) == "ok");
    p["aud"] = {"services", "browsers-x", 1};
    CHECK(verify_hs(p, policy) == unauthorized + "audience mismatch");
    p["aud"] = {{"browsers"}};
    CHECK(verify_hs(p, policy) == unauthorized + "audience mismatch");
  }
  SECTION("not configured: any iss and aud pass") {
    p["iss"] = "anyone";
    p["aud"] = {"anything"};
    CHECK(verify_hs(p, policy) == "ok");
  }
}

TEST_CASE("sub must be a non-empty string", "[protocol]") {
  auto p = base_claims();
  SECTION("missing") {
    p.erase("sub");
  }
  SECTION("empty") {
    p["sub"] = "";
  }
  SECTION("not a string") {
    p["sub"] = 42;
  }
  CHECK(verify_hs(p) == unauthorized + "missing sub");
}

TEST_CASE("malformed tokens are rejected", "[protocol]") {
  const std::string malformed = unauthorized + "malformed token";
  const auto good = hs256_token(base_claims().dump(), secret);
  auto verify = [](const std::string& token) {
    return outcome(verify_jwt(token, hs_key(), {}, now));
  };
  REQUIRE(verify(good) == "ok");

  SECTION("not exactly three segments") {
    auto input = good.substr(0, good.rfind('.'));
    for (const auto& bad :
         {std::string(), std::string("."), std::string(".."),
          std::string("..."), input, good + ".", good + "." + "AAAA",
          good.substr(0, good.find('.'))})
      CHECK(verify(bad) == malformed);
  }
  SECTION("header is not a JSON object") {
    for (const char* header :
         {"[\"HS256\"]", "\"HS256\"", "{\"alg\":", "", "{\"alg\":\"HS256\"} x"})
      CHECK(verify(hs256_token(base_claims().dump(), secret, header)) ==
            malformed);
  }
  SECTION("payload is not a JSON object, even when signed") {
    for (const char* payload : {"[]", "\"alice\"", "{\"sub\":", "", "null"})
      CHECK(verify(hs256_token(payload, secret)) == malformed);
  }
  SECTION("invalid UTF-8 in the payload") {
    CHECK(verify(hs256_token("{\"sub\":\"\xff\xfe\"}", secret)) == malformed);
  }
  SECTION("a crit header asks for extensions we do not know") {
    CHECK(verify(hs256_token(
              base_claims().dump(), secret,
              R"({"alg":"HS256","crit":["b64"],"b64":false})")) == malformed);
  }
}

TEST_CASE("invalid base64url in any segment is rejected", "[protocol]") {
  const std::string malformed = unauthorized + "malformed token";
  const auto good = hs256_token(base_claims().dump(), secret);
  auto dot1 = good.find('.');
  auto dot2 = good.find('.', dot1 + 1);
  const std::string segments[] = {good.substr(0, dot1),
                                  good.substr(dot1 + 1, dot2 - dot1 - 1),
                                  good.substr(dot2 + 1)};
  // Header and payload segments are re-signed after the change, so the
  // token is authentic and only the base64url check can reject it.
  auto with_segment = [&](int i, const std::string& text) {
    if (i == 2)
      return replace_segment(good, 2, text);
    auto input = i == 0 ? text + '.' + segments[1] : segments[0] + '.' + text;
    return input + '.' + base64url_encode(hmac_sha256(secret, input));
  };
  auto verify = [](const std::string& token) {
    return outcome(verify_jwt(token, hs_key(), {}, now));
  };
  REQUIRE(verify(with_segment(0, segments[0])) == "ok");
  REQUIRE(verify(with_segment(1, segments[1])) == "ok");

  for (int i = 0; i < 3; ++i) {
    DYNAMIC_SECTION("segment " << i) {
      const auto& seg = segments[i];
      CHECK(verify(with_segment(i, seg + "=")) == malformed);
      CHECK(verify(with_segment(i, seg + "==")) == malformed);
      CHECK(verify(with_segment(i, "*" + seg.substr(1))) == malformed);
      CHECK(verify(with_segment(i, "+" + seg.substr(1))) == malformed);
      CHECK(verify(with_segment(i, "/" + seg.substr(1))) == malformed);
      CHECK(verify(with_segment(i, seg + " ")) == malformed);
    }
  }
}

TEST_CASE("oversized tokens are rejected unread", "[protocol]") {
  const auto token = hs256_token(base_claims().dump(), secret);
  jwt_policy policy;
  SECTION("at the limit") {
    policy.max_token_size = token.size();
    CHECK(outcome(verify_jwt(token, hs_key(), policy, now)) == "ok");
  }
  SECTION("one byte over the limit") {
    policy.max_token_size = token.size() - 1;
    CHECK(outcome(verify_jwt(token, hs_key(), policy, now)) ==
          unauthorized + "token too large");
  }
  SECTION("default limit") {
    auto p = base_claims();
    p["pad"] = std::string(9000, 'x');
    CHECK(verify_hs(p) == unauthorized + "token too large");
  }
  SECTION("size is checked before shape") {
    CHECK(outcome(verify_jwt(std::string(9000, '.'), hs_key(), policy, now)) ==
          unauthorized + "token too large");
  }
}

TEST_CASE("keys hold the algorithm they were made for", "[protocol]") {
  SECTION("each factory pins its algorithm") {
    CHECK(hs_key().alg() == jwt_alg::hs256);
    CHECK(rs_key().alg() == jwt_alg::rs256);
    CHECK(es_key().alg() == jwt_alg::es256);
  }
  SECTION("copies share the key") {
    auto key = rs_key();
    jwt_key copy = key;
    auto moved = std::move(key);
    auto token = rs256_token(base_claims().dump());
    CHECK(outcome(verify_jwt(token, copy, {}, now)) == "ok");
    CHECK(outcome(verify_jwt(token, moved, {}, now)) == "ok");
  }
  SECTION("an empty HS256 secret is refused") {
    CHECK_FALSE(jwt_key::hs256("").ok());
  }
  SECTION("garbage PEM is refused") {
    CHECK_FALSE(jwt_key::rs256_pem("").ok());
    CHECK_FALSE(jwt_key::rs256_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n"
                                   "-----END PUBLIC KEY-----\n")
                    .ok());
    CHECK_FALSE(jwt_key::es256_pem("not a key").ok());
  }
  SECTION("RS256 needs an RSA key, ES256 an EC P-256 key") {
    CHECK_FALSE(jwt_key::rs256_pem(public_pem(ec_key())).ok());
    CHECK_FALSE(jwt_key::es256_pem(public_pem(rsa_key())).ok());
    pkey_ptr p384{EVP_EC_gen("P-384")};
    REQUIRE(p384);
    CHECK_FALSE(jwt_key::es256_pem(public_pem(p384.get())).ok());
  }
  SECTION("RSA keys shorter than 2048 bits are refused") {
    pkey_ptr small{EVP_RSA_gen(1024)};
    REQUIRE(small);
    CHECK_FALSE(jwt_key::rs256_pem(public_pem(small.get())).ok());
  }
  SECTION("a private key PEM is not a public key") {
    CHECK_FALSE(jwt_key::rs256_pem(private_pem(rsa_key())).ok());
    CHECK_FALSE(jwt_key::es256_pem(private_pem(ec_key())).ok());
  }
}
