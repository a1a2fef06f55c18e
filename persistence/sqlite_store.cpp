// SQLite history store. One connection, used from one thread (the node's
// history writer), opened with SQLITE_OPEN_NOMUTEX. Every statement that
// touches values is prepared once at open and reset/rebound per use; the only
// SQL run as text is the constant schema and pragmas.
#include "persistence/sqlite_store.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <iterator>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace tidings::persistence {

namespace {

// Forward-only schema migrations: step i brings user_version from i to i + 1
// and sets it itself, so no SQL is ever assembled at run time. Never edit a
// step that has shipped; append a new one.
constexpr const char* migrations[] = {
    // v1: initial schema.
    R"sql(
CREATE TABLE rooms(
  room TEXT PRIMARY KEY NOT NULL,
  epoch TEXT NOT NULL,
  last_offset INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE events(
  room TEXT NOT NULL,
  offset INTEGER NOT NULL,
  ts INTEGER NOT NULL,
  type TEXT NOT NULL,
  event TEXT NOT NULL,
  data TEXT NOT NULL,
  publish_id TEXT NOT NULL DEFAULT '',
  PRIMARY KEY(room, offset)
) WITHOUT ROWID;
CREATE INDEX events_publish_id ON events(room, publish_id)
  WHERE publish_id != '';
CREATE TABLE meta(
  key TEXT PRIMARY KEY NOT NULL,
  value TEXT NOT NULL
) WITHOUT ROWID;
PRAGMA user_version = 1;
)sql",
    // v2: operation snapshots and the operations registry. Rowid tables:
    // states and metadata are JSON documents that may be far larger than
    // the small rows WITHOUT ROWID suits. NOT NULL on the keys because a
    // rowid table's TEXT PRIMARY KEY would otherwise accept NULL.
    R"sql(
CREATE TABLE snapshots(
  room TEXT PRIMARY KEY NOT NULL,
  offset INTEGER NOT NULL,
  state TEXT NOT NULL
);
CREATE TABLE operations(
  id TEXT PRIMARY KEY NOT NULL,
  kind TEXT NOT NULL,
  owner TEXT NOT NULL,
  meta TEXT NOT NULL,
  created_ms INTEGER NOT NULL
);
PRAGMA user_version = 2;
)sql",
};

constexpr int known_version = static_cast<int>(std::size(migrations));

constexpr std::int64_t max_i64 = std::numeric_limits<std::int64_t>::max();

std::int64_t clamp_i64(std::uint64_t x) {
  return x > static_cast<std::uint64_t>(max_i64) ? max_i64
                                                 : static_cast<std::int64_t>(x);
}

error_info store_error(sqlite3* db) {
  return error_info{"STORE", db ? sqlite3_errmsg(db) : "out of memory"};
}

error_info store_error(std::string msg) {
  return error_info{"STORE", std::move(msg)};
}

// Owns the connection. Declared first in `impl` so that it is destroyed last,
// after every statement has been finalized.
struct connection {
  sqlite3* db = nullptr;
  connection() = default;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection() {
    if (db)
      sqlite3_close(db);
  }
};

struct statement {
  sqlite3_stmt* s = nullptr;
  statement() = default;
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  ~statement() { sqlite3_finalize(s); }
};

