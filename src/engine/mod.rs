//! The engine: model configuration, weight loading, the forward pass, tokenizer, sampling, generation.

pub mod sampling;
pub mod tokenizer;
