//! CPU backend (placeholder, being written).
