// The docs a new user follows: every relative link in README.md and docs/*.md
// names a file inside the repository (a link out of it is broken in every
// clone); the Grafana dashboard in docs/grafana queries only what /metrics
// exposes, the way its type allows, and shows every metric there is.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "hub_fixture.hpp"
#include "../common/eventually.hpp"

namespace {

namespace fs = std::filesystem;

// The page without its fenced code blocks: a lambda's `[](auto& c)` is no link.
std::string prose_of(const std::string& markdown) {
  std::string prose;
  bool in_code = false;
  std::istringstream lines(markdown);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("```") != std::string::npos) {
      in_code = !in_code;
      continue;
    }
    if (!in_code) prose += line + '\n';
  }
  return prose;
}

std::vector<std::string> relative_links(const std::string& page) {
  const std::string markdown = prose_of(page);
  std::vector<std::string> links;
  for (std::size_t at = markdown.find("]("); at != std::string::npos; at = markdown.find("](", at + 2)) {
    const std::size_t end = markdown.find(')', at + 2);
    if (end == std::string::npos) break;
    std::string target = markdown.substr(at + 2, end - at - 2);
    if (target.empty() || target[0] == '#' || target.find("://") != std::string::npos ||
        target.rfind("mailto:", 0) == 0)
      continue;
    target = target.substr(0, target.find('#'));
    links.push_back(target);
  }
  return links;
}

}  // namespace

TEST(Docs, RelativeLinksNameFilesInsideTheRepository) {
  const fs::path root = fs::canonical(DUPLEX_SOURCE_DIR);
  std::vector<fs::path> pages = {root / "README.md"};
  for (const auto& entry : fs::directory_iterator(root / "docs"))
    if (entry.path().extension() == ".md") pages.push_back(entry.path());
  std::size_t checked = 0;
  for (const auto& page : pages) {
    std::ifstream in(page);
    std::stringstream text;
    text << in.rdbuf();
    for (const auto& link : relative_links(text.str())) {
      const fs::path target = fs::weakly_canonical(page.parent_path() / link);
      const std::string shown = page.lexically_relative(root).string() + ": " + link;
      EXPECT_TRUE(fs::exists(target)) << shown << " does not exist";
      EXPECT_EQ(target.string().rfind(root.string() + "/", 0), 0u) << shown << " is outside the repository";
      ++checked;
    }
  }
  EXPECT_GT(checked, 10u);  // the parser found the links at all
}

// ---- docs/grafana/duplex-dashboard.json against /metrics ---------------------------

namespace {

// What a scrape exposes: family types (from # TYPE), sample names (a
// histogram's _bucket, _sum, _count) and label names.
struct Exposed {
  std::map<std::string, std::string> types;
  std::set<std::string> samples;
  std::set<std::string> labels;
};

Exposed exposed_by(const std::string& text) {
  Exposed e;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) == 0) {
      std::istringstream words(line.substr(7));
      std::string name, type;
      words >> name >> type;
      e.types[name] = type;
      continue;
    }
    if (line.empty() || line[0] == '#') continue;
    const std::size_t name_end = line.find_first_of("{ ");
    e.samples.insert(line.substr(0, name_end));
    if (line[name_end] != '{') continue;
    // name="value" pairs; values may hold escaped quotes.
    for (std::size_t at = name_end + 1; at < line.size() && line[at] != '}';) {
      const std::size_t eq = line.find('=', at);
      e.labels.insert(line.substr(at, eq - at));
      std::size_t v = eq + 2;
      while (v < line.size() && line[v] != '"') v += line[v] == '\\' ? 2 : 1;
      at = v + 1;
      if (at < line.size() && line[at] == ',') ++at;
    }
  }
  return e;
}

// The PromQL of the dashboard: every panel target's expr, the variables' query and definition.
void collect_queries(simdjson::dom::element element, std::vector<std::string>& out) {
  simdjson::dom::array array;
  if (element.get(array) == simdjson::SUCCESS) {
    for (simdjson::dom::element item : array) collect_queries(item, out);
    return;
  }
  simdjson::dom::object object;
  if (element.get(object) != simdjson::SUCCESS) return;
  for (simdjson::dom::key_value_pair field : object) {
    const std::string_view key = field.key;
    std::string_view text;
    if ((key == "expr" || key == "query" || key == "definition") && field.value.get(text) == simdjson::SUCCESS)
      out.emplace_back(text);
    else
      collect_queries(field.value, out);
  }
}

