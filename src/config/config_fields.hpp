// The one declaration of every `duplex serve` config file field: its TOML
// key, where it lives in HubConfig, its kind and bounds, its reload class and
// a one-line doc. The default is not repeated here: it is whatever a
// default-constructed HubConfig holds (hub/config.hpp).
//
// Derived from this table: the parser (config_file.cpp reads every row and
// nothing else, so an unknown key is an error), the SIGHUP diff
// (HubServer::reload compares old and new config row by row and reports each
// changed key as applied or as needing a restart). Checked against it by
// tests/unit/config/test_config_file.cpp: the reference file config/duplex.toml and
// the tables of docs/CONFIG.md list exactly these keys with these defaults,
// and every member of the config structs has a row (or is listed there as
// not settable from the file).
//
// Adding a field: the struct member with its default, one row in
// config_fields.cpp, one line in config/duplex.toml, one row in CONFIG.md.
#pragma once
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "duplex/hub/config.hpp"

namespace duplex::hub::config_fields {

enum class Kind : std::uint8_t {
  boolean,
  integer,   // TOML integer within [min, max]
  number,    // integer or float within [min, max]
  size,      // bytes: integer or "64KiB"; within [min, max] bytes
  seconds,   // duration, an integer means seconds; [min, max] in seconds
  millis,    // duration, an integer means milliseconds; [min, max] in milliseconds
  string,
  strings,   // array of strings
  origins,   // array of "*" or scheme://host[:port]
  choice,    // one of `choices` (a string member, or an enum whose values are the choices' indexes)
};

enum class Reload : std::uint8_t {
  live,     // SIGHUP applies it to the running server
  restart,  // SIGHUP reports the change and keeps the old value until a restart
  tls,      // [server.tls]: re-read on SIGHUP while TLS stays on; turning TLS on or off needs a restart
};

// A typed pointer to the field's member.
using Ref = std::variant<bool*, std::string*, std::vector<std::string>*, std::size_t*, unsigned*, int*,
                         std::uint16_t*, std::uint8_t*, double*, Seconds*, std::chrono::milliseconds*,
                         net::BackpressurePolicy*, net::DeflateMode*, net::IoBackend*>;

template <class Root>
struct Field {
  std::string key;                  // TOML path below Root: "server.max_send_buffer"
  std::function<Ref(Root&)> ref;    // the member in a Root
  Kind kind;
  Reload reload;
  double min = 0;                   // bounds (integer, number, size, seconds, millis); exact below 2^53
  double max = 0;
  std::vector<std::string_view> choices;  // Kind::choice
  std::string_view doc;

  Ref get(Root& root) const { return ref(root); }
  Ref get(const Root& root) const { return ref(const_cast<Root&>(root)); }  // read-only use
  // "server.http" for "server.http.max_line_bytes", "" at the top level.
  std::string_view section() const {
    const auto dot = key.rfind('.');
    return dot == std::string::npos ? std::string_view() : std::string_view(key).substr(0, dot);
  }
  std::string_view leaf() const {
    const auto dot = key.rfind('.');
    return dot == std::string::npos ? std::string_view(key) : std::string_view(key).substr(dot + 1);
  }
};

using ConfigField = Field<HubConfig>;
using NamespaceField = Field<NamespaceOptions>;

// Every field of the file, in file order; [namespace_defaults] included,
// [namespaces.<name>] tables use namespace_fields().
const std::vector<ConfigField>& fields();
// The keys of a namespace table ([namespace_defaults], [namespaces.<name>]).
const std::vector<NamespaceField>& namespace_fields();

// The field's value in `a` equals the one in `b`.
bool equal(const Ref& a, const Ref& b);
// Copies the value `from` points to over the one `to` points to (same field).
void assign(const Ref& to, const Ref& from);
// The value as TOML ("1MiB" sizes and "10s" durations as strings with units).
std::string toml_value(const Ref& ref, Kind kind, const std::vector<std::string_view>& choices);
// The kind can be read into the member's type (checked by a test).
bool kind_fits(Kind kind, const Ref& ref);

template <class Root>
bool equal(const Field<Root>& field, const Root& a, const Root& b) {
  return equal(field.get(a), field.get(b));
}
template <class Root>
std::string toml_value(const Field<Root>& field, const Root& root) {
  return toml_value(field.get(root), field.kind, field.choices);
}

}  // namespace duplex::hub::config_fields
