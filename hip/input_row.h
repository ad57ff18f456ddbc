// input_row.h: the input row of a one-token gemv, built from what the op before it would have written:
// `STAGE_X` x as it is, `STAGE_NORM` rms_norm(x)·norm (as rms_norm.hip), `STAGE_SILU` silu(gate)·up of
// x = gate|up (as silu_mul.hip). Shared by the fused kernels of gemv.hip and gemv_t1.hip.
#pragma once
#include "common.h"

#define ROW_NT 256                         // threads per block (the host's BLOCK)
#define ROW_MAXC 8192                      // longest input row (the host's MAX_FUSED_COLS)
#define ROW_UNITS (ROW_MAXC / 4 / ROW_NT)  // float4 input units per thread
#define ROW_STEP 4                         // float4 input units a thread loads at once (`_x`, `_silu`)

enum { STAGE_X = 0, STAGE_NORM = 1, STAGE_SILU = 2 };

__device__ __forceinline__ float silu_times(float g, float u) { return g / (1.0f + expf(-g)) * u; }

// ---- the input row ------------------------------------------------------------------------------------

// Calls emit(c, ok, v) with float4 unit c of the input row (elements 4c..4c+3) for the units of this
// thread (c = thread, thread + ROW_NT, ...), ok = false past the row. Units 8j..8j+7 (block j of 32) belong
// to 8 consecutive lanes of one warp, which always call emit together.
template <int STAGE, class Emit>
__device__ __forceinline__ void build_input(const float* x, const float* norm, float eps, int cols, float* red,
                                            Emit emit) {
    const int n4 = cols / 4;
    const f32x4* x4 = (const f32x4*)x;
    const f32x4 zero = {0.0f, 0.0f, 0.0f, 0.0f};
    if (STAGE == STAGE_NORM) {
        // v = x·norm (as the weights load with x), then ·inv once the sum of squares is known.
        const f32x4* g4 = (const f32x4*)norm;
        f32x4 v[ROW_UNITS];
        float ss = 0.0f;
#pragma unroll
        for (int k = 0; k < ROW_UNITS; k++) {
            const int c = threadIdx.x + k * ROW_NT;
            const bool ok = c < n4;
            const f32x4 a = ok ? x4[c] : zero, g = ok ? g4[c] : zero;
            ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
            v[k] = f32x4{g.x * a.x, g.y * a.y, g.z * a.z, g.w * a.w};
        }
        ss = block_sum(ss, red);
        const float inv = 1.0f / sqrtf(ss / (float)cols + eps);
#pragma unroll
        for (int k = 0; k < ROW_UNITS; k++) {
            if (k * ROW_NT >= n4) break;
            const int c = threadIdx.x + k * ROW_NT;
            emit(c, c < n4, f32x4{v[k].x * inv, v[k].y * inv, v[k].z * inv, v[k].w * inv});
        }
        return;
    }
#pragma unroll
    for (int k0 = 0; k0 < ROW_UNITS; k0 += ROW_STEP) {
        if (k0 * ROW_NT >= n4) break;
        f32x4 a[ROW_STEP], b[ROW_STEP];
#pragma unroll
        for (int k = 0; k < ROW_STEP; k++) {
            const int c = threadIdx.x + (k0 + k) * ROW_NT;
            const bool ok = c < n4;
            a[k] = ok ? x4[c] : zero;
            if (STAGE == STAGE_SILU) b[k] = ok ? x4[n4 + c] : zero;
        }
#pragma unroll
        for (int k = 0; k < ROW_STEP; k++) {
            const int c = threadIdx.x + (k0 + k) * ROW_NT;
            f32x4 v = a[k];
            if (STAGE == STAGE_SILU)
                v = f32x4{silu_times(a[k].x, b[k].x), silu_times(a[k].y, b[k].y), silu_times(a[k].z, b[k].z),
                          silu_times(a[k].w, b[k].w)};
            emit(c, c < n4, v);
        }
    }
}
