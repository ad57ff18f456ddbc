//! Finding and opening a wgpu adapter: the adapters a server can use (Vulkan, Metal, DX12), their
//! order (discrete, integrated, virtual, CPU), what `prism devices` says about each, and the device
//! with the features the kernels use.

use std::sync::{Arc, Mutex};

use crate::backend::tuning::knob;
use crate::backend::{BackendError, Result};

/// Backends wgpu is asked for: the native APIs of servers and desktops, not GL or WebGPU.
pub const BACKENDS: wgpu::Backends =
    wgpu::Backends::VULKAN.union(wgpu::Backends::METAL).union(wgpu::Backends::DX12);

fn unavailable(reason: impl Into<String>) -> BackendError {
    BackendError::Unavailable { backend: "wgpu".into(), reason: reason.into() }
}

fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// The process's one wgpu instance, never destroyed. Destroying an instance may unload the Vulkan
/// driver while another thread's device (another model, another test) still runs its code: on the
/// H100's driver, two instances made and dropped by two threads crashed the process.
fn instance() -> &'static wgpu::Instance {
    static INSTANCE: std::sync::OnceLock<wgpu::Instance> = std::sync::OnceLock::new();
    INSTANCE.get_or_init(|| {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = BACKENDS;
        wgpu::Instance::new(desc)
    })
}

/// The adapters, best first: discrete GPUs, then integrated, virtual, other, then CPU adapters
/// (lavapipe). `--device N` indexes this list.
pub fn adapters() -> Vec<wgpu::Adapter> {
    let mut list = pollster::block_on(instance().enumerate_adapters(BACKENDS));
    list.sort_by_key(|a| rank(a.get_info().device_type));
    list
}

/// Whether adapter `index` exists and is a GPU rather than a CPU implementation of Vulkan.
pub fn has_hardware_adapter(index: usize) -> bool {
    adapters().get(index).is_some_and(|a| a.get_info().device_type != wgpu::DeviceType::Cpu)
}

/// One line about an adapter: name, API, type, and the features and limits that matter here.
pub fn describe(a: &wgpu::Adapter) -> String {
    let (info, f, l) = (a.get_info(), a.features(), a.limits());
    let yes = |b: bool| if b { "yes" } else { "no" };
    let subgroup = if f.contains(wgpu::Features::SUBGROUP) {
        format!("{}-{}", info.subgroup_min_size, info.subgroup_max_size)
    } else {
        "no".into()
    };
    format!(
        "{} ({:?}, {:?}; f16 {}, subgroup {subgroup}, cooperative matrix {}, max binding {} MiB)",
        info.name,
        info.backend,
        info.device_type,
        yes(f.contains(wgpu::Features::SHADER_F16)),
        match (f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX), coop16_support(a)) {
            (true, true) => "yes (16×16×16 f16)",
            (true, false) => "yes (no 16×16×16 f16 with subgroups of 32: unused)",
            (false, _) => "no",
        },
        l.max_storage_buffer_binding_size >> 20,
    )
}

/// What `prism devices` lists for wgpu: each adapter, or why there is none.
pub fn probe() -> std::result::Result<Vec<String>, String> {
    let list = adapters();
    if list.is_empty() {
        return Err(no_adapter());
    }
    Ok(list.iter().map(describe).collect())
}

fn no_adapter() -> String {
    "no Vulkan, Metal or DX12 adapter found (on Linux install a Vulkan driver and loader, e.g. \
     `apt-get install mesa-vulkan-drivers libvulkan1`)"
        .into()
}

