//! GPU time per kernel (`PRISM_PROFILE=1`): a timestamp before and after every dispatch, resolved and
//! read back after each submit (which serializes the GPU: for finding the slow kernel, not for
//! measuring throughput).

use std::collections::HashMap;

use super::device::Gpu;

/// Timestamps of one submit and the totals so far.
pub struct Profiler {
    queries: wgpu::QuerySet,
    resolved: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// Kernel name → (dispatches, nanoseconds).
    totals: HashMap<String, (u64, f64)>,
    period_ns: f64,
}

impl Profiler {
    /// A profiler for submits of up to `dispatches`; `None` without timestamp support.
    pub fn new(gpu: &Gpu, dispatches: u32) -> Option<Profiler> {
        let need = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        if !gpu.features.contains(need) {
            tracing::warn!("PRISM_PROFILE=1 but this adapter has no timestamps inside passes");
            return None;
        }
        let count = 2 * dispatches;
        let queries = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let size = count as u64 * 8;
        let buf = |usage| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: None,
                size,
                usage,
                mapped_at_creation: false,
            })
        };
        Some(Profiler {
            queries,
            resolved: buf(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC),
            readback: buf(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST),
            totals: HashMap::new(),
            period_ns: gpu.queue.get_timestamp_period() as f64,
        })
    }

    pub fn before(&self, pass: &mut wgpu::ComputePass<'_>, i: u32) {
        pass.write_timestamp(&self.queries, 2 * i);
    }

    pub fn after(&self, pass: &mut wgpu::ComputePass<'_>, i: u32) {
        pass.write_timestamp(&self.queries, 2 * i + 1);
    }

    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder, dispatches: u32) {
        if dispatches > 0 {
            enc.resolve_query_set(&self.queries, 0..2 * dispatches, &self.resolved, 0);
            enc.copy_buffer_to_buffer(&self.resolved, 0, &self.readback, 0, dispatches as u64 * 16);
        }
    }

    /// Reads back the timestamps of the submit just made (`names[i]` ran dispatch `i`).
    pub fn collect(&mut self, gpu: &Gpu, names: &[&str]) {
        if names.is_empty() {
            return;
        }
        let bytes = names.len() as u64 * 16;
        self.readback.slice(..bytes).map_async(wgpu::MapMode::Read, |_| {});
        if gpu.device.poll(wgpu::PollType::Wait { submission_index: None, timeout: None }).is_err() {
            return;
        }
        if let Ok(view) = self.readback.slice(..bytes).get_mapped_range() {
            for (name, pair) in names.iter().zip(view.chunks_exact(16)) {
                let t0 = u64::from_le_bytes(pair[..8].try_into().unwrap_or_default());
                let t1 = u64::from_le_bytes(pair[8..].try_into().unwrap_or_default());
                let e = self.totals.entry(name.to_string()).or_default();
                e.0 += 1;
                e.1 += t1.saturating_sub(t0) as f64 * self.period_ns;
            }
        }
        self.readback.unmap();
    }

    /// A table of kernels by total GPU time since the last report, then resets the totals.
    pub fn report(&mut self) -> String {
        let mut rows: Vec<_> = self.totals.drain().collect();
        rows.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        let total: f64 = rows.iter().map(|r| r.1.1).sum();
        let mut s = format!("GPU time {:.3} ms in {} kernels\n", total / 1e6, rows.len());
        for (name, (n, ns)) in rows {
            s += &format!(
                "{name:<28} {n:>7} calls {:>10.3} ms {:>8.2} us/call {:>5.1}%\n",
                ns / 1e6,
                ns / n as f64 / 1e3,
                100.0 * ns / total.max(1.0)
            );
        }
        s
    }
}

/// Host-side time of the backend: encoding and submitting parts, and waiting for read-backs.
#[derive(Default)]
pub struct HostTimes {
    enabled: bool,
    pub submits: u64,
    pub encode_ns: u64,
    pub waits: u64,
    pub wait_ns: u64,
}

impl HostTimes {
    pub fn new(enabled: bool) -> HostTimes {
        HostTimes { enabled, ..Default::default() }
    }

    /// One line of totals since the last report (then reset), when enabled.
    pub fn report(&mut self) -> Option<String> {
        if !self.enabled {
            return None;
        }
        let per = |ns: u64, n: u64| ns as f64 / n.max(1) as f64 / 1e3;
        let line = format!(
            "host: {} submits, encode+submit {:.3} ms ({:.1} us each); {} waits {:.3} ms ({:.1} us each)\n",
            self.submits,
            self.encode_ns as f64 / 1e6,
            per(self.encode_ns, self.submits),
            self.waits,
            self.wait_ns as f64 / 1e6,
            per(self.wait_ns, self.waits),
        );
        *self = HostTimes::new(true);
        Some(line)
    }
}
