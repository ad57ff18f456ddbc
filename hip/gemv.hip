// gemv.hip: out[t, r] (+)= sum_k x[t, k] * W[r, k] + bias[r] for up to 8 tokens (decode), one warp per
// weight row, 16-byte loads of the weight row; every weight layout. `_t1` kernels serve one token;
// `_norm_t1` / `_silu_t1` fold rms_norm / silu·up into it (decode's norm_matmul, silu_mul_matmul).
#include "input_row.h"

#define MAXT 8

__device__ __forceinline__ void unpack_f16(u32 v, float& a, float& b) {
    a = f16_to_f32((u16)(v & 0xffff));
    b = f16_to_f32((u16)(v >> 16));
}
__device__ __forceinline__ void unpack_bf16(u32 v, float& a, float& b) {
    a = bf16_to_f32((u16)(v & 0xffff));
    b = bf16_to_f32((u16)(v >> 16));
}

// acc[t] += dot(wv[0..8], x[t, k0..k0+8]) for each token.
template <int T>
__device__ __forceinline__ void fma8(float* acc, const float* wv, const float* x, int cols, int k0, int ntok) {
#pragma unroll
    for (int t = 0; t < T; t++) {
        if (t < ntok) {
            const f32x4* xv = (const f32x4*)(x + (size_t)t * cols + k0);
            const f32x4 a = xv[0], b = xv[1];
            acc[t] += wv[0] * a.x + wv[1] * a.y + wv[2] * a.z + wv[3] * a.w + wv[4] * b.x + wv[5] * b.y +
                      wv[6] * b.z + wv[7] * b.w;
        }
    }
}

// Any layout, one element at a time (rows whose length rules out vector loads).
template <int T, float (*ELEM)(const void*, const u16*, const u16*, size_t)>
__device__ __forceinline__ void row_scalar(float* acc, const void* w, const u16* d, const u16* m, const float* x,
                                           size_t r, int cols, int ntok, int lane) {
    for (int k = lane; k < cols; k += WARP) {
        const float wv = ELEM(w, d, m, r * cols + k);
#pragma unroll
        for (int t = 0; t < T; t++)
            if (t < ntok) acc[t] += wv * x[(size_t)t * cols + k];
    }
}

template <int T>
__device__ __forceinline__ void row_f16(float* acc, const void* w, const u16* d, const u16* m, const float* x,
                                        size_t r, int cols, int ntok, int lane) {
    if (cols % 8 != 0) return row_scalar<T, elem_f16>(acc, w, d, m, x, r, cols, ntok, lane);
    const u32x4* wr = (const u32x4*)((const u16*)w + r * cols);
#pragma unroll 4
    for (int v = lane; v < cols / 8; v += WARP) {
        const u32x4 p = wr[v];
        float wv[8];
        unpack_f16(p.x, wv[0], wv[1]);
        unpack_f16(p.y, wv[2], wv[3]);
        unpack_f16(p.z, wv[4], wv[5]);
        unpack_f16(p.w, wv[6], wv[7]);
        fma8<T>(acc, wv, x, cols, v * 8, ntok);
    }
}

template <int T>
__device__ __forceinline__ void row_bf16(float* acc, const void* w, const u16* d, const u16* m, const float* x,
                                         size_t r, int cols, int ntok, int lane) {
    if (cols % 8 != 0) return row_scalar<T, elem_bf16>(acc, w, d, m, x, r, cols, ntok, lane);
    const u32x4* wr = (const u32x4*)((const u16*)w + r * cols);
#pragma unroll 4
    for (int v = lane; v < cols / 8; v += WARP) {
        const u32x4 p = wr[v];
        float wv[8];
        unpack_bf16(p.x, wv[0], wv[1]);
        unpack_bf16(p.y, wv[2], wv[3]);
        unpack_bf16(p.z, wv[4], wv[5]);
        unpack_bf16(p.w, wv[6], wv[7]);
        fma8<T>(acc, wv, x, cols, v * 8, ntok);
    }
}

template <int T>
__device__ __forceinline__ void row_f32(float* acc, const void* w, const u16* d, const u16* m, const float* x,
                                        size_t r, int cols, int ntok, int lane) {
    if (cols % 8 != 0) return row_scalar<T, elem_f32>(acc, w, d, m, x, r, cols, ntok, lane);
    const f32x4* wr = (const f32x4*)((const float*)w + r * cols);
    for (int v = lane; v < cols / 8; v += WARP) {
        const f32x4 a = wr[2 * v], b = wr[2 * v + 1];
        const float wv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
        fma8<T>(acc, wv, x, cols, v * 8, ntok);
    }
}

