// The docs a new user follows: every relative link in README.md and docs/*.md
// names a file inside the repository (a link out of it is broken in every clone).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

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
