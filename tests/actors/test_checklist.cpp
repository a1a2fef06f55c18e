// The example operation kind of docs/extending.md, alone and registered.
#include "actors/examples/checklist.hpp"
#include "actors/extension.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace tidings;
using json = nlohmann::json;

namespace {

protocol::publication ev(const std::string& type, const std::string& item) {
  protocol::publication p;
  p.room = *protocol::parse_room_id("checklist:c1");
  p.type = type;
  p.data = json{{"item", item}}.dump();
  return p;
}

} // namespace

TEST_CASE("checklist reducer tracks items to completion", "[actors]") {
  actors::examples::checklist_reducer r;
  auto s = r.initial({"c1", "checklist", "alice", R"({"title":"Release"})", 0});
  CHECK(json::parse(s)["title"] == "Release");
  CHECK(json::parse(s)["complete"] == false);
  s = r.apply(s, ev("item_added", "docs"));
  s = r.apply(s, ev("item_added", "tests"));
  s = r.apply(s, ev("item_added", "docs")); // already there: unchanged
  s = r.apply(s, ev("item_done", "docs"));
  auto j = json::parse(s);
  CHECK(j["total"] == 2);
  CHECK(j["done"] == 1);
  CHECK(j["complete"] == false);
  s = r.apply(s, ev("item_removed", "tests"));
  j = json::parse(s);
  CHECK(j["total"] == 1);
  CHECK(j["complete"] == true);
  // Unrelated or malformed events leave the state alone.
  protocol::publication junk = ev("note", "x");
  junk.data = "[1]";
  CHECK(json::parse(r.apply(s, junk)) == j);
}

TEST_CASE("a registered kind gets its own reducer", "[actors]") {
  actors::kind_registry kinds;
  kinds.add_operation_kind("index");
  kinds.add_operation_kind(
      "checklist",
      std::make_shared<const actors::examples::checklist_reducer>());
  REQUIRE(kinds.is_operation_kind("checklist"));
  CHECK_FALSE(kinds.is_operation_kind("execution"));
  auto* r = kinds.operation_reducer("checklist");
  REQUIRE(r);
  CHECK(dynamic_cast<const actors::examples::checklist_reducer*>(r));
  CHECK(dynamic_cast<const protocol::default_reducer*>(
      kinds.operation_reducer("index")));
}
