// rope_store_kv.hip: rotary embedding (rotate-half) of the fused q|k|v rows of the step's tokens; the
// rotated queries go to q_out, the rotated keys and the values into one layer of the paged KV cache
// ([blocks, block_size, kv_heads, head_dim] each). Grid (tokens, blocks across the token's row).
#include "common.h"

extern "C" __global__ void rope_store_kv(const float* qkv, const float* inv_freq, float* q_out, float* k_cache,
                                         float* v_cache, const u32* positions, const u32* token_seq,
                                         const u32* table_start, const u32* tables, int heads, int kv_heads,
                                         int head_dim, int block_size) {
    kernel_start();
    const int i = blockIdx.x, half = head_dim / 2;
    const int qw = heads * head_dim, kw = kv_heads * head_dim;
    const float* row = qkv + (size_t)i * (qw + 2 * kw);
    const u32 p = positions[i], s = token_seq[i];
    const size_t block = tables[table_start[s] + p / block_size];
    float* kslot = k_cache + (block * block_size + p % block_size) * kw;
    float* vslot = v_cache + (block * block_size + p % block_size) * kw;
    // Pairs (head, j < half) of the queries then the keys; then the values.
    const int pairs = (heads + kv_heads) * half;
    for (int t = blockIdx.y * blockDim.x + threadIdx.x; t < pairs + kw; t += gridDim.y * blockDim.x) {
        if (t < pairs) {
            const int h = t / half, j = t % half;
            const float* src = row + h * head_dim;  // q heads, then k heads right after them
            const f32x2 o = rope_rotate(src[j], src[j + half], (float)p * inv_freq[j]);
            float* dst = h < heads ? q_out + (size_t)i * qw + h * head_dim : kslot + (h - heads) * head_dim;
            dst[j] = o.x;
            dst[j + half] = o.y;
        } else {
            const int e = t - pairs;
            vslot[e] = row[qw + kw + e];
        }
    }
}
