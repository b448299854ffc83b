//! `senet`: SENetV2 image classifiers on a deep-learning framework written from scratch.
//!
//! This facade re-exports the framework's crates so examples, tests and benchmarks need one
//! dependency: [`spec`] (what every kernel computes), [`cpu`] and [`gpu`] (the kernels),
//! [`tensor`] (the `Tensor` type, autograd, gradcheck and the op self-test), [`nn`],
//! [`models`], [`data`] and [`train`] (the trainer, evaluation and the run folder). The `senet`
//! binary (`src/main.rs`) is the command-line program: it parses flags and calls the crates;
//! [`commands`] holds its predict command and the thin eval wrapper, [`bench`](mod@bench) the benchmark,
//! [`graph`] the autograd graph of a training step as a Graphviz file.

pub use senet_cpu as cpu;
pub use senet_data as data;
pub use senet_gpu as gpu;
pub use senet_models as models;
pub use senet_nn as nn;
pub use senet_spec as spec;
pub use senet_tensor as tensor;
pub use senet_tensor::{no_grad, Error, Result, Tensor};
pub use senet_train as train;

pub mod bench;
pub mod commands;
pub mod graph;

/// Asks the C allocator (glibc's malloc, which Rust's `Vec` uses on Linux) to keep freed memory
/// for reuse instead of handing it back to the system. A training step frees and re-allocates
/// buffers of the same sizes every step; handed back, each one comes back as fresh pages, and
/// every page costs a fault and a zero-fill on first touch, which made elementwise kernels about
/// three times slower than their memory traffic. Peak memory is unchanged: what is kept is what
/// the step's peak needed anyway. Call once at start; a no-op on other platforms.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any threads start.
    unsafe {
        // Blocks up to 32 MiB (glibc's largest setting) come from the heap, not fresh mmaps.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        // Never shrink the heap's top back to the system.
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
