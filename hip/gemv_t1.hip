// gemv_t1.hip: the one-token (decode) gemv out[r] (+)= W[r, :]·in + bias[r] of f16, bf16, Q8_0, Q4_0 and
// Q4_1 weights, with the op before it folded in: `_x` reads in = x, `_norm` in = rms_norm(x)·norm, `_silu`
// in = silu(gate)·up of x = gate|up. Each block first writes `in` to shared memory: f32 for float weights;
// for quantized weights as 8-bit integers per block of 32 with one scale d, in ≈ d·(q + r/254), q and the
// remainder r both int8 (8 bits alone, as llama.cpp's q8_1, moves SmolLM2's logits by up to 0.06 and its
// greedy text after 29 tokens; with r the error is ~2e-4), so that a weight block costs a few 4-way int8
// dot products (dot4_i8) instead of 32 int-to-float conversions. The warps send the loads of their first
// weights before that, so the two latencies overlap. Rows go one per warp by grid stride (the host
// launches about one wave of blocks); a lane takes U 16-byte units of a row at a time and sends the loads
// of its next units (of this row or its next row) before it sums the current ones.
#include "input_row.h"

#define NT ROW_NT              // threads per block (the host's BLOCK)
#define MAXC ROW_MAXC          // longest input row (the host's MAX_FUSED_COLS)
#define NB (MAXC / 32)         // most blocks of 32 in a row

// f32 input for float weights: elements 8u..8u+3 in a[u], 8u+4..8u+7 in b[u], so that the lanes of a
// warp (consecutive units u) read consecutive 16 bytes.
struct InF {
    f32x4 a[MAXC / 8], b[MAXC / 8];
};

// 8-bit input for quantized weights: block j's q in lo[j] (elements 0..15) and hi[j] (16..31), its
// remainders r in lo2[j] and hi2[j], d[j] = (d, d·Σ(q + r/254)). Each array starts 64 bytes off the bank
// of the one before, so that lanes reading lo and hi alternately do not collide.
struct InQ {
    u32x4 lo[NB + 4], hi[NB + 4], lo2[NB + 4], hi2[NB];
    f32x2 d[NB];
};

__device__ __forceinline__ u32 pack_i8(int a, int b, int c, int d) {
    return (u32)(a & 255) | ((u32)(b & 255) << 8) | ((u32)(c & 255) << 16) | ((u32)d << 24);
}

template <int STAGE>
__device__ __forceinline__ void build_f32(InF& in, const float* x, const float* norm, float eps, int cols,
                                          float* red) {
    build_input<STAGE>(x, norm, eps, cols, red, [&](int c, bool ok, f32x4 v) {
        if (ok) (c & 1 ? in.b : in.a)[c >> 1] = v;
    });
}

template <int STAGE>
__device__ __forceinline__ void build_q8(InQ& in, const float* x, const float* norm, float eps, int cols,
                                         float* red) {
    build_input<STAGE>(x, norm, eps, cols, red, [&](int c, bool ok, f32x4 v) {
        // The block's largest magnitude over its 8 lanes (XOR 1, 2, 4 stays inside an aligned group of 8).
        float amax = fmaxf(fmaxf(fabsf(v.x), fabsf(v.y)), fmaxf(fabsf(v.z), fabsf(v.w)));
        amax = fmaxf(amax, shfl_xor(amax, 1));
        amax = fmaxf(amax, shfl_xor(amax, 2));
        amax = fmaxf(amax, shfl_xor(amax, 4));
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        int q[4], r[4];
        const float t[4] = {v.x * id, v.y * id, v.z * id, v.w * id};
        int s = 0;  // 254·Σq + Σr over the block
#pragma unroll
        for (int e = 0; e < 4; e++) {
            q[e] = (int)rintf(t[e]);
            r[e] = min(127, max(-127, (int)rintf((t[e] - (float)q[e]) * 254.0f)));
            s += 254 * q[e] + r[e];
        }
        s += shfl_xor(s, 1);
        s += shfl_xor(s, 2);
        s += shfl_xor(s, 4);
        if (ok) {
            const int j = c >> 3, word = c & 7, k = word & 3;
            const bool low = word < 4;
            ((u32*)(low ? &in.lo[j] : &in.hi[j]))[k] = pack_i8(q[0], q[1], q[2], q[3]);
            ((u32*)(low ? &in.lo2[j] : &in.hi2[j]))[k] = pack_i8(r[0], r[1], r[2], r[3]);
            const float d = amax / 127.0f;
            if (word == 0) in.d[j] = f32x2{d, d * ((float)s * (1.0f / 254.0f))};
        }
    });
}

