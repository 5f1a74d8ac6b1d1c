// Incremental UTF-8 validation against a straightforward reference decoder,
// over every short sequence, every chunk split, and the SIMD path.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "duplex/protocol/utf8.hpp"

using namespace duplex::protocol;

namespace {

// Reference: Unicode Table 3-7 (well-formed byte sequences), decoded the
// slow way. Returns the length of the longest valid prefix ending on a code
// point boundary, and whether the whole input is valid; `prefix_ok` is false
// as soon as no continuation could make the input valid.
struct RefResult {
  bool valid;
  bool prefix_ok;  // input is a prefix of some valid UTF-8 string
};

RefResult reference(const std::uint8_t* s, std::size_t n) {
  std::size_t i = 0;
  while (i < n) {
    const std::uint8_t b = s[i];
    std::size_t len;
    std::uint32_t cp;
    if (b < 0x80) {
      ++i;
      continue;
    } else if ((b & 0xE0) == 0xC0) {
      len = 2;
      cp = b & 0x1F;
    } else if ((b & 0xF0) == 0xE0) {
      len = 3;
      cp = b & 0x0F;
    } else if ((b & 0xF8) == 0xF0) {
      len = 4;
      cp = b & 0x07;
    } else {
      return {false, false};
    }
    std::size_t j = 1;
    for (; j < len && i + j < n; ++j) {
      if ((s[i + j] & 0xC0) != 0x80) return {false, false};
      cp = (cp << 6) | (s[i + j] & 0x3F);
    }
    if (j < len) {
      // Truncated: can some completion still be a valid scalar value?
      const unsigned k = static_cast<unsigned>(6 * (len - j));
      std::uint32_t lo = cp << k, hi = (cp << k) | ((1u << k) - 1);
      const std::uint32_t min_for_len = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
      lo = std::max(lo, min_for_len);
      hi = std::min<std::uint32_t>(hi, 0x10FFFF);
      if (lo > hi || (lo >= 0xD800 && hi <= 0xDFFF)) return {false, false};
      return {false, true};
    }
    const bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return {false, false};
    i += len;
  }
  return {true, true};
}

RefResult reference(std::string_view s) {
  return reference(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

const std::uint8_t* u8(std::string_view s) { return reinterpret_cast<const std::uint8_t*>(s.data()); }

// Feeds `s` in the given pieces; returns {feed never failed, complete()}.
std::pair<bool, bool> feed_pieces(std::string_view s, const std::vector<std::size_t>& cuts) {
  Utf8Validator v;
  std::size_t at = 0;
  for (std::size_t i = 0; i <= cuts.size(); ++i) {
    const std::size_t end = i < cuts.size() ? cuts[i] : s.size();
    // Exactly sized copy so sanitizers catch over-reads.
    std::vector<std::uint8_t> piece(s.begin() + static_cast<std::ptrdiff_t>(at), s.begin() + static_cast<std::ptrdiff_t>(end));
    if (!v.feed(piece.data(), piece.size())) return {false, false};
    at = end;
  }
  return {true, v.complete()};
}

void check_against_reference(std::string_view s) {
  const RefResult ref = reference(s);
  EXPECT_EQ(is_valid_utf8(u8(s), s.size()), ref.valid) << testing::PrintToString(std::string(s));
  Utf8Validator v;
  const bool fed = v.feed(u8(s), s.size());
  EXPECT_EQ(fed, ref.prefix_ok) << testing::PrintToString(std::string(s));
  if (fed) {
    EXPECT_EQ(v.complete(), ref.valid) << testing::PrintToString(std::string(s));
  }
}

std::string mixed_text(std::size_t approx) {
  const char* pieces[] = {"a", "Z", " ", "\xC3\xA9", "\xC2\x80", "\xDF\xBF", "\xE0\xA0\x80", "\xE2\x82\xAC",
                          "\xED\x9F\xBF", "\xEE\x80\x80", "\xEF\xBF\xBF", "\xF0\x90\x80\x80", "\xF0\x9F\x98\x80",
                          "\xF3\xBF\xBF\xBF", "\xF4\x8F\xBF\xBF", "0123456789"};
  std::string s;
  std::mt19937 rng(5);
  while (s.size() < approx) s += pieces[rng() % std::size(pieces)];
  return s;
}

}  // namespace

TEST(Utf8Reference, SelfCheck) {
  EXPECT_TRUE(reference("\xE2\x82\xAC").valid);
  EXPECT_FALSE(reference("\xE0\x80\x80").prefix_ok);
  EXPECT_FALSE(reference("\xE0\x80").prefix_ok);
  EXPECT_TRUE(reference("\xE0\xA0").prefix_ok);
  EXPECT_FALSE(reference("\xED\xA0").prefix_ok);
  EXPECT_FALSE(reference("\xF4\x90").prefix_ok);
  EXPECT_TRUE(reference("\xF4\x8F").prefix_ok);
}

TEST(Utf8Validator, EmptyAndAscii) {
  Utf8Validator v;
  EXPECT_TRUE(v.feed(nullptr, 0));
  EXPECT_TRUE(v.complete());
  std::string ascii;
  for (int c = 0; c < 128; ++c) ascii.push_back(static_cast<char>(c));
  EXPECT_TRUE(is_valid_utf8(u8(ascii), ascii.size()));
  EXPECT_TRUE(is_valid_utf8(nullptr, 0));
}

TEST(Utf8Validator, EverySingleByte) {
  for (int b = 0; b < 256; ++b) {
    const std::string s(1, static_cast<char>(b));
    check_against_reference(s);
    check_against_reference(std::string(40, 'x') + s);  // SIMD path with the byte last
    check_against_reference(s + std::string(40, 'x'));  // SIMD path with the byte first
  }
}

TEST(Utf8Validator, EveryTwoByteSequence) {
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      std::string s{static_cast<char>(a), static_cast<char>(b)};
      check_against_reference(s);
    }
  }
}

