#include "common/kernels/vector_state.h"

namespace afd::kernels {

#if defined(__x86_64__) || defined(__i386__)
namespace {
bool HasAvx() {
  static const bool has = __builtin_cpu_supports("avx");
  return has;
}
}  // namespace

void ClearUpperVectorState() {
  if (HasAvx()) asm volatile("vzeroupper" ::: "memory");
}
#else
void ClearUpperVectorState() {}
#endif

}  // namespace afd::kernels