// One use of a prepared statement: binds, steps, then resets and clears the
// bindings on scope exit. Text is bound with SQLITE_STATIC, which is safe
// because the bindings are cleared before the bound strings can go away.
class use {
 public:
  explicit use(statement& st) : s_(st.s) {}
  use(const use&) = delete;
  use& operator=(const use&) = delete;
  ~use() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }

  use& text(int i, const std::string& v) {
    if (ok_)
      ok_ = sqlite3_bind_text64(s_, i, v.data(), v.size(), SQLITE_STATIC,
                                SQLITE_UTF8) == SQLITE_OK;
    return *this;
  }
  use& i64(int i, std::int64_t v) {
    if (ok_)
      ok_ = sqlite3_bind_int64(s_, i, v) == SQLITE_OK;
    return *this;
  }
  bool bound() const { return ok_; }

  int step() { return sqlite3_step(s_); }

  std::int64_t col_i64(int i) const { return sqlite3_column_int64(s_, i); }
  bool col_null(int i) const {
    return sqlite3_column_type(s_, i) == SQLITE_NULL;
  }
  std::string col_text(int i) const {
    auto p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
    if (!p)
      return {};
    return std::string(p,
                       static_cast<std::size_t>(sqlite3_column_bytes(s_, i)));
  }

 private:
  sqlite3_stmt* s_;
  bool ok_ = true;
};

// Runs constant SQL (schema, pragmas) that carries no values.
bool exec(sqlite3* db, const char* sql) {
  return sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK;
}

// Reads a one-row, one-column pragma as text.
std::optional<std::string> pragma_text(sqlite3* db, const char* sql) {
  statement st;
  if (sqlite3_prepare_v2(db, sql, -1, &st.s, nullptr) != SQLITE_OK)
    return std::nullopt;
  use u(st);
  if (u.step() != SQLITE_ROW)
    return std::nullopt;
  return u.col_text(0);
}

std::optional<int> user_version(sqlite3* db) {
  statement st;
  if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st.s, nullptr) !=
      SQLITE_OK)
    return std::nullopt;
  use u(st);
  if (u.step() != SQLITE_ROW)
    return std::nullopt;
  return static_cast<int>(u.col_i64(0));
}

error_info too_new(int found) {
  return store_error("database schema version " + std::to_string(found) +
                     " is newer than this build supports (" +
                     std::to_string(known_version) + ")");
}

} // namespace

struct sqlite_store::impl {
  connection conn; // first: outlives the statements below
  durability mode = durability::full;
  int version = 0;
  bool clean = true;
  bool marked_open = false; // clean='0' written; the destructor undoes it
  std::optional<std::random_device> rng;

  statement begin, commit, rollback;
  statement room_get, room_insert, room_set_offset, room_list, room_set_epoch;
  statement event_insert, read_since, find_publish_id, first_offset;
  statement trim_count_cut, trim_age_cut, trim_delete;
  statement meta_get, meta_set;
  statement snapshot_get, snapshot_set, operation_get, operation_insert;
  statement room_reset, events_cut, snapshot_cut;

  sqlite3* db() const { return conn.db; }

  ~impl() {
    if (!marked_open)
      return;
    if (!sqlite3_get_autocommit(db()))
      step_done(rollback);
    // The marker must not reach the disk before everything committed earlier,
    // and must itself survive: FULL syncs the WAL up to and including it.
    exec(db(), "PRAGMA synchronous=FULL");
    set_meta("clean", "1");
  }

  bool prepare(statement& st, const char* sql) {
    return sqlite3_prepare_v3(db(), sql, -1, SQLITE_PREPARE_PERSISTENT, &st.s,
                              nullptr) == SQLITE_OK;
  }

