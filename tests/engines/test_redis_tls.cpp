// The Redis engine over TLS, against redis-servers listening on a TLS port
// with throwaway certificates (redis_tls.hpp): the engine contract, refused
// certificates (wrong CA, wrong name), client certificates, an ACL user, a
// restart, and TLS to the sentinels.
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "duplex/engines/redis_engine.hpp"
#include "engine_contract_cases.hpp"
#include "engine_test_support.hpp"
#include "redis_sentinel.hpp"
#include "redis_tls.hpp"

namespace {

using namespace duplex::engines;
using namespace duplex::test;
using namespace std::chrono_literals;

// One set of certificates for the whole suite (making them takes a while).
const TestCertificates& certificates() {
  static const TestCertificates certs;
  return certs;
}

RedisEngineOptions tls_options(const std::string& address, std::function<std::int64_t()> clock = {}) {
  RedisEngineOptions options;
  options.config.addresses = {address};
  options.config.prefix = "t";
  options.config.subscriber_connections = 2;
  options.config.connect_timeout = 1000ms;
  options.config.command_timeout = 1500ms;
  options.config.reconnect_min = 50ms;
  options.config.reconnect_max = 300ms;
  options.config.presence_ttl = 3s;
  options.config.node_ttl = 2s;
  options.config.tls = true;
  options.config.tls_ca = certificates().ca();
  options.clock = std::move(clock);
  return options;
}

// The reason a publish is refused, waiting out the first connect attempt.
PublishResult refused_publish(RedisEngine& engine) {
  PublishResult result = publish_sync(engine, message("c", "1"));
  EXPECT_EQ(result.error, EngineErrc::unavailable) << result.message;
  EXPECT_FALSE(engine.healthy());
  EXPECT_EQ(engine.health().backends_up, 0u);
  return result;
}

class RedisTlsContract : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = std::make_unique<RedisEngine>(tls_options(redis_.tls_address(), clock_.function()));
    engine_->set_deliver(recorder_.callback());
    engine_->set_node_name("a");
  }
  void TearDown() override {
    if (engine_) engine_->stop();
  }
  std::string epoch(const std::string& channel) { return history_sync(*engine_, newest(channel, 0)).top.epoch; }

  RedisTlsServer redis_{certificates()};
  TestClock clock_;
  Recorder recorder_;
  std::unique_ptr<RedisEngine> engine_;
};

TEST_F(RedisTlsContract, HealthyOverTlsAndDeliversInOrder) {
  const PublishResult first = publish_sync(*engine_, message("warmup", "0"));
  ASSERT_EQ(first.error, EngineErrc::ok) << first.message;
  ASSERT_EQ(subscribe_sync(*engine_, "room"), EngineErrc::ok);
  for (int i = 1; i <= 5; ++i) {
    const PublishResult r = publish_sync(*engine_, message("room", std::to_string(i)));
    ASSERT_EQ(r.error, EngineErrc::ok) << r.message;
    EXPECT_EQ(r.position.offset, static_cast<std::uint64_t>(i));
  }
  EXPECT_TRUE(recorder_.wait_until([&] { return recorder_.offsets("room") == range(1, 5); }));
  EXPECT_TRUE(recorder_.wait_until([&] { return engine_->healthy(); }));
  // The plain port sees what went over TLS.
  EXPECT_EQ(redis_.plain().query({"LLEN", "t:hist:room"}), 5);
}

TEST_F(RedisTlsContract, HistoryKeepsDataPublisherAndTime) {
  contract::history_keeps_data_publisher_and_time(*engine_, clock_, R"({"text":"hi:there"})");
}

TEST_F(RedisTlsContract, HistoryWithoutSinceGivesNewestInOrderOrReversed) {
  HistoryResult all;
  ASSERT_NO_FATAL_FAILURE(all = contract::history_without_since_gives_newest_in_order_or_reversed(*engine_));
  EXPECT_TRUE(all.complete);
}

TEST_F(RedisTlsContract, HistoryIsTrimmedToSize) {
  const contract::EpochOf epoch_of = [this](const std::string& channel) { return epoch(channel); };
  ASSERT_NO_FATAL_FAILURE(contract::history_is_trimmed_to_size(*engine_, epoch_of));
}

TEST_F(RedisTlsContract, CompleteFlagWithSince) {
  const contract::EpochOf epoch_of = [this](const std::string& channel) { return epoch(channel); };
  contract::complete_flag_with_since(*engine_, epoch_of);
}