using test_support::eventually;

}  // namespace

TEST(Docs, GrafanaDashboardQueriesOnlyMetricsTheServerExposes) {
  using namespace hub_test;
  Server server;
  // Traffic, so that the labelled families have samples: a namespace's
  // publication, a delivery, a close code.
  {
    auto alice = connect_as(server, "alice");
    ASSERT_FALSE(alice->call(1, R"({"type":"subscribe","id":1,"channel":"chat:room"})")->has("/error"));
    ASSERT_NE(http_post(server.port(), "/api/publish", R"({"channel":"chat:room","data":1})").find(" 200 "), std::string::npos);
    alice->next("message");
  }
  std::string text;
  ASSERT_TRUE(eventually([&] {
    text = http_body(http_get(server.port(), "/metrics"));
    return text.find("duplex_sessions_closed_total{code=") != std::string::npos;
  })) << text;
  const Exposed exposed = exposed_by(text);
  ASSERT_GT(exposed.types.size(), 20u) << text;

  const std::string path = std::string(DUPLEX_SOURCE_DIR) + "/docs/grafana/duplex-dashboard.json";
  simdjson::dom::parser parser;
  simdjson::dom::element dashboard;
  const auto error = parser.load(path).get(dashboard);
  ASSERT_EQ(error, simdjson::SUCCESS) << path << ": " << simdjson::error_message(error);
  std::vector<std::string> queries;
  collect_queries(dashboard, queries);
  ASSERT_GE(queries.size(), 30u) << path << ": the parser found the queries at all";

  const std::regex metric_name(R"(duplex_[a-z0-9_]+)");
  const std::regex counter_function(R"((rate|irate|increase)\(\s*(duplex_[a-z0-9_]+))");
  const std::regex grouping(R"(\b(by|on|without|ignoring)\s*\(([^)]*)\))");
  const auto histogram_of = [&](const std::string& name) {
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s(suffix);
      if (name.size() > s.size() && name.ends_with(s)) {
        const auto it = exposed.types.find(name.substr(0, name.size() - s.size()));
        if (it != exposed.types.end() && it->second == "histogram") return it->first;
      }
    }
    return std::string();
  };
  std::set<std::string> shown;  // families the dashboard queries
  for (const auto& query : queries) {
    for (auto m = std::sregex_iterator(query.begin(), query.end(), metric_name); m != std::sregex_iterator(); ++m) {
      const std::string name = m->str();
      EXPECT_TRUE(exposed.samples.count(name) || exposed.types.count(name))
          << path << " queries " << name << ", which /metrics does not expose: " << query;
      const std::string histogram = histogram_of(name);
      shown.insert(histogram.empty() ? name : histogram);
    }
    for (auto m = std::sregex_iterator(query.begin(), query.end(), counter_function); m != std::sregex_iterator(); ++m) {
      const std::string name = (*m)[2].str();
      const auto type = exposed.types.find(name);
      EXPECT_TRUE((type != exposed.types.end() && type->second == "counter") || !histogram_of(name).empty())
          << path << ": " << (*m)[1].str() << "() of " << name << ", which is not a counter: " << query;
    }
    for (auto m = std::sregex_iterator(query.begin(), query.end(), grouping); m != std::sregex_iterator(); ++m) {
      std::istringstream labels((*m)[2].str());
      for (std::string label; std::getline(labels, label, ',');) {
        label.erase(0, label.find_first_not_of(" "));
        label.erase(label.find_last_not_of(" ") + 1);
        if (label.empty() || label == "instance" || label == "job") continue;  // added by Prometheus
        EXPECT_TRUE(exposed.labels.count(label)) << path << " groups by label " << label
                                                 << ", which no duplex metric has: " << query;
      }
    }
  }
  for (const auto& [family, type] : exposed.types)
    EXPECT_TRUE(shown.count(family)) << family << " (" << type << ") is exposed by /metrics but not on the dashboard: "
                                     << "add it to " << path;
}