  bool prepare_all() {
    return prepare(begin, "BEGIN IMMEDIATE") && prepare(commit, "COMMIT") &&
           prepare(rollback, "ROLLBACK") &&
           prepare(room_get,
                   "SELECT epoch, last_offset FROM rooms WHERE room = ?1") &&
           prepare(room_insert, "INSERT INTO rooms(room, epoch, last_offset)"
                                " VALUES(?1, ?2, 0)") &&
           prepare(room_set_offset,
                   "UPDATE rooms SET last_offset = ?2 WHERE room = ?1") &&
           prepare(room_list, "SELECT room FROM rooms") &&
           prepare(room_set_epoch,
                   "UPDATE rooms SET epoch = ?2 WHERE room = ?1") &&
           prepare(event_insert,
                   "INSERT INTO events(room, offset, ts, type, event, data,"
                   " publish_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)") &&
           prepare(read_since,
                   "SELECT offset, ts, type, event, data, publish_id"
                   " FROM events WHERE room = ?1 AND offset > ?2"
                   " ORDER BY offset LIMIT ?3")
           // The `!= ''` term lets the planner use the partial index.
           &&
           prepare(find_publish_id, "SELECT offset FROM events WHERE room = ?1"
                                    " AND publish_id = ?2 AND publish_id != ''"
                                    " ORDER BY offset LIMIT 1") &&
           prepare(first_offset,
                   "SELECT MIN(offset) FROM events WHERE room = ?1") &&
           prepare(trim_count_cut, "SELECT offset FROM events WHERE room = ?1"
                                   " ORDER BY offset DESC LIMIT 1 OFFSET ?2") &&
           prepare(trim_age_cut, "SELECT MAX(offset) FROM events"
                                 " WHERE room = ?1 AND ts < ?2") &&
           prepare(trim_delete,
                   "DELETE FROM events WHERE room = ?1 AND offset <= ?2") &&
           prepare(meta_get, "SELECT value FROM meta WHERE key = ?1") &&
           prepare(meta_set, "INSERT INTO meta(key, value) VALUES(?1, ?2)"
                             " ON CONFLICT(key) DO UPDATE"
                             " SET value = excluded.value") &&
           prepare(snapshot_get,
                   "SELECT offset, state FROM snapshots WHERE room = ?1") &&
           prepare(snapshot_set, "INSERT INTO snapshots(room, offset, state)"
                                 " VALUES(?1, ?2, ?3) ON CONFLICT(room)"
                                 " DO UPDATE SET offset = excluded.offset,"
                                 " state = excluded.state") &&
           prepare(operation_get, "SELECT kind, owner, meta, created_ms"
                                  " FROM operations WHERE id = ?1") &&
           prepare(room_reset,
                   "INSERT INTO rooms(room, epoch, last_offset)"
                   " VALUES(?1, ?2, ?3) ON CONFLICT(room) DO UPDATE"
                   " SET epoch = excluded.epoch,"
                   " last_offset = excluded.last_offset") &&
           prepare(events_cut,
                   "DELETE FROM events WHERE room = ?1 AND offset > ?2") &&
           prepare(snapshot_cut,
                   "DELETE FROM snapshots WHERE room = ?1 AND offset > ?2") &&
           prepare(operation_insert,
                   "INSERT INTO operations(id, kind, owner, meta, created_ms)"
                   " VALUES(?1, ?2, ?3, ?4, ?5)");
  }

  bool step_done(statement& st) {
    use u(st);
    return u.step() == SQLITE_DONE;
  }

  bool insert_event(const stored_event& ev) {
    use u(event_insert);
    u.text(1, ev.room)
        .i64(2, static_cast<std::int64_t>(ev.offset))
        .i64(3, ev.timestamp_ms)
        .text(4, ev.type)
        .text(5, ev.event)
        .text(6, ev.data)
        .text(7, ev.publish_id);
    return u.bound() && u.step() == SQLITE_DONE;
  }

  std::optional<std::string> new_epoch() {
    try {
      if (!rng)
        rng.emplace();
      std::uint64_t x = 0;
      for (int i = 0; i < 64; i += 32)
        x = (x << 32) | static_cast<std::uint32_t>((*rng)());
      static constexpr char digits[] = "0123456789abcdef";
      std::string s(16, '0');
      for (int i = 15; i >= 0; --i, x >>= 4)
        s[static_cast<std::size_t>(i)] = digits[x & 0xf];
      return s;
    } catch (...) {
      // std::random_device reports a missing entropy source by throwing.
      return std::nullopt;
    }
  }

