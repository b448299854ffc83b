//! `senet`: SENetV2 image classifiers on a deep-learning framework written from scratch.
//!
//! This facade re-exports the framework's crates so examples, tests and benchmarks need one
//! dependency: [`spec`] (what every kernel computes), [`cpu`] and [`gpu`] (the kernels),
//! [`tensor`] (the `Tensor` type, autograd, gradcheck and the op self-test), [`nn`],
//! [`models`], [`data`] and [`train`] (the trainer, evaluation and the run folder). The `senet`
//! binary (`src/main.rs`) is the command-line program: it parses flags and calls the crates;
//! [`commands`] holds its predict command and the thin eval wrapper, [`bench`] the benchmark.

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
