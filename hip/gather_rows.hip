// gather_rows.hip: dst[i, :] = src[rows[i], :] for the step's output rows, one block per output row.
#include "common.h"

extern "C" __global__ void gather_rows(const float* src, float* dst, const u32* rows, int cols) {
    kernel_start();
    const size_t r = rows[blockIdx.x];
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dst[(size_t)blockIdx.x * cols + c] = src[r * cols + c];
}
