//! The WGSL kernels: their sources (embedded from `shaders/`), the variants a backend builds from them
//! (weight format, tokens per gemv, subgroup or workgroup reductions) and each one's binding layout.
//!
//! A kernel file uses functions from `shaders/lib/` (`load_unit` of a weight format, `load_x`,
//! `reduce_sum`, the step-buffer accessors); [`Kernel::source`] puts the libraries it needs in front
//! and fills the `@NAME@` placeholders, so every variant is one self-contained module.

use crate::backend::DType;
use crate::backend::tuning::knob;

/// What a kernel does with a binding (binding 0 is always the per-dispatch uniform).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    Read,
    ReadWrite,
}

/// Most tokens of one gemv dispatch (weights read once for all of them).
pub const GEMV_MAX_TOKENS: usize = 8;
/// Tokens up to which a matmul runs as gemvs of up to [`GEMV_MAX_TOKENS`] tokens each (batched
/// decode), beyond which it runs as the tiled GEMM.
pub const GEMV_BATCH_TOKENS: usize = 32;
/// The gemv's shape: invocations per workgroup, and weight rows a team works on at once (1 or 2,
/// sharing each input load). `PRISM_GEMV_WG` and `PRISM_GEMV_ROWS` override them (for tuning runs).
pub fn gemv_shape() -> (u32, u32) {
    static SHAPE: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *SHAPE.get_or_init(|| {
        let wg = knob("PRISM_GEMV_WG", |v| [64, 128, 256].contains(v)).unwrap_or(128);
        (wg, knob("PRISM_GEMV_ROWS", |v| [1, 2].contains(v)).unwrap_or(2))
    })
}
/// Widths of `gemv_t1`'s input row in workgroup memory, one variant each: a row takes the smallest
/// that holds it (less workgroup memory, more workgroups resident); wider rows take `gemv`.
pub const T1_CAPS: [u32; 4] = [1024, 2048, 4096, 8192];

/// The one-token gemv's shape: whether it runs at all (`PRISM_WGPU_T1=0` keeps `gemv`, for A/B runs),
/// invocations per workgroup (`PRISM_WGPU_T1_WG`: 64, 128, 256), most workgroups of one dispatch
/// (`PRISM_WGPU_T1_GROUPS`: 1..=65535; 528 by the H100 sweep in benches/RESULTS.md, 4 per
/// multiprocessor) and 16-byte words per lane and step
/// (`PRISM_WGPU_T1_UNITS`: 1, 2, 4; by default 2 for the 4-bit formats, whose words are whole blocks,
/// else 4).
#[derive(Clone, Copy, Debug)]
pub struct T1Shape {
    pub enabled: bool,
    pub wg: u32,
    pub groups: u32,
    pub units: Option<u32>,
}

pub fn t1_shape() -> T1Shape {
    static SHAPE: std::sync::OnceLock<T1Shape> = std::sync::OnceLock::new();
    *SHAPE.get_or_init(|| T1Shape {
        enabled: knob::<u32>("PRISM_WGPU_T1", |&v| v <= 1) != Some(0),
        wg: knob("PRISM_WGPU_T1_WG", |v| [64, 128, 256].contains(v)).unwrap_or(256),
        groups: knob("PRISM_WGPU_T1_GROUPS", |v| (1..=65535).contains(v)).unwrap_or(528),
        units: knob("PRISM_WGPU_T1_UNITS", |v| [1, 2, 4].contains(v)),
    })
}

/// Words per lane and step of `gemv_t1` for `dtype`.
fn t1_units(dtype: DType) -> u32 {
    t1_shape().units.unwrap_or(if matches!(dtype, DType::Q4_0 | DType::Q4_1) { 2 } else { 4 })
}

/// Whether `gemv_t1` has words of `dtype` (f32 weights keep `gemv`).
pub fn t1_supports(dtype: DType) -> bool {
    matches!(dtype, DType::F16 | DType::BF16 | DType::Q8_0 | DType::Q4_0 | DType::Q4_1)
}

