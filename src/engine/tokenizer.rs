//! Tokenizer (placeholder).
