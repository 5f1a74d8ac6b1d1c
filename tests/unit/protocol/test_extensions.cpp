#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/extensions.hpp"

using namespace duplex::protocol;

namespace {

std::vector<ExtensionOffer> must_parse(std::string_view text) {
  auto r = parse_extensions(text);
  EXPECT_TRUE(r.has_value()) << "'" << text << "'";
  return r.value_or(std::vector<ExtensionOffer>{});
}

bool fails(std::string_view text) { return !parse_extensions(text).has_value(); }

}  // namespace

TEST(ExtensionParse, EmptyInputs) {
  EXPECT_TRUE(must_parse("").empty());
  EXPECT_TRUE(must_parse("   ").empty());
  EXPECT_TRUE(must_parse(",").empty());
  EXPECT_TRUE(must_parse(" , ,\t,").empty());
}

TEST(ExtensionParse, SingleName) {
  auto l = must_parse("permessage-deflate");
  ASSERT_EQ(l.size(), 1u);
  EXPECT_EQ(l[0].name, "permessage-deflate");
  EXPECT_TRUE(l[0].params.empty());
}

TEST(ExtensionParse, ChromeOffer) {
  auto l = must_parse("permessage-deflate; client_max_window_bits");
  ASSERT_EQ(l.size(), 1u);
  ASSERT_EQ(l[0].params.size(), 1u);
  EXPECT_EQ(l[0].params[0].name, "client_max_window_bits");
  EXPECT_EQ(l[0].params[0].value, std::nullopt);
}

TEST(ExtensionParse, FirefoxStyleMultipleOffers) {
  auto l = must_parse(
      "permessage-deflate; client_max_window_bits=10; server_no_context_takeover, "
      "permessage-deflate;client_max_window_bits,x-webkit-deflate-frame");
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[0].name, "permessage-deflate");
  ASSERT_EQ(l[0].params.size(), 2u);
  EXPECT_EQ(l[0].params[0].name, "client_max_window_bits");
  EXPECT_EQ(l[0].params[0].value, "10");
  EXPECT_EQ(l[0].params[1].name, "server_no_context_takeover");
  EXPECT_FALSE(l[0].params[1].value.has_value());
  EXPECT_EQ(l[1].name, "permessage-deflate");
  ASSERT_EQ(l[1].params.size(), 1u);
  EXPECT_EQ(l[2].name, "x-webkit-deflate-frame");
}

TEST(ExtensionParse, QuotedValues) {
  auto l = must_parse("a; b=\"10\"; c=\"x\\y\"; d=\"\\1\\5\"");
  ASSERT_EQ(l.size(), 1u);
  ASSERT_EQ(l[0].params.size(), 3u);
  EXPECT_EQ(l[0].params[0].value, "10");
  EXPECT_EQ(l[0].params[1].value, "xy");
  EXPECT_EQ(l[0].params[2].value, "15");
}

TEST(ExtensionParse, QuotedValueMustBeToken) {
  EXPECT_TRUE(fails("a; b=\"\""));          // empty
  EXPECT_TRUE(fails("a; b=\"x y\""));       // space
  EXPECT_TRUE(fails("a; b=\"x,y\""));       // comma
  EXPECT_TRUE(fails("a; b=\"x;y\""));
  EXPECT_TRUE(fails("a; b=\"x\\\"y\""));    // escaped quote unescapes to non-token
  EXPECT_TRUE(fails("a; b=\"x\\ \""));
  EXPECT_TRUE(fails("a; b=\"\xc3\xa9\""));  // obs-text is not a tchar
}

TEST(ExtensionParse, WhitespaceTolerance) {
  auto l = must_parse("  a ;b ;\tc = 1 ,  d\t");
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0].name, "a");
  ASSERT_EQ(l[0].params.size(), 2u);
  EXPECT_EQ(l[0].params[0].name, "b");
  EXPECT_EQ(l[0].params[1].name, "c");
  EXPECT_EQ(l[0].params[1].value, "1");
  EXPECT_EQ(l[1].name, "d");
}

TEST(ExtensionParse, EmptyListElementsTolerated) {
  auto l = must_parse(", a,, ,b ,");
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0].name, "a");
  EXPECT_EQ(l[1].name, "b");
}

