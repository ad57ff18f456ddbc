// common.h: types, f16/bf16 conversion, warp and block reductions (any warp size: 32 or 64), and the
// element access of every weight layout the backend stores. Included by every kernel file.
#pragma once
#include "compat.h"

typedef unsigned char u8;
typedef signed char i8;
typedef unsigned short u16;
typedef unsigned int u32;

// 16-byte vector loads of weight rows and activations.
struct alignas(16) u32x4 { u32 x, y, z, w; };
struct alignas(16) f32x4 { float x, y, z, w; };
struct alignas(8) u32x2 { u32 x, y; };
struct alignas(8) f32x2 { float x, y; };

#define NEG_INF (-__int_as_float(0x7f800000))

// The start of every kernel that has nothing to do before the previous kernel's results are there: wait
// for them (a kernel may be launched overlapping its predecessor, compat.h), then let the next kernel's
// blocks start.
__device__ __forceinline__ void kernel_start() {
    grid_dep_wait();
    grid_dep_launch();
}

// The rotary embedding (rotate-half) of the pair (x[j], x[j + half]) at angle a, with exactly rounded
// products and sums so that every kernel rotating a pair gets the same bits.
__device__ __forceinline__ f32x2 rope_rotate(float x1, float x2, float a) {
    const float c = cosf(a), s = sinf(a);
    return f32x2{__fsub_rn(__fmul_rn(x1, c), __fmul_rn(x2, s)), __fadd_rn(__fmul_rn(x2, c), __fmul_rn(x1, s))};
}

__device__ __forceinline__ float bf16_to_f32(u16 b) { return __int_as_float(((u32)b) << 16); }

// ---- reductions ---------------------------------------------------------------------------------

__device__ __forceinline__ float warp_sum(float v) {
    for (int m = WARP / 2; m > 0; m >>= 1) v += shfl_xor(v, m);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int m = WARP / 2; m > 0; m >>= 1) v = fmaxf(v, shfl_xor(v, m));
    return v;
}

// Sum over the whole block; `scratch` holds one float per warp (up to 32 warps). Every thread gets it.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, nwarps = (blockDim.x + WARP - 1) / WARP;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    float t = 0.0f;
    for (int w = 0; w < nwarps; w++) t += scratch[w];
    return t;
}

// ---- weight layouts -----------------------------------------------------------------------------
// Float weights are row-major [rows, cols]. Quantized weights are split at upload into a quant array
// (Q8_0: i8 [rows, cols]; Q4_0/Q4_1: u8 [rows, cols/2], llama.cpp's nibble order inside each block of
// 32) and f16 arrays of block scales `d` (and mins `m` for Q4_1), [rows, cols/32] each, so that rows
// are 16-byte aligned and read with vector loads.

// Element `i` (flat index) of a weight of each layout.
__device__ __forceinline__ float elem_f32(const void* w, const u16*, const u16*, size_t i) {
    return ((const float*)w)[i];
}
__device__ __forceinline__ float elem_f16(const void* w, const u16*, const u16*, size_t i) {
    return f16_to_f32(((const u16*)w)[i]);
}
__device__ __forceinline__ float elem_bf16(const void* w, const u16*, const u16*, size_t i) {
    return bf16_to_f32(((const u16*)w)[i]);
}
__device__ __forceinline__ float elem_q8_0(const void* w, const u16* d, const u16*, size_t i) {
    return f16_to_f32(d[i / 32]) * (float)((const i8*)w)[i];
}
__device__ __forceinline__ int nibble(const void* w, size_t i) {
    const size_t b = i / 32;
    const int j = (int)(i % 32);
    const u8 byte = ((const u8*)w)[b * 16 + (j & 15)];
    return j < 16 ? (byte & 15) : (byte >> 4);
}
__device__ __forceinline__ float elem_q4_0(const void* w, const u16* d, const u16*, size_t i) {
    return f16_to_f32(d[i / 32]) * (float)(nibble(w, i) - 8);
}
__device__ __forceinline__ float elem_q4_1(const void* w, const u16* d, const u16* m, size_t i) {
    return f16_to_f32(d[i / 32]) * (float)nibble(w, i) + f16_to_f32(m[i / 32]);
}

// Instantiates `MACRO(name, elem_fn)` for every stored layout.
#define FOR_EACH_LAYOUT(MACRO) \
    MACRO(f32, elem_f32)       \
    MACRO(f16, elem_f16)       \
    MACRO(bf16, elem_bf16)     \
    MACRO(q8_0, elem_q8_0)     \
    MACRO(q4_0, elem_q4_0)     \
    MACRO(q4_1, elem_q4_1)
