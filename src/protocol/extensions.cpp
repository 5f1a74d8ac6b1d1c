// Sec-WebSocket-Extensions grammar (RFC 6455 §9.1, RFC 9110 §5.6):
//
//   extension-list = 1#extension
//   extension      = token *( OWS ";" OWS param )
//   param          = token [ BWS "=" BWS ( token / quoted-string ) ]
//
// A quoted-string value, once unescaped, must itself be a token (RFC 6455
// §9.1). Empty list elements ("a, , b", leading/trailing commas) are skipped
// as RFC 9110 §5.6.1 requires of recipients; empty names, a dangling ";",
// "=" without a value, unterminated quotes and stray characters are errors.
// Whitespace around "=" (BWS) is tolerated, as RFC 9110 does for parameters.

#include "duplex/protocol/extensions.hpp"
#include "duplex/protocol/http_head.hpp"

namespace duplex::protocol {

namespace {

class Cursor {
 public:
  explicit Cursor(std::string_view s) : s_(s) {}

  bool done() const { return pos_ >= s_.size(); }
  char peek() const { return s_[pos_]; }
  void advance() { ++pos_; }

  void skip_ows() {
    while (!done() && (peek() == ' ' || peek() == '\t')) ++pos_;
  }

  // Longest run of tchars; empty if none.
  std::string_view token() {
    const auto start = pos_;
    while (!done() && is_tchar(static_cast<unsigned char>(peek()))) ++pos_;
    return s_.substr(start, pos_ - start);
  }

  // At a '"': reads a quoted-string and unescapes it into `out`.
  bool quoted_string(std::string& out) {
    ++pos_;  // opening quote
    while (!done()) {
      const auto c = static_cast<unsigned char>(peek());
      ++pos_;
      if (c == '"') return true;
      if (c == '\\') {
        if (done()) return false;
        const auto e = static_cast<unsigned char>(peek());
        ++pos_;
        // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
        if ((e < 0x20 && e != '\t') || e == 0x7f) return false;
        out.push_back(static_cast<char>(e));
        continue;
      }
      // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text
      if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
      out.push_back(static_cast<char>(c));
    }
    return false;  // unterminated
  }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

}  // namespace

std::optional<std::vector<ExtensionOffer>> parse_extensions(std::string_view header) {
  std::vector<ExtensionOffer> list;
  Cursor cur(header);
  while (true) {
    cur.skip_ows();
    if (cur.done()) break;
    if (cur.peek() == ',') {  // empty list element
      cur.advance();
      continue;
    }

    ExtensionOffer offer;
    const auto name = cur.token();
    if (name.empty()) return std::nullopt;
    offer.name = std::string(name);
    cur.skip_ows();

    while (!cur.done() && cur.peek() == ';') {
      cur.advance();
      cur.skip_ows();
      ExtensionParam param;
      const auto pname = cur.token();
      if (pname.empty()) return std::nullopt;  // ";;", trailing ";", ";=x"
      param.name = std::string(pname);
      cur.skip_ows();
      if (!cur.done() && cur.peek() == '=') {
        cur.advance();
        cur.skip_ows();
        if (cur.done()) return std::nullopt;
        std::string value;
        if (cur.peek() == '"') {
          if (!cur.quoted_string(value)) return std::nullopt;
        } else {
          value = std::string(cur.token());
        }
        if (!is_token(value)) return std::nullopt;  // also catches "=" with no value
        param.value = std::move(value);
        cur.skip_ows();
      }
      offer.params.push_back(std::move(param));
    }

    list.push_back(std::move(offer));
    if (cur.done()) break;
    if (cur.peek() != ',') return std::nullopt;  // stray character after an element
    cur.advance();
  }
  return list;
}

std::string format_extensions(const std::vector<ExtensionOffer>& list) {
  std::string out;
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (i != 0) out += ", ";
    out += list[i].name;
    for (const auto& p : list[i].params) {
      out += "; ";
      out += p.name;
      if (!p.value) continue;
      out += '=';
      if (is_token(*p.value)) {
        out += *p.value;
        continue;
      }
      // Not representable per RFC 6455 §9.1; emit a well-formed quoted-string
      // (CTLs dropped so the header can never be split) so the output stays
      // safe to put on the wire. A strict peer will reject it.
      out += '"';
      for (char c : *p.value) {
        const auto u = static_cast<unsigned char>(c);
        if ((u < 0x20 && u != '\t') || u == 0x7f) continue;
        if (c == '"' || c == '\\') out += '\\';
        out += c;
      }
      out += '"';
    }
  }
  return out;
}

}  // namespace duplex::protocol