/// Bytes of workgroup memory of a `gemv_t1` variant: its input row of `cap` elements (f32, or int8 q
/// and r plus two f32 per block) and the reduction's scratch.
pub fn t1_workgroup_bytes(dtype: DType, cap: u32, subgroups: bool) -> u64 {
    let row = if dtype.is_quantized() { cap as u64 * 2 + cap as u64 / 4 } else { cap as u64 * 4 };
    row + if subgroups { 64 * 4 } else { t1_shape().wg as u64 * 4 }
}

/// Most rows a fused input op (RMS norm, SwiGLU) is folded into the gemv for: with more, every
/// workgroup would redo the input op for all of them; a separate pass once is cheaper.
pub const FUSED_INPUT_MAX_TOKENS: usize = 1;
/// Tokens of one `gemm_coop` tile.
pub const COOP_TOKENS: usize = 32;
/// K slices per `gemm_coop` workgroup, one variant each.
pub const COOP_KSPLITS: [u32; 3] = [1, 2, 4];
/// Rows from which a matmul runs on the cooperative-matrix kernel (where the adapter has it);
/// `PRISM_COOP_MIN` overrides it (tuning runs).
pub fn coop_min_tokens() -> usize {
    static MIN: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MIN.get_or_init(|| knob("PRISM_COOP_MIN", |&v| v >= 2).unwrap_or(9))
}
/// Invocations of a gemv team (one weight row at a time) without subgroups.
pub const GEMV_TEAM: u32 = 32;
/// Invocations of an rms_norm workgroup (one row each).
pub const NORM_WG: u32 = 256;
/// Invocations per RoPE workgroup (each handles one element of one token).
pub const ROPE_WG: u32 = 64;
/// Tokens and weight rows of one GEMM tile.
pub const GEMM_TILE: u32 = 64;

/// What a gemv multiplies the weights with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemvInput {
    /// The activation rows as they are.
    Plain,
    /// RMS-normed activation rows (the norm weight at binding 6, epsilon in the parameters).
    Norm,
    /// SwiGLU of rows holding gate | up: silu(gate) · up.
    SiluMul,
}

/// Every kernel variant the backend may build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Matrix-vector product of `tokens` (1..=8) rows; `x_vec4` when x rows are multiples of 4.
    Gemv {
        dtype: DType,
        tokens: u32,
        x_vec4: bool,
        input: GemvInput,
    },
    /// Matrix-vector product of one token (decode) with the input row built once per workgroup in
    /// workgroup memory (`cap` elements, one of [`T1_CAPS`]); f16, bf16, Q8_0, Q4_0, Q4_1 weights.
    GemvT1 {
        dtype: DType,
        x_vec4: bool,
        input: GemvInput,
        cap: u32,
    },
    /// Tiled matrix product.
    Gemm {
        dtype: DType,
        x_vec4: bool,
    },
    /// Matrix product on cooperative matrices (f16 × f16 + f32 tiles of 16); adapters with
    /// [`wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX`] and subgroups of 32 only.
    GemmCoop {
        dtype: DType,
        x_vec4: bool,
        /// K slices per workgroup (1, 2 or 4; see `gemm_coop.wgsl`).
        ksplit: u32,
    },
    Embed {
        dtype: DType,
    },
    RmsNorm,
    SiluMul,
    Add,
    Copy,
    /// A copy between two ranges of one buffer.
    CopyWithin,
    GatherRows,
    /// First pass of argmax: a (value, index) pair per span of a row.
    ArgmaxPartial,
    Argmax,
    RopeStoreKv,
    /// Attention; `rope`: of a decode step, with RoPE and the KV store folded in (reads the fused
    /// qkv rows, see `lib/attn_rope.wgsl`).
    Attention {
        rope: bool,
    },
    /// Attention for head_dim a multiple of 4 (vec4 loads, parallel value sums).
    AttentionV4 {
        rope: bool,
    },
}

/// Weight formats with kernels.
pub const DTYPES: [DType; 6] = [DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1];

