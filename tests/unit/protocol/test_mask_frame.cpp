// Masking (RFC 6455 §5.3) against a naive reference, and frame header
// encoding (§5.2) against hand-written bytes.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "duplex/protocol/frame.hpp"
#include "duplex/protocol/mask.hpp"

using namespace duplex::protocol;

namespace {

std::vector<std::uint8_t> data_of(std::size_t n, std::uint8_t seed) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(seed + i * 31 + (i >> 3));
  return v;
}

std::vector<std::uint8_t> naive_mask(std::vector<std::uint8_t> v, MaskKey key, std::size_t offset) {
  for (std::size_t i = 0; i < v.size(); ++i) v[i] ^= key[(i + offset) % 4];
  return v;
}

std::string bytes(std::initializer_list<int> list) {
  std::string s;
  for (int b : list) s.push_back(static_cast<char>(b));
  return s;
}

std::string header_string(Opcode op, std::uint64_t n, FrameFlags flags = {}, const MaskKey* key = nullptr) {
  std::uint8_t h[max_frame_header_size + 8];
  std::memset(h, 0xEE, sizeof h);
  const std::size_t len = encode_frame_header(h, op, n, flags, key);
  EXPECT_LE(len, max_frame_header_size);
  for (std::size_t i = len; i < sizeof h; ++i) EXPECT_EQ(h[i], 0xEE) << "wrote past the header";
  return std::string(reinterpret_cast<const char*>(h), len);
}

}  // namespace

TEST(MaskApply, EveryOffsetAndSizeMatchesReference) {
  const MaskKey keys[] = {{0x37, 0xfa, 0x21, 0x3d}, {0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff}, {1, 2, 3, 4}};
  for (const MaskKey& key : keys) {
    for (std::size_t offset = 0; offset < 8; ++offset) {
      for (std::size_t n = 0; n <= 130; ++n) {
        // Also at every alignment of the buffer start.
        for (std::size_t align = 0; align < 4; ++align) {
          std::vector<std::uint8_t> buf(align + n + 1, 0xA5);
          const auto src = data_of(n, static_cast<std::uint8_t>(n + offset));
          if (n > 0) std::memcpy(buf.data() + align, src.data(), n);
          apply_mask(buf.data() + align, n, key, offset);
          const auto want = naive_mask(src, key, offset);
          ASSERT_TRUE(std::equal(want.begin(), want.end(), buf.begin() + static_cast<std::ptrdiff_t>(align)))
              << "offset " << offset << " n " << n << " align " << align;
          for (std::size_t i = 0; i < align; ++i) ASSERT_EQ(buf[i], 0xA5);
          ASSERT_EQ(buf[align + n], 0xA5) << "wrote past the end";
        }
      }
    }
  }
}

TEST(MaskApply, IsAnInvolution) {
  const MaskKey key{9, 8, 7, 6};
  for (std::size_t n : {0u, 1u, 63u, 64u, 65u, 1000u, 4099u}) {
    const auto orig = data_of(n, 3);
    auto v = orig;
    apply_mask(v.data(), n, key, 1);
    if (n >= 4) {
      EXPECT_NE(v, orig);
    }
    apply_mask(v.data(), n, key, 1);
    EXPECT_EQ(v, orig);
  }
}

TEST(MaskApply, PiecewiseEqualsWhole) {
  // Unmasking a payload in pieces (as it arrives) with a running offset.
  const MaskKey key{0x11, 0x22, 0x33, 0x44};
  const auto src = data_of(1000, 77);
  const auto want = naive_mask(src, key, 0);
  for (std::size_t piece : {1u, 2u, 3u, 5u, 7u, 16u, 63u, 65u, 333u}) {
    auto v = src;
    for (std::size_t at = 0; at < v.size(); at += piece)
      apply_mask(v.data() + at, std::min(piece, v.size() - at), key, at);
    EXPECT_EQ(v, want) << piece;
  }
}

TEST(MaskCopy, MatchesReferenceAndDoesNotTouchSource) {
  const MaskKey key{0xde, 0xad, 0xbe, 0xef};
  for (std::size_t n = 0; n <= 300; ++n) {
    const auto src = data_of(n, static_cast<std::uint8_t>(n));
    const auto src_copy = src;
    std::vector<std::uint8_t> dst(n + 1, 0x5A);
    copy_masked(dst.data(), src.data(), n, key);
    const auto want = naive_mask(src, key, 0);
    ASSERT_TRUE(std::equal(want.begin(), want.end(), dst.begin())) << n;
    ASSERT_EQ(dst[n], 0x5A) << n;
    ASSERT_EQ(src, src_copy);
    // In place (dst == src) is allowed too.
    auto inplace = src;
    copy_masked(inplace.data(), inplace.data(), n, key);
    ASSERT_EQ(inplace, want) << n;
  }
}

