// rms_norm.hip: out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight, one block per row.
#include "common.h"

extern "C" __global__ void rms_norm(const float* x, const float* weight, float* out, int dim, float eps) {
    __shared__ float scratch[32];
    kernel_start();
    const float* xr = x + (size_t)blockIdx.x * dim;
    float ss = 0.0f;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) ss += xr[c] * xr[c];
    ss = block_sum(ss, scratch);
    const float inv = 1.0f / sqrtf(ss / (float)dim + eps);
    float* o = out + (size_t)blockIdx.x * dim;
    for (int c = threadIdx.x; c < dim; c += blockDim.x) o[c] = weight[c] * (xr[c] * inv);
}