TEST_F(RedisTlsContract, HistoryTtlHidesExpiredPublications) {
  const contract::EpochOf epoch_of = [this](const std::string& channel) { return epoch(channel); };
  ASSERT_NO_FATAL_FAILURE(contract::history_ttl_hides_expired_publications(*engine_, clock_, epoch_of));
}

TEST_F(RedisTlsContract, IdempotencyHoldsWithinOneBurst) { contract::idempotency_holds_within_one_burst(*engine_); }

TEST_F(RedisTlsContract, PresenceListsEntriesAndAnnouncesRealChanges) {
  contract::presence_announced_through_the_fan_out(*engine_, recorder_);
}

TEST_F(RedisTlsContract, ConcurrentPublishersGetUniqueOffsetsDeliveredInOrder) {
  contract::concurrent_publishers_delivered_through_the_fan_out(*engine_, recorder_);
}

TEST_F(RedisTlsContract, CompletionsMayCallBackIntoTheEngine) {
  contract::completions_may_call_back_into_the_engine(*engine_);
}

TEST_F(RedisTlsContract, StopRacingPublishersCompletesEveryPublishExactlyOnce) {
  contract::stop_racing_publishers_completes_every_publish_exactly_once(*engine_);
  EXPECT_EQ(publish_sync(*engine_, message("race", "after")).error, EngineErrc::unavailable);
}

TEST_F(RedisTlsContract, StopFromACompletionCompletesTheRestOnce) {
  const PublishResult late = contract::stop_from_a_completion_completes_the_rest_once(*engine_);
  EXPECT_EQ(late.error, EngineErrc::unavailable) << "a publish after stop() is refused";
}

// Big payloads cross several TLS records both ways.
TEST_F(RedisTlsContract, LargePublicationsRoundTrip) {
  ASSERT_EQ(subscribe_sync(*engine_, "big"), EngineErrc::ok);
  const std::string data = "\"" + std::string(300 * 1024, 'x') + "\"";
  ASSERT_EQ(publish_sync(*engine_, message("big", data)).error, EngineErrc::ok);
  ASSERT_TRUE(recorder_.wait_until([&] { return recorder_.offsets("big").size() == 1; }));
  const HistoryResult history = history_sync(*engine_, newest("big", 1));
  ASSERT_EQ(history.publications.size(), 1u);
  EXPECT_EQ(history.publications[0]->data, data);
}

// Redis restarts (same port, same certificate): every connection comes back
// over TLS and the subscriber is told to resubscribe.
TEST_F(RedisTlsContract, RecoversAfterRedisRestarts) {
  ASSERT_EQ(subscribe_sync(*engine_, "live"), EngineErrc::ok);
  ASSERT_EQ(publish_sync(*engine_, message("live", "1")).error, EngineErrc::ok);
  ASSERT_TRUE(recorder_.wait_until([&] { return recorder_.offsets("live").size() == 1; }));
  redis_.plain().restart();
  ASSERT_TRUE(recorder_.wait_until([&] { return !recorder_.of_kind(ChannelEvent::Kind::resubscribe).empty(); }, 5s));
  engine_->node_unsubscribe("live");
  ASSERT_TRUE(recorder_.wait_until([&] { return engine_->healthy(); }, 5s));
  ASSERT_TRUE(subscribe_when_up(*engine_, "live", 5s));
  const PublishResult after = publish_sync(*engine_, message("live", "2"));
  ASSERT_EQ(after.error, EngineErrc::ok) << after.message;
  EXPECT_EQ(after.position.offset, 2u) << "the append-only file came back";
  EXPECT_TRUE(recorder_.wait_until([&] { return recorder_.offsets("live") == range(1, 2); }));
  EXPECT_GE(engine_->health().reconnects, 1u);
}

TEST(RedisTls, AWrongCaIsRefusedWithTheAddressAndTheReason) {
  RedisTlsServer redis(certificates());
  RedisEngineOptions options = tls_options(redis.tls_address());
  options.config.tls_ca = certificates().other_ca();
  RedisEngine engine(std::move(options));
  const PublishResult refused = refused_publish(engine);
  EXPECT_NE(refused.message.find("redis " + redis.tls_address()), std::string::npos) << refused.message;
  // Redis sends its CA with its certificate: a root we do not trust.
  EXPECT_NE(refused.message.find("TLS handshake failed: certificate verify failed (self-signed certificate in "
                                 "certificate chain)"),
            std::string::npos)
      << refused.message;
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(engine.healthy()) << "it keeps refusing";
  engine.stop();
}