TEST(MaskCopy, RfcExample) {
  const std::string hello = "Hello";
  std::uint8_t out[5];
  copy_masked(out, reinterpret_cast<const std::uint8_t*>(hello.data()), 5, MaskKey{0x37, 0xfa, 0x21, 0x3d});
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(out), 5), bytes({0x7f, 0x9f, 0x4d, 0x51, 0x58}));
}

TEST(FrameHeader, LengthEncodings) {
  EXPECT_EQ(header_string(Opcode::text, 0), bytes({0x81, 0x00}));
  EXPECT_EQ(header_string(Opcode::text, 5), bytes({0x81, 0x05}));
  EXPECT_EQ(header_string(Opcode::binary, 125), bytes({0x82, 0x7D}));
  EXPECT_EQ(header_string(Opcode::binary, 126), bytes({0x82, 0x7E, 0x00, 0x7E}));
  EXPECT_EQ(header_string(Opcode::binary, 256), bytes({0x82, 0x7E, 0x01, 0x00}));
  EXPECT_EQ(header_string(Opcode::binary, 65535), bytes({0x82, 0x7E, 0xFF, 0xFF}));
  EXPECT_EQ(header_string(Opcode::binary, 65536), bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}));
  EXPECT_EQ(header_string(Opcode::binary, 0x0102030405060708ull),
            bytes({0x82, 0x7F, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08}));
  EXPECT_EQ(header_string(Opcode::binary, 0x7FFFFFFFFFFFFFFFull),
            bytes({0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}));
}

TEST(FrameHeader, FlagsOpcodesAndMask) {
  EXPECT_EQ(header_string(Opcode::text, 3, FrameFlags{false, false}), bytes({0x01, 0x03}));
  EXPECT_EQ(header_string(Opcode::continuation, 3, FrameFlags{true, false}), bytes({0x80, 0x03}));
  EXPECT_EQ(header_string(Opcode::text, 7, FrameFlags{true, true}), bytes({0xC1, 0x07}));
  EXPECT_EQ(header_string(Opcode::binary, 7, FrameFlags{false, true}), bytes({0x42, 0x07}));
  EXPECT_EQ(header_string(Opcode::close, 2), bytes({0x88, 0x02}));
  EXPECT_EQ(header_string(Opcode::ping, 0), bytes({0x89, 0x00}));
  EXPECT_EQ(header_string(Opcode::pong, 125), bytes({0x8A, 0x7D}));
  const MaskKey key{0x37, 0xfa, 0x21, 0x3d};
  EXPECT_EQ(header_string(Opcode::text, 5, {}, &key), bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d}));
  EXPECT_EQ(header_string(Opcode::binary, 300, {}, &key), bytes({0x82, 0xFE, 0x01, 0x2C, 0x37, 0xfa, 0x21, 0x3d}));
  EXPECT_EQ(header_string(Opcode::binary, 70000, {}, &key),
            bytes({0x82, 0xFF, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70, 0x37, 0xfa, 0x21, 0x3d}));
}

TEST(FrameAppend, RfcExamples) {
  std::string out = "prefix";
  append_frame(out, Opcode::text, "Hello");
  EXPECT_EQ(out, "prefix" + bytes({0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f}));

  out.clear();
  append_masked_frame(out, Opcode::text, "Hello", MaskKey{0x37, 0xfa, 0x21, 0x3d});
  EXPECT_EQ(out, bytes({0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));

  out.clear();
  append_frame(out, Opcode::text, "Hel", FrameFlags{false, false});
  append_frame(out, Opcode::continuation, "lo");
  EXPECT_EQ(out, bytes({0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f}));

  out.clear();
  append_masked_frame(out, Opcode::pong, "Hello", MaskKey{0x37, 0xfa, 0x21, 0x3d});
  EXPECT_EQ(out, bytes({0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));

  out.clear();
  append_frame(out, Opcode::ping, "");
  EXPECT_EQ(out, bytes({0x89, 0x00}));
}

TEST(FrameAppend, LargePayloadsRoundTrip) {
  for (std::size_t n : {125u, 126u, 65535u, 65536u, 100003u}) {
    std::string payload(n, '\0');
    for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<char>(i * 7);
    std::string out;
    append_frame(out, Opcode::binary, payload);
    const std::size_t h = n < 126 ? 2 : n <= 65535 ? 4 : 10;
    ASSERT_EQ(out.size(), h + n);
    EXPECT_EQ(out.substr(h), payload);

    const MaskKey key{1, 2, 3, 250};
    std::string masked;
    append_masked_frame(masked, Opcode::binary, payload, key);
    ASSERT_EQ(masked.size(), h + 4 + n);
    EXPECT_EQ(static_cast<std::uint8_t>(masked[1]) & 0x80, 0x80);
    std::string unmasked = masked.substr(h + 4);
    for (std::size_t i = 0; i < n; ++i) unmasked[i] = static_cast<char>(unmasked[i] ^ key[i % 4]);
    EXPECT_EQ(unmasked, payload);
  }
}
