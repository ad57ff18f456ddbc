// One-token (decode) matrix-vector product out[row0 + r] (+)= s·Σ_k W[r, k]·in(k) + bias[row0 + r].
// The workgroup first writes the input row `in` (plain, RMS-normed or SwiGLU) into workgroup memory once
// (`build_input`: f32 for float weights, int8 with remainders for quantized ones), so the weight loop
// reads each input piece from there instead of recomputing it from global memory per row. A team (a
// subgroup, or 32 invocations without subgroups) takes rows by grid stride over a grid of about one wave;
// its lanes read U consecutive-by-lane 16-byte words of a row per step (a chunk) and issue the loads of
// the next chunk (of this row or of the team's next row) before they sum the current one, so that loads
// stay in flight. Included before this file: a reduction library, a weight format's buffers, an
// activation reader, an input (`in4`, `input_scales`), the input row's layout (t1_x_*.wgsl) and the
// format's words (t1_w_*.wgsl: `Word`, `load_word`, `dot_word`, PPU words per unit of 32).
struct Params {
    rows: u32,       // weight rows in this chunk
    cols: u32,       // weight columns (= input row length)
    upr: u32,        // units of 32 per weight row
    row0: u32,       // first output column of this chunk
    out_stride: u32, // output row length (unused with one token; the gemv parameters' shared prefix)
    accumulate: u32, // 1: out += result
    has_bias: u32,
    eps: f32,        // RMS-norm epsilon of a normed input
    groups: u32,     // workgroups of the dispatch (the grid stride is groups · teams)
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

const T: u32 = 1u;
// U, the words per lane in one chunk (1, 2 or 4), is set before this file.

// The activation row of token `t` (the input libraries read through it): one token, row 0.
fn in_row(t: u32) -> u32 {
    return t;
}

// U words of one row, word `pc + i·size` in field i.
struct Chunk { a: Word, b: Word, c: Word, d: Word }

// Word `pc` of `row`, clamped to the row's last word (its product is dropped by `dot_chunk`).
fn word_at(row: u32, pc: u32, ppr: u32) -> Word {
    return load_word(row, min(pc, ppr - 1u), ppr);
}

fn load_chunk(row: u32, pc: u32, size: u32, ppr: u32) -> Chunk {
    var c: Chunk;
    c.a = word_at(row, pc, ppr);
    if U > 1u {
        c.b = word_at(row, pc + size, ppr);
    }
    if U > 2u {
        c.c = word_at(row, pc + 2u * size, ppr);
        c.d = word_at(row, pc + 3u * size, ppr);
    }
    return c;
}

// Σ weight·input over word `pc` (0 past the row's end).
fn dot_at(w: Word, row: u32, pc: u32, ppr: u32) -> f32 {
    return select(0.0, dot_word(w, row, min(pc, ppr - 1u)), pc < ppr);
}

fn dot_chunk(c: Chunk, row: u32, pc: u32, size: u32, ppr: u32) -> f32 {
    var s = dot_at(c.a, row, pc, ppr);
    if U > 1u {
        s += dot_at(c.b, row, pc + size, ppr);
    }
    if U > 2u {
        s += dot_at(c.c, row, pc + 2u * size, ppr) + dot_at(c.d, row, pc + 3u * size, ppr);
    }
    return s;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32 @SG_PARAMS@) {
    let ln = lanes(lid @SG_ARGS@);
    let lane = team_lane(ln);
    let size = team_size(ln);
    let ppr = p.upr * PPU; // words per row
    let step = U * size; // words per chunk
    let nch = (ppr + step - 1u) / step; // chunks per row
    let stride = p.groups * n_teams(ln);
    // Every team runs the same number of rounds, so the team sums stay in uniform control flow; rows
    // past the end are read clamped and not stored.
    let rounds = (p.rows + stride - 1u) / stride;
    let last_row = p.rows - 1u;
    var row = wid.x * n_teams(ln) + team(ln);
    // The first weights are on their way while the input row is built.
    var cur = load_chunk(min(row, last_row), lane, size, ppr);
    let scale = input_scales(ln)[0];
    build_input(ln);
    workgroupBarrier();
    for (var k = 0u; k < rounds; k++) {
        let r = min(row, last_row);
        var acc = 0.0;
        for (var ch = 0u; ch < nch; ch++) {
            let row_end = ch + 1u == nch;
            var next = cur;
            if !(row_end && k + 1u == rounds) {
                let nrow = min(select(row, row + stride, row_end), last_row);
                next = load_chunk(nrow, select(ch + 1u, 0u, row_end) * step + lane, size, ppr);
            }
            acc += dot_chunk(cur, r, ch * step + lane, size, ppr);
            cur = next;
        }
        let total = team_sum(acc, ln);
        if lane == 0u && row < p.rows {
            let o = p.row0 + row;
            var v = scale * total;
            if p.has_bias != 0u {
                v += bias[o];
            }
            if p.accumulate != 0u {
                v += out[o];
            }
            out[o] = v;
        }
        row += stride;
    }
}
