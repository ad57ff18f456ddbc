// attention.hip: causal attention of the step's queries over the paged KV cache (GQA, sliding window),
// softmax in f32. One block per (token, kv head, split): the block serves the `group` query heads that
// share the kv head, walking the split's positions in chunks of blockDim.x (one position per thread
// for the scores, one (head, dim) output per thread for the weighted values) with an online softmax.
// Decode uses many splits (flash-decoding): each writes (acc, max, sum) and attention_combine merges
// them; with one split the block writes the output itself. `attention_rope` is the same kernel for
// decode steps (one token per sequence) with rope_store_kv folded in: it rotates the queries as it
// loads them from the fused q|k|v rows, and the block whose split holds the token's own position
// rotates and stores its key and value into the cache first.
#include "common.h"

#define CHUNK 128      // threads per block = positions per chunk
#define MAX_GROUP 16   // query heads per kv head
#define MAX_QROW 2048  // group * head_dim
#define PER_THREAD (MAX_QROW / CHUNK)
#define MIN_SPAN 16    // positions a split takes at least (short contexts use fewer splits)

#define MAX_SPLITS 32   // the host's most splits per (token, kv head)

// out[:] of one (token, head) from its nsplit partials (acc[head_dim], max, sum) each (part: [nsplit,
// head_dim + 2]), with all the block's threads. The loads are independent of each other: every split's
// max and sum in one round, then each output's nsplit accumulators in one more.
__device__ __forceinline__ void merge_splits(const float* part, float* out, int head_dim, int nsplit, float* ms,
                                             float* ls) {
    for (int s = threadIdx.x; s < nsplit; s += blockDim.x) {
        ms[s] = part[(size_t)s * (head_dim + 2) + head_dim];
        ls[s] = part[(size_t)s * (head_dim + 2) + head_dim + 1];
    }
    __syncthreads();
    float m = NEG_INF;
    for (int s = 0; s < nsplit; s++) m = fmaxf(m, ms[s]);
    for (int dd = threadIdx.x; dd < head_dim; dd += blockDim.x) {
        float v[MAX_SPLITS];
#pragma unroll
        for (int s = 0; s < MAX_SPLITS; s++) v[s] = s < nsplit ? part[s * (head_dim + 2) + dd] : 0.0f;
        float sum = 0.0f, a = 0.0f;
#pragma unroll
        for (int s = 0; s < MAX_SPLITS; s++) {
            const float l = s < nsplit ? ls[s] : 0.0f;
            if (l > 0.0f) {
                const float w = expf(ms[s] - m);
                sum += l * w;
                a += v[s] * w;
            }
        }
        out[dd] = a / sum;
    }
}

