//! Sampling (placeholder).