  result<std::optional<std::string>> get_meta(const std::string& key) {
    use u(meta_get);
    if (!u.text(1, key).bound())
      return store_error(db());
    switch (u.step()) {
    case SQLITE_ROW:
      return std::optional<std::string>{u.col_text(0)};
    case SQLITE_DONE:
      return std::optional<std::string>{};
    default:
      return store_error(db());
    }
  }

  bool set_meta(const std::string& key, const std::string& value) {
    use u(meta_set);
    return u.text(1, key).text(2, value).bound() && u.step() == SQLITE_DONE;
  }

  // The room's row, if any.
  result<std::optional<room_position>> find_room(const std::string& room) {
    use u(room_get);
    if (!u.text(1, room).bound())
      return store_error(db());
    switch (u.step()) {
    case SQLITE_ROW:
      return std::optional<room_position>{room_position{
          u.col_text(0), static_cast<std::uint64_t>(u.col_i64(1))}};
    case SQLITE_DONE:
      return std::optional<room_position>{};
    default:
      return store_error(db());
    }
  }

  result<std::optional<snapshot>> find_snapshot(const std::string& room) {
    use u(snapshot_get);
    if (!u.text(1, room).bound())
      return store_error(db());
    switch (u.step()) {
    case SQLITE_ROW:
      return std::optional<snapshot>{
          snapshot{static_cast<std::uint64_t>(u.col_i64(0)), u.col_text(1)}};
    case SQLITE_DONE:
      return std::optional<snapshot>{};
    default:
      return store_error(db());
    }
  }

  result<std::optional<operation_record>>
  find_operation(const std::string& id) {
    use u(operation_get);
    if (!u.text(1, id).bound())
      return store_error(db());
    switch (u.step()) {
    case SQLITE_ROW: {
      operation_record op;
      op.id = id;
      op.kind = u.col_text(0);
      op.owner = u.col_text(1);
      op.meta_json = u.col_text(2);
      op.created_ms = u.col_i64(3);
      return std::optional<operation_record>{std::move(op)};
    }
    case SQLITE_DONE:
      return std::optional<operation_record>{};
    default:
      return store_error(db());
    }
  }

  result<room_position> create_room(const std::string& room) {
    auto epoch = new_epoch();
    if (!epoch)
      return store_error("no entropy source for a new epoch");
    // The new row is not synced on its own (every user's first
    // connection creates one, and a sync each capped connects at the
    // disk's sync rate). The first synced commit after it (any append)
    // carries it along: the WAL is written in order. Lost in a crash before
    // one, the room had no events; it gets a new epoch, and a client
    // holding the lost one resumes with `recovered: false`: no offset of
    // an epoch a client saw is ever reused.
    // (Inside a transaction, its commit decides; as on its own.)
    bool unsynced = mode == durability::full && sqlite3_get_autocommit(db()) &&
                    exec(db(), "PRAGMA synchronous=NORMAL");
    bool ok = false;
    {
      use u(room_insert);
      ok = u.text(1, room).text(2, *epoch).bound() && u.step() == SQLITE_DONE;
    }
    if (!ok) {
      auto err = store_error(db());
      if (unsynced)
        exec(db(), "PRAGMA synchronous=FULL");
      return err;
    }
    if (unsynced && !exec(db(), "PRAGMA synchronous=FULL"))
      return store_error(db());
    return room_position{std::move(*epoch), 0};
  }

  // Gives every room a new epoch (after an unclean shutdown in NORMAL mode).
  result<bool> renew_epochs() {
    std::vector<std::string> rooms;
    {
      use u(room_list);
      int rc;
      while ((rc = u.step()) == SQLITE_ROW)
        rooms.push_back(u.col_text(0));
      if (rc != SQLITE_DONE)
        return store_error(db());
    }
    for (const auto& room : rooms) {
      auto epoch = new_epoch();
      if (!epoch)
        return store_error("no entropy source for a new epoch");
      use u(room_set_epoch);
      if (!u.text(1, room).text(2, *epoch).bound() || u.step() != SQLITE_DONE)
        return store_error(db());
    }
    return true;
  }

