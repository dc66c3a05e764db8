// Upper vector state: after code that wrote 256- or 512-bit registers, x86 CPUs run legacy-SSE
// code (glibc's exp wrapper, libstdc++, protobuf, gRPC and our own files compiled for baseline
// x86-64) with a penalty until a vzeroupper. GCC inserts vzeroupper at the end of functions it
// knows dirtied the state, but not always: a kernel whose 512-bit values pass through inline asm
// returned with the state dirty, and glibc's exp then ran ~15x slower (sampling over a 32000-entry
// vocabulary took 7 ms instead of 0.5 ms). Kernel entry points and the thread pool clear the
// state on the way out, so what follows them never pays for it.
#ifndef AFD_COMMON_KERNELS_VECTOR_STATE_H_
#define AFD_COMMON_KERNELS_VECTOR_STATE_H_

namespace afd::kernels {

// Executes vzeroupper where the CPU has AVX; a no-op elsewhere. Costs about a cycle.
void ClearUpperVectorState();

}  // namespace afd::kernels

#endif  // AFD_COMMON_KERNELS_VECTOR_STATE_H_
