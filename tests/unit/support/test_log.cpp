#include "support/log.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

using namespace duplex::hub;
using namespace std::chrono;

namespace {

// 2026-11-23T18:47:05.123Z
system_clock::time_point fixed_time() {
  return sys_days{year{2026} / 11 / 23} + hours(18) + minutes(47) + seconds(5) + milliseconds(123);
}

// Captures the global logger's output and restores the defaults afterwards.
class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    log::set_sink([this](std::string_view line) { lines.emplace_back(line); });
    log::set_clock([this] {
      ++clock_calls;
      return fixed_time();
    });
    log::set_level(log::Level::info);
    log::set_format(log::Format::text);
  }
  void TearDown() override {
    log::set_sink(nullptr);
    log::set_clock(nullptr);
    log::set_level(log::Level::info);
    log::set_format(log::Format::text);
  }
  std::vector<std::string> lines;
  int clock_calls = 0;
};

std::string text_line(std::string_view message, log::Fields fields, log::Level level = log::Level::info) {
  return log::format_line(log::Format::text, fixed_time(), level, message, fields);
}
std::string json_line(std::string_view message, log::Fields fields, log::Level level = log::Level::info) {
  return log::format_line(log::Format::json, fixed_time(), level, message, fields);
}

}  // namespace

TEST(LogFormat, TextLine) {
  const std::string client = "c7f3";
  EXPECT_EQ(text_line("connection opened", {{"client", client}, {"user", 42}, {"remote", "127.0.0.1:5555"}}),
            "2026-11-23T18:47:05.123Z INFO  connection opened client=c7f3 user=42 remote=127.0.0.1:5555");
  EXPECT_EQ(text_line("x", {}, log::Level::warn), "2026-11-23T18:47:05.123Z WARN  x");
  EXPECT_EQ(text_line("x", {}, log::Level::error), "2026-11-23T18:47:05.123Z ERROR x");
  EXPECT_EQ(text_line("x", {}, log::Level::debug), "2026-11-23T18:47:05.123Z DEBUG x");
  EXPECT_EQ(text_line("x", {}, log::Level::trace), "2026-11-23T18:47:05.123Z TRACE x");
}

TEST(LogFormat, JsonLine) {
  EXPECT_EQ(json_line("connection opened", {{"client", "c7f3"}, {"user", "42"}, {"remote", "127.0.0.1:5555"}}),
            R"({"ts":"2026-11-23T18:47:05.123Z","level":"info","msg":"connection opened","client":"c7f3",)"
            R"("user":"42","remote":"127.0.0.1:5555"})");
  EXPECT_EQ(json_line("x", {}, log::Level::error), R"({"ts":"2026-11-23T18:47:05.123Z","level":"error","msg":"x"})");
}

TEST(LogFormat, NumbersAndBooleans) {
  const std::uint64_t big = 18446744073709551615ull;
  const log::Fields fields{{"count", 3}, {"delta", -7L}, {"offset", big}, {"ratio", 0.5}, {"ok", true}};
  EXPECT_EQ(json_line("m", fields),
            R"({"ts":"2026-11-23T18:47:05.123Z","level":"info","msg":"m","count":3,"delta":-7,)"
            R"("offset":18446744073709551615,"ratio":0.5,"ok":true})");
  EXPECT_EQ(text_line("m", fields),
            "2026-11-23T18:47:05.123Z INFO  m count=3 delta=-7 offset=18446744073709551615 ratio=0.5 ok=true");
  EXPECT_EQ(json_line("m", {{"nan", std::nan("")}}),
            R"({"ts":"2026-11-23T18:47:05.123Z","level":"info","msg":"m","nan":"nan"})");
}

TEST(LogFormat, TextEscapesAndQuotesValues) {
  const std::string prefix = "2026-11-23T18:47:05.123Z INFO  ";
  EXPECT_EQ(text_line("m", {{"reason", "going away"}}), prefix + "m reason=\"going away\"");
  EXPECT_EQ(text_line("m", {{"v", "say \"hi\""}}), prefix + R"(m v="say \"hi\"")");
  EXPECT_EQ(text_line("m", {{"v", ""}}), prefix + R"(m v="")");
  EXPECT_EQ(text_line("m", {{"v", "a=b"}}), prefix + R"(m v="a=b")");
  EXPECT_EQ(text_line("m", {{"v", "back\\slash"}}), prefix + R"(m v="back\\slash")");
  EXPECT_EQ(text_line("m", {{"v", "line1\nline2"}}), prefix + R"(m v="line1\nline2")");
  EXPECT_EQ(text_line("m", {{"v", "caf\xc3\xa9"}}), prefix + "m v=caf\xc3\xa9");  // valid UTF-8 stays
  EXPECT_EQ(text_line("m", {{"v", "bad\xff"}}), prefix + R"(m v="bad\xff")");
  EXPECT_EQ(text_line("m", {{"v", std::string_view("nul\0x", 5)}}), prefix + R"(m v="nul\x00x")");
  // A message or key cannot forge a second line or field either.
  EXPECT_EQ(text_line("evil\nINFO forged", {}), prefix + R"(evil\nINFO forged)");
  EXPECT_EQ(text_line("m", {{"a b=c", "1"}}), prefix + "m a_b_c=1");
}

