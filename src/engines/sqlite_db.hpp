// A thin RAII layer over the SQLite C API for the SQLite engine: one
// connection, prepared statements that are reset after every use, and
// errors as exceptions carrying SQLite's message.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace duplex::engines::sqlite {

class Error : public std::runtime_error {
 public:
  Error(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
  int code() const { return code_; }

 private:
  int code_;
};

class Statement {
 public:
  Statement() = default;
  Statement(sqlite3* db, std::string_view sql);
  ~Statement();
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Parameters are 1-based. Text and blobs are bound without copying: they
  // must outlive the statement's next step().
  Statement& bind(int index, std::int64_t value);
  Statement& bind_text(int index, std::string_view value);
  Statement& bind_blob(int index, std::string_view value);

  // true: a row is ready; false: done. Throws Error.
  bool step();
  // Runs to completion (statements without rows).
  void run();
  // Back to the start, bindings cleared. Called by Use on scope exit.
  void reset() noexcept;

  std::int64_t column_int64(int index) const;
  std::string column_blob(int index) const;  // text or blob as bytes
  bool column_is_null(int index) const;

 private:
  sqlite3* db_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// Resets a statement when leaving the scope that used it, even on error, so
// no statement holds a lock or an open transaction by accident.
class Use {
 public:
  explicit Use(Statement& statement) : statement_(statement) {}
  ~Use() { statement_.reset(); }
  Use(const Use&) = delete;
  Use& operator=(const Use&) = delete;
  Statement* operator->() { return &statement_; }
  Statement& operator*() { return statement_; }

 private:
  Statement& statement_;
};

class Connection {
 public:
  // Opens (creating if missing) the database at `path`. Throws Error.
  explicit Connection(const std::string& path);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void exec(const std::string& sql);  // one or more statements, rows ignored
  Statement prepare(std::string_view sql) { return Statement(db_, sql); }
  sqlite3* handle() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace duplex::engines::sqlite