TEST(Utf8Validator, EveryThreeByteSequenceWithMultiByteLead) {
  for (int a = 0xC0; a < 0x100; ++a) {
    for (int b = 0; b < 256; ++b) {
      for (int c = 0; c < 256; ++c) {
        const char s[3] = {static_cast<char>(a), static_cast<char>(b), static_cast<char>(c)};
        const RefResult ref = reference(u8(std::string_view(s, 3)), 3);
        Utf8Validator v;
        const bool fed = v.feed(u8(std::string_view(s, 3)), 3);
        ASSERT_EQ(fed, ref.prefix_ok) << a << " " << b << " " << c;
        if (fed) {
          ASSERT_EQ(v.complete(), ref.valid) << a << " " << b << " " << c;
        }
      }
    }
  }
}

TEST(Utf8Validator, FourByteSequencesAtBoundaries) {
  const int interesting[] = {0x00, 0x41, 0x7F, 0x80, 0x81, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xE0, 0xF0, 0xFF};
  for (int a = 0xE0; a < 0x100; ++a) {
    for (int b : interesting) {
      for (int c : interesting) {
        for (int d : interesting) {
          const std::string s{static_cast<char>(a), static_cast<char>(b), static_cast<char>(c), static_cast<char>(d)};
          check_against_reference(s);
          // Every split of the 4 bytes agrees with feeding them at once.
          for (std::size_t cut = 1; cut < 4; ++cut) {
            const RefResult ref = reference(s);
            const auto [fed, complete] = feed_pieces(s, {cut});
            ASSERT_EQ(fed, ref.prefix_ok) << testing::PrintToString(s) << " cut " << cut;
            if (fed) {
              ASSERT_EQ(complete, ref.valid);
            }
          }
          // The SIMD path: a long valid prefix, then the sequence at the end.
          check_against_reference(std::string(33, 'a') + s);
          check_against_reference(std::string(30, 'a') + s + "bc");
        }
      }
    }
  }
}