// Σ (w·in) over one block from the integer sums s = Σ w_q·q and s2 = Σ w_q·r: d·(s + s2/254).
__device__ __forceinline__ float q_sum(int s, int s2) { return (float)s + (float)s2 * (1.0f / 254.0f); }

// ---- weight layouts: 16-byte units, their loads and their dot products with the input ----------------

// f16 / bf16: a unit is 8 weights.
template <bool BF>
struct FloatW {
    static constexpr int U = 4;  // units per lane at a time (64 bytes)
    typedef InF In;
    struct Unit {
        u32x4 p;
    };
    static __device__ __forceinline__ int units(int cols) { return cols / 8; }
    static __device__ __forceinline__ void load(Unit& u, const void* w, const u16*, const u16*, size_t r, int nu,
                                                int, int i) {
        u.p = ((const u32x4*)w)[r * nu + i];
    }
    static __device__ __forceinline__ float wt(u32 v, int hi) {
        const u16 h = (u16)(hi ? v >> 16 : v & 0xffff);
        return BF ? bf16_to_f32(h) : f16_to_f32(h);
    }
    static __device__ __forceinline__ float dot(const Unit& u, const In& in, int i) {
        const f32x4 a = in.a[i], b = in.b[i];
        return wt(u.p.x, 0) * a.x + wt(u.p.x, 1) * a.y + wt(u.p.y, 0) * a.z + wt(u.p.y, 1) * a.w +
               wt(u.p.z, 0) * b.x + wt(u.p.z, 1) * b.y + wt(u.p.w, 0) * b.z + wt(u.p.w, 1) * b.w;
    }
    template <int STAGE>
    static __device__ __forceinline__ void build(In& in, const float* x, const float* norm, float eps, int cols,
                                                 float* red) {
        build_f32<STAGE>(in, x, norm, eps, cols, red);
    }
};

// Q8_0: a unit is half a block (16 int8 weights); unit i is half i % 2 of block i / 2.
struct Q8W {
    static constexpr int U = 4;
    typedef InQ In;
    struct Unit {
        u32x4 q;
        u16 d;
    };
    static __device__ __forceinline__ int units(int cols) { return cols / 16; }
    static __device__ __forceinline__ void load(Unit& u, const void* w, const u16* d, const u16*, size_t r, int nu,
                                                int nb, int i) {
        u.q = ((const u32x4*)w)[r * nu + i];
        u.d = d[r * nb + i / 2];
    }
    static __device__ __forceinline__ int dot16(const u32x4& q, const u32x4& x) {
        int s = dot4_i8((int)q.x, (int)x.x, 0);
        s = dot4_i8((int)q.y, (int)x.y, s);
        s = dot4_i8((int)q.z, (int)x.z, s);
        return dot4_i8((int)q.w, (int)x.w, s);
    }
    static __device__ __forceinline__ float dot(const Unit& u, const In& in, int i) {
        const int j = i >> 1;
        const bool h = i & 1;
        const int s = dot16(u.q, h ? in.hi[j] : in.lo[j]), s2 = dot16(u.q, h ? in.hi2[j] : in.lo2[j]);
        return f16_to_f32(u.d) * in.d[j].x * q_sum(s, s2);
    }
    template <int STAGE>
    static __device__ __forceinline__ void build(In& in, const float* x, const float* norm, float eps, int cols,
                                                 float* red) {
        build_q8<STAGE>(in, x, norm, eps, cols, red);
    }
};

// Q4_0 / Q4_1: a unit is one block of 32 (byte k: element k in the low nibble, k + 16 in the high one);
// Q4_0 weights are d·(q − 8), Q4_1 weights d·q + m.
template <bool MIN>
struct Q4W {
    static constexpr int U = 2;
    typedef InQ In;
    struct Unit {
        u32x4 q;
        u16 d, m;
    };
    static __device__ __forceinline__ int units(int cols) { return cols / 32; }
    static __device__ __forceinline__ void load(Unit& u, const void* w, const u16* d, const u16* m, size_t r,
                                                int nu, int, int i) {
        u.q = ((const u32x4*)w)[r * nu + i];
        u.d = d[r * nu + i];
        if (MIN) u.m = m[r * nu + i];
    }
    static __device__ __forceinline__ int dot_nib(u32 q, u32 lo, u32 hi, int s) {
        s = dot4_i8((int)(q & 0x0f0f0f0fu), (int)lo, s);
        return dot4_i8((int)((q >> 4) & 0x0f0f0f0fu), (int)hi, s);
    }
    static __device__ __forceinline__ int dot32(const u32x4& q, const u32x4& lo, const u32x4& hi) {
        int s = dot_nib(q.x, lo.x, hi.x, 0);
        s = dot_nib(q.y, lo.y, hi.y, s);
        s = dot_nib(q.z, lo.z, hi.z, s);
        return dot_nib(q.w, lo.w, hi.w, s);
    }
    static __device__ __forceinline__ float dot(const Unit& u, const In& in, int i) {
        const int s = dot32(u.q, in.lo[i], in.hi[i]), s2 = dot32(u.q, in.lo2[i], in.hi2[i]);
        const f32x2 xd = in.d[i];
        const float dw = f16_to_f32(u.d), sum = xd.x * q_sum(s, s2);
        return MIN ? dw * sum + f16_to_f32(u.m) * xd.y : dw * (sum - 8.0f * xd.y);
    }
    template <int STAGE>
    static __device__ __forceinline__ void build(In& in, const float* x, const float* norm, float eps, int cols,
                                                 float* red) {
        build_q8<STAGE>(in, x, norm, eps, cols, red);
    }
};