// The server's own certificate as the only trusted one is not a CA: the
// chain has no trust anchor, whatever the server sends.
TEST(RedisTls, ASelfSignedServerIsRefusedUnlessVerificationIsOff) {
  const TestCertificates& certs = certificates();
  TempDir dir("duplex-selfsigned-");
  const std::string cert = dir.path() + "/self.pem";
  const std::string key = dir.path() + "/self.key";
  ASSERT_EQ(std::system(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
                         "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout " + key + " -out " + cert +
                         " >/dev/null 2>&1")
                            .c_str()),
            0);
  const int tls_port = free_loopback_port();
  RedisServer redis({"--tls-port", std::to_string(tls_port), "--tls-cert-file", cert, "--tls-key-file", key,
                     "--tls-ca-cert-file", certs.ca(), "--tls-auth-clients", "no"});
  const std::string address = "127.0.0.1:" + std::to_string(tls_port);
  {
    RedisEngine engine(tls_options(address));
    const PublishResult refused = refused_publish(engine);
    EXPECT_NE(refused.message.find("TLS handshake failed: certificate verify failed (self-signed certificate)"),
              std::string::npos)
        << refused.message;
    engine.stop();
  }
  RedisEngineOptions unverified = tls_options(address);
  unverified.config.tls_ca.clear();
  unverified.config.tls_verify = false;
  RedisEngine engine(std::move(unverified));
  const PublishResult published = publish_sync(engine, message("c", "1"));
  EXPECT_EQ(published.error, EngineErrc::ok) << published.message;
  engine.stop();
}

TEST(RedisTls, AHostNameTheCertificateDoesNotCarryIsRefused) {
  RedisTlsServer redis(certificates());
  {
    // The certificate names 127.0.0.1 and localhost, not this.
    RedisEngineOptions options = tls_options(redis.tls_address());
    options.config.tls_server_name = "redis.example.com";
    RedisEngine engine(std::move(options));
    const PublishResult refused = refused_publish(engine);
    EXPECT_NE(refused.message.find("TLS handshake failed: certificate verify failed (hostname mismatch)"),
              std::string::npos)
        << refused.message;
    engine.stop();
  }
  {
    // A name it does carry, reached by IP.
    RedisEngineOptions options = tls_options(redis.tls_address());
    options.config.tls_server_name = "localhost";
    RedisEngine engine(std::move(options));
    const PublishResult published = publish_sync(engine, message("c", "1"));
    EXPECT_EQ(published.error, EngineErrc::ok) << published.message;
    engine.stop();
  }
  {
    // By host name: localhost is verified as a name.
    RedisEngine engine(tls_options("localhost:" + std::to_string(redis.tls_port())));
    const PublishResult published = publish_sync(engine, message("c", "2"));
    EXPECT_EQ(published.error, EngineErrc::ok) << published.message;
    engine.stop();
  }
}

TEST(RedisTls, MutualTlsWorksWithTheClientCertificateAndFailsWithout) {
  RedisTlsServer redis(certificates(), true);
  {
    RedisEngineOptions options = tls_options(redis.tls_address());
    options.config.tls_cert = certificates().client_cert();
    options.config.tls_key = certificates().client_key();
    Recorder recorder;  // outlives the engine, whose thread delivers to it
    RedisEngine engine(std::move(options));
    engine.set_deliver(recorder.callback());
    ASSERT_EQ(publish_sync(engine, message("c", "1")).error, EngineErrc::ok);
    ASSERT_TRUE(recorder.wait_until([&] { return subscribe_sync(engine, "c") == EngineErrc::ok; }));
    ASSERT_EQ(publish_sync(engine, message("c", "2")).error, EngineErrc::ok);
    EXPECT_TRUE(recorder.wait_until([&] { return recorder.offsets("c").size() == 1; }));
    EXPECT_TRUE(recorder.wait_until([&] { return engine.healthy(); }));
    engine.stop();
  }
  RedisEngine without(tls_options(redis.tls_address()));
  const PublishResult refused = refused_publish(without);
  EXPECT_NE(refused.message.find("redis " + redis.tls_address() + " unavailable: "), std::string::npos)
      << refused.message;
  // TLS 1.3: the server's verdict arrives with the first reply (the PING).
  EXPECT_NE(refused.message.find("TLS: tlsv13 alert certificate required"), std::string::npos) << refused.message;
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(without.healthy());
  without.stop();
}

