use crate::device::{DType, Device};

/// Everything a tensor operation can refuse. Messages name the op and the offending shapes,
/// dtypes or devices so a user can fix the call without reading our code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },
    #[error("{op}: dtype mismatch: {lhs:?} and {rhs:?}")]
    DType {
        op: &'static str,
        lhs: DType,
        rhs: DType,
    },
    #[error(
        "{op}: tensors are on different devices: {lhs} and {rhs} (move one with to_device first)"
    )]
    Device {
        op: &'static str,
        lhs: Device,
        rhs: Device,
    },
    #[error("{op}: {msg}")]
    Invalid { op: &'static str, msg: String },
    #[error("backward: {0}")]
    Backward(String),
    #[error(transparent)]
    Gpu(#[from] senet_gpu::GpuError),
}

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
