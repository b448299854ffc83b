//! The `Tensor` type and reverse-mode automatic differentiation, on the CPU or a GPU.
//!
//! A [`Tensor`] is a cheap handle (an `Arc`) to a [`Storage`] (a CPU buffer of f32 or f64, or
//! a GPU buffer), a [`Layout`] (shape, strides and offset, so `permute`, `narrow` and
//! broadcasting are views, not copies) and — when gradients are being recorded — the [`Op`]
//! that produced it. Each op in [`ops`] checks its inputs, names its computation as a kernel
//! with one implementation per device (`senet-cpu`, `senet-gpu`), runs it through
//! `kernel.rs` — the one place that picks a kernel by device and dtype (`storage.rs` creates
//! and moves buffers) — and records an `Op`
//! holding its inputs and whatever the gradient needs. [`Tensor::backward`] walks that graph
//! once in reverse topological order; all gradient rules live in one `match` in `backprop.rs`.
//!
//! Under [`no_grad`] (and for tensors that need no gradient) nothing is recorded. With the
//! `testing` feature, the `testing` module offers `gradcheck`, proptest strategies and the op
//! self-test, so users can property-test the gradients of their own ops, including
//! [`CustomOp`]s.

#![deny(missing_docs)]

mod backprop;
mod custom;
mod device;
mod display;
mod error;
mod grad_mode;
pub mod graph;
mod kernel;
mod layout;
mod op;
pub mod ops;
pub mod profile;
mod storage;
mod tensor;
#[cfg(feature = "testing")]
pub mod testing;

pub use backprop::Gradients;
pub use custom::CustomOp;
pub use device::{DType, Device};
pub use error::{Error, Result};
pub use grad_mode::{is_grad_enabled, no_grad, NoGradGuard};
pub use layout::Layout;
pub use op::Op;
pub use ops::batchnorm::{BatchNormOptions, RunningStats};
pub use ops::conv::Conv2dOptions;
pub use ops::optim::{AdamWStep, SgdStep};
pub use ops::pool::Pool2dOptions;
pub use senet_spec as spec;
pub use storage::{CpuElement, CpuStorage, Indices, Storage};
pub use tensor::{Tensor, TensorId};
