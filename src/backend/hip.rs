//! The HIP backend and its CUDA twin: one implementation over two vendor runtimes (see `hip/api.rs`).

pub mod api;
pub mod kernels;
