// Internal: connections come from dense slabs of equal-sized blocks, apart
// from the short-lived handshake allocations, so that freed handshake memory
// is not trapped between long-lived connections (heap fragmentation was half
// of an idle connection's footprint).
#pragma once
#include <sys/mman.h>

#include <cstddef>
#include <cstdlib>
#include <mutex>
#include <new>

// Under AddressSanitizer every block is its own heap allocation: a reused
// slab block hides a use-after-free from ASan, and LeakSanitizer neither scans
// mmap'd slabs nor reports the connection (only what it points to) when one
// is never destroyed.
#if defined(__SANITIZE_ADDRESS__)
#define DUPLEX_SLAB_BYPASS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DUPLEX_SLAB_BYPASS 1
#endif
#endif
#ifndef DUPLEX_SLAB_BYPASS
#define DUPLEX_SLAB_BYPASS 0
#endif

namespace duplex::net::detail {

template <std::size_t BlockSize>
class Slab {
 public:
  static void* allocate() {
    if constexpr (DUPLEX_SLAB_BYPASS) return ::operator new(block);
    std::lock_guard lock(mutex());
    auto& head = free_list();
    if (head) {
      Node* n = head;
      head = n->next;
      return n;
    }
    // Carve the next block from the current slab: a page is touched only
    // when a block on it is first used (linking every block up front wrote
    // to every page of a fresh 256 KiB slab).
    auto& carve = carve_state();
    if (carve.next == carve.end) {
      void* mem = ::mmap(nullptr, slab_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (mem == MAP_FAILED) throw std::bad_alloc();
      // Straight from the kernel, outside malloc's heap; kept for the life of the process.
      carve.next = static_cast<char*>(mem);
      carve.end = carve.next + (slab_bytes / block) * block;
    }
    void* p = carve.next;
    carve.next += block;
    return p;
  }
  static void deallocate(void* p) {
    if constexpr (DUPLEX_SLAB_BYPASS) return ::operator delete(p);
    std::lock_guard lock(mutex());
    auto* n = static_cast<Node*>(p);
    n->next = free_list();
    free_list() = n;
  }

 private:
  struct Node {
    Node* next;
  };
  struct Carve {
    char* next = nullptr;
    char* end = nullptr;
  };
  static constexpr std::size_t block = (BlockSize + 7) & ~std::size_t{7};  // 8-aligned objects only
  static constexpr std::size_t slab_bytes = 256u << 10;
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static Node*& free_list() {
    static Node* head = nullptr;
    return head;
  }
  static Carve& carve_state() {
    static Carve c;
    return c;
  }
};

// For std::allocate_shared: single objects come from the slab of their size.
template <typename T>
struct SlabAllocator {
  using value_type = T;
  SlabAllocator() = default;
  template <typename U>
  SlabAllocator(const SlabAllocator<U>&) {}
  static_assert(alignof(T) <= 8, "slab blocks are 8-byte aligned");
  T* allocate(std::size_t n) {
    if (n == 1) return static_cast<T*>(Slab<sizeof(T)>::allocate());
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, std::size_t n) {
    if (n == 1)
      Slab<sizeof(T)>::deallocate(p);
    else
      ::operator delete(p);
  }
  template <typename U>
  bool operator==(const SlabAllocator<U>&) const {
    return true;
  }
};

}  // namespace duplex::net::detail
