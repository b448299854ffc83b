//! Naive loops, written for clarity and nothing else: the ground truth every fast kernel
//! (CPU here, WGSL on the GPU) is tested against, and what `senet selftest` compares with.
mod basic;
pub mod cases;
mod layers;

pub use basic::*;
pub use layers::*;
