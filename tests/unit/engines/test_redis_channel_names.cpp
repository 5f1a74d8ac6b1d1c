// The Redis engine's names for a channel's keys and pub/sub channel, and
// the reverse mapping applied to names received from Redis (hostile input):
// every name the engine makes maps back to its channel, anything else to
// nothing.
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "engines/redis_channel_names.hpp"
#include "engines/redis_cluster_slots.hpp"

namespace {

using duplex::engines::detail::cluster_key_slot;
using duplex::engines::detail::RedisChannelNames;

const RedisChannelNames standalone{"duplex", false, false};
const RedisChannelNames global{"duplex", true, false};
const RedisChannelNames sharded{"duplex", true, true};

TEST(RedisChannelNames, StandaloneAndGlobalClusterPubSubNamesArePrefixed) {
  EXPECT_EQ(standalone.key("room", "meta"), "duplex:meta:room");
  EXPECT_EQ(standalone.pubsub("room"), "duplex:ch:room");
  EXPECT_EQ(global.key("room", "meta"), "{duplex:4:room}:meta");
  EXPECT_EQ(global.pubsub("room"), "duplex:ch:room");
}

TEST(RedisChannelNames, ShardedPubSubNameSharesTheKeysSlot) {
  EXPECT_EQ(sharded.pubsub("room"), "{duplex:4:room}:ch");
  for (const std::string channel : {"room", "a:1", "chat:{x}", "weird}tag", ""}) {
    EXPECT_EQ(cluster_key_slot(sharded.pubsub(channel)), cluster_key_slot(sharded.key(channel, "meta"))) << channel;
    EXPECT_EQ(cluster_key_slot(sharded.pubsub(channel)), cluster_key_slot(sharded.key(channel, "hist"))) << channel;
  }
}

TEST(RedisChannelNames, EveryNameMapsBackToItsChannel) {
  const std::string channels[] = {"room", "a:1", "chat:{x}", "weird}tag", "}:ch", "", std::string(300, 'x')};
  for (const std::string& channel : channels) {
    EXPECT_EQ(sharded.channel_of(sharded.pubsub(channel)), channel);
    EXPECT_EQ(global.channel_of(global.pubsub(channel)), channel);
    EXPECT_EQ(standalone.channel_of(standalone.pubsub(channel)), channel);
  }
}

TEST(RedisChannelNames, OtherNamesMapToNoChannel) {
  for (const std::string name : {"duplex:node:a", "other:ch:room", "{duplex:4:room}:meta", "{duplex:5:room}:ch",
                                 "{duplex:3:room}:ch", "{duplex::room}:ch", "{duplex:x:room}:ch", "{duplex:4:room}",
                                 "{duplex:4", "{duplex:99999999999999999999:room}:ch", "{other:4:room}:ch", ""}) {
    EXPECT_EQ(sharded.channel_of(name), std::nullopt) << name;
  }
  EXPECT_EQ(global.channel_of("{duplex:4:room}:ch"), std::nullopt);
  EXPECT_EQ(standalone.channel_of("duplex:node:a"), std::nullopt);
}

}  // namespace
