use crate::device::{DType, Device};

/// Everything a tensor operation can refuse. Messages name the op and the offending shapes,
/// dtypes or devices so a user can fix the call without reading our code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The shapes of the arguments do not fit the op (wrong rank, sizes that disagree).
    #[error("{op}: {msg}")]
    Shape {
        /// The op that refused, e.g. `"matmul"`.
        op: &'static str,
        /// What is wrong, naming the shapes.
        msg: String,
    },
    /// Two tensors of different element types were combined; convert one with `to_dtype`.
    #[error("{op}: dtype mismatch: {lhs:?} and {rhs:?}")]
    DType {
        /// The op that refused.
        op: &'static str,
        /// The first tensor's dtype.
        lhs: DType,
        /// The other tensor's dtype.
        rhs: DType,
    },
    /// Two tensors on different devices were combined; ops never move data implicitly.
    #[error(
        "{op}: tensors are on different devices: {lhs} and {rhs} (move one with to_device first)"
    )]
    Device {
        /// The op that refused.
        op: &'static str,
        /// The first tensor's device.
        lhs: Device,
        /// The other tensor's device.
        rhs: Device,
    },
    /// An argument other than a shape is out of range (a label, eps, a missing option).
    #[error("{op}: {msg}")]
    Invalid {
        /// The op that refused.
        op: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// `backward` could not run: nothing to differentiate, a bad seed, or a gradient rule
    /// (a custom op's, say) that returned the wrong gradients.
    #[error("backward: {0}")]
    Backward(String),
    /// The GPU failed: no adapter, out of memory, a lost device.
    #[error(transparent)]
    Gpu(#[from] senet_gpu::GpuError),
}

/// The result of every fallible tensor operation.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid {
            op,
            msg: msg.into(),
        }
    }
}
