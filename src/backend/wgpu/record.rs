//! Recording and submitting work on the wgpu backend: pipelines built on first use, dispatches recorded
//! with their parameter slots, encoded into compute passes and submitted in parts (so the GPU starts on
//! the first layers while later ones are still being recorded), and read-back.

use std::time::Instant;

use super::kernels::{Access, Kernel};
use super::{Dispatch, SLOT, SLOTS, WgpuBackend, device_error};
use crate::backend::Result;
use crate::backend::check::invalid;
use crate::backend::tuning::knob;

/// Whether shaders keep wgpu's run-time safety code (index clamping, division checks, loop bounds,
/// zeroed workgroup memory): off by default, since our kernels are trusted and tested, and the checks
/// cost time in the inner loops; `PRISM_WGPU_CHECKS=1` turns them on (A/B runs, debugging).
fn runtime_checks() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| knob("PRISM_WGPU_CHECKS", |v: &u32| *v <= 1) == Some(1))
}

impl WgpuBackend {
    /// The pipeline of `k`, built on first use.
    pub(super) fn pipeline(&mut self, k: Kernel) -> Result<usize> {
        if let Some(&p) = self.pipelines.get(&k) {
            return Ok(p);
        }
        let dev = &self.gpu.device;
        let layout = self.layouts.entry(k.bindings()).or_insert_with(|| {
            let mut entries = vec![wgpu::BindGroupLayoutEntry {
                binding: 0,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Uniform,
                    has_dynamic_offset: true,
                    min_binding_size: wgpu::BufferSize::new(SLOT),
                },
                count: None,
            }];
            entries.extend(k.bindings().iter().map(|&(binding, access)| wgpu::BindGroupLayoutEntry {
                binding,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only: access == Access::Read },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            }));
            let bgl = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: None,
                entries: &entries,
            });
            let pl = dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: None,
                bind_group_layouts: &[Some(&bgl)],
                immediate_size: 0,
            });
            (bgl, pl)
        });
        let name = k.name();
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&name),
            source: wgpu::ShaderSource::Wgsl(k.source(self.gpu.subgroups).into()),
        };
        let checked = runtime_checks();
        let module = if checked {
            dev.create_shader_module(desc)
        } else {
            // SAFETY: the kernels are ours, not user input: every index they use is bounded by the
            // arguments the host validated (the op checks), and every loop ends. The op parity tests
            // run them against the CPU backend.
            unsafe { dev.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked()) }
        };
        let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&name),
            layout: Some(&layout.1),
            module: &module,
            entry_point: Some(k.entry()),
            // The kernels write every workgroup variable before they read it.
            compilation_options: wgpu::PipelineCompilationOptions {
                zero_initialize_workgroup_memory: checked,
                ..Default::default()
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(device_error(format!("kernel {name} does not build on this device: {e}")));
        }
        self.pipeline_list.push(pipeline);
        self.pipeline_names.push(name);
        let idx = self.pipeline_list.len() - 1;
        self.pipelines.insert(k, idx);
        Ok(idx)
    }

    /// Records one dispatch of `k` over `groups` workgroups (a 2-D grid when one dimension is not
    /// enough; kernels read `groups_x`), binding `bufs` (GPU buffer ids) to `k.bindings()` in order.
    /// `params` are the kernel's parameter words; `groups_x` is appended when `append_groups_x`.
    pub(super) fn dispatch(
        &mut self,
        k: Kernel,
        bufs: &[u32],
        params: &[u32],
        groups: u64,
        append_groups_x: bool,
    ) -> Result<()> {
        let max = self.gpu.limits.max_compute_workgroups_per_dimension as u64;
        let gx = groups.clamp(1, max);
        let gy = groups.div_ceil(gx);
        if gy > max {
            return Err(invalid("dispatch", format!("{groups} workgroups exceed the device's grid")));
        }
        let mut p = params.to_vec();
        if append_groups_x {
            p.push(gx as u32);
        }
        self.dispatch_grid(k, bufs, &p, (gx as u32, gy as u32))
    }

    pub(super) fn dispatch_grid(
        &mut self,
        k: Kernel,
        bufs: &[u32],
        params: &[u32],
        grid: (u32, u32),
    ) -> Result<()> {
        if grid.0 == 0 || grid.1 == 0 {
            return Ok(());
        }
        if self.recorded.len() as u64 >= self.slots_per_part() {
            self.flush()?;
        }
        let pipeline = self.pipeline(k)?;
        // Bindings beyond 0 never number more than 7: a fixed key, no allocation per dispatch.
        let mut key = (pipeline, [u32::MAX; 7]);
        key.1[..bufs.len()].copy_from_slice(bufs);
        let bind_group = match self.bind_groups.get(&key) {
            Some(&b) => b,
            None => {
                let layout = &self.layouts[k.bindings()].0;
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &self.buffers[self.params as usize],
                        offset: 0,
                        size: wgpu::BufferSize::new(SLOT),
                    }),
                }];
                for (&(binding, _), &b) in k.bindings().iter().zip(bufs) {
                    entries.push(wgpu::BindGroupEntry {
                        binding,
                        resource: self.buffers[b as usize].as_entire_binding(),
                    });
                }
                let bg = self.gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout,
                    entries: &entries,
                });
                self.bind_group_list.push(bg);
                let idx = self.bind_group_list.len() - 1;
                self.bind_groups.insert(key, idx);
                idx
            }
        };
        let slot = self.slot_base + self.recorded.len() as u32;
        // The slot: the parameter words, zero-padded to SLOT bytes.
        let start = self.param_bytes.len();
        self.param_bytes.extend(params.iter().flat_map(|w| w.to_le_bytes()));
        self.param_bytes.resize(start + SLOT as usize, 0);
        self.recorded.push(Dispatch { pipeline, bind_group, slot, grid });
        Ok(())
    }

    /// Encodes everything recorded into one compute pass and submits it.
    pub(super) fn flush(&mut self) -> Result<()> {
        self.submit_recorded(None)
    }

    /// Submits what is recorded, followed in the same command buffer by a copy of the first `bytes`
    /// of buffer `copy.0` into the read-back buffer when `copy` is given.
    fn submit_recorded(&mut self, copy: Option<(u32, u64)>) -> Result<()> {
        self.check_errors()?;
        if self.recorded.is_empty() && copy.is_none() {
            return Ok(());
        }
        let started = Instant::now();
        let g = &self.gpu;
        if !self.param_bytes.is_empty() {
            let at = self.slot_base as u64 * SLOT;
            g.queue.write_buffer(&self.buffers[self.params as usize], at, &self.param_bytes);
        }
        let mut enc =
            g.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") });
        if !self.recorded.is_empty() {
            let mut pass =
                enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: None, timestamp_writes: None });
            for (i, d) in self.recorded.iter().enumerate() {
                pass.set_pipeline(&self.pipeline_list[d.pipeline]);
                pass.set_bind_group(0, &self.bind_group_list[d.bind_group], &[d.slot * SLOT as u32]);
                if let Some(p) = &self.profiler {
                    p.before(&mut pass, i as u32);
                }
                pass.dispatch_workgroups(d.grid.0, d.grid.1, 1);
                if let Some(p) = &self.profiler {
                    p.after(&mut pass, i as u32);
                }
            }
        }
        if let Some(p) = &self.profiler {
            p.resolve(&mut enc, self.recorded.len() as u32);
        }
        if let Some((src, size)) = copy {
            let staging = &self.staging.as_ref().expect("read_back makes the staging buffer first").0;
            enc.copy_buffer_to_buffer(&self.buffers[src as usize], 0, staging, 0, size);
        }
        g.queue.submit([enc.finish()]);
        self.host.submits += 1;
        self.host.encode_ns += started.elapsed().as_nanos() as u64;
        if let Some(p) = &mut self.profiler {
            let names: Vec<&str> =
                self.recorded.iter().map(|d| self.pipeline_names[d.pipeline].as_str()).collect();
            p.collect(g, &names);
        }
        // The next part's slots follow this one's in the ring, so a write never lands on slots a
        // submitted part may still be reading.
        self.slot_base += self.recorded.len() as u32;
        if self.slot_base as u64 + self.slots_per_part() > SLOTS {
            self.slot_base = 0;
        }
        self.recorded.clear();
        self.param_bytes.clear();
        self.check_errors()
    }

    /// Most dispatches in one submitted part.
    pub(super) fn slots_per_part(&self) -> u64 {
        let cap = if self.profiler.is_some() { 2048 } else { SLOTS / 2 };
        cap.min(self.submit_every as u64)
    }

    /// Copies the first `bytes` of GPU buffer `src` back to the host, after everything recorded.
    pub(super) fn read_back(&mut self, src: u32, bytes: u64) -> Result<Vec<u8>> {
        if bytes == 0 {
            return self.flush().map(|()| Vec::new());
        }
        let size = bytes.div_ceil(16) * 16;
        if self.staging.as_ref().is_none_or(|(_, cap)| *cap < size) {
            let buf = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("read-back"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.staging = Some((buf, size));
        }
        self.submit_recorded(Some((src, size)))?;
        let waited = Instant::now();
        let g = &self.gpu;
        let staging = &self.staging.as_ref().expect("staging buffer made above").0;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.slice(..size).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        g.device
            .poll(wgpu::PollType::Wait { submission_index: None, timeout: None })
            .map_err(|e| device_error(format!("waiting for the device: {e}")))?;
        self.host.waits += 1;
        self.host.wait_ns += waited.elapsed().as_nanos() as u64;
        self.check_errors()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(device_error(format!("reading results back: {e}"))),
            Err(_) => return Err(device_error("reading results back: the device dropped the request")),
        }
        let out = staging
            .slice(..bytes)
            .get_mapped_range()
            .map_err(|e| device_error(format!("reading results back: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(out)
    }
}
