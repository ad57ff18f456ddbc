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
#endif
