//! Every WGSL kernel variant the wgpu backend can build is parsed and validated by naga and translated
//! to SPIR-V (Vulkan), MSL (Metal) and HLSL (DX12): the Metal and DX12 paths are proven at the shader
//! level here, where there is no Mac or Windows machine.

use naga::back::{hlsl, msl, spv};
use naga::valid::{Capabilities, ValidationFlags, Validator};
use prism::backend::wgpu::kernels::Kernel;

fn check(k: &Kernel, subgroups: bool) -> Result<(), String> {
    let src = k.source(subgroups);
    let module = naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))?;
    let coop = matches!(k, Kernel::GemmCoop { .. });
    let mut caps = Capabilities::SHADER_FLOAT16 | Capabilities::SHADER_FLOAT16_IN_FLOAT32;
    if subgroups || coop {
        caps |= Capabilities::SUBGROUP;
    }
    if coop {
        caps |= Capabilities::COOPERATIVE_MATRIX;
    }
    let info = Validator::new(ValidationFlags::all(), caps)
        .validate(&module)
        .map_err(|e| format!("validation: {}", e.emit_to_string(&src)))?;
    let ep = k.entry().to_string();

    let spv_pipeline =
        spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: ep.clone() };
    let words = spv::write_vec(&module, &info, &spv::Options::default(), Some(&spv_pipeline))
        .map_err(|e| format!("SPIR-V: {e}"))?;
    if words.first() != Some(&0x0723_0203) {
        return Err("SPIR-V output lacks the magic number".into());
    }

    if coop {
        // DX12 has no cooperative matrices in wgpu (naga's HLSL writer has none either); Metal's
        // simdgroup matrices are 8×8 only: the variant is built where Vulkan offers 16×16 f16.
        return Ok(());
    }

    let msl_opts = msl::Options { lang_version: (2, 4), ..Default::default() };
    let msl_pipeline = msl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, ep.clone())),
        ..Default::default()
    };
    let (metal, _) =
        msl::write_string(&module, &info, &msl_opts, &msl_pipeline).map_err(|e| format!("MSL: {e}"))?;
    if !metal.contains("kernel void") {
        return Err("MSL output has no kernel".into());
    }

    let hlsl_opts = hlsl::Options { shader_model: hlsl::ShaderModel::V6_2, ..Default::default() };
    let hlsl_pipeline = hlsl::PipelineOptions { entry_point: Some((naga::ShaderStage::Compute, ep)) };
    let mut hlsl_src = String::new();
    hlsl::Writer::new(&mut hlsl_src, &hlsl_opts, &hlsl_pipeline)
        .write(&module, &info, None)
        .map_err(|e| format!("HLSL: {e}"))?;
    if !hlsl_src.contains("[numthreads(") {
        return Err("HLSL output has no compute entry point".into());
    }
    Ok(())
}

#[test]
fn every_kernel_validates_and_translates_to_spirv_msl_and_hlsl() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for k in Kernel::all() {
        let variants: &[bool] = if k.has_subgroup_variant() { &[false, true] } else { &[false] };
        for &sg in variants {
            checked += 1;
            if let Err(e) = check(&k, sg) {
                failures.push(format!("{} (subgroups {sg}): {e}", k.name()));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} kernels fail:\n{}", failures.len(), failures.join("\n\n"));
    assert!(checked > 100, "{checked} variants");
}

#[test]
fn a_broken_kernel_is_caught() {
    // The check itself must be able to fail: a kernel with an undefined name is refused.
    let src = Kernel::Add.source(false).replace("dst[i] += src[i]", "dst[i] += nowhere[i]");
    assert!(naga::front::wgsl::parse_str(&src).is_err());
}
