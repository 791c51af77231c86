// Large scratch buffers for the C++ kernels.
//
// Why: fresh memory is faulted in 4 KiB at a time, and on a VM a fault costs
// microseconds. The per-pair soft-DTW path at N = M = 2048 (float64) took 49k
// faults per call, about as much system time as the sweep's own. Buffers of
// 2 MiB and more are therefore 2 MiB-aligned and advised as transparent huge
// pages (512x fewer faults where the kernel's THP mode is "madvise" or
// "always"; a no-op where it is "never").
#pragma once
#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

namespace vtalign {

constexpr size_t kHugePage = size_t(2) << 20;

// Ask for huge pages over the whole 2 MiB pages inside [p, p + bytes); only useful
// before the memory is first touched.
inline void advise_huge(void* p, size_t bytes) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p), lo = (a + kHugePage - 1) & ~(kHugePage - 1),
                  hi = (a + bytes) & ~(kHugePage - 1);
  if (hi > lo) madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_HUGEPAGE);
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
template <typename T>
using Scratch = std::unique_ptr<T[], FreeDeleter>;

// n uninitialised elements (no zero fill: the kernels write before they read).
template <typename T>
Scratch<T> scratch(size_t n) {
  const size_t bytes = std::max<size_t>(n * sizeof(T), 64);
  const bool huge = bytes >= kHugePage;
  const size_t align = huge ? kHugePage : 64, rounded = (bytes + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  if (!p) throw std::bad_alloc();
  if (huge) advise_huge(p, rounded);
  return Scratch<T>(static_cast<T*>(p));
}

// A per-thread buffer of at least n elements, kept across calls (OpenMP threads
// persist): a fresh one per call would be faulted in every time. Callers bound n.
template <typename T>
T* thread_scratch(size_t n) {
  thread_local Scratch<T> buf;
  thread_local size_t cap = 0;
  if (n > cap) {
    buf = scratch<T>(n);
    cap = n;
  }
  return buf.get();
}

}  // namespace vtalign
