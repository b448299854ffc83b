//! Neural-network building blocks on top of `senet-tensor`.
//!
//! A [`Module`] computes `forward(x, train)` and exposes its named tensors through [`Module::visit`]
//! — parameters, buffers (batch-norm running statistics) and counters — in a stable order, with
//! PyTorch's `state_dict` names. Everything else is built on that one visitor: parameter lists
//! for optimizers, parameter counts, moving a model between devices, and [`checkpoint`]s in
//! safetensors format that PyTorch reads and writes. Layers live in [`layers`], the SE and SaE
//! attention modules in [`attention`], initializers in [`init`].

#![deny(missing_docs)]

pub mod attention;
pub mod checkpoint;
mod error;
pub mod init;
pub mod layers;
mod module;
pub mod optim;
pub mod schedule;

pub use error::{Error, Result};
pub use module::{join, Module, Slot};