  // BEGIN IMMEDIATE ... COMMIT; rolls back unless committed.
  class transaction {
   public:
    explicit transaction(impl& d) : d_(d) {}
    transaction(const transaction&) = delete;
    transaction& operator=(const transaction&) = delete;
    ~transaction() {
      // Some errors (IOERR, FULL, NOMEM, BUSY) end the transaction already.
      if (active_ && !sqlite3_get_autocommit(d_.db()))
        d_.step_done(d_.rollback);
    }

    bool begin() { return active_ = d_.step_done(d_.begin); }

    bool commit() {
      if (!d_.step_done(d_.commit))
        return false;
      active_ = false;
      return true;
    }

   private:
    impl& d_;
    bool active_ = false;
  };
};

sqlite_store::sqlite_store() : impl_(std::make_unique<impl>()) {}

sqlite_store::~sqlite_store() = default;

int sqlite_store::schema_version() const {
  return impl_->version;
}

bool sqlite_store::opened_clean() const {
  return impl_->clean;
}

result<std::unique_ptr<sqlite_store>>
sqlite_store::open(const sqlite_options& opt) {
  std::unique_ptr<sqlite_store> self(new sqlite_store());
  auto& d = *self->impl_;
  d.mode = opt.mode;

  if (!opt.path.empty() && opt.path != ":memory:" &&
      opt.path.rfind("file:", 0) != 0) {
    // Best effort: if this fails, sqlite3_open_v2 reports why.
    std::error_code ec;
    auto parent = std::filesystem::path(opt.path).parent_path();
    if (!parent.empty())
      std::filesystem::create_directories(parent, ec);
  }

  int rc = sqlite3_open_v2(opt.path.c_str(), &d.conn.db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                               SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK)
    return store_error(d.db());
  sqlite3_busy_timeout(d.db(), 5000);

  // Refuse a newer file before changing anything in it (even journal mode).
  auto found = user_version(d.db());
  if (!found)
    return store_error(d.db());
  if (*found > known_version)
    return too_new(*found);

  auto jm = pragma_text(d.db(), "PRAGMA journal_mode=WAL");
  if (!jm)
    return store_error(d.db());
  if (*jm != "wal" && *jm != "memory")
    return store_error("cannot enable WAL mode (journal_mode is " + *jm + ")");

  if (*found < known_version) {
    if (!exec(d.db(), "BEGIN IMMEDIATE"))
      return store_error(d.db());
    auto fail = [&](error_info e) {
      exec(d.db(), "ROLLBACK");
      return e;
    };
    // Another process may have migrated between our check and BEGIN.
    auto now = user_version(d.db());
    if (!now)
      return fail(store_error(d.db()));
    if (*now > known_version)
      return fail(too_new(*now));
    for (int v = *now; v < known_version; ++v)
      if (!exec(d.db(), migrations[v]))
        return fail(store_error(d.db()));
    now = user_version(d.db());
    if (!now || *now != known_version)
      return fail(store_error("migration did not reach schema version " +
                              std::to_string(known_version)));
    if (!exec(d.db(), "COMMIT"))
      return fail(store_error(d.db()));
  }
  d.version = known_version;

  if (!d.prepare_all())
    return store_error(d.db());

  // The clean-shutdown marker. Written with synchronous=FULL whatever the
  // mode: if a later NORMAL commit is lost in a crash, clean='0' and any new
  // epochs must still be on disk, or offsets could be reused under an epoch a
  // client already holds.
  if (!exec(d.db(), "PRAGMA synchronous=FULL"))
    return store_error(d.db());
  {
    impl::transaction tx(d);
    if (!tx.begin())
      return store_error(d.db());
    auto marker = d.get_meta("clean");
    if (!marker)
      return marker.error();
    d.clean = !(marker->has_value() && **marker == "0");
    if (!d.clean && d.mode == durability::normal) {
      auto renewed = d.renew_epochs();
      if (!renewed)
        return renewed.error();
    }
    if (!d.set_meta("clean", "0"))
      return store_error(d.db());
    if (!tx.commit())
      return store_error(d.db());
  }
  d.marked_open = true;

  if (d.mode == durability::normal &&
      !exec(d.db(), "PRAGMA synchronous=NORMAL"))
    return store_error(d.db());

  return result<std::unique_ptr<sqlite_store>>(std::move(self));
}

