// [engine] broker and history: which pairs are offered, what each resolves
// to, why the others are refused, and how the keys meet engine.type in a file.
#include "duplex/config/engine_composition.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>

#include "duplex/config/config_file.hpp"
#include "duplex/engines/factory.hpp"

using namespace duplex;

namespace {

// A config file in the temp directory, removed at the end of the test.
class ConfigFile {
 public:
  explicit ConfigFile(const std::string& text)
      : path_((std::filesystem::temp_directory_path() /
               ("duplex-composition-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++) + ".toml"))
                  .string()) {
    std::ofstream(path_) << text;
  }
  ~ConfigFile() { std::filesystem::remove(path_); }
  ConfigFile(const ConfigFile&) = delete;
  ConfigFile& operator=(const ConfigFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::string path_;
};

std::string load_error(const std::string& text) {
  ConfigFile file(text);
  try {
    hub::load_config_file(file.path());
  } catch (const std::runtime_error& e) {
    std::string message = e.what();
    // The file's path is the same prefix on every message.
    if (message.rfind(file.path(), 0) == 0) message.erase(0, file.path().size());
    return message;
  }
  return "";
}

}  // namespace

TEST(EngineComposition, EachOfferedPairIsOneEngine) {
  using Pair = std::pair<std::string, std::string>;
  using Engine = std::pair<std::string, std::string>;  // type, nats.storage
  const std::map<Pair, Engine> offered = {
      {{"local", "sqlite"}, {"sqlite", ""}},     {{"local", "memory"}, {"memory", ""}},
      {{"redis", "redis"}, {"redis", ""}},       {{"nats", "redis"}, {"nats", "redis"}},
      {{"nats", "jetstream"}, {"nats", "jetstream"}},
      // One side empty: it follows from the other.
      {{"local", ""}, {"sqlite", ""}},           {{"redis", ""}, {"redis", ""}},
      {{"nats", ""}, {"nats", "redis"}},         {{"", "sqlite"}, {"sqlite", ""}},
      {{"", "memory"}, {"memory", ""}},          {{"", "redis"}, {"redis", ""}},
      {{"", "jetstream"}, {"nats", "jetstream"}},
  };
  for (const char* broker : {"", "local", "redis", "nats"}) {
    for (const char* history : {"", "sqlite", "memory", "redis", "jetstream"}) {
      SCOPED_TRACE(std::string("broker = \"") + broker + "\", history = \"" + history + "\"");
      const auto result = hub::compose_engine(broker, history);
      const auto it = offered.find({broker, history});
      if (it != offered.end()) {
        ASSERT_TRUE(result.composition) << result.problem;
        EXPECT_EQ(result.composition->type, it->second.first);
        EXPECT_EQ(result.composition->nats_storage, it->second.second);
        EXPECT_EQ(result.problem, "");
      } else if (*broker == '\0' && *history == '\0') {
        EXPECT_FALSE(result.composition);
        EXPECT_EQ(result.problem, "") << "nothing set is not a problem: type decides";
      } else {
        EXPECT_FALSE(result.composition);
        EXPECT_NE(result.problem, "") << "a refused pair says why";
      }
    }
  }
}

TEST(EngineComposition, RefusedPairsSayWhyAndWhatToSetInstead) {
  EXPECT_EQ(hub::compose_engine("local", "redis").problem,
            "engine.broker = \"local\" with engine.history = \"redis\" is not offered: a local broker delivers within "
            "this node only, so the other nodes sharing that history would never see its publications; use broker = "
            "\"redis\" or \"nats\"");
  EXPECT_EQ(hub::compose_engine("nats", "sqlite").problem,
            "engine.broker = \"nats\" with engine.history = \"sqlite\" is not offered: \"sqlite\" history lives in one "
            "node, so the other nodes could not recover what they missed; use history = \"redis\" (or \"jetstream\" "
            "with broker = \"nats\")");
  EXPECT_EQ(hub::compose_engine("redis", "jetstream").problem,
            "engine.broker = \"redis\" with engine.history = \"jetstream\" is not offered: NATS alone does both; use "
            "broker = \"nats\" with history = \"jetstream\"");
}

TEST(EngineComposition, LoadingAFileSetsTheEngineTypeAndNatsStorage) {
  ConfigFile jetstream("[engine]\nbroker = \"nats\"\nhistory = \"jetstream\"\n");
  auto config = hub::load_config_file(jetstream.path());
  EXPECT_EQ(config.engine.type, "nats");
  EXPECT_EQ(config.engine.nats.storage, "jetstream");
  EXPECT_EQ(config.engine.broker, "nats");
  EXPECT_EQ(config.engine.history, "jetstream");

  ConfigFile nats_on_redis("[engine]\nbroker = \"nats\"\n");
  config = hub::load_config_file(nats_on_redis.path());
  EXPECT_EQ(config.engine.type, "nats");
  EXPECT_EQ(config.engine.nats.storage, "redis");

  // What the factory builds from it: a one-node composition, no server needed.
  ConfigFile memory("[engine]\nbroker = \"local\"\nhistory = \"memory\"\n");
  config = hub::load_config_file(memory.path());
  EXPECT_EQ(engines::make_engine(config.engine)->name(), "memory");
}

TEST(EngineComposition, TheComposedEngineIsValidatedAsThatEngine) {
  // broker = "redis" makes this a Redis engine, so its [engine.redis] rules apply.
  EXPECT_EQ(load_error("[engine]\nbroker = \"redis\"\n[engine.redis]\naddresses = []\n"),
            ": invalid configuration: [engine.redis] addresses must list at least one host:port");
  EXPECT_EQ(load_error("[engine]\nhistory = \"jetstream\"\n[engine.nats]\nurl = \"tcp://x:4222\"\n"),
            ": invalid configuration: [engine.nats] url must start with nats://, not \"tcp://x:4222\"");
}

TEST(EngineComposition, RefusedPairFailsLoadingAndNamesTheFile) {
  EXPECT_EQ(load_error("[engine]\nbroker = \"redis\"\nhistory = \"jetstream\"\n"),
            ": engine.broker = \"redis\" with engine.history = \"jetstream\" is not offered: NATS alone does both; use "
            "broker = \"nats\" with history = \"jetstream\"");
}

TEST(EngineComposition, TypeAndNatsStorageBesideThemMustAgree) {
  // Agreeing: accepted, as a reference file with its type edited to match reads.
  ConfigFile agreeing("[engine]\ntype = \"nats\"\nbroker = \"nats\"\nhistory = \"jetstream\"\n"
                      "[engine.nats]\nstorage = \"jetstream\"\n");
  EXPECT_EQ(hub::load_config_file(agreeing.path()).engine.nats.storage, "jetstream");
  // engine.nats.storage does not matter to a Redis engine, whatever it says.
  ConfigFile redis("[engine]\nbroker = \"redis\"\n[engine.nats]\nstorage = \"jetstream\"\n");
  EXPECT_EQ(hub::load_config_file(redis.path()).engine.type, "redis");

  // Contradicting: an error at the contradicting key's line and column.
  EXPECT_EQ(load_error("[engine]\ntype = \"sqlite\"\nbroker = \"redis\"\n"),
            ":2:8: engine.type = \"sqlite\" contradicts engine.broker = \"redis\" (engine.type \"redis\"): remove "
            "engine.type");
  EXPECT_EQ(load_error("[engine]\nbroker = \"nats\"\nhistory = \"jetstream\"\n[engine.nats]\nstorage = \"redis\"\n"),
            ":5:11: engine.nats.storage = \"redis\" contradicts engine.broker = \"nats\" with engine.history = "
            "\"jetstream\" (engine.nats.storage \"jetstream\"): remove engine.nats.storage");
  EXPECT_EQ(load_error("[engine]\nhistory = \"memory\"\ntype = \"redis\"\n"),
            ":3:8: engine.type = \"redis\" contradicts engine.history = \"memory\" (engine.type \"memory\"): remove "
            "engine.type");
}