__device__ __forceinline__ float i8_at(u32 v, int e) { return (float)(i8)(u8)(v >> (8 * e)); }

// Quantized rows are whole blocks of 32; a lane takes 16 elements (a unit) at a time.
template <int T>
__device__ __forceinline__ void row_q8_0(float* acc, const void* w, const u16* d, const u16*, const float* x,
                                         size_t r, int cols, int ntok, int lane) {
    const u32x4* q = (const u32x4*)((const i8*)w + r * cols);
    const u16* dr = d + r * (cols / 32);
#pragma unroll 2
    for (int u = lane; u < cols / 16; u += WARP) {
        const u32x4 p = q[u];
        const float s = f16_to_f32(dr[u / 2]);
        const u32 words[4] = {p.x, p.y, p.z, p.w};
        float wv[16];
#pragma unroll
        for (int i = 0; i < 16; i++) wv[i] = i8_at(words[i / 4], i % 4);
        float part[T];
#pragma unroll
        for (int t = 0; t < T; t++) part[t] = 0.0f;
        fma8<T>(part, wv, x, cols, u * 16, ntok);
        fma8<T>(part, wv + 8, x, cols, u * 16 + 8, ntok);
#pragma unroll
        for (int t = 0; t < T; t++) acc[t] += s * part[t];
    }
}

// Q4_0 / Q4_1: unit u is half h = u % 2 of block b = u / 2: bytes 8h..8h+8 of the block's 16, i.e.
// elements 8h..8h+8 (low nibbles) and 16+8h..16+8h+8 (high nibbles).
template <int T, bool MIN>
__device__ __forceinline__ void row_q4(float* acc, const void* w, const u16* d, const u16* m, const float* x,
                                       size_t r, int cols, int ntok, int lane) {
    const u32x2* q = (const u32x2*)((const u8*)w + r * (cols / 2));
    const u16* dr = d + r * (cols / 32);
    const u16* mr = m + r * (cols / 32);
#pragma unroll 2
    for (int u = lane; u < cols / 16; u += WARP) {
        const u32x2 p = q[u];
        const int b = u / 2, h = u % 2;
        const float s = f16_to_f32(dr[b]);
        float lo[8], hi[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const u32 byte = ((i < 4 ? p.x : p.y) >> (8 * (i % 4))) & 0xff;
            lo[i] = (float)(byte & 15) - (MIN ? 0.0f : 8.0f);
            hi[i] = (float)(byte >> 4) - (MIN ? 0.0f : 8.0f);
        }
        float part[T];
#pragma unroll
        for (int t = 0; t < T; t++) part[t] = 0.0f;
        fma8<T>(part, lo, x, cols, b * 32 + h * 8, ntok);
        fma8<T>(part, hi, x, cols, b * 32 + 16 + h * 8, ntok);
        if (MIN) {
            const float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
            float xs[T];
#pragma unroll
            for (int t = 0; t < T; t++) xs[t] = 0.0f;
            fma8<T>(xs, ones, x, cols, b * 32 + h * 8, ntok);
            fma8<T>(xs, ones, x, cols, b * 32 + 16 + h * 8, ntok);
            const float mn = f16_to_f32(mr[b]);
#pragma unroll
            for (int t = 0; t < T; t++) acc[t] += s * part[t] + mn * xs[t];
        } else {
#pragma unroll
            for (int t = 0; t < T; t++) acc[t] += s * part[t];
        }
    }
}
template <int T>
__device__ __forceinline__ void row_q4_0(float* acc, const void* w, const u16* d, const u16* m, const float* x,
                                         size_t r, int cols, int ntok, int lane) {
    row_q4<T, false>(acc, w, d, m, x, r, cols, ntok, lane);
}
template <int T>
__device__ __forceinline__ void row_q4_1(float* acc, const void* w, const u16* d, const u16* m, const float* x,
                                         size_t r, int cols, int ntok, int lane) {
    row_q4<T, true>(acc, w, d, m, x, r, cols, ntok, lane);
}

