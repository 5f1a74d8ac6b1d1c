// The `duplex serve` binary with the SQLite engine: acknowledged publishes
// survive kill -9; after a restart offsets continue in the same epoch and a
// client recovers what it missed. SIGTERM exits 0 after telling clients 1001.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "hub_fixture.hpp"
#include "serve_process.hpp"

using namespace hub_test;

namespace {

// The API key of write_config's file.
std::string api_post(std::uint16_t port, const std::string& path, const std::string& body) {
  return http_body(http_post(port, path, body, "k"));
}


std::string write_config(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  const auto path = dir / "duplex.toml";
  std::ofstream(path) << "[engine]\ntype = \"sqlite\"\ndata_dir = \"" << (dir / "data").string()
                      << "\"\n[auth]\nhmac_secret = \"" << secret << "\"\n[api]\nkey = \"k\"\n"
                      << "[namespaces.chat]\nhistory_size = 1000\nrecovery = true\nallow_publish = true\n";
  return path.string();
}

std::uint64_t offset_of(const std::string& reply) {
  const auto p = reply.find("\"offset\":");
  return p == std::string::npos ? 0 : std::stoull(reply.substr(p + 9));
}
std::string epoch_of(const std::string& reply) {
  const auto p = reply.find("\"epoch\":\"");
  return p == std::string::npos ? std::string() : reply.substr(p + 9, reply.find('"', p + 9) - p - 9);
}

}  // namespace

TEST(HubDurability, AcknowledgedPublishesSurviveKill9AndClientsRecover) {
  const auto dir = std::filesystem::temp_directory_path() / ("duplex-durability-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  const std::string config = write_config(dir);
  std::string epoch;
  std::uint64_t seen = 0, acked = 0;
  {
    ServeProcess serve(config, (dir / "serve.log").string(), {"--log-level", "warn"});
    {
      Client c(serve.port(), "?token=" + token_for("a"));
      ASSERT_TRUE(c.wait_open());
      c.next("connected");
      auto r = c.call(1, R"({"type":"subscribe","id":1,"channel":"chat:d"})");
      epoch = r->str_at("/result/epoch");
      for (int i = 1; i <= 10; ++i) acked = offset_of(api_post(serve.port(), "/api/publish", R"({"channel":"chat:d","data":)" + std::to_string(i) + "}"));
      for (int i = 1; i <= 10; ++i) seen = c.next("message")->u64("offset");
      c.drop();
    }
    // The client is away; publishes go on and are acknowledged, then the node dies.
    for (int i = 11; i <= 200; ++i) {
      const std::string reply = api_post(serve.port(), "/api/publish", R"({"channel":"chat:d","data":)" + std::to_string(i) + "}");
      ASSERT_EQ(epoch_of(reply), epoch) << reply;
      acked = offset_of(reply);
    }
    const int status = serve.stop(SIGKILL);
    EXPECT_TRUE(WIFSIGNALED(status));
  }
  EXPECT_EQ(seen, 10u);
  EXPECT_EQ(acked, 200u);
  ServeProcess again(config, (dir / "again.log").string(), {"--log-level", "warn"});
  const std::string next = api_post(again.port(), "/api/publish", R"({"channel":"chat:d","data":201})");
  EXPECT_EQ(epoch_of(next), epoch) << "the epoch must survive a restart: " << next;
  EXPECT_EQ(offset_of(next), 201u) << next;
  Client c(again.port(), "?token=" + token_for("a"));
  ASSERT_TRUE(c.wait_open());
  c.next("connected");
  auto r = c.call(1, R"({"type":"subscribe","id":1,"channel":"chat:d","recover":true,"epoch":")" + epoch +
                         R"(","offset":)" + std::to_string(seen) + "}");
  ASSERT_TRUE(r->bool_at("/result/recovered")) << r->text;
  std::uint64_t expect = seen + 1;
  auto publications = r->array("/result/publications");
  for (auto p : publications) {
    std::uint64_t offset = 0;
    ASSERT_EQ(p["offset"].get(offset), simdjson::SUCCESS);
    ASSERT_EQ(offset, expect++);
  }
  EXPECT_EQ(expect, 202u);  // 11..201, none lost, none twice
  std::filesystem::remove_all(dir);
}

TEST(HubDurability, SigtermClosesClientsWith1001AndExitsZero) {
  const auto dir = std::filesystem::temp_directory_path() / ("duplex-sigterm-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  ServeProcess serve(write_config(dir), (dir / "serve.log").string(), {"--log-level", "warn"});
  Client c(serve.port(), "?token=" + token_for("a"));
  ASSERT_TRUE(c.wait_open());
  c.next("connected");
  const int status = serve.stop(SIGTERM);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(c.next("disconnect")->u64("code"), 1001u);
  EXPECT_TRUE(c.wait_closed());
  EXPECT_EQ(c.close_code(), 1001);
  std::filesystem::remove_all(dir);
}
