// ThreadScratch: per-thread, 64-byte aligned work buffers for kernels that must not allocate in
// steady state. Each (Tag, T) pair owns kSlots buffers per thread; a buffer grows on first use
// only. Instantiate it only from code compiled with the baseline flags (the HWY_ONCE parts of
// the kernel files): an inline template instantiated under per-file target flags could be
// merged by the linker into callers on CPUs without those instructions.
#pragma once

#include <cstddef>

#include "hwy/aligned_allocator.h"

namespace afd::kernels::internal {

template <class Tag, class T, int kSlots>
T* ThreadScratch(int slot, size_t count) {
  struct Buffer {
    hwy::AlignedFreeUniquePtr<T[]> data;
    size_t size = 0;
  };
  thread_local Buffer buffers[kSlots];
  Buffer& b = buffers[slot];
  if (b.size < count) {
    b.data = hwy::AllocateAligned<T>(count);
    b.size = count;
  }
  return b.data.get();
}

}  // namespace afd::kernels::internal
