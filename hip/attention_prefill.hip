// attention_prefill.hip: causal attention for prefill (flash attention, scalar f32). One block per
// (tile of consecutive tokens, kv head): its rows are the tile's (token, query head of the group) pairs;
// key and value tiles of BK positions are staged in shared memory once and used by every row, with an
// online softmax per row. A row is served by head_dim / 32 adjacent threads, each holding 32 dims of
// its query and output in registers (head_dim 32, 64 or 128). Tokens of a tile may belong to several
// sequences: the block walks the tile's runs of one sequence, each over its own key range. Paged KV
// cache [blocks, block_size, kv_heads, head_dim]; sliding window honoured.
#include "common.h"

#define NT 128      // threads per block
#define BK 32       // key positions per shared tile
#define CH 8        // float4 chunks of head dims per thread (32 dims)
#define MAX_HD 128

extern "C" __global__ void __launch_bounds__(NT)
attention_prefill(const float* q, const float* k_cache, const float* v_cache, float* out, const u32* positions,
                  const u32* token_seq, const u32* table_start, const u32* tables, int n, int heads,
                  int kv_heads, int head_dim, int block_size, float scale, int window) {
    __shared__ f32x4 ks[BK * MAX_HD / 4];
    __shared__ f32x4 vs[BK * MAX_HD / 4];
    kernel_start();
    const int tpr = head_dim / (4 * CH), hd4 = head_dim / 4;
    const int group = heads / kv_heads, tok_per_block = (NT / tpr) / group;
    const int tile = gridDim.x - 1 - blockIdx.x;  // late tiles (most keys) first
    const int kvh = blockIdx.y, kw = kv_heads * head_dim;
    const int t0 = tile * tok_per_block, t1 = min(n, t0 + tok_per_block);
    const int tid = threadIdx.x, row = tid / tpr, part = tid % tpr;
    const int tok = t0 + row / group, g = row % group;
    const bool live = row < tok_per_block * group && tok < t1;

    // This thread's dims: float4 chunks part, part + tpr, ... (adjacent lanes read adjacent chunks).
    f32x4 qr[CH], o[CH];
    int p = -1, lo = 0;
    const f32x4* qrow = (const f32x4*)(q + ((size_t)tok * heads + kvh * group + g) * head_dim);
#pragma unroll
    for (int c = 0; c < CH; c++) {
        qr[c] = live ? qrow[c * tpr + part] : f32x4{0.0f, 0.0f, 0.0f, 0.0f};
        o[c] = f32x4{0.0f, 0.0f, 0.0f, 0.0f};
    }
    if (live) {
        p = (int)positions[tok];
        lo = window > 0 ? max(0, p + 1 - window) : 0;
    }
    float m = NEG_INF, l = 0.0f;

    for (int s0 = t0; s0 < t1;) {
        // The run [s0, s1) of one sequence, and the keys its tokens see.
        const u32 seq = token_seq[s0];
        int s1 = s0 + 1;
        while (s1 < t1 && token_seq[s1] == seq) s1++;
        int kmin = 0x7fffffff, kmax = -1;
        for (int t = s0; t < s1; t++) {
            const int pt = (int)positions[t];
            kmin = min(kmin, window > 0 ? max(0, pt + 1 - window) : 0);
            kmax = max(kmax, pt);
        }
        const bool mine = live && tok >= s0 && tok < s1;
        const u32* table = tables + table_start[seq];

        for (int k0 = kmin; k0 <= kmax; k0 += BK) {
            const int nk = min(BK, kmax + 1 - k0);
            __syncthreads();  // the previous tile is consumed
            for (int e = tid; e < BK * hd4; e += NT) {
                const int j = e / hd4, c = e % hd4;
                f32x4 kv = {0.0f, 0.0f, 0.0f, 0.0f}, vv = {0.0f, 0.0f, 0.0f, 0.0f};
                if (j < nk) {
                    const int pos = k0 + j;
                    const size_t off =
                        ((size_t)table[pos / block_size] * block_size + pos % block_size) * kw + kvh * head_dim;
                    kv = ((const f32x4*)(k_cache + off))[c];
                    vv = ((const f32x4*)(v_cache + off))[c];
                }
                ks[j * hd4 + c] = kv;
                vs[j * hd4 + c] = vv;
            }
            __syncthreads();

            // Scores of this row against the tile (every lane runs the shuffles; masked ones are -inf).
            float sc[BK];
            float mt = NEG_INF;
#pragma unroll
            for (int j = 0; j < BK; j++) {
                float d = 0.0f;
#pragma unroll
                for (int c = 0; c < CH; c++) {
                    const f32x4 kk = ks[j * hd4 + c * tpr + part];
                    d += qr[c].x * kk.x + qr[c].y * kk.y + qr[c].z * kk.z + qr[c].w * kk.w;
                }
                for (int mm = 1; mm < tpr; mm <<= 1) d += shfl_xor(d, mm);
                const int pos = k0 + j;
                sc[j] = (mine && j < nk && pos <= p && pos >= lo) ? d * scale : NEG_INF;
                mt = fmaxf(mt, sc[j]);
            }
            if (mt > NEG_INF) {
                const float mn = fmaxf(m, mt), f = expf(m - mn);
                l *= f;
#pragma unroll
                for (int c = 0; c < CH; c++) {
                    o[c].x *= f;
                    o[c].y *= f;
                    o[c].z *= f;
                    o[c].w *= f;
                }
#pragma unroll
                for (int j = 0; j < BK; j++) {
                    const float w = expf(sc[j] - mn);
                    l += w;
#pragma unroll
                    for (int c = 0; c < CH; c++) {
                        const f32x4 vv = vs[j * hd4 + c * tpr + part];
                        o[c].x += w * vv.x;
                        o[c].y += w * vv.y;
                        o[c].z += w * vv.z;
                        o[c].w += w * vv.w;
                    }
                }
                m = mn;
            }
        }
        s0 = s1;
    }

    if (live) {
        const float inv = 1.0f / l;
        f32x4* orow = (f32x4*)(out + ((size_t)tok * heads + kvh * group + g) * head_dim);
#pragma unroll
        for (int c = 0; c < CH; c++)
            orow[c * tpr + part] = f32x4{o[c].x * inv, o[c].y * inv, o[c].z * inv, o[c].w * inv};
    }
}
