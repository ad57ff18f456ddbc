// silu_mul.hip: out[r, j] = silu(gate_up[r, j]) * gate_up[r, ffn + j], gate_up is [rows, 2*ffn].
#include "common.h"

extern "C" __global__ void silu_mul(const float* gate_up, float* out, int rows, int ffn) {
    kernel_start();
    const size_t n = (size_t)rows * ffn;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const size_t r = i / ffn, j = i % ffn;
        const float g = gate_up[r * 2 * ffn + j], u = gate_up[r * 2 * ffn + ffn + j];
        out[i] = g / (1.0f + expf(-g)) * u;
    }
}
