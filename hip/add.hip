// add.hip: dst[i] += src[i] for i < n.
#include "common.h"

extern "C" __global__ void add(float* dst, const float* src, unsigned long long n) {
    kernel_start();
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] += src[i];
}
