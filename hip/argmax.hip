// argmax.hip: out[r] = first index of the largest value of x[r, :]; NaN never wins; 0 for a row of NaN.
// One launch, many blocks per row: grid (blocks per row, rows); each block reduces its chunk of the row
// to a (value, index) partial; the last block of a row to finish (a counter per row, reset by that block
// for the next launch) reduces the partials and writes the result.
#include "common.h"

#define NT 256

// Whether (v, i) beats (bv, bi): larger value, or the same value at a smaller index; i == ~0u is "none".
__device__ __forceinline__ bool better(float v, u32 i, float bv, u32 bi) {
    return i != ~0u && (bi == ~0u || v > bv || (v == bv && i < bi));
}

// The best (value, index) of the block; valid in thread 0.
__device__ __forceinline__ void block_best(float& bv, u32& bi, float* sv, u32* si) {
    for (int m = WARP / 2; m > 0; m >>= 1) {
        const float ov = shfl_xor(bv, m);
        const u32 oi = shfl_xor(bi, m);
        if (better(ov, oi, bv, bi)) { bv = ov; bi = oi; }
    }
    const int lane = threadIdx.x % WARP, warp = threadIdx.x / WARP, nwarps = NT / WARP;
    if (lane == 0) { sv[warp] = bv; si[warp] = bi; }
    __syncthreads();
    if (threadIdx.x == 0)
        for (int w = 1; w < nwarps; w++)
            if (better(sv[w], si[w], bv, bi)) { bv = sv[w]; bi = si[w]; }
}

extern "C" __global__ void __launch_bounds__(NT)
argmax(const float* x, u32* out, float* part_v, u32* part_i, u32* counters, int cols, int chunk) {
    __shared__ float sv[NT / 16];
    __shared__ u32 si[NT / 16];
    __shared__ bool last;
    kernel_start();
    const int row = blockIdx.y, nb = gridDim.x, b = blockIdx.x;
    const float* xr = x + (size_t)row * cols;
    const int c0 = b * chunk, c1 = min(cols, c0 + chunk);
    float bv = 0.0f;
    u32 bi = ~0u;
    for (int c = c0 + threadIdx.x; c < c1; c += NT) {
        const float v = xr[c];
        if (v == v && better(v, c, bv, bi)) { bv = v; bi = c; }
    }
    block_best(bv, bi, sv, si);
    if (threadIdx.x == 0) {
        part_v[(size_t)row * nb + b] = bv;
        part_i[(size_t)row * nb + b] = bi;
        __threadfence();
        last = atomicAdd(&counters[row], 1u) == (u32)nb - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    const volatile float* pv = part_v + (size_t)row * nb;
    const volatile u32* pi = part_i + (size_t)row * nb;
    bv = 0.0f;
    bi = ~0u;
    for (int k = threadIdx.x; k < nb; k += NT)
        if (better(pv[k], pi[k], bv, bi)) { bv = pv[k]; bi = pi[k]; }
    __syncthreads();  // sv/si are reused
    block_best(bv, bi, sv, si);
    if (threadIdx.x == 0) {
        out[row] = bi == ~0u ? 0 : bi;
        counters[row] = 0;
    }
}
