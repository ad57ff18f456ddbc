// Rotary embedding and the KV-cache store, for the n step tokens: rotate-half RoPE of the q and k
// heads of each fused qkv row (angle = position · inv_freq[i], as an f32 product like torch), rotated
// queries into q_out, rotated keys and plain values into this layer's cache rows. One invocation per
// element of a token (a rotated pair or a value), 64 per workgroup. Included before this file:
// lib/step.wgsl, lib/cos_sin.wgsl.
struct Params {
    heads: u32,
    kv_heads: u32,
    head_dim: u32,
    block_size: u32,
    per_token: u32, // workgroups per token
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> inv_freq: array<f32>;
@group(0) @binding(3) var<storage, read> step: array<u32>;
@group(0) @binding(4) var<storage, read_write> q_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> k_cache: array<f32>; // [rows, kv_heads, head_dim]
@group(0) @binding(6) var<storage, read_write> v_cache: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let id = wid.x + wid.y * p.groups_x;
    let i = id / p.per_token;
    let e = (id % p.per_token) * 64u + lid;
    let hd = p.head_dim;
    let half = hd / 2u;
    let qw = p.heads * hd;
    let kw = p.kv_heads * hd;
    let row = i * (qw + 2u * kw);
    let pos = step_position(i);
    let cache = kv_row(step_seq(i), pos, p.block_size) * kw;
    let pairs = (p.heads + p.kv_heads) * half;
    if e < pairs + kw {
        if e < pairs {
            let h = e / half;
            let d = e % half;
            let cs = cos_sin(f32(pos) * inv_freq[d]);
            let src = row + h * hd + d; // q heads then k heads, contiguous in the row
            let x1 = qkv[src];
            let x2 = qkv[src + half];
            let r1 = x1 * cs.x - x2 * cs.y;
            let r2 = x2 * cs.x + x1 * cs.y;
            if h < p.heads {
                q_out[i * qw + h * hd + d] = r1;
                q_out[i * qw + h * hd + d + half] = r2;
            } else {
                let o = cache + (h - p.heads) * hd + d;
                k_cache[o] = r1;
                k_cache[o + half] = r2;
            }
        } else {
            let v = e - pairs;
            v_cache[cache + v] = qkv[row + qw + kw + v];
        }
    }
}