TEST(RedisTls, AclUserWithPasswordOverTls) {
  RedisTlsServer redis(certificates(), false,
                       {"--user", "default", "off", "--user", "alice", "on", ">pw-alice", "~*", "&*", "+@all"});
  {
    RedisEngineOptions options = tls_options(redis.tls_address());
    options.config.username = "alice";
    options.config.password = "pw-alice";
    Recorder recorder;  // outlives the engine, whose thread delivers to it
    RedisEngine engine(std::move(options));
    engine.set_deliver(recorder.callback());
    ASSERT_EQ(publish_sync(engine, message("c", "1")).error, EngineErrc::ok);
    ASSERT_TRUE(recorder.wait_until([&] { return subscribe_sync(engine, "c") == EngineErrc::ok; }));
    ASSERT_EQ(publish_sync(engine, message("c", "2")).error, EngineErrc::ok);
    EXPECT_TRUE(recorder.wait_until([&] { return recorder.offsets("c").size() == 1; })) << "pub/sub logged in too";
    EXPECT_TRUE(recorder.wait_until([&] { return engine.healthy(); }));
    engine.stop();
  }
  RedisEngineOptions wrong = tls_options(redis.tls_address());
  wrong.config.username = "alice";
  wrong.config.password = "not-the-password";
  RedisEngine refused_engine(std::move(wrong));
  const PublishResult refused = refused_publish(refused_engine);
  EXPECT_NE(refused.message.find("AUTH as user \"alice\" refused"), std::string::npos) << refused.message;
  EXPECT_EQ(refused.message.find("not-the-password"), std::string::npos) << refused.message;
  refused_engine.stop();
}

TEST(RedisTls, UnusableFilesAreRefusedWhenTheEngineIsMade) {
  TempDir dir("duplex-badtls-");
  const std::string garbage = dir.path() + "/garbage.pem";
  ASSERT_EQ(std::system(("echo 'not a PEM file' > " + garbage).c_str()), 0);
  RedisEngineOptions bad_ca = tls_options("127.0.0.1:1");
  bad_ca.config.tls_ca = garbage;
  try {
    RedisEngine engine(std::move(bad_ca));
    ADD_FAILURE() << "a CA bundle without a certificate was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("engine.redis.tls_ca = \"" + garbage + "\""), std::string::npos) << e.what();
  }
  RedisEngineOptions bad_key = tls_options("127.0.0.1:1");
  bad_key.config.tls_cert = certificates().client_cert();
  bad_key.config.tls_key = certificates().server_key();
  try {
    RedisEngine engine(std::move(bad_key));
    ADD_FAILURE() << "a key of another certificate was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("engine.redis.tls_key"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("does not match the certificate"), std::string::npos) << e.what();
  }
}

}  // namespace

namespace {

// Sentinel over TLS: the sentinel's TLS port is asked for the master, which
// it monitors (and announces) on the master's TLS port (tls-replication).
TEST(RedisTls, SentinelsAndTheMasterOverTls) {
  const TestCertificates& certs = certificates();
  RedisTlsServer master(certs, false, {"--tls-replication", "yes"});
  const int sentinel_tls_port = free_loopback_port();
  const std::string tls_config = "tls-port " + std::to_string(sentinel_tls_port) + "\ntls-cert-file " +
                                 certs.server_cert() + "\ntls-key-file " + certs.server_key() + "\ntls-ca-cert-file " +
                                 certs.ca() + "\ntls-auth-clients no\ntls-replication yes\n";
  RedisSentinel sentinel(RedisSentinelGroup::kMaster, master.tls_port(), tls_config, 1);
  RedisEngineOptions options = tls_options("");
  options.config.addresses.clear();
  options.config.sentinels = {"127.0.0.1:" + std::to_string(sentinel_tls_port)};
  options.config.sentinel_master = RedisSentinelGroup::kMaster;
  Recorder recorder;  // outlives the engine, whose thread delivers to it
  RedisEngine engine(std::move(options));
  engine.set_deliver(recorder.callback());
  ASSERT_TRUE(recorder.wait_until([&] { return subscribe_sync(engine, "c") == EngineErrc::ok; }, 10s));
  const PublishResult published = publish_sync(engine, message("c", "1"));
  ASSERT_EQ(published.error, EngineErrc::ok) << published.message;
  EXPECT_TRUE(recorder.wait_until([&] { return recorder.offsets("c").size() == 1; }));
  EXPECT_EQ(master.plain().query({"LLEN", "t:hist:c"}), 1) << "stored on the master found through the sentinel";
  engine.stop();
}

}  // namespace