result<room_position> sqlite_store::position(const std::string& room) {
  auto found = impl_->find_room(room);
  if (!found)
    return found.error();
  if (found->has_value())
    return std::move(**found);
  return impl_->create_room(room);
}

result<bool>
sqlite_store::append(const std::vector<stored_event>& batch,
                     const std::vector<snapshot_update>& snapshots) {
  auto& d = *impl_;
  if (batch.empty() && snapshots.empty())
    return true;
  impl::transaction tx(d);
  if (!tx.begin())
    return store_error(d.db());
  // Last offset per room touched by this batch, as it grows. Creates the
  // room (inside the transaction) when it has no row yet.
  std::unordered_map<std::string, std::uint64_t> last;
  auto last_of = [&](const std::string& room) -> result<std::uint64_t*> {
    auto i = last.find(room);
    if (i == last.end()) {
      auto found = d.find_room(room);
      if (!found)
        return found.error();
      std::uint64_t start = 0;
      if (found->has_value()) {
        start = (*found)->offset;
      } else {
        auto created = d.create_room(room);
        if (!created)
          return created.error();
      }
      i = last.emplace(room, start).first;
    }
    return &i->second;
  };
  for (const auto& ev : batch) {
    auto room_last = last_of(ev.room);
    if (!room_last)
      return room_last.error();
    auto& at = **room_last;
    if (ev.offset != at + 1 || ev.offset > static_cast<std::uint64_t>(max_i64))
      return error_info{"OFFSET_CONFLICT",
                        "offset " + std::to_string(ev.offset) +
                            " does not follow last offset " +
                            std::to_string(at) + " of room " + ev.room};
    if (!d.insert_event(ev))
      return store_error(d.db());
    at = ev.offset;
  }
  for (const auto& [room, offset] : last) {
    use u(d.room_set_offset);
    if (!u.text(1, room).i64(2, static_cast<std::int64_t>(offset)).bound() ||
        u.step() != SQLITE_DONE)
      return store_error(d.db());
  }
  // Checked against the rows written above: this transaction sees its own
  // writes, including earlier snapshots of this call.
  for (const auto& up : snapshots) {
    auto room_last = last_of(up.room);
    if (!room_last)
      return room_last.error();
    auto at = **room_last;
    if (up.offset > at)
      return error_info{"OFFSET_CONFLICT",
                        "snapshot offset " + std::to_string(up.offset) +
                            " is past last offset " + std::to_string(at) +
                            " of room " + up.room};
    auto stored = d.find_snapshot(up.room);
    if (!stored)
      return stored.error();
    if (stored->has_value() && up.offset < (*stored)->offset)
      return error_info{"SNAPSHOT_STALE",
                        "snapshot offset " + std::to_string(up.offset) +
                            " is older than stored snapshot offset " +
                            std::to_string((*stored)->offset) + " of room " +
                            up.room};
    use u(d.snapshot_set);
    u.text(1, up.room)
        .i64(2, static_cast<std::int64_t>(up.offset))
        .text(3, up.state);
    if (!u.bound() || u.step() != SQLITE_DONE)
      return store_error(d.db());
  }
  if (!tx.commit())
    return store_error(d.db());
  return true;
}

