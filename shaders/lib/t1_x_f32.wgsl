// The input row of gemv_t1 for float weights, f32 in workgroup memory: word u of a row (8 elements)
// meets elements 8u..8u+4 in xa[u] and 8u+4..8u+8 in xb[u], so lanes reading consecutive words read
// consecutive 16 bytes of each array. XW (words of the longest row) is set before this file.
var<workgroup> xa: array<vec4<f32>, XW>;
var<workgroup> xb: array<vec4<f32>, XW>;

// Writes the input row, zero past `cols` up to whole units of 32. Call from uniform control flow.
fn build_input(ln: Lanes) {
    for (var u = ln.lid; u < p.upr * 4u; u += WG) {
        xa[u] = in4(0u, 2u * u);
        xb[u] = in4(0u, 2u * u + 1u);
    }
}