TEST(Utf8Validator, ExplicitRejects) {
  const std::vector<std::string> bad = {
      "\xC0\x80",          // overlong NUL
      "\xC1\xBF",          // overlong
      "\xE0\x80\xAF",      // overlong '/'
      "\xE0\x9F\xBF",      // overlong
      "\xF0\x80\x80\xAF",  // overlong
      "\xF0\x8F\xBF\xBF",  // overlong
      "\xED\xA0\x80",      // U+D800
      "\xED\xAF\xBF",      // U+DBFF
      "\xED\xB0\x80",      // U+DC00
      "\xED\xBF\xBF",      // U+DFFF
      "\xF4\x90\x80\x80",  // U+110000
      "\xF7\xBF\xBF\xBF",  // U+1FFFFF
      "\xF5\x80\x80\x80", "\xF8\x88\x80\x80\x80", "\xFC\x84\x80\x80\x80\x80", "\xFE", "\xFF",
      "\x80", "\xBF", "\xC3\x28", "\xE2\x28\xA1", "\xE2\x82\x28", "\xF0\x28\x8C\xBC", "\xF0\x90\x28\xBC",
  };
  for (const auto& s : bad) {
    EXPECT_FALSE(is_valid_utf8(u8(s), s.size())) << testing::PrintToString(s);
    const std::string long_s = std::string(64, 'a') + s + std::string(64, 'b');
    EXPECT_FALSE(is_valid_utf8(u8(long_s), long_s.size())) << testing::PrintToString(s);
    Utf8Validator v;
    EXPECT_FALSE(v.feed(u8(long_s), long_s.size()));
  }
  const std::vector<std::string> good = {"\x7F", "\xC2\x80", "\xDF\xBF", "\xE0\xA0\x80", "\xED\x9F\xBF",
                                         "\xEE\x80\x80", "\xEF\xBF\xBF", "\xF0\x90\x80\x80", "\xF4\x8F\xBF\xBF"};
  for (const auto& s : good) {
    EXPECT_TRUE(is_valid_utf8(u8(s), s.size())) << testing::PrintToString(s);
    const std::string long_s = std::string(64, 'a') + s + std::string(64, 'b');
    EXPECT_TRUE(is_valid_utf8(u8(long_s), long_s.size())) << testing::PrintToString(s);
  }
}

TEST(Utf8Validator, TruncatedSequenceIsIncompleteNotInvalid) {
  for (const std::string s : {"\xC3", "\xE2", "\xE2\x82", "\xF0", "\xF0\x9F", "\xF0\x9F\x98"}) {
    for (const std::string& prefix : std::vector<std::string>{std::string(), std::string(40, 'a')}) {
      Utf8Validator v;
      const std::string in = prefix + s;
      EXPECT_TRUE(v.feed(u8(in), in.size())) << testing::PrintToString(in);
      EXPECT_FALSE(v.complete());
      EXPECT_FALSE(is_valid_utf8(u8(in), in.size()));
    }
  }
}

TEST(Utf8Validator, EverySplitOfLongMixedString) {
  const std::string s = mixed_text(600);
  ASSERT_TRUE(reference(s).valid);
  for (std::size_t at = 0; at <= s.size(); ++at) {
    const auto [fed, complete] = feed_pieces(s, {at});
    ASSERT_TRUE(fed) << "split at " << at;
    ASSERT_TRUE(complete) << "split at " << at;
  }
  // Three pieces, a sample of pairs.
  for (std::size_t a = 0; a <= s.size(); a += 7) {
    for (std::size_t b = a; b <= s.size(); b += 13) {
      const auto [fed, complete] = feed_pieces(s, {a, b});
      ASSERT_TRUE(fed && complete) << a << "/" << b;
    }
  }
  // Byte at a time.
  std::vector<std::size_t> cuts;
  for (std::size_t i = 1; i < s.size(); ++i) cuts.push_back(i);
  const auto [fed, complete] = feed_pieces(s, cuts);
  EXPECT_TRUE(fed && complete);
}

