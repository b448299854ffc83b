//! The record an op leaves in the graph: its inputs and whatever its gradient needs.
//! The gradient rules themselves are all in `backprop.rs`.
use crate::custom::CustomOp;
use crate::{Indices, Tensor};
use senet_spec::conv2d::Conv2dGeometry;
use senet_spec::elementwise::{BinaryOp, UnaryOp};
use senet_spec::grouped_linear::GroupedLinearShape;
use senet_spec::pool::Pool2dGeometry;
use std::sync::Arc;

#[derive(Clone)]
pub enum Op {
    /// Add, Sub, Mul, Div with broadcasting.
    Binary(BinaryOp, Tensor, Tensor),
    Unary(UnaryOp, Tensor),
    /// Sum over `axes`; the output keeps those axes with size 1.
    Sum {
        input: Tensor,
        axes: Vec<usize>,
    },
    /// Max over `axes`; the output keeps those axes with size 1.
    Max {
        input: Tensor,
        axes: Vec<usize>,
    },
    /// Any change of shape that keeps the row-major order (reshape, contiguous copy).
    Reshape(Tensor),
    Permute {
        input: Tensor,
        axes: Vec<usize>,
    },
    /// A stride-0 view stretching size-1 dimensions.
    Broadcast(Tensor),
    Narrow {
        input: Tensor,
        axis: usize,
        start: usize,
    },
    Concat {
        inputs: Vec<Tensor>,
        axis: usize,
    },
    ToDType(Tensor),
    ToDevice(Tensor),
    Matmul(Tensor, Tensor),
    Softmax {
        input: Tensor,
        axis: usize,
        log: bool,
    },
    CrossEntropy {
        logits: Tensor,
        labels: Indices,
        smoothing: f64,
        probs: Tensor,
    },
    Conv2d {
        input: Tensor,
        weight: Tensor,
        bias: Option<Tensor>,
        geometry: Conv2dGeometry,
    },
    BatchNorm2d {
        input: Tensor,
        weight: Option<Tensor>,
        bias: Option<Tensor>,
        mean: Tensor,
        invstd: Tensor,
        training: bool,
    },
    MaxPool2d {
        input: Tensor,
        argmax: Indices,
        geometry: Pool2dGeometry,
    },
    AvgPool2d {
        input: Tensor,
        geometry: Pool2dGeometry,
    },
    GroupedLinear {
        input: Tensor,
        weight: Tensor,
        bias: Option<Tensor>,
        shape: GroupedLinearShape,
    },
    Custom {
        op: Arc<dyn CustomOp>,
        inputs: Vec<Tensor>,
    },
}

impl Op {
    /// The tensors this op read, in the order of its arguments (bias last).
    pub fn inputs(&self) -> Vec<&Tensor> {
        match self {
            Op::Binary(_, a, b) | Op::Matmul(a, b) => vec![a, b],
            Op::Unary(_, x)
            | Op::Reshape(x)
            | Op::Broadcast(x)
            | Op::ToDType(x)
            | Op::ToDevice(x) => {
                vec![x]
            }
            Op::Sum { input, .. }
            | Op::Max { input, .. }
            | Op::Permute { input, .. }
            | Op::Narrow { input, .. }
            | Op::Softmax { input, .. }
            | Op::MaxPool2d { input, .. }
            | Op::AvgPool2d { input, .. } => vec![input],
            Op::CrossEntropy { logits, .. } => vec![logits],
            Op::Concat { inputs, .. } | Op::Custom { inputs, .. } => inputs.iter().collect(),
            Op::Conv2d {
                input,
                weight,
                bias,
                ..
            }
            | Op::GroupedLinear {
                input,
                weight,
                bias,
                ..
            } => {
                let mut v = vec![input, weight];
                v.extend(bias);
                v
            }
            Op::BatchNorm2d {
                input,
                weight,
                bias,
                ..
            } => {
                let mut v = vec![input];
                v.extend(weight);
                v.extend(bias);
                v
            }
        }
    }

    /// The input tensors, by value (what `Drop` unlinks).
    pub(crate) fn into_inputs(self) -> Vec<Tensor> {
        self.inputs().into_iter().cloned().collect()
    }

    pub fn name(&self) -> String {
        match self {
            Op::Binary(op, ..) => format!("{op:?}").to_lowercase(),
            Op::Unary(op, _) => format!("{op:?}").to_lowercase(),
            Op::Sum { .. } => "sum".into(),
            Op::Max { .. } => "max".into(),
            Op::Reshape(_) => "reshape".into(),
            Op::Permute { .. } => "permute".into(),
            Op::Broadcast(_) => "broadcast".into(),
            Op::Narrow { .. } => "narrow".into(),
            Op::Concat { .. } => "concat".into(),
            Op::ToDType(_) => "to_dtype".into(),
            Op::ToDevice(_) => "to_device".into(),
            Op::Matmul(..) => "matmul".into(),
            Op::Softmax { log: false, .. } => "softmax".into(),
            Op::Softmax { log: true, .. } => "log_softmax".into(),
            Op::CrossEntropy { .. } => "cross_entropy".into(),
            Op::Conv2d { .. } => "conv2d".into(),
            Op::BatchNorm2d { .. } => "batch_norm2d".into(),
            Op::MaxPool2d { .. } => "max_pool2d".into(),
            Op::AvgPool2d { .. } => "avg_pool2d".into(),
            Op::GroupedLinear { .. } => "grouped_linear".into(),
            Op::Custom { op, .. } => op.name().to_string(),
        }
    }
}
