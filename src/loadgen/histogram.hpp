// A fixed-memory latency histogram for `duplex bench` (HDR-style log-linear
// buckets): values in nanoseconds, exact below 128 ns, then every power-of-two
// octave split into 128 linear sub-buckets, so a bucket is at most 1/128 of
// its values wide (< 0.8%, about two significant digits) up to the 60 s cap.
// One instance per thread, merged at the end; no allocation after
// construction, no locking.
#pragma once
#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace duplex::bench {

class Histogram {
 public:
  static constexpr unsigned sub_bits = 7;                          // 128 sub-buckets per octave
  static constexpr std::uint64_t sub_count = std::uint64_t{1} << sub_bits;
  static constexpr std::uint64_t max_value = 60'000'000'000ull;   // 60 s in ns; larger values are clamped
  static constexpr unsigned max_exponent = 35;                    // bit width of max_value is 36
  static constexpr std::size_t bucket_count = (max_exponent - sub_bits + 2) * sub_count;

  // Bucket holding `v` (already clamped to max_value).
  static constexpr std::size_t index_of(std::uint64_t v) {
    if (v < sub_count) return static_cast<std::size_t>(v);
    const unsigned e = static_cast<unsigned>(std::bit_width(v)) - 1;  // floor(log2 v) >= sub_bits
    const unsigned shift = e - sub_bits;
    return static_cast<std::size_t>((shift + 1) * sub_count + ((v >> shift) & (sub_count - 1)));
  }
  // The smallest value of bucket `i`.
  static constexpr std::uint64_t lowest_of(std::size_t i) {
    if (i < sub_count) return i;
    const std::uint64_t shift = i / sub_count - 1;
    return (sub_count + (i & (sub_count - 1))) << shift;
  }
  // The largest value of bucket `i`.
  static constexpr std::uint64_t highest_of(std::size_t i) {
    if (i < sub_count) return i;
    const std::uint64_t shift = i / sub_count - 1;
    return lowest_of(i) + ((std::uint64_t{1} << shift) - 1);
  }

  void record(std::uint64_t ns) {
    if (ns > max_value) ns = max_value;
    ++counts_[index_of(ns)];
    ++count_;
    sum_ += ns;
    if (ns < min_) min_ = ns;
    if (ns > max_) max_ = ns;
  }

  void merge(const Histogram& other) {
    if (other.count_ == 0) return;
    for (std::size_t i = 0; i < bucket_count; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }

  void reset() { *this = Histogram{}; }

  std::uint64_t count() const { return count_; }
  std::uint64_t min() const { return count_ ? min_ : 0; }
  std::uint64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0.0; }

  // The value at percentile `p` (0..100): the ceil(p% * count)-th smallest
  // recorded value, to within its bucket (reported as the bucket's midpoint,
  // kept inside [min, max]). 0 when empty.
  std::uint64_t percentile(double p) const {
    if (count_ == 0) return 0;
    if (p <= 0) return min_;
    if (p >= 100) return max_;
    const double want = p / 100.0 * static_cast<double>(count_);
    auto rank = static_cast<std::uint64_t>(want);
    if (static_cast<double>(rank) < want) ++rank;  // ceil
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const std::uint64_t mid = lowest_of(i) + (highest_of(i) - lowest_of(i)) / 2;
        return std::clamp(mid, min_, max_);
      }
    }
    return max_;
  }

 private:
  std::array<std::uint64_t, bucket_count> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
  std::uint64_t min_ = ~std::uint64_t{0};
  std::uint64_t max_ = 0;
};

static_assert(Histogram::index_of(Histogram::max_value) < Histogram::bucket_count);

}  // namespace duplex::bench
