//! The engine: model configuration, weight loading, the forward pass, tokenizer, sampling, generation.

pub mod config;
pub mod generate;
pub mod gguf;
pub mod gguf_model;
pub mod kv_cache;
pub mod loader;
pub mod model;
pub mod pull;
pub mod sampling;
pub mod scheduler;
pub mod sequence;
pub mod tokenizer;
pub mod tokenizer_gguf;
