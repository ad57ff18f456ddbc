// argmax.hip: out[r] = first index of the largest value of x[r, :]; NaN never wins; 0 for a row of NaN.
#include "common.h"

// Whether (v, i) beats (bv, bi): larger value, or the same value at a smaller index; i == ~0u is "none".
__device__ __forceinline__ bool better(float v, u32 i, float bv, u32 bi) {
    return i != ~0u && (bi == ~0u || v > bv || (v == bv && i < bi));
}

extern "C" __global__ void argmax(const float* x, u32* out, int cols) {
    __shared__ float sv[1024];
    __shared__ u32 si[1024];
    const float* xr = x + (size_t)blockIdx.x * cols;
    float bv = 0.0f;
    u32 bi = ~0u;
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const float v = xr[c];
        if (v == v && better(v, c, bv, bi)) { bv = v; bi = c; }
    }
    sv[threadIdx.x] = bv;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s && better(sv[threadIdx.x + s], si[threadIdx.x + s], sv[threadIdx.x], si[threadIdx.x])) {
            sv[threadIdx.x] = sv[threadIdx.x + s];
            si[threadIdx.x] = si[threadIdx.x + s];
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = si[0] == ~0u ? 0 : si[0];
}