/// Whether the kernels read weights of `dtype`.
pub fn supports(dtype: DType) -> bool {
    DTYPES.contains(&dtype)
}

const HALF_LIB: &str = include_str!("../../../shaders/lib/w_half.wgsl");
const NIBBLE_LIB: &str = include_str!("../../../shaders/lib/w_nibbles.wgsl");

/// The WGSL of a weight format: `load_unit`, `dot_unit`, `load_w4` over its buffers.
fn weight_lib(dtype: DType) -> String {
    match dtype {
        DType::F16 => [include_str!("../../../shaders/lib/w_f16.wgsl"), HALF_LIB].concat(),
        DType::BF16 => [include_str!("../../../shaders/lib/w_bf16.wgsl"), HALF_LIB].concat(),
        DType::Q4_0 => [include_str!("../../../shaders/lib/w_q4_0.wgsl"), NIBBLE_LIB].concat(),
        DType::Q4_1 => [include_str!("../../../shaders/lib/w_q4_1.wgsl"), NIBBLE_LIB].concat(),
        other => weight_lib_single(other).into(),
    }
}

fn weight_lib_single(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => include_str!("../../../shaders/lib/w_f32.wgsl"),
        DType::Q8_0 => include_str!("../../../shaders/lib/w_q8_0.wgsl"),
        // `supports` is checked at upload; no weight of another dtype reaches a kernel.
        _ => include_str!("../../../shaders/lib/w_f32.wgsl"),
    }
}

/// `gemm_coop`'s staging written out straight-line for `ksplit` slices: per invocation and step,
/// `4·ksplit` activation vec4s and 8 weight vec4s (128 invocations).
fn coop_staging(src: String, ksplit: u32) -> String {
    let regs = [("x", 4 * ksplit), ("w", 8)];
    let lines = |f: &dyn Fn(&str, u32) -> String| {
        regs.iter()
            .flat_map(|&(k, n)| (0..n).map(move |i| (k, i)))
            .map(|(k, i)| f(k, i))
            .collect::<Vec<_>>()
            .join("\n")
    };
    src.replace("@REGS@", &lines(&|k, i| format!("var {k}v{i} = vec4<f32>();")))
        .replace("@FETCH@", &lines(&|k, i| format!("{k}v{i} = fetch_{k}(tile, lid + {}u, j);", i * 128)))
        .replace("@PUT@", &lines(&|k, i| format!("put_{k}(lid + {}u, {k}v{i});", i * 128)))
}

const STEP_LIB: &str = include_str!("../../../shaders/lib/step.wgsl");
const REDUCE_SUBGROUP: &str = include_str!("../../../shaders/lib/reduce_subgroup.wgsl");
const REDUCE_WORKGROUP: &str = include_str!("../../../shaders/lib/reduce_workgroup.wgsl");
const X_VEC4: &str = include_str!("../../../shaders/lib/x_vec4.wgsl");
const X_SCALAR: &str = include_str!("../../../shaders/lib/x_scalar.wgsl");
const X_UNITS: &str = include_str!("../../../shaders/lib/x_units.wgsl");
const IN_PLAIN: &str = include_str!("../../../shaders/lib/in_plain.wgsl");
const IN_NORM: &str = include_str!("../../../shaders/lib/in_norm.wgsl");
const IN_SILU: &str = include_str!("../../../shaders/lib/in_silu.wgsl");
const IN_UNSCALED: &str = include_str!("../../../shaders/lib/in_unscaled.wgsl");
const COS_SIN: &str = include_str!("../../../shaders/lib/cos_sin.wgsl");
const ATTN_CACHED: &str = include_str!("../../../shaders/lib/attn_cached.wgsl");
const ATTN_ROPE: &str = include_str!("../../../shaders/lib/attn_rope.wgsl");

