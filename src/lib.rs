//! prism: one LLM inference engine for every GPU vendor (wgpu, HIP/CUDA) with a fast CPU reference.

pub mod backend;
pub mod bench;
pub mod engine;
pub mod server;
