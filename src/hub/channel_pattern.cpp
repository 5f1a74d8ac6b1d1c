#include "duplex/hub/channel_pattern.hpp"

#include <bitset>

namespace duplex::hub {

namespace {
enum class Step : unsigned char { literal, segment_wildcard, any_wildcard };

struct PatternStep {
  Step kind;
  char byte;  // for literal
};
}  // namespace

// A set-of-states simulation of the pattern automaton: every state (a
// position between steps) advances in lock step over the channel, so the cost
// is O(pattern × channel) whatever the pattern looks like.
bool channel_pattern_matches(std::string_view pattern, std::string_view channel) {
  if (pattern.size() > max_channel_pattern_length) return false;

  PatternStep steps[max_channel_pattern_length];
  std::size_t count = 0;
  for (std::size_t i = 0; i < pattern.size();) {
    if (pattern[i] != '*') {
      steps[count++] = {Step::literal, pattern[i]};
      ++i;
      continue;
    }
    std::size_t stars = 0;
    while (i < pattern.size() && pattern[i] == '*') ++stars, ++i;
    steps[count++] = {stars == 1 ? Step::segment_wildcard : Step::any_wildcard, '\0'};
  }

  // active[i]: the channel prefix read so far can end right before step i.
  using States = std::bitset<max_channel_pattern_length + 1>;
  // Wildcards match the empty run, so reaching one also reaches the next step.
  auto close_over_wildcards = [&](States& states) {
    for (std::size_t i = 0; i < count; ++i) {
      if (states[i] && steps[i].kind != Step::literal) states[i + 1] = true;
    }
  };

  States active;
  active[0] = true;
  close_over_wildcards(active);
  for (const char c : channel) {
    States next;
    bool any = false;
    for (std::size_t i = 0; i < count; ++i) {
      if (!active[i]) continue;
      switch (steps[i].kind) {
        case Step::literal:
          if (steps[i].byte == c) next[i + 1] = any = true;
          break;
        case Step::segment_wildcard:
          if (c != ':') next[i] = any = true;
          break;
        case Step::any_wildcard:
          next[i] = any = true;
          break;
      }
    }
    if (!any) return false;
    close_over_wildcards(next);
    active = next;
  }
  return active[count];
}

}  // namespace duplex::hub