/// An opened device and what the backend needs to know about it.
pub struct Gpu {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub description: String,
    pub subgroups: bool,
    /// Smallest subgroup the device may run a kernel with (when it has subgroups).
    pub subgroup_min: u32,
    /// Cooperative matrices of 16×16×16 f16 × f16 + f32 with subgroups of exactly 32 (the
    /// `gemm_coop` kernel runs).
    pub coop16: bool,
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    /// Errors the device reported outside an explicit check (validation, out of memory), oldest
    /// first; the backend turns them into `BackendError`s at its next call.
    pub errors: Arc<Mutex<Vec<wgpu::Error>>>,
    /// Why the device was lost, once it is.
    pub lost: Arc<Mutex<Option<String>>>,
}

/// Whether the adapter runs `gemm_coop`: 16×16×16 cooperative matrices of f16 with f32 accumulators,
/// f16, subgroups of exactly 32 invocations and 32 KiB of workgroup memory.
fn coop16_support(adapter: &wgpu::Adapter) -> bool {
    let need = wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX
        | wgpu::Features::SHADER_F16
        | wgpu::Features::SUBGROUP;
    let info = adapter.get_info();
    // gemm_coop keeps 32 KiB of tiles in workgroup memory.
    adapter.features().contains(need)
        && adapter.limits().max_compute_workgroup_storage_size >= 32 << 10
        && info.subgroup_min_size == 32
        && info.subgroup_max_size == 32
        && adapter.cooperative_matrix_properties().iter().any(|c| {
            use wgpu::CooperativeScalarType::{F16, F32};
            (c.m_size, c.n_size, c.k_size) == (16, 16, 16) && c.ab_type == F16 && c.cr_type == F32
        })
}

/// Opens adapter `index` of [`adapters`] with its own limits and the optional features the kernels
/// use (subgroups, f16).
pub fn open(index: usize, timestamps: bool) -> Result<Gpu> {
    let list = adapters();
    if list.is_empty() {
        return Err(unavailable(no_adapter()));
    }
    let n = list.len();
    let adapter = list
        .into_iter()
        .nth(index)
        .ok_or_else(|| unavailable(format!("there are {n} adapters, no device {index}")))?;
    let description = describe(&adapter);
    let subgroup_min = adapter.get_info().subgroup_min_size.max(1);
    let mut wanted = wgpu::Features::SUBGROUP | wgpu::Features::SHADER_F16;
    // `PRISM_WGPU_COOP=0` keeps the kernel off (for comparisons).
    let coop = coop16_support(&adapter) && knob::<u32>("PRISM_WGPU_COOP", |&v| v == 0).is_none();
    if coop {
        wanted |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
    }
    if timestamps {
        wanted |= wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
    }
    let features = adapter.features() & wanted;
    let limits = adapter.limits();
    let desc = wgpu::DeviceDescriptor {
        label: Some("prism"),
        required_features: features,
        required_limits: limits.clone(),
        // SAFETY: the one experimental feature requested is cooperative matrices, used only by
        // the `gemm_coop` kernel, whose configuration (16×16×16, f16 × f16 + f32, subgroups of 32)
        // `coop16_support` found among the adapter's own.
        experimental_features: if coop {
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        },
        ..Default::default()
    };
    let (device, queue) = pollster::block_on(adapter.request_device(&desc))
        .map_err(|e| unavailable(format!("{description}: cannot open the device: {e}")))?;
    let errors: Arc<Mutex<Vec<wgpu::Error>>> = Arc::default();
    let sink = errors.clone();
    device.on_uncaptured_error(Arc::new(move |e| {
        if let Ok(mut v) = sink.lock() {
            v.push(e);
        }
    }));
    let lost: Arc<Mutex<Option<String>>> = Arc::default();
    let lost_sink = lost.clone();
    device.set_device_lost_callback(move |reason, msg| {
        if let Ok(mut l) = lost_sink.lock() {
            *l = Some(format!("{reason:?}: {msg}"));
        }
    });
    Ok(Gpu {
        device,
        queue,
        description,
        subgroups: features.contains(wgpu::Features::SUBGROUP),
        subgroup_min,
        coop16: coop && features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
        features,
        limits,
        errors,
        lost,
    })
}
