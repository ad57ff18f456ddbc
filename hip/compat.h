// compat.h: the only file that knows vendor names. The kernels are written in HIP spellings; compiled
// by NVRTC for NVIDIA (PRISM_CUDA defined by the loader) the few vendor-specific pieces map to CUDA.
#pragma once

#if defined(PRISM_CUDA)
// ---- NVIDIA (CUDA twin) ---------------------------------------------------------------------------
#define WARP 32
__device__ __forceinline__ float shfl_xor(float v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
__device__ __forceinline__ int shfl_xor(int v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
__device__ __forceinline__ unsigned shfl_xor(unsigned v, int m) { return __shfl_xor_sync(0xffffffffu, v, m); }
__device__ __forceinline__ float f16_to_f32(unsigned short b) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(b));
    return f;
}
__device__ __forceinline__ unsigned short f32_to_f16(float f) {
    unsigned short b;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(b) : "f"(f));
    return b;
}
// c + the sum of the products of the 4 signed bytes of a and b (dp4a, sm_61 and later).
__device__ __forceinline__ int dot4_i8(int a, int b, int c) { return __dp4a(a, b, c); }
// Programmatic dependent launch (sm_90 and later; the host launches overlapping only there): a kernel
// may start while the kernel before it still runs. grid_dep_wait() returns once that kernel has finished
// and its writes are visible; grid_dep_launch() lets the next kernel start its blocks.
#if __CUDA_ARCH__ >= 900
__device__ __forceinline__ void grid_dep_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void grid_dep_launch() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }
#else
__device__ __forceinline__ void grid_dep_wait() {}
__device__ __forceinline__ void grid_dep_launch() {}
#endif
#else
// ---- AMD (HIP, hiprtc) ----------------------------------------------------------------------------
// The wavefront is 64 lanes on CDNA/GCN and 32 on RDNA (wave32): the compiler says which.
#define WARP __AMDGCN_WAVEFRONT_SIZE
__device__ __forceinline__ float shfl_xor(float v, int m) { return __shfl_xor(v, m, WARP); }
__device__ __forceinline__ int shfl_xor(int v, int m) { return __shfl_xor(v, m, WARP); }
__device__ __forceinline__ unsigned shfl_xor(unsigned v, int m) { return (unsigned)__shfl_xor((int)v, m, WARP); }
__device__ __forceinline__ float f16_to_f32(unsigned short b) {
    return (float)__builtin_bit_cast(_Float16, b);
}
__device__ __forceinline__ unsigned short f32_to_f16(float f) {
    return __builtin_bit_cast(unsigned short, (_Float16)f);
}
// c + the sum of the products of the 4 signed bytes of a and b: v_dot4_i32_i8 on GCN5.1 / CDNA / RDNA2
// (each of these compiled by hiprtc 5.2), plain byte products elsewhere (hiprtc 5.2 has no gfx11).
__device__ __forceinline__ int dot4_i8(int a, int b, int c) {
#if defined(__gfx906__) || defined(__gfx908__) || defined(__gfx90a__) || defined(__gfx1030__) || \
    defined(__gfx1031__) || defined(__gfx1032__) || defined(__gfx1034__) || defined(__gfx1035__)
    return __builtin_amdgcn_sdot4(a, b, c, false);
#else
    return c + (int)(signed char)a * (int)(signed char)b +
           (int)(signed char)(a >> 8) * (int)(signed char)(b >> 8) +
           (int)(signed char)(a >> 16) * (int)(signed char)(b >> 16) + (a >> 24) * (b >> 24);
#endif
}
// HIP launches every kernel after the one before it has finished: nothing to wait for.
__device__ __forceinline__ void grid_dep_wait() {}
__device__ __forceinline__ void grid_dep_launch() {}
#endif
