#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "loadgen/histogram.hpp"

using duplex::bench::Histogram;

namespace {

// The reference: the ceil(p% * n)-th smallest value.
std::uint64_t reference_percentile(const std::vector<std::uint64_t>& sorted, double p) {
  if (p <= 0) return sorted.front();
  if (p >= 100) return sorted.back();
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

// A bucket is at most 1/128 of its values wide: the reported value is within
// that of the true one.
void expect_close(std::uint64_t got, std::uint64_t want, double p) {
  const double tolerance = static_cast<double>(want) / 128.0 + 1.0;
  EXPECT_LE(std::fabs(static_cast<double>(got) - static_cast<double>(want)), tolerance)
      << "p" << p << ": got " << got << ", want " << want;
}

std::vector<std::uint64_t> lognormal_samples(std::size_t n, std::uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::lognormal_distribution<double> dist(std::log(400'000.0), 1.2);  // ~0.4 ms median
  std::vector<std::uint64_t> v;
  v.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    v.push_back(std::min<std::uint64_t>(static_cast<std::uint64_t>(dist(rng)), Histogram::max_value));
  return v;
}

const double kPercentiles[] = {0, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};

}  // namespace

TEST(BenchHistogram, EmptyIsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.percentile(50), 0u);
  EXPECT_EQ(h.min(), 0u);
  EXPECT_EQ(h.max(), 0u);
}

TEST(BenchHistogram, PercentilesMatchSortedReference) {
  auto values = lognormal_samples(200'000, 42);
  Histogram h;
  for (auto v : values) h.record(v);
  std::sort(values.begin(), values.end());
  ASSERT_EQ(h.count(), values.size());
  EXPECT_EQ(h.min(), values.front());
  EXPECT_EQ(h.max(), values.back());
  for (double p : kPercentiles) expect_close(h.percentile(p), reference_percentile(values, p), p);
}

TEST(BenchHistogram, SmallValuesAreExact) {
  Histogram h;
  for (std::uint64_t v = 0; v < Histogram::sub_count; ++v) h.record(v);
  EXPECT_EQ(h.percentile(50), 63u);
  EXPECT_EQ(h.percentile(100), 127u);
}

TEST(BenchHistogram, MergeAcrossThreadsEqualsOneHistogram) {
  auto values = lognormal_samples(100'000, 7);
  Histogram all;
  for (auto v : values) all.record(v);
  // Four threads record interleaved slices into their own instances; the
  // merge must be the same histogram.
  std::vector<Histogram> parts(4);
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < parts.size(); ++t)
    threads.emplace_back([&, t] {
      for (std::size_t i = t; i < values.size(); i += parts.size()) parts[t].record(values[i]);
    });
  for (auto& th : threads) th.join();
  Histogram merged;
  for (auto& p : parts) merged.merge(p);
  EXPECT_EQ(merged.count(), all.count());
  EXPECT_EQ(merged.min(), all.min());
  EXPECT_EQ(merged.max(), all.max());
  EXPECT_DOUBLE_EQ(merged.mean(), all.mean());
  for (double p : kPercentiles) EXPECT_EQ(merged.percentile(p), all.percentile(p)) << "p" << p;
  std::sort(values.begin(), values.end());
  for (double p : kPercentiles) expect_close(merged.percentile(p), reference_percentile(values, p), p);
}

TEST(BenchHistogram, MergeOfEmptyKeepsMinMax) {
  Histogram a, empty;
  a.record(1000);
  a.merge(empty);
  EXPECT_EQ(a.min(), 1000u);
  EXPECT_EQ(a.max(), 1000u);
  empty.merge(a);
  EXPECT_EQ(empty.min(), 1000u);
}

TEST(BenchHistogram, BucketPrecisionBound) {
  // Every bucket is contiguous with the next, and no wider than 1/128 of its lowest value.
  for (std::size_t i = 0; i + 1 < Histogram::bucket_count; ++i) {
    ASSERT_EQ(Histogram::highest_of(i) + 1, Histogram::lowest_of(i + 1)) << i;
    const std::uint64_t width = Histogram::highest_of(i) - Histogram::lowest_of(i) + 1;
    if (Histogram::lowest_of(i) >= Histogram::sub_count)
      ASSERT_LE(width * 128, Histogram::lowest_of(i)) << i;
    else
      ASSERT_EQ(width, 1u) << i;
  }
  // index_of is the inverse at bucket edges, and 1 us .. 60 s all land in range.
  for (std::size_t i = 0; i < Histogram::bucket_count; ++i) {
    ASSERT_EQ(Histogram::index_of(Histogram::lowest_of(i)), i);
    ASSERT_EQ(Histogram::index_of(Histogram::highest_of(i)), i);
  }
  EXPECT_LT(Histogram::index_of(Histogram::max_value), Histogram::bucket_count);
  // Any single value comes back within half a bucket (< 0.4%).
  Histogram spread;
  for (std::uint64_t v = 1000; v < 60'000'000'000ull; v = v * 1001 / 1000 + 1) {
    spread.reset();
    spread.record(1);
    spread.record(v);
    spread.record(Histogram::max_value);
    const std::uint64_t got = spread.percentile(50);  // the 2nd of 3: v, rounded to its bucket
    ASSERT_LE(std::fabs(static_cast<double>(got) - static_cast<double>(v)), static_cast<double>(v) / 256.0 + 1.0)
        << v;
  }
}

TEST(BenchHistogram, ClampsAboveSixtySeconds) {
  Histogram h;
  h.record(Histogram::max_value * 10);
  EXPECT_EQ(h.max(), Histogram::max_value);
  EXPECT_EQ(h.percentile(99), Histogram::max_value);
}