/// The input libraries of a gemv: `in4`, and `input_scales` (the RMS norm's factor, else 1).
fn input_lib(input: GemvInput) -> String {
    match input {
        GemvInput::Plain => [IN_PLAIN, IN_UNSCALED].concat(),
        GemvInput::Norm => IN_NORM.to_string(),
        GemvInput::SiluMul => [IN_SILU, IN_UNSCALED].concat(),
    }
}

/// `gemv_t1`'s input row layout and weight words for `dtype` (see `t1_supports`).
fn t1_libs(dtype: DType, cap: u32) -> String {
    let (row, words) = match dtype {
        DType::F16 | DType::BF16 => (
            include_str!("../../../shaders/lib/t1_x_f32.wgsl"),
            include_str!("../../../shaders/lib/t1_w_half.wgsl"),
        ),
        _ => (
            include_str!("../../../shaders/lib/t1_x_q8.wgsl"),
            match dtype {
                DType::Q8_0 => include_str!("../../../shaders/lib/t1_w_q8_0.wgsl"),
                DType::Q4_0 => include_str!("../../../shaders/lib/t1_w_q4_0.wgsl"),
                _ => include_str!("../../../shaders/lib/t1_w_q4_1.wgsl"),
            },
        ),
    };
    let sizes = format!(
        "const XW: u32 = {}u;\nconst XH: u32 = {}u;\nconst XB: u32 = {}u;\n",
        cap / 8,
        cap / 16,
        cap / 32
    );
    [sizes.as_str(), row, words].concat()
}

impl Kernel {
    /// A short unique name (pipeline labels, test output).
    pub fn name(&self) -> String {
        match self {
            Kernel::Gemv { dtype, tokens, x_vec4, input } => {
                let input = match input {
                    GemvInput::Plain => "",
                    GemvInput::Norm => "_norm",
                    GemvInput::SiluMul => "_silu",
                };
                format!("gemv{input}_{}_t{tokens}{}", dtype.name(), if *x_vec4 { "_v4" } else { "" })
            }
            Kernel::GemvT1 { dtype, x_vec4, input, cap } => {
                let input = match input {
                    GemvInput::Plain => "",
                    GemvInput::Norm => "_norm",
                    GemvInput::SiluMul => "_silu",
                };
                format!("gemv_t1{input}_{}_c{cap}{}", dtype.name(), if *x_vec4 { "_v4" } else { "" })
            }
            Kernel::Gemm { dtype, x_vec4 } => {
                format!("gemm_{}{}", dtype.name(), if *x_vec4 { "_v4" } else { "" })
            }
            Kernel::GemmCoop { dtype, x_vec4, ksplit } => {
                format!("gemm_coop_{}{}_k{ksplit}", dtype.name(), if *x_vec4 { "_v4" } else { "" })
            }
            Kernel::Embed { dtype } => format!("embed_{}", dtype.name()),
            Kernel::Attention { rope } => format!("attention{}", if *rope { "_rope" } else { "" }),
            Kernel::AttentionV4 { rope } => format!("attention_v4{}", if *rope { "_rope" } else { "" }),
            other => format!("{other:?}").to_lowercase(),
        }
    }

    /// Whether this variant reduces through subgroup operations when the device has them.
    fn reduces(&self) -> bool {
        matches!(self, Kernel::Gemv { .. } | Kernel::GemvT1 { .. } | Kernel::RmsNorm)
    }

