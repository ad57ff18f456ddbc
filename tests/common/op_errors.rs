//! The argument-error part of the op table (`ops.rs`): wrong lengths, unknown ids, aliasing and
//! inconsistent shapes must give `InvalidArgument` on every backend.

use prism::backend::{
    AttnShape, Backend, BackendError, BufId, DType, HostBytes, HostTensor, KvSpec, MatmulMode, StepBatch,
};

use super::{BResult, make_weight, rng};

fn expect_invalid<T: std::fmt::Debug>(what: &str, r: BResult<T>, failures: &mut Vec<String>) {
    match r {
        Err(BackendError::InvalidArgument { .. }) => {}
        other => failures.push(format!("{what}: expected InvalidArgument, got {other:?}")),
    }
}

/// Wrong lengths, unknown ids, aliasing and inconsistent shapes must give `InvalidArgument`.
pub fn check_errors(b: &mut dyn Backend) {
    let mut f = Vec::new();
    let mut r = rng(7);
    let (tensors, _) = make_weight(&mut r, "w", DType::F16, &[4, 3], 8);
    let w = b.upload_weight(&tensors, None).expect("weight");
    let x = b.alloc(2 * 8).expect("alloc");
    let out = b.alloc(2 * 7).expect("alloc");
    let small = b.alloc(5).expect("alloc");
    let idx = b.alloc_u32(4).expect("alloc");
    let bogus = BufId(9999);

    // matmul
    expect_invalid("matmul x too short", b.matmul(w, small, out, 2, MatmulMode::Overwrite), &mut f);
    expect_invalid("matmul out too short", b.matmul(w, x, small, 2, MatmulMode::Overwrite), &mut f);
    expect_invalid("matmul x == out", b.matmul(w, x, x, 1, MatmulMode::Overwrite), &mut f);
    expect_invalid(
        "matmul unknown weight",
        b.matmul(prism::backend::WeightId(777), x, out, 1, MatmulMode::Overwrite),
        &mut f,
    );
    expect_invalid("matmul unknown buffer", b.matmul(w, bogus, out, 1, MatmulMode::Overwrite), &mut f);
    expect_invalid("matmul u32 input", b.matmul(w, idx, out, 1, MatmulMode::Overwrite), &mut f);
    expect_invalid("matmul overflowing rows", b.matmul(w, x, out, usize::MAX, MatmulMode::Overwrite), &mut f);
    // upload_weight
    let (t8, _) = make_weight(&mut r, "a", DType::F16, &[2], 8);
    let (t9, _) = make_weight(&mut r, "b", DType::F16, &[2], 9);
    let (tb, _) = make_weight(&mut r, "c", DType::BF16, &[2], 8);
    expect_invalid("upload_weight cols differ", b.upload_weight(&[t8.clone(), t9].concat(), None), &mut f);
    expect_invalid("upload_weight dtypes differ", b.upload_weight(&[t8.clone(), tb].concat(), None), &mut f);
    expect_invalid("upload_weight bias length", b.upload_weight(&t8, Some(&[1.0; 3])), &mut f);
    expect_invalid("upload_weight no parts", b.upload_weight(&[], None), &mut f);
    // A quantized tensor whose rows are not whole blocks (built by hand: HostTensor::new refuses it).
    let partial = HostTensor {
        name: "q".into(),
        dtype: DType::Q4_0,
        shape: vec![2, 16],
        bytes: HostBytes::Owned(vec![0u8; 18].into()),
    };
    expect_invalid("upload_weight partial quant block", b.upload_weight(&[partial], None), &mut f);
    let (q1, _) = make_weight(&mut r, "q1", DType::Q8_0, &[2], 32);
    let (q2, _) = make_weight(&mut r, "q2", DType::Q4_0, &[2], 32);
    expect_invalid("upload_weight quant dtypes differ", b.upload_weight(&[q1, q2].concat(), None), &mut f);
    // element-wise
    expect_invalid("rms_norm in place", b.rms_norm(x, small, x, 2, 5, 1e-5), &mut f);
    expect_invalid("rms_norm weight short", b.rms_norm(x, small, out, 1, 8, 1e-5), &mut f);
    expect_invalid("rms_norm x short", b.rms_norm(small, x, out, 2, 5, 1e-5), &mut f);
    expect_invalid("silu_mul gate_up short", b.silu_mul(small, out, 1, 3), &mut f);
    expect_invalid("silu_mul in place", b.silu_mul(x, x, 1, 4), &mut f);
    expect_invalid("add too long", b.add(x, small, 6), &mut f);
    expect_invalid("add same buffer", b.add(x, x, 4), &mut f);
    expect_invalid("add unknown", b.add(x, bogus, 1), &mut f);
    expect_invalid("copy past end", b.copy(small, 3, x, 0, 3), &mut f);
    expect_invalid("copy dst past end", b.copy(x, 0, small, 4, 2), &mut f);
    expect_invalid("copy overlap", b.copy(x, 0, x, 2, 4), &mut f);
    expect_invalid("copy overflow", b.copy(x, usize::MAX, out, 0, 2), &mut f);
    expect_invalid("argmax out f32", b.argmax(x, out, 2, 8), &mut f);
    expect_invalid("argmax out short", b.argmax(x, idx, 5, 2), &mut f);
    expect_invalid("argmax x short", b.argmax(small, idx, 2, 8), &mut f);
    expect_invalid("download too long", b.download(small, &mut [0.0; 6]), &mut f);
    expect_invalid("download u32 as f32", b.download(idx, &mut [0.0; 1]), &mut f);
    expect_invalid("download_u32 of f32", b.download_u32(x, &mut [0; 1]), &mut f);
    // step and cache
    let spec = KvSpec { layers: 2, blocks: 4, block_size: 2, kv_heads: 1, head_dim: 4 };
    let kv = b.alloc_kv(spec).expect("kv");
    expect_invalid("set_step bad block", b.set_step(&StepBatch::single(&[1, 2], 0, &[4])), &mut f);
    expect_invalid(
        "set_step position past blocks",
        b.set_step(&StepBatch::single(&[1, 2, 3], 0, &[1])),
        &mut f,
    );
    b.set_step(&StepBatch::single(&[1, 2], 0, &[3])).expect("valid step");
    let shape = AttnShape { heads: 2, kv_heads: 1, head_dim: 4, scale: 0.5, window: None };
    let qkv = b.alloc(2 * shape.qkv_width()).expect("alloc");
    let inv = b.upload(&[1.0, 0.1]).expect("upload");
    let q = b.alloc(2 * shape.q_width()).expect("alloc");
    let ao = b.alloc(2 * shape.q_width()).expect("alloc");
    b.rope_store_kv(qkv, inv, q, kv, 1, shape, 2).expect("valid rope_store_kv");
    b.attention(q, kv, 1, ao, shape, 2).expect("valid attention");
    expect_invalid("rope layer", b.rope_store_kv(qkv, inv, q, kv, 2, shape, 2), &mut f);
    expect_invalid(
        "rope unknown kv",
        b.rope_store_kv(qkv, inv, q, prism::backend::KvId(55), 0, shape, 2),
        &mut f,
    );
    expect_invalid("rope n > step", b.rope_store_kv(qkv, inv, q, kv, 0, shape, 3), &mut f);
    expect_invalid("rope qkv short", b.rope_store_kv(small, inv, q, kv, 0, shape, 2), &mut f);
    expect_invalid("rope in place", b.rope_store_kv(qkv, inv, qkv, kv, 0, shape, 2), &mut f);
    let odd = AttnShape { heads: 3, kv_heads: 2, head_dim: 4, ..shape };
    expect_invalid("rope heads % kv_heads", b.rope_store_kv(qkv, inv, q, kv, 0, odd, 1), &mut f);
    let other = AttnShape { head_dim: 2, ..shape };
    expect_invalid("attention shape vs cache", b.attention(q, kv, 0, ao, other, 2), &mut f);
    expect_invalid("attention layer", b.attention(q, kv, 5, ao, shape, 2), &mut f);
    expect_invalid("attention in place", b.attention(q, kv, 0, q, shape, 2), &mut f);
    expect_invalid("attention out short", b.attention(q, kv, 0, small, shape, 2), &mut f);
    expect_invalid("embed token >= vocab", b.embed(w, out, 2), &mut f);
    b.set_step(&StepBatch::single(&[1, 2], 0, &[3])).expect("valid step");
    let (emb, _) = make_weight(&mut r, "emb", DType::F32, &[3], 4);
    let e = b.upload_weight(&emb, None).expect("embed table");
    expect_invalid("embed n > step", b.embed(e, out, 3), &mut f);
    expect_invalid("embed out short", b.embed(e, small, 2), &mut f);
    expect_invalid("gather_rows dst short", b.gather_rows(x, small, 6), &mut f);
    expect_invalid("gather_rows same buffer", b.gather_rows(x, x, 2), &mut f);
    assert!(f.is_empty(), "{} error checks failed:\n{}", f.len(), f.join("\n"));
}