result<std::vector<stored_event>>
sqlite_store::read_since(const std::string& room, std::uint64_t after,
                         std::size_t limit) {
  auto& d = *impl_;
  std::vector<stored_event> out;
  use u(d.read_since);
  if (!u.text(1, room)
           .i64(2, clamp_i64(after))
           .i64(3, clamp_i64(limit))
           .bound())
    return store_error(d.db());
  int rc;
  while ((rc = u.step()) == SQLITE_ROW) {
    stored_event ev;
    ev.room = room;
    ev.offset = static_cast<std::uint64_t>(u.col_i64(0));
    ev.timestamp_ms = u.col_i64(1);
    ev.type = u.col_text(2);
    ev.event = u.col_text(3);
    ev.data = u.col_text(4);
    ev.publish_id = u.col_text(5);
    out.push_back(std::move(ev));
  }
  if (rc != SQLITE_DONE)
    return store_error(d.db());
  return out;
}

result<std::optional<std::uint64_t>>
sqlite_store::find_publish_id(const std::string& room,
                              const std::string& publish_id) {
  auto& d = *impl_;
  std::optional<std::uint64_t> none;
  // An empty publish_id means "no id": it never names an event.
  if (publish_id.empty())
    return none;
  use u(d.find_publish_id);
  if (!u.text(1, room).text(2, publish_id).bound())
    return store_error(d.db());
  switch (u.step()) {
  case SQLITE_ROW:
    return std::optional<std::uint64_t>{
        static_cast<std::uint64_t>(u.col_i64(0))};
  case SQLITE_DONE:
    return none;
  default:
    return store_error(d.db());
  }
}

result<std::size_t> sqlite_store::trim(const std::string& room,
                                       std::uint64_t keep_last,
                                       std::int64_t min_timestamp_ms) {
  auto& d = *impl_;
  impl::transaction tx(d);
  if (!tx.begin())
    return store_error(d.db());
  // Everything up to `cutoff` goes. Deleting only a prefix keeps the stored
  // history contiguous even when timestamps are not monotonic, so a reader
  // that starts at first_offset() never skips a hole.
  std::int64_t cutoff = 0;
  {
    use u(d.trim_count_cut);
    if (!u.text(1, room).i64(2, clamp_i64(keep_last)).bound())
      return store_error(d.db());
    int rc = u.step();
    if (rc == SQLITE_ROW)
      cutoff = u.col_i64(0);
    else if (rc != SQLITE_DONE)
      return store_error(d.db());
  }
  if (min_timestamp_ms > 0) {
    use u(d.trim_age_cut);
    if (!u.text(1, room).i64(2, min_timestamp_ms).bound() ||
        u.step() != SQLITE_ROW)
      return store_error(d.db());
    if (!u.col_null(0))
      cutoff = std::max(cutoff, u.col_i64(0));
  }
  std::size_t deleted = 0;
  if (cutoff > 0) {
    use u(d.trim_delete);
    if (!u.text(1, room).i64(2, cutoff).bound() || u.step() != SQLITE_DONE)
      return store_error(d.db());
    deleted = static_cast<std::size_t>(sqlite3_changes64(d.db()));
  }
  if (!tx.commit())
    return store_error(d.db());
  return deleted;
}

result<std::vector<std::string>> sqlite_store::rooms() {
  auto& d = *impl_;
  std::vector<std::string> out;
  use u(d.room_list);
  int rc;
  while ((rc = u.step()) == SQLITE_ROW)
    out.push_back(u.col_text(0));
  if (rc != SQLITE_DONE)
    return store_error(d.db());
  return out;
}

