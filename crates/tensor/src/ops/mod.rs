//! The ops, one file per family. Each checks its inputs (errors name the shapes), names its
//! kernels for both devices (a `Kernel`, see `kernel.rs`), runs them, and records an `Op` for
//! `backward`. Kernels needed only by a gradient (conv input/weight gradients, pooling
//! scatter, ...) sit next to their forward.
pub mod batchnorm;
pub mod conv;
mod custom;
mod elementwise;
pub(crate) mod linear;
mod matmul;
pub mod optim;
pub mod pool;
mod reduce;
mod shape;
pub(crate) mod softmax;

use crate::{Error, Result, Tensor};

/// Errors unless `a` and `b` share dtype and device.
pub(crate) fn check_same(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.device() != b.device() {
        return Err(Error::Device {
            op,
            lhs: a.device(),
            rhs: b.device(),
        });
    }
    if a.dtype() != b.dtype() {
        return Err(Error::DType {
            op,
            lhs: a.dtype(),
            rhs: b.dtype(),
        });
    }
    Ok(())
}

/// Errors unless `t` has exactly `rank` dimensions; `what` names the argument.
pub(crate) fn check_rank(op: &'static str, what: &str, t: &Tensor, rank: usize) -> Result<()> {
    if t.rank() != rank {
        return Err(Error::shape(
            op,
            format!(
                "{what} must have {rank} dimensions, got shape {:?}",
                t.shape()
            ),
        ));
    }
    Ok(())
}

/// Errors unless `t` has exactly shape `expected`.
pub(crate) fn check_shape(
    op: &'static str,
    what: &str,
    t: &Tensor,
    expected: &[usize],
) -> Result<()> {
    if t.shape() != expected {
        return Err(Error::shape(
            op,
            format!("{what} must have shape {expected:?}, got {:?}", t.shape()),
        ));
    }
    Ok(())
}