TEST(LogFormat, JsonEscapes) {
  EXPECT_EQ(json_line("say \"hi\"\n", {{"v", "a\\b\x01"}, {"bad", "\xff"}}),
            R"({"ts":"2026-11-23T18:47:05.123Z","level":"info","msg":"say \"hi\"\n","v":"a\\b\u0001",)"
            "\"bad\":\"\xef\xbf\xbd\"}");
}

TEST(LogFormat, SecretsAreRedacted) {
  const log::Fields fields{{"token", "eyJhbGciOi.secret.sig"}, {"Authorization", "Bearer abc"},
                           {"api_key", "k"},          {"password", "p"},
                           {"secret", "s"},           {"refresh_token", "r"},
                           {"hmac_secret", "h"},      {"user", "42"}};
  const std::string text = text_line("m", fields);
  EXPECT_EQ(text,
            "2026-11-23T18:47:05.123Z INFO  m token=[redacted] Authorization=[redacted] api_key=[redacted] "
            "password=[redacted] secret=[redacted] refresh_token=[redacted] hmac_secret=[redacted] user=42");
  const std::string json = json_line("m", fields);
  EXPECT_EQ(json.find("eyJ"), std::string::npos);
  EXPECT_EQ(json.find("Bearer"), std::string::npos);
  EXPECT_NE(json.find(R"("token":"[redacted]")"), std::string::npos);
  EXPECT_NE(json.find(R"("user":"42")"), std::string::npos);
  // Numbers under a secret's name are redacted too.
  EXPECT_EQ(text_line("m", {{"password", 1234}}), "2026-11-23T18:47:05.123Z INFO  m password=[redacted]");
  EXPECT_FALSE(log::is_secret_key("idempotency_key"));
  EXPECT_FALSE(log::is_secret_key("user"));
  EXPECT_TRUE(log::is_secret_key("TOKEN"));
}

TEST(LogFormat, TimestampsAreUtcMilliseconds) {
  const auto t = sys_days{year{2026} / 1 / 2} + milliseconds(7);
  EXPECT_EQ(log::format_line(log::Format::text, t, log::Level::info, "m", {}), "2026-01-02T00:00:00.007Z INFO  m");
}

TEST_F(LogTest, LevelsFilterBeforeFormatting) {
  log::debug("hidden", {{"k", "v"}});
  log::trace("hidden");
  EXPECT_TRUE(lines.empty());
  EXPECT_EQ(clock_calls, 0);  // a filtered call formats nothing, not even the time
  log::info("shown", {{"k", "v"}});
  log::warn("shown");
  log::error("shown");
  EXPECT_EQ(lines.size(), 3u);

  log::set_level(log::Level::error);
  log::warn("hidden");
  EXPECT_EQ(lines.size(), 3u);
  log::set_level(log::Level::trace);
  log::trace("shown");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines.back(), "2026-11-23T18:47:05.123Z TRACE shown");
  EXPECT_TRUE(log::enabled(log::Level::trace));
}

TEST_F(LogTest, ConfigureSetsLevelAndFormatOrThrows) {
  log::configure("warn", "json");
  EXPECT_EQ(log::level(), log::Level::warn);
  log::info("hidden");
  log::warn("disk slow", {{"ms", 1200}});
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], R"({"ts":"2026-11-23T18:47:05.123Z","level":"warn","msg":"disk slow","ms":1200})");

  EXPECT_THROW(log::configure("verbose", "text"), std::runtime_error);
  EXPECT_THROW(log::configure("info", "xml"), std::runtime_error);
  EXPECT_EQ(log::level(), log::Level::warn);  // a failed configure changes nothing
  log::warn("still json");
  EXPECT_EQ(lines.back().front(), '{');

  EXPECT_EQ(log::parse_level("debug"), log::Level::debug);
  EXPECT_FALSE(log::parse_level("INFO"));
  EXPECT_EQ(log::level_name(log::Level::warn), "warn");
}

TEST_F(LogTest, ConcurrentWritersNeverInterleave) {
  constexpr int threads = 4, per_thread = 500;
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([t] {
      for (int i = 0; i < per_thread; ++i) log::info("tick", {{"thread", t}, {"i", i}, {"pad", "some text here"}});
    });
  }
  for (auto& w : workers) w.join();
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(threads * per_thread));
  const std::regex shape(R"(^2026-11-23T18:47:05\.123Z INFO  tick thread=\d i=\d+ pad="some text here"$)");
  for (const std::string& line : lines) ASSERT_TRUE(std::regex_match(line, shape)) << line;
}