result<std::vector<replica_outcome>>
sqlite_store::replicate(const std::vector<replica_batch>& batches) {
  auto& d = *impl_;
  std::vector<replica_outcome> out;
  if (batches.empty())
    return out;
  impl::transaction tx(d);
  if (!tx.begin())
    return store_error(d.db());
  for (const auto& b : batches) {
    auto found = d.find_room(b.room);
    if (!found)
      return found.error();
    bool fresh = !found->has_value() || b.reset || (*found)->epoch != b.epoch;
    if (!fresh && b.after != (*found)->offset) {
      out.push_back({false, (*found)->offset}); // a gap, or a stale sender
      continue;
    }
    // A fresh start drops what the room held.
    auto keep = fresh ? std::int64_t{-1} : static_cast<std::int64_t>(b.after);
    for (auto* st : {&d.events_cut, &d.snapshot_cut}) {
      use u(*st);
      if (!u.text(1, b.room).i64(2, keep).bound() || u.step() != SQLITE_DONE)
        return store_error(d.db());
    }
    {
      use u(d.room_reset);
      if (!u.text(1, b.room)
               .text(2, b.epoch)
               .i64(3, clamp_i64(b.after))
               .bound() ||
          u.step() != SQLITE_DONE)
        return store_error(d.db());
    }
    auto at = b.after;
    for (const auto& ev : b.events) {
      if (ev.room != b.room || ev.offset != at + 1 ||
          ev.offset > static_cast<std::uint64_t>(max_i64))
        return error_info{"OFFSET_CONFLICT",
                          "replicated events of room " + b.room +
                              " do not follow offset " +
                              std::to_string(b.after)};
      if (!d.insert_event(ev))
        return store_error(d.db());
      at = ev.offset;
    }
    {
      use u(d.room_set_offset);
      if (!u.text(1, b.room).i64(2, static_cast<std::int64_t>(at)).bound() ||
          u.step() != SQLITE_DONE)
        return store_error(d.db());
    }
    for (const auto& up : b.snapshots) {
      if (up.room != b.room || up.offset > at)
        return error_info{"OFFSET_CONFLICT", "replicated snapshot of room " +
                                                 b.room + " is past its events"};
      use u(d.snapshot_set);
      u.text(1, up.room)
          .i64(2, static_cast<std::int64_t>(up.offset))
          .text(3, up.state);
      if (!u.bound() || u.step() != SQLITE_DONE)
        return store_error(d.db());
    }
    out.push_back({true, at});
  }
  if (!tx.commit())
    return store_error(d.db());
  return out;
}

result<std::optional<std::uint64_t>>
sqlite_store::first_offset(const std::string& room) {
  auto& d = *impl_;
  use u(d.first_offset);
  if (!u.text(1, room).bound() || u.step() != SQLITE_ROW)
    return store_error(d.db());
  if (u.col_null(0))
    return std::optional<std::uint64_t>{};
  return std::optional<std::uint64_t>{static_cast<std::uint64_t>(u.col_i64(0))};
}

result<std::optional<snapshot>>
sqlite_store::get_snapshot(const std::string& room) {
  return impl_->find_snapshot(room);
}

result<bool> sqlite_store::create_operation(const operation_record& op) {
  auto& d = *impl_;
  impl::transaction tx(d);
  if (!tx.begin())
    return store_error(d.db());
  auto found = d.find_operation(op.id);
  if (!found)
    return found.error();
  if (found->has_value()) {
    const auto& have = **found;
    if (have.kind != op.kind || have.owner != op.owner ||
        have.meta_json != op.meta_json)
      return error_info{"OPERATION_EXISTS",
                        "operation " + op.id + " exists with other attributes"};
    return false; // the transaction rolls back: nothing was written
  }
  {
    use u(d.operation_insert);
    u.text(1, op.id)
        .text(2, op.kind)
        .text(3, op.owner)
        .text(4, op.meta_json)
        .i64(5, op.created_ms);
    if (!u.bound() || u.step() != SQLITE_DONE)
      return store_error(d.db());
  }
  if (!tx.commit())
    return store_error(d.db());
  return true;
}

result<std::optional<operation_record>>
sqlite_store::get_operation(const std::string& id) {
  return impl_->find_operation(id);
}

} // namespace tidings::persistence
