// Redis Cluster's key-to-slot rule (CRC16-XMODEM of the hash tag, mod
// 16384) against the cluster specification's vectors, and the parsers of
// the replies that name slot owners (CLUSTER SLOTS, MOVED / ASK), which
// are hostile input.
#include <hiredis/hiredis.h>

#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "engines/redis_cluster_slots.hpp"

namespace {

using namespace duplex::engines::detail;

// A reply parsed from RESP text by hiredis' own reader.
struct ParsedReply {
  explicit ParsedReply(const std::string& resp) {
    redisReader* reader = redisReaderCreate();
    redisReaderFeed(reader, resp.data(), resp.size());
    void* out = nullptr;
    if (redisReaderGetReply(reader, &out) == REDIS_OK) reply = static_cast<redisReply*>(out);
    redisReaderFree(reader);
  }
  ~ParsedReply() {
    if (reply) freeReplyObject(reply);
  }
  redisReply* reply = nullptr;
};

std::string bulk(const std::string& s) { return "$" + std::to_string(s.size()) + "\r\n" + s + "\r\n"; }
std::string node(const std::string& host, long port) {
  return "*3\r\n" + bulk(host) + ":" + std::to_string(port) + "\r\n" + bulk("0123456789abcdef");
}
std::string range(long first, long last, const std::string& master) {
  return "*3\r\n:" + std::to_string(first) + "\r\n:" + std::to_string(last) + "\r\n" + master;
}

TEST(RedisClusterSlots, Crc16IsXmodem) {
  EXPECT_EQ(crc16_xmodem("123456789"), 0x31C3);
  EXPECT_EQ(crc16_xmodem(""), 0);
}

TEST(RedisClusterSlots, KeySlotsMatchTheClusterSpecification) {
  EXPECT_EQ(cluster_key_slot("foo"), 12182);
  EXPECT_EQ(cluster_key_slot("bar"), 5061);
  EXPECT_EQ(cluster_key_slot("123456789"), 0x31C3 % 16384);
  EXPECT_EQ(cluster_key_slot("{user1000}.following"), cluster_key_slot("{user1000}.followers"));
  EXPECT_EQ(cluster_key_slot("{user1000}.following"), cluster_key_slot("user1000"));
}

TEST(RedisClusterSlots, HashTagRules) {
  EXPECT_EQ(cluster_hash_tag("{user1000}.following"), "user1000");
  EXPECT_EQ(cluster_hash_tag("foo{}{bar}"), "foo{}{bar}") << "an empty first tag: the whole key";
  EXPECT_EQ(cluster_hash_tag("foo{{bar}}zap"), "{bar") << "up to the first '}' after the first '{'";
  EXPECT_EQ(cluster_hash_tag("foo{bar}{zap}"), "bar") << "only the first tag counts";
  EXPECT_EQ(cluster_hash_tag("foo{bar"), "foo{bar") << "no closing brace";
  EXPECT_EQ(cluster_hash_tag("}foo{bar}"), "bar");
  EXPECT_EQ(cluster_key_slot("foo{}{bar}"), cluster_key_slot(std::string("foo{}{bar}")));
}

TEST(RedisClusterSlots, RedirectionsAreParsedFieldByField) {
  EXPECT_EQ(parse_cluster_redirect("MOVED 3999 127.0.0.1:6381"), (ClusterRedirect{false, 3999, {"127.0.0.1", 6381}}));
  EXPECT_EQ(parse_cluster_redirect("ASK 16383 ::1:7000"), (ClusterRedirect{true, 16383, {"::1", 7000}}));
  EXPECT_FALSE(parse_cluster_redirect("MOVED 16384 127.0.0.1:6381")) << "slot out of range";
  EXPECT_FALSE(parse_cluster_redirect("MOVED -1 127.0.0.1:6381"));
  EXPECT_FALSE(parse_cluster_redirect("MOVED 12 127.0.0.1:0"));
  EXPECT_FALSE(parse_cluster_redirect("MOVED 12 127.0.0.1:65536"));
  EXPECT_FALSE(parse_cluster_redirect("MOVED 12 127.0.0.1:+80"));
  EXPECT_FALSE(parse_cluster_redirect("MOVED 12 127.0.0.1"));
  EXPECT_FALSE(parse_cluster_redirect("MOVED 12 :6379")) << "no host";
  EXPECT_FALSE(parse_cluster_redirect("MOVED 12 bad\rhost:6379"));
  EXPECT_FALSE(parse_cluster_redirect("MOVED 12 " + std::string(300, 'a') + ":6379")) << "too long";
  EXPECT_FALSE(parse_cluster_redirect("MOVED 3999"));
  EXPECT_FALSE(parse_cluster_redirect("ERR unknown command"));
  EXPECT_FALSE(parse_cluster_redirect(""));
}

TEST(RedisClusterSlots, ClusterSlotsRepliesAreChecked) {
  const RedisNodeAddress asked{"10.0.0.9", 7009};
  std::string why;
  {
    ParsedReply parsed("*2\r\n" + range(0, 8191, node("127.0.0.1", 7000)) + range(8192, 16383, node("", 7001)));
    ASSERT_TRUE(parsed.reply);
    const auto ranges = parse_cluster_slots(parsed.reply, asked, why);
    ASSERT_TRUE(ranges) << why;
    ASSERT_EQ(ranges->size(), 2u);
    EXPECT_EQ((*ranges)[0], (SlotRange{0, 8191, {"127.0.0.1", 7000}}));
    EXPECT_EQ((*ranges)[1], (SlotRange{8192, 16383, {"10.0.0.9", 7001}})) << "an empty host: the node asked";
  }
  const std::string garbage[] = {
      ":1\r\n",                                                   // not an array
      "*1\r\n" + range(0, 16384, node("127.0.0.1", 7000)),        // slot out of range
      "*1\r\n" + range(10, 9, node("127.0.0.1", 7000)),           // last before first
      "*1\r\n" + range(0, 10, node("127.0.0.1", 0)),              // port 0
      "*1\r\n" + range(0, 10, node("bad host", 7000)),            // a host with a space
      "*1\r\n*2\r\n:0\r\n:10\r\n",                                // no master
      "*1\r\n*3\r\n:0\r\n:10\r\n" + bulk("127.0.0.1"),            // a master that is not an array
  };
  for (const auto& resp : garbage) {
    SCOPED_TRACE(resp.substr(0, 40));
    ParsedReply parsed(resp);
    ASSERT_TRUE(parsed.reply);
    why.clear();
    EXPECT_FALSE(parse_cluster_slots(parsed.reply, asked, why));
    EXPECT_FALSE(why.empty());
  }
}

}  // namespace
