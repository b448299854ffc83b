//! `senet`: SENetV2 image classifiers on a deep-learning framework written from scratch.
//!
//! This facade re-exports the framework's crates so examples, tests and benchmarks need one
//! dependency: [`tensor`] (the `Tensor` type, autograd, gradcheck) and [`cpu`] (the kernels).
//! The `senet` binary (`src/main.rs`) is the command-line program; [`selftest`] backs
//! `senet selftest`.

pub use senet_cpu as cpu;
pub use senet_data as data;
pub use senet_gpu as gpu;
pub use senet_models as models;
pub use senet_nn as nn;
pub use senet_spec as spec;
pub use senet_tensor as tensor;
pub use senet_tensor::{no_grad, Error, Result, Tensor};

pub mod commands;
pub mod plot;
pub mod selftest;
pub mod train;
