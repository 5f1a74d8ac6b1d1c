#include "sqlite_db.hpp"

#include <sqlite3.h>

#include <limits>
#include <utility>

namespace duplex::engines::sqlite {

namespace {

[[noreturn]] void fail(sqlite3* db, int code, std::string_view doing) {
  std::string message(doing);
  message += ": ";
  message += db ? sqlite3_errmsg(db) : sqlite3_errstr(code);
  throw Error(code, message);
}

int length_of(std::string_view value) {
  if (value.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw Error(SQLITE_TOOBIG, "value too large for SQLite");
  }
  return static_cast<int>(value.size());
}

}  // namespace

Statement::Statement(sqlite3* db, std::string_view sql) : db_(db) {
  const int rc = sqlite3_prepare_v3(db, sql.data(), length_of(sql), SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc != SQLITE_OK) fail(db, rc, "preparing \"" + std::string(sql) + "\"");
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Statement::Statement(Statement&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), stmt_(std::exchange(other.stmt_, nullptr)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    db_ = std::exchange(other.db_, nullptr);
    stmt_ = std::exchange(other.stmt_, nullptr);
  }
  return *this;
}

Statement& Statement::bind(int index, std::int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) fail(db_, rc, "binding a parameter");
  return *this;
}

Statement& Statement::bind_text(int index, std::string_view value) {
  const int rc = sqlite3_bind_text(stmt_, index, value.data(), length_of(value), SQLITE_STATIC);
  if (rc != SQLITE_OK) fail(db_, rc, "binding a parameter");
  return *this;
}

Statement& Statement::bind_blob(int index, std::string_view value) {
  // A null pointer would bind SQL NULL; an empty blob needs a non-null one.
  static const char kEmpty = 0;
  const char* bytes = value.empty() ? &kEmpty : value.data();
  const int rc = sqlite3_bind_blob(stmt_, index, bytes, length_of(value), SQLITE_STATIC);
  if (rc != SQLITE_OK) fail(db_, rc, "binding a parameter");
  return *this;
}

bool Statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  fail(db_, rc, sqlite3_sql(stmt_));
}

void Statement::run() {
  while (step()) {
  }
}

void Statement::reset() noexcept {
  if (!stmt_) return;
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

std::int64_t Statement::column_int64(int index) const { return sqlite3_column_int64(stmt_, index); }

std::string Statement::column_blob(int index) const {
  const void* bytes = sqlite3_column_blob(stmt_, index);
  const int size = sqlite3_column_bytes(stmt_, index);
  if (!bytes || size <= 0) return {};
  return std::string(static_cast<const char*>(bytes), static_cast<std::size_t>(size));
}

bool Statement::column_is_null(int index) const { return sqlite3_column_type(stmt_, index) == SQLITE_NULL; }

Connection::Connection(const std::string& path) {
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = "opening " + path + ": " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
    sqlite3_close_v2(db_);
    db_ = nullptr;
    throw Error(rc, message);
  }
  sqlite3_extended_result_codes(db_, 1);
}

Connection::~Connection() { sqlite3_close_v2(db_); }

void Connection::exec(const std::string& sql) {
  char* error = nullptr;
  const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    std::string message = sql + ": " + (error ? error : sqlite3_errstr(rc));
    sqlite3_free(error);
    throw Error(rc, message);
  }
}

}  // namespace duplex::engines::sqlite
