// gemm_prep.hip: the element-wise steps around a BLAS GEMM (prefill matmuls): activations f32 -> f16,
// weights of any layout -> an f16 (or, for bf16 weights, f32) scratch, and the bias added after it.
#include "common.h"

extern "C" __global__ void f32_to_f16_rows(const float* x, u16* out, unsigned long long n) {
    kernel_start();
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] = f32_to_f16(x[i]);
}

#define DEQUANT(name, elem)                                                                             \
    extern "C" __global__ void dequant_##name##_f16(const void* w, const u16* d, const u16* m, u16* out,  \
                                                   unsigned long long n) {                              \
        kernel_start();                                                                                 \
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) \
            out[i] = f32_to_f16(elem(w, d, m, i));                                                      \
    }                                                                                                   \
    extern "C" __global__ void dequant_##name##_f32(const void* w, const u16* d, const u16* m, float* out, \
                                                   unsigned long long n) {                              \
        kernel_start();                                                                                 \
        for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) \
            out[i] = elem(w, d, m, i);                                                                  \
    }
FOR_EACH_LAYOUT(DEQUANT)

// out[t, r] += bias[r] for `tokens` rows of `rows`.
extern "C" __global__ void add_bias(float* out, const float* bias, int rows, unsigned long long n) {
    kernel_start();
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        out[i] += bias[i % rows];
}