TEST(Utf8Validator, EverySplitWithInvalidByteInserted) {
  const std::string good = mixed_text(200);
  for (const std::string bad : {"\xFF", "\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\x80"}) {
    for (std::size_t pos = 0; pos <= good.size(); pos += 17) {
      // Insert on a code point boundary.
      std::size_t p = pos;
      while (p < good.size() && (static_cast<std::uint8_t>(good[p]) & 0xC0) == 0x80) ++p;
      const std::string s = good.substr(0, p) + bad + good.substr(p);
      ASSERT_FALSE(reference(s).valid);
      for (std::size_t at = 0; at <= s.size(); at += 3) {
        const auto [fed, complete] = feed_pieces(s, {at});
        ASSERT_FALSE(fed && complete) << testing::PrintToString(bad) << " at " << p << " split " << at;
      }
    }
  }
}

TEST(Utf8Validator, FailsFastAtChunkEnd) {
  // The chunk ends in a byte (or partial sequence) that no continuation can
  // fix: feed() must say so now, not when the message ends. Both paths.
  for (const std::string bad_tail : {"\xFF", "\xC0", "\xC1", "\xF5", "\xE0\x80", "\xE0\x9F", "\xED\xA0", "\xF0\x80",
                                     "\xF0\x8F", "\xF4\x90", "\xF4\xBF", "\xC3\xC3", "\xE2\x82\xC3"}) {
    for (std::size_t prefix_len : {0u, 1u, 5u, 31u, 32u, 33u, 64u, 100u}) {
      const std::string s = std::string(prefix_len, 'a') + bad_tail;
      Utf8Validator v;
      EXPECT_FALSE(v.feed(u8(s), s.size())) << testing::PrintToString(bad_tail) << " after " << prefix_len;
    }
  }
  // And after a valid multi-byte prefix fed earlier.
  Utf8Validator v;
  const std::string first = mixed_text(100) + "\xE2";
  ASSERT_TRUE(v.feed(u8(first), first.size()));
  const std::string second = "\x82";
  ASSERT_TRUE(v.feed(u8(second), 1));
  const std::string third = std::string("\xAC") + std::string(40, 'z') + "\xED\xA0";
  EXPECT_FALSE(v.feed(u8(third), third.size()));
}

TEST(Utf8Validator, SimdPathWithIncompleteTail) {
  for (std::size_t len = 32; len < 100; ++len) {
    const std::string base = std::string(len, 'q');
    for (const std::string c : {"\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9F\x98\x80"}) {
      for (std::size_t cut = 1; cut < c.size(); ++cut) {
        Utf8Validator v;
        const std::string a = base + c.substr(0, cut);
        ASSERT_TRUE(v.feed(u8(a), a.size())) << len << "/" << cut;
        EXPECT_FALSE(v.complete());
        const std::string b = c.substr(cut) + base;
        ASSERT_TRUE(v.feed(u8(b), b.size())) << len << "/" << cut;
        EXPECT_TRUE(v.complete());
      }
    }
  }
}

TEST(Utf8Validator, SimdPathWithMultiByteEverywhere) {
  const std::string s = mixed_text(5000);
  EXPECT_TRUE(is_valid_utf8(u8(s), s.size()));
  std::mt19937 rng(11);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::size_t> cuts;
    std::size_t at = 0;
    while (true) {
      at += 1 + rng() % 97;
      if (at >= s.size()) break;
      cuts.push_back(at);
    }
    const auto [fed, complete] = feed_pieces(s, cuts);
    ASSERT_TRUE(fed && complete) << round;
  }
  // Corrupt one random byte at a time and compare with the reference.
  for (int round = 0; round < 300; ++round) {
    std::string t = s.substr(0, 300);
    t[rng() % t.size()] = static_cast<char>(rng());
    const RefResult ref = reference(t);
    Utf8Validator v;
    const bool fed = v.feed(u8(t), t.size());
    ASSERT_EQ(fed && v.complete(), ref.valid) << testing::PrintToString(t);
    ASSERT_EQ(fed, ref.prefix_ok) << testing::PrintToString(t);
  }
}

TEST(Utf8Validator, ResetClearsPendingSequence) {
  Utf8Validator v;
  ASSERT_TRUE(v.feed(u8("\xE2"), 1));
  EXPECT_FALSE(v.complete());
  v.reset();
  EXPECT_TRUE(v.complete());
  EXPECT_TRUE(v.feed(u8("a"), 1));
  EXPECT_TRUE(v.complete());
}