TEST(ExtensionParse, NamesKeptAsReceived) {
  auto l = must_parse("PerMessage-Deflate; Client_Max_Window_Bits=15");
  EXPECT_EQ(l[0].name, "PerMessage-Deflate");
  EXPECT_EQ(l[0].params[0].name, "Client_Max_Window_Bits");
}

TEST(ExtensionParse, GrammarErrors) {
  EXPECT_TRUE(fails(";"));
  EXPECT_TRUE(fails("; a"));                // empty extension name
  EXPECT_TRUE(fails("a;"));                 // trailing ';'
  EXPECT_TRUE(fails("a; "));
  EXPECT_TRUE(fails("a;;b"));
  EXPECT_TRUE(fails("a; b;, c"));
  EXPECT_TRUE(fails("a; =1"));              // empty param name
  EXPECT_TRUE(fails("a; b="));              // '=' without value
  EXPECT_TRUE(fails("a; b= "));
  EXPECT_TRUE(fails("a; b=, c"));
  EXPECT_TRUE(fails("a; b=;c"));
  EXPECT_TRUE(fails("a; b==1"));
  EXPECT_TRUE(fails("a; b=\"1"));           // unterminated
  EXPECT_TRUE(fails("a; b=\"1\\"));         // unterminated after backslash
  EXPECT_TRUE(fails("a; b=\"1\"2"));        // junk after quoted string
  EXPECT_TRUE(fails("a; b=1 2"));
  EXPECT_TRUE(fails("a b"));                // two tokens
  EXPECT_TRUE(fails("a=1"));                // value on the name
  EXPECT_TRUE(fails("\"a\""));              // quoted name
  EXPECT_TRUE(fails("a; \"b\""));           // quoted param name
  EXPECT_TRUE(fails("a/b"));
  EXPECT_TRUE(fails("a; b=c/d"));
  EXPECT_TRUE(fails("a; b=\"1\x01\""));     // CTL in quoted-string
  EXPECT_TRUE(fails("a; b=\"1\\\x01\""));   // CTL in quoted-pair
  EXPECT_TRUE(fails("\xc3\xa9"));
  EXPECT_TRUE(fails("a\r\n, b"));
  EXPECT_TRUE(fails(std::string_view("a\0", 2)));
}

TEST(ExtensionFormat, Basic) {
  EXPECT_EQ(format_extensions({}), "");
  std::vector<ExtensionOffer> l = {
      {"permessage-deflate", {{"server_no_context_takeover", std::nullopt},
                              {"client_max_window_bits", std::string("10")}}},
      {"x-other", {}}};
  EXPECT_EQ(format_extensions(l),
            "permessage-deflate; server_no_context_takeover; client_max_window_bits=10, x-other");
}

TEST(ExtensionFormat, RoundTrip) {
  const std::string_view inputs[] = {
      "permessage-deflate; client_max_window_bits",
      "a; b=1; c, d; e=\"f\"",
      "  x ;y=z  ,,w",
      "permessage-deflate; client_max_window_bits=15; server_max_window_bits=\"9\"",
  };
  for (auto in : inputs) {
    auto first = must_parse(in);
    const auto text = format_extensions(first);
    auto second = must_parse(text);
    EXPECT_EQ(format_extensions(second), text);
    ASSERT_EQ(first.size(), second.size());
    for (std::size_t i = 0; i < first.size(); ++i) {
      EXPECT_EQ(first[i].name, second[i].name);
      ASSERT_EQ(first[i].params.size(), second[i].params.size());
      for (std::size_t j = 0; j < first[i].params.size(); ++j) {
        EXPECT_EQ(first[i].params[j].name, second[i].params[j].name);
        EXPECT_EQ(first[i].params[j].value, second[i].params[j].value);
      }
    }
  }
}

TEST(ExtensionFormat, NonTokenValueIsQuotedAndSafe) {
  std::vector<ExtensionOffer> l = {{"a", {{"b", std::string("x \"y\"\r\n")}}}};
  const auto text = format_extensions(l);
  EXPECT_EQ(text, "a; b=\"x \\\"y\\\"\"");
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_EQ(text.find('\n'), std::string::npos);
  // Well formed but not a token once unquoted, so a strict parser refuses it.
  EXPECT_FALSE(parse_extensions(text).has_value());
}