// The row loop: rows r of this block (a warp each), out[t, r] (+)= acc + bias.
#define GEMV_ROWS(name, T, X, NTOK)                                                                         \
    const int lane = threadIdx.x % WARP, per_block = blockDim.x / WARP;                                       \
    for (int r = blockIdx.x * per_block + threadIdx.x / WARP; r < rows; r += gridDim.x * per_block) {        \
        float acc[T];                                                                                        \
        for (int t = 0; t < T; t++) acc[t] = 0.0f;                                                           \
        row_##name<T>(acc, w, d, m, X, (size_t)r, cols, NTOK, lane);                                         \
        for (int t = 0; t < T; t++) {                                                                        \
            const float s = warp_sum(acc[t]);                                                                \
            if (lane == 0 && t < NTOK) {                                                                     \
                float* o = out + (size_t)t * rows + r;                                                       \
                *o = (accumulate ? *o : 0.0f) + s + (bias ? bias[r] : 0.0f);                                 \
            }                                                                                                \
        }                                                                                                    \
    }

#define GEMV(name, T, suffix)                                                                              \
    extern "C" __global__ void gemv_##name##suffix(const void* w, const u16* d, const u16* m, const float* bias, \
                                                   const float* x, float* out, int rows, int cols, int ntok,   \
                                                   int accumulate) {                                         \
        kernel_start();                                                                                      \
        GEMV_ROWS(name, T, x, ntok)                                                                          \
    }
#define GEMV_BOTH(name, elem) GEMV(name, 1, _t1) GEMV(name, MAXT, )
FOR_EACH_LAYOUT(GEMV_BOTH)

// Fused one-token variants: each block first builds the gemv's input row in shared memory (cols <=
// ROW_MAXC) from what the separate op would have written (input_row.h: `_norm` rms_norm(x)·norm, `_silu`
// silu(gate)·up of x = gate|up [2·cols]). The host launches at most one wave of blocks, each taking many
// rows, so that the row is built once per block, not once per 8 rows. gemv_t1.hip serves the layouts and
// widths it has; these take the rest (f32 weights, rows that are not whole 16-byte units).

// xs = the stage's input row: float4 by float4 (input_row.h) where rows allow it, element by element else.
template <int STAGE>
__device__ __forceinline__ void build_row(float* xs, const float* x, const float* norm, int cols, float eps,
                                          float* red) {
    if (cols % 4 == 0) {
        f32x4* xs4 = (f32x4*)xs;
        build_input<STAGE>(x, norm, eps, cols, red, [&](int c, bool ok, f32x4 v) {
            if (ok) xs4[c] = v;
        });
    } else if (STAGE == STAGE_NORM) {
        float ss = 0.0f;
        for (int c = threadIdx.x; c < cols; c += ROW_NT) ss += x[c] * x[c];
        ss = block_sum(ss, red);
        const float inv = 1.0f / sqrtf(ss / (float)cols + eps);
        for (int c = threadIdx.x; c < cols; c += ROW_NT) xs[c] = norm[c] * (x[c] * inv);
    } else {
        for (int c = threadIdx.x; c < cols; c += ROW_NT) xs[c] = silu_times(x[c], x[cols + c]);
    }
}

#define GEMV_PRE(name, elem)                                                                                   \
    extern "C" __global__ void __launch_bounds__(ROW_NT)                                                       \
    gemv_##name##_norm_t1(const void* w, const u16* d, const u16* m, const float* bias, const float* x,        \
                          float* out, int rows, int cols, int accumulate, const float* norm, float eps) {       \
        __shared__ f32x4 xs4[ROW_MAXC / 4];                                                                   \
        __shared__ float red[32];                                                                              \
        kernel_start();                                                                                        \
        build_row<STAGE_NORM>((float*)xs4, x, norm, cols, eps, red);                                           \
        __syncthreads();                                                                                       \
        GEMV_ROWS(name, 1, (const float*)xs4, 1)                                                               \
    }                                                                                                          \
    extern "C" __global__ void __launch_bounds__(ROW_NT)                                                       \
    gemv_##name##_silu_t1(const void* w, const u16* d, const u16* m, const float* bias, const float* x,        \
                          float* out, int rows, int cols, int accumulate, const float*, float) {                \
        __shared__ f32x4 xs4[ROW_MAXC / 4];                                                                   \
        kernel_start();                                                                                        \
        build_row<STAGE_SILU>((float*)xs4, x, nullptr, cols, 0.0f, nullptr);                                   \
        __syncthreads();                                                                                       \
        GEMV_ROWS(name, 1, (const float*)xs4, 1)                                                               \
    }
FOR_EACH_LAYOUT(GEMV_PRE)
