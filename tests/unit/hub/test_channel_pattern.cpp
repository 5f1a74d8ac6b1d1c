#include "duplex/hub/channel_pattern.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

using duplex::hub::channel_pattern_matches;

TEST(ChannelPattern, LiteralMatchesOnlyItself) {
  EXPECT_TRUE(channel_pattern_matches("chat:lobby", "chat:lobby"));
  EXPECT_FALSE(channel_pattern_matches("chat:lobby", "chat:lobby2"));
  EXPECT_FALSE(channel_pattern_matches("chat:lobby", "chat:lobb"));
  EXPECT_FALSE(channel_pattern_matches("chat:lobby", "Chat:lobby"));
  EXPECT_TRUE(channel_pattern_matches("", ""));
  EXPECT_FALSE(channel_pattern_matches("", "a"));
}

TEST(ChannelPattern, PersonalChannelHashIsLiteral) {
  EXPECT_TRUE(channel_pattern_matches("user:#42", "user:#42"));
  EXPECT_FALSE(channel_pattern_matches("user:#42", "user:#420"));
  EXPECT_FALSE(channel_pattern_matches("user:#42", "user:#4"));
  EXPECT_TRUE(channel_pattern_matches("dm:#*", "dm:#42,57"));
}

TEST(ChannelPattern, SingleStarStaysInsideOneSegment) {
  EXPECT_TRUE(channel_pattern_matches("chat:*", "chat:lobby"));
  EXPECT_TRUE(channel_pattern_matches("chat:*", "chat:"));  // empty run
  EXPECT_FALSE(channel_pattern_matches("chat:*", "chat:a:b"));
  EXPECT_FALSE(channel_pattern_matches("chat:*", "chats:lobby"));
  EXPECT_FALSE(channel_pattern_matches("chat:*", "chat"));
  EXPECT_TRUE(channel_pattern_matches("*", "lobby"));
  EXPECT_FALSE(channel_pattern_matches("*", "chat:lobby"));
  EXPECT_TRUE(channel_pattern_matches("*:room", "game:room"));
  EXPECT_FALSE(channel_pattern_matches("*:room", "a:game:room"));
  EXPECT_TRUE(channel_pattern_matches("*:*", "a:b"));
  EXPECT_FALSE(channel_pattern_matches("*:*", "a:b:c"));
  EXPECT_TRUE(channel_pattern_matches("room-*-log", "room-12-log"));
  EXPECT_TRUE(channel_pattern_matches("room-*-log", "room--log"));
  EXPECT_FALSE(channel_pattern_matches("room-*-log", "room-12-logs"));
  EXPECT_TRUE(channel_pattern_matches("a*b*c", "axxbyyc"));
  EXPECT_TRUE(channel_pattern_matches("a*b*c", "abbbc"));
  EXPECT_FALSE(channel_pattern_matches("a*b*c", "axxbyy"));
}

TEST(ChannelPattern, DoubleStarCrossesSegments) {
  EXPECT_TRUE(channel_pattern_matches("**", ""));
  EXPECT_TRUE(channel_pattern_matches("**", "a:b:c"));
  EXPECT_TRUE(channel_pattern_matches("chat:**", "chat:a:b"));
  EXPECT_TRUE(channel_pattern_matches("chat:**", "chat:lobby"));
  EXPECT_FALSE(channel_pattern_matches("chat:**", "news:a"));
  EXPECT_TRUE(channel_pattern_matches("**:log", "a:b:log"));
  EXPECT_FALSE(channel_pattern_matches("**:log", "a:b:log2"));
  // Three or more stars mean the same as two.
  EXPECT_TRUE(channel_pattern_matches("chat:***", "chat:a:b"));
  // Mixed: `*` inside one segment after a `**` prefix.
  EXPECT_TRUE(channel_pattern_matches("**:*", "a:b:c"));
  EXPECT_TRUE(channel_pattern_matches("**:x*", "a:b:xy"));
  EXPECT_FALSE(channel_pattern_matches("**:x*", "a:b:xy:z"));
}

TEST(ChannelPattern, OverlongPatternNeverMatches) {
  const std::string long_literal(256, 'a');
  EXPECT_FALSE(channel_pattern_matches(long_literal, long_literal));
  EXPECT_FALSE(channel_pattern_matches(std::string(256, '*'), "x"));
  const std::string at_limit(255, 'a');
  EXPECT_TRUE(channel_pattern_matches(at_limit, at_limit));
}

// Backtracking matchers take exponential time on these; ours is linear in
// the channel for a bounded pattern.
TEST(ChannelPattern, PathologicalPatternsFinishQuickly) {
  const auto start = std::chrono::steady_clock::now();
  const std::string many_a(100'000, 'a');
  EXPECT_FALSE(channel_pattern_matches("*a*a*a*a*a*b", many_a));
  EXPECT_FALSE(channel_pattern_matches("**a**a**a**a**a**b", many_a));
  EXPECT_TRUE(channel_pattern_matches("*a*a*a*a*a*", many_a));
  std::string worst;
  for (int i = 0; i < 60; ++i) worst += "*a";
  worst += "*b";
  EXPECT_FALSE(channel_pattern_matches(worst, std::string(10'000, 'a')));
  std::string colons;
  for (int i = 0; i < 5000; ++i) colons += "a:";
  EXPECT_FALSE(channel_pattern_matches("**:*a*:b", colons));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::seconds(2));
}