// ---- the row loop -------------------------------------------------------------------------------------

// Units (ch·U + i)·WARP + lane of row r, i < U, where they exist.
template <class L>
__device__ __forceinline__ void load_chunk(typename L::Unit* u, const void* w, const u16* d, const u16* m, int r,
                                           int rows, int ch, int nu, int nb, int lane) {
    if (r >= rows) return;
#pragma unroll
    for (int i = 0; i < L::U; i++) {
        const int k = (ch * L::U + i) * WARP + lane;
        if (k < nu) L::load(u[i], w, d, m, (size_t)r, nu, nb, k);
    }
}

template <class L>
__device__ __forceinline__ float dot_chunk(const typename L::Unit* u, const typename L::In& in, int ch, int nu,
                                           int lane) {
    float acc = 0.0f;
#pragma unroll
    for (int i = 0; i < L::U; i++) {
        const int k = (ch * L::U + i) * WARP + lane;
        if (k < nu) acc += L::dot(u[i], in, k);
    }
    return acc;
}

template <class L, int STAGE>
__device__ __forceinline__ void gemv_t1(const void* w, const u16* d, const u16* m, const float* bias,
                                        const float* x, float* out, int rows, int cols, int accumulate,
                                        const float* norm, float eps) {
    __shared__ typename L::In in;
    __shared__ float red[32];
    const int lane = threadIdx.x % WARP, warps = NT / WARP, stride = gridDim.x * warps;
    const int nu = L::units(cols), nb = cols / 32, nch = (nu + L::U * WARP - 1) / (L::U * WARP);
    int r = blockIdx.x * warps + threadIdx.x / WARP, ch = 0;
    typename L::Unit cur[L::U], next[L::U];
    load_chunk<L>(cur, w, d, m, r, rows, ch, nu, nb, lane);
    // The weights do not depend on the kernel before: their first loads go out before the wait.
    grid_dep_wait();
    grid_dep_launch();
    L::template build<STAGE>(in, x, norm, eps, cols, red);
    __syncthreads();
    float acc = 0.0f;
    while (r < rows) {
        int nr = r, nc = ch + 1;
        if (nc == nch) {
            nc = 0;
            nr += stride;
        }
        load_chunk<L>(next, w, d, m, nr, rows, nc, nu, nb, lane);
        acc += dot_chunk<L>(cur, in, ch, nu, lane);
        if (nc == 0) {
            const float s = warp_sum(acc);
            if (lane == 0) {
                float* o = out + r;
                *o = (accumulate ? *o : 0.0f) + s + (bias ? bias[r] : 0.0f);
            }
            acc = 0.0f;
        }
#pragma unroll
        for (int i = 0; i < L::U; i++) cur[i] = next[i];
        r = nr;
        ch = nc;
    }
}

#define GEMV_T1_STAGE(name, L, stage, S)                                                                     \
    extern "C" __global__ void __launch_bounds__(NT)                                                         \
    gemv_t1_##name##_##stage(const void* w, const u16* d, const u16* m, const float* bias, const float* x,   \
                             float* out, int rows, int cols, int accumulate, const float* norm, float eps) { \
        gemv_t1<L, S>(w, d, m, bias, x, out, rows, cols, accumulate, norm, eps);                             \
    }
#define GEMV_T1(name, L)                          \
    GEMV_T1_STAGE(name, L, x, STAGE_X)            \
    GEMV_T1_STAGE(name, L, norm, STAGE_NORM)      \
    GEMV_T1_STAGE(name, L, silu, STAGE_SILU)

GEMV_T1(f16, FloatW<false>)
GEMV_T1(bf16, FloatW<true>)
GEMV_T1(q8_0, Q8W)
GEMV_T1(q4_0, Q4W<false>)
GEMV_T1(q4_1, Q4W<true>)