// ROPE: `q` is the step's fused q|k|v rows (see above), else its rotated queries [n, heads * head_dim].
template <bool ROPE>
__device__ __forceinline__ void attention_body(const float* q, const float* inv_freq, float* k_cache,
                                               float* v_cache, float* out, float* partial,
                                               const u32* positions, const u32* token_seq,
                                               const u32* table_start, const u32* tables, int heads,
                                               int kv_heads, int head_dim, int block_size, float scale,
                                               int window, int nsplit) {
    __shared__ float qs[MAX_QROW];
    __shared__ float sc[MAX_GROUP * CHUNK];
    __shared__ u32 offs[CHUNK];
    __shared__ float run_max[MAX_GROUP], run_sum[MAX_GROUP], factor[MAX_GROUP];
    kernel_start();
    const int tid = threadIdx.x, lane = tid % WARP, warp = tid / WARP, nwarps = CHUNK / WARP;
    const int i = blockIdx.x / kv_heads, kvh = blockIdx.x % kv_heads, split = blockIdx.y;
    const int group = heads / kv_heads, gw = group * head_dim, kw = kv_heads * head_dim;
    const int p = (int)positions[i], s = (int)token_seq[i];
    const int lo = window > 0 ? max(0, p + 1 - window) : 0;
    const int span = max(MIN_SPAN, (p + 1 - lo + nsplit - 1) / nsplit);
    const int start = lo + split * span, end = min(p + 1, start + span);
    const u32* table = tables + table_start[s];

    if (ROPE) {
        const int qw = heads * head_dim, half = head_dim / 2;
        const float* row = q + (size_t)i * (qw + 2 * kw);
        for (int t = tid; t < group * half; t += CHUNK) {
            const int g = t / half, j = t % half;
            const float* src = row + (kvh * group + g) * head_dim;
            const f32x2 r = rope_rotate(src[j], src[j + half], (float)p * inv_freq[j]);
            qs[g * head_dim + j] = r.x;
            qs[g * head_dim + j + half] = r.y;
        }
        // The token's own key and value, read below by this block only (the one whose split holds p).
        if (start <= p && p < end) {
            const size_t slot = ((size_t)table[p / block_size] * block_size + p % block_size) * kw + kvh * head_dim;
            const float* k = row + qw + kvh * head_dim;
            for (int j = tid; j < half; j += CHUNK) {
                const f32x2 r = rope_rotate(k[j], k[j + half], (float)p * inv_freq[j]);
                k_cache[slot + j] = r.x;
                k_cache[slot + j + half] = r.y;
            }
            for (int e = tid; e < head_dim; e += CHUNK) v_cache[slot + e] = row[qw + kw + kvh * head_dim + e];
        }
    } else {
        for (int e = tid; e < gw; e += CHUNK) qs[e] = q[((size_t)i * heads + kvh * group) * head_dim + e];
    }
    if (tid < group) { run_max[tid] = NEG_INF; run_sum[tid] = 0.0f; }
    float acc[PER_THREAD];
#pragma unroll
    for (int k = 0; k < PER_THREAD; k++) acc[k] = 0.0f;
    __syncthreads();

    for (int c0 = start; c0 < end; c0 += CHUNK) {
        const int n = min(CHUNK, end - c0);
        // Scores: a warp per position, lanes across the head dimension (coalesced key reads).
        for (int t = warp; t < n; t += nwarps) {
            const int j = c0 + t;
            const u32 off = ((table[j / block_size] * block_size + j % block_size) * kv_heads + kvh) * head_dim;
            if (lane == 0) offs[t] = off;
            const float* kr = k_cache + off;
            for (int g = 0; g < group; g++) {
                float dot = 0.0f;
                for (int e = lane; e < head_dim; e += WARP) dot += qs[g * head_dim + e] * kr[e];
                dot = warp_sum(dot);
                if (lane == 0) sc[g * CHUNK + t] = dot * scale;
            }
        }
        __syncthreads();
        // New running max per head (a warp per head), and the factor that rescales what came before.
        for (int g = warp; g < group; g += nwarps) {
            float mx = NEG_INF;
            for (int t = lane; t < n; t += WARP) mx = fmaxf(mx, sc[g * CHUNK + t]);
            mx = warp_max(mx);
            if (lane == 0) {
                const float m_new = fmaxf(run_max[g], mx);
                factor[g] = expf(run_max[g] - m_new);
                run_max[g] = m_new;
            }
        }
        __syncthreads();
        for (int g = 0; g < group; g++)
            if (tid < n) sc[g * CHUNK + tid] = expf(sc[g * CHUNK + tid] - run_max[g]);
        __syncthreads();
        for (int g = warp; g < group; g += nwarps) {
            float sum = 0.0f;
            for (int t = lane; t < n; t += WARP) sum += sc[g * CHUNK + t];
            sum = warp_sum(sum);
            if (lane == 0) run_sum[g] = run_sum[g] * factor[g] + sum;
        }
        // Weighted values: this thread's (head, dim) outputs.
#pragma unroll
        for (int k = 0; k < PER_THREAD; k++) {
            const int e = tid + k * CHUNK;
            if (e < gw) {
                const int g = e / head_dim, dd = e % head_dim;
                float a = acc[k] * factor[g];
                for (int t = 0; t < n; t++) a += sc[g * CHUNK + t] * v_cache[offs[t] + dd];
                acc[k] = a;
            }
        }
        __syncthreads();
    }

#pragma unroll
    for (int k = 0; k < PER_THREAD; k++) {
        const int e = tid + k * CHUNK;
        if (e < gw) {
            const int g = e / head_dim, dd = e % head_dim, h = kvh * group + g;
            if (nsplit == 1) {
                out[((size_t)i * heads + h) * head_dim + dd] = acc[k] / run_sum[g];
            } else {
                float* part = partial + (((size_t)i * heads + h) * nsplit + split) * (head_dim + 2);
                part[dd] = acc[k];
                if (dd == 0) { part[head_dim] = run_max[g]; part[head_dim + 1] = run_sum[g]; }
            }
        }
    }
}

extern "C" __global__ void attention(const float* q, float* k_cache, float* v_cache, float* out, float* partial,
                                     const u32* positions, const u32* token_seq, const u32* table_start,
                                     const u32* tables, int heads, int kv_heads, int head_dim, int block_size,
                                     float scale, int window, int nsplit) {
    attention_body<false>(q, nullptr, k_cache, v_cache, out, partial, positions, token_seq, table_start, tables,
                          heads, kv_heads, head_dim, block_size, scale, window, nsplit);
}

extern "C" __global__ void attention_rope(const float* qkv, const float* inv_freq, float* k_cache, float* v_cache,
                                          float* out, float* partial, const u32* positions, const u32* token_seq,
                                          const u32* table_start, const u32* tables, int heads, int kv_heads,
                                          int head_dim, int block_size, float scale, int window, int nsplit) {
    attention_body<true>(qkv, inv_freq, k_cache, v_cache, out, partial, positions, token_seq, table_start, tables,
                         heads, kv_heads, head_dim, block_size, scale, window, nsplit);
}

// Merges the splits of one (token, head): grid = tokens * heads, one thread per dimension.
extern "C" __global__ void attention_combine(const float* partial, float* out, int head_dim, int nsplit) {
    __shared__ float ms[MAX_SPLITS], ls[MAX_SPLITS];
    kernel_start();
    merge_splits(partial + (size_t)blockIdx.x * nsplit * (head_dim + 2), out + (size_t)blockIdx.x * head_dim,
                 head_dim, nsplit, ms, ls);
}