    fn file(&self) -> &'static str {
        match self {
            Kernel::Gemv { .. } => include_str!("../../../shaders/gemv.wgsl"),
            Kernel::GemvT1 { .. } => include_str!("../../../shaders/gemv_t1.wgsl"),
            Kernel::Gemm { .. } => include_str!("../../../shaders/gemm.wgsl"),
            Kernel::GemmCoop { .. } => include_str!("../../../shaders/gemm_coop.wgsl"),
            Kernel::Embed { .. } => include_str!("../../../shaders/embed.wgsl"),
            Kernel::RmsNorm => include_str!("../../../shaders/rms_norm.wgsl"),
            Kernel::SiluMul => include_str!("../../../shaders/silu_mul.wgsl"),
            Kernel::Add => include_str!("../../../shaders/add.wgsl"),
            Kernel::Copy | Kernel::CopyWithin => include_str!("../../../shaders/copy.wgsl"),
            Kernel::GatherRows => include_str!("../../../shaders/gather_rows.wgsl"),
            Kernel::Argmax | Kernel::ArgmaxPartial => include_str!("../../../shaders/argmax.wgsl"),
            Kernel::RopeStoreKv => include_str!("../../../shaders/rope_store_kv.wgsl"),
            Kernel::Attention { .. } => include_str!("../../../shaders/attention.wgsl"),
            Kernel::AttentionV4 { .. } => include_str!("../../../shaders/attention_v4.wgsl"),
        }
    }

    /// The entry point.
    pub fn entry(&self) -> &'static str {
        match self {
            Kernel::CopyWithin => "copy_within",
            Kernel::ArgmaxPartial => "partial",
            _ => "main",
        }
    }

    /// The complete WGSL module of this variant; `subgroups` picks subgroup reductions.
    pub fn source(&self, subgroups: bool) -> String {
        let mut s = String::new();
        if matches!(self, Kernel::GemmCoop { .. }) {
            s.push_str("enable f16;\nenable wgpu_cooperative_matrix;\n");
        }
        let sg = subgroups && self.reduces();
        if self.reduces() {
            let wg = match self {
                Kernel::RmsNorm => NORM_WG,
                Kernel::GemvT1 { .. } => t1_shape().wg,
                _ => gemv_shape().0,
            };
            s.push_str(&format!("const WG: u32 = {wg}u;\n"));
            s.push_str(if sg { REDUCE_SUBGROUP } else { REDUCE_WORKGROUP });
        }
        match self {
            Kernel::Gemv { dtype, x_vec4, input, .. } => {
                s.push_str(&weight_lib(*dtype));
                s.push_str(if *x_vec4 { X_VEC4 } else { X_SCALAR });
                s.push_str(X_UNITS);
                s.push_str(&input_lib(*input));
            }
            Kernel::GemvT1 { dtype, x_vec4, input, cap } => {
                s.push_str(&weight_lib(*dtype));
                s.push_str(if *x_vec4 { X_VEC4 } else { X_SCALAR });
                s.push_str(&input_lib(*input));
                s.push_str(&t1_libs(*dtype, *cap));
                s.push_str(&format!("const U: u32 = {}u;\n", t1_units(*dtype)));
            }
            Kernel::Gemm { dtype, x_vec4 } | Kernel::GemmCoop { dtype, x_vec4, .. } => {
                s.push_str(&weight_lib(*dtype));
                s.push_str(if *x_vec4 { X_VEC4 } else { X_SCALAR });
                s.push_str(X_UNITS);
                s.push_str(include_str!("../../../shaders/lib/gemm_io.wgsl"));
            }
            Kernel::Embed { dtype } => {
                s.push_str(&weight_lib(*dtype));
                s.push_str(STEP_LIB);
            }
            Kernel::GatherRows => s.push_str(STEP_LIB),
            Kernel::RopeStoreKv => s.push_str(&[STEP_LIB, COS_SIN].concat()),
            Kernel::Attention { rope } | Kernel::AttentionV4 { rope } => {
                s.push_str(STEP_LIB);
                match rope {
                    true => s.push_str(&[COS_SIN, ATTN_ROPE].concat()),
                    false => s.push_str(ATTN_CACHED),
                }
            }
            _ => {}
        }
        if let Kernel::GemmCoop { ksplit, .. } = self {
            s.push_str(&format!("const KS: u32 = {ksplit}u;\n"));
        }
        s.push_str(self.file());
        if let Kernel::GemmCoop { ksplit, .. } = self {
            s = coop_staging(s, *ksplit);
        }
        let (params, args) = if sg {
            (
                ", @builtin(subgroup_id) sg_id: u32, @builtin(num_subgroups) n_sg: u32, \
                 @builtin(subgroup_invocation_id) sg_lane: u32, @builtin(subgroup_size) sg_size: u32",
                ", sg_id, n_sg, sg_lane, sg_size",
            )
        } else {
            ("", "")
        };
        let tokens = match self {
            Kernel::Gemv { tokens, .. } => *tokens,
            _ => 1,
        };
        s.replace("@SG_PARAMS@", params)
            .replace("@SG_ARGS@", args)
            .replace("@T@", &tokens.to_string())
            .replace("@NR@", &gemv_shape().1.to_string())
    }

    /// Storage bindings after the uniform at 0: `(binding, access)`.
    pub fn bindings(&self) -> &'static [(u32, Access)] {
        use Access::{Read as R, ReadWrite as W};
        match self {
            Kernel::Gemv { input: GemvInput::Norm, .. } | Kernel::GemvT1 { input: GemvInput::Norm, .. } => {
                &[(1, R), (2, R), (3, R), (4, R), (5, W), (6, R)]
            }
            Kernel::Gemv { .. } | Kernel::GemvT1 { .. } | Kernel::Gemm { .. } | Kernel::GemmCoop { .. } => {
                &[(1, R), (2, R), (3, R), (4, R), (5, W)]
            }
            Kernel::Embed { .. } => &[(1, R), (2, R), (3, R), (5, W)],
            Kernel::RmsNorm => &[(1, R), (2, R), (3, W)],
            Kernel::SiluMul | Kernel::Add | Kernel::Copy | Kernel::ArgmaxPartial => &[(1, R), (2, W)],
            Kernel::Argmax => &[(2, W), (3, R)],
            Kernel::CopyWithin => &[(2, W)],
            Kernel::GatherRows => &[(1, R), (2, W), (3, R)],
            Kernel::RopeStoreKv => &[(1, R), (2, R), (3, R), (4, W), (5, W), (6, W)],
            Kernel::Attention { rope: false } | Kernel::AttentionV4 { rope: false } => {
                &[(1, R), (2, R), (3, R), (4, R), (5, W)]
            }
            Kernel::Attention { rope: true } | Kernel::AttentionV4 { rope: true } => {
                &[(1, R), (2, W), (3, W), (4, R), (5, W), (6, R)]
            }
        }
    }

    /// Every variant, for shader validation and ahead-of-time checks.
    pub fn all() -> Vec<Kernel> {
        let mut v = Vec::new();
        for dtype in DTYPES {
            for x_vec4 in [false, true] {
                for tokens in 1..=GEMV_MAX_TOKENS as u32 {
                    for input in [GemvInput::Plain, GemvInput::Norm, GemvInput::SiluMul] {
                        v.push(Kernel::Gemv { dtype, tokens, x_vec4, input });
                    }
                }
                // Quantized rows are whole blocks of 32: their x rows are always read as vec4.
                if t1_supports(dtype) && (x_vec4 || !dtype.is_quantized()) {
                    for input in [GemvInput::Plain, GemvInput::Norm, GemvInput::SiluMul] {
                        for cap in T1_CAPS {
                            v.push(Kernel::GemvT1 { dtype, x_vec4, input, cap });
                        }
                    }
                }
                v.push(Kernel::Gemm { dtype, x_vec4 });
                for ksplit in COOP_KSPLITS {
                    v.push(Kernel::GemmCoop { dtype, x_vec4, ksplit });
                }
            }
            v.push(Kernel::Embed { dtype });
        }
        v.extend([
            Kernel::RmsNorm,
            Kernel::SiluMul,
            Kernel::Add,
            Kernel::Copy,
            Kernel::CopyWithin,
            Kernel::GatherRows,
            Kernel::ArgmaxPartial,
            Kernel::Argmax,
            Kernel::RopeStoreKv,
        ]);
        for rope in [false, true] {
            v.extend([Kernel::Attention { rope }, Kernel::AttentionV4 { rope }]);
        }
        v
    }

    /// Whether the source differs with subgroups (both variants need checking).
    pub fn has_subgroup_variant(&self) -> bool {
        self.reduces()
    }
}
