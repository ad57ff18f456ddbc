//! Per-op microbenchmarks (placeholder while the bench tool is built).
fn main() {}
