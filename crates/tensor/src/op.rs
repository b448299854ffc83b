//! The record an op leaves in the graph: its inputs and whatever its gradient needs.
//! The gradient rules themselves are all in `backprop.rs`.
use crate::custom::CustomOp;
use crate::{Indices, Tensor};
use senet_spec::conv2d::Conv2dGeometry;
use senet_spec::elementwise::{BinaryOp, UnaryOp};
use senet_spec::grouped_linear::GroupedLinearShape;
use senet_spec::pool::Pool2dGeometry;
use std::sync::Arc;

/// One recorded op: a node of the autograd graph. Each variant holds the op's input tensors
/// (keeping them alive until `backward`) and whatever else its gradient rule needs; a result
/// tensor holds the `Op` that made it ([`Tensor::op`]).
#[derive(Clone)]
pub enum Op {
    /// Add, Sub, Mul, Div with broadcasting.
    Binary(BinaryOp, Tensor, Tensor),
    /// An elementwise function of one input.
    Unary(UnaryOp, Tensor),
    /// Sum over `axes`; the output keeps those axes with size 1.
    Sum {
        /// The tensor summed.
        input: Tensor,
        /// The axes summed over, sorted.
        axes: Vec<usize>,
    },
    /// Max over `axes`; the output keeps those axes with size 1.
    Max {
        /// The tensor reduced (its gradient goes to where it equals the max).
        input: Tensor,
        /// The axes reduced over, sorted.
        axes: Vec<usize>,
    },
    /// Any change of shape that keeps the row-major order (reshape, contiguous copy).
    Reshape(Tensor),
    /// A reordering of the axes (a view).
    Permute {
        /// The tensor viewed.
        input: Tensor,
        /// Output axis `i` is input axis `axes[i]`.
        axes: Vec<usize>,
    },
    /// A stride-0 view stretching size-1 dimensions.
    Broadcast(Tensor),
    /// A slice along one axis (a view).
    Narrow {
        /// The tensor sliced.
        input: Tensor,
        /// The axis sliced.
        axis: usize,
        /// Where the slice starts; its length is the output's size on `axis`.
        start: usize,
    },
    /// Tensors joined along one axis.
    Concat {
        /// The tensors joined, in order.
        inputs: Vec<Tensor>,
        /// The axis they were joined along.
        axis: usize,
    },
    /// A conversion to another dtype; the gradient is converted back.
    ToDType(Tensor),
    /// A copy to another device; the gradient is moved back.
    ToDevice(Tensor),
    /// A (batched) matrix product.
    Matmul(Tensor, Tensor),
    /// Softmax or log-softmax; the gradient rule reads the output, not the input.
    Softmax {
        /// The scores.
        input: Tensor,
        /// The axis normalized over.
        axis: usize,
        /// Log-softmax when true.
        log: bool,
    },
    /// Mean cross-entropy of logits against labels.
    CrossEntropy {
        /// The `[batch, classes]` scores.
        logits: Tensor,
        /// The class of each row, kept on the op's device.
        labels: Indices,
        /// Label smoothing, 0 for none.
        smoothing: f64,
        /// The softmax of `logits`, saved by the forward: the gradient is
        /// `probs - smoothed one-hot target`.
        probs: Tensor,
    },
    /// A 2-D convolution.
    Conv2d {
        /// The `[N, Cin, H, W]` input.
        input: Tensor,
        /// The `[Cout, Cin/groups, kh, kw]` filters.
        weight: Tensor,
        /// The `[Cout]` bias, if any.
        bias: Option<Tensor>,
        /// Every size of the convolution.
        geometry: Conv2dGeometry,
    },
    /// Batch normalization of an `[N, C, H, W]` input.
    BatchNorm2d {
        /// The input.
        input: Tensor,
        /// The `[C]` scale, if any.
        weight: Option<Tensor>,
        /// The `[C]` shift, if any.
        bias: Option<Tensor>,
        /// The per-channel mean it normalized with (batch or running).
        mean: Tensor,
        /// `1 / sqrt(var + eps)` per channel, for the same statistics.
        invstd: Tensor,
        /// Whether the batch statistics were used: then the gradient also flows through them.
        training: bool,
    },
    /// Max pooling.
    MaxPool2d {
        /// The input.
        input: Tensor,
        /// Where each window's maximum was (its index in the input plane): the only place the
        /// gradient goes.
        argmax: Indices,
        /// Window, stride, padding and sizes.
        geometry: Pool2dGeometry,
    },
    /// Average pooling.
    AvgPool2d {
        /// The input (only its shape matters to the gradient).
        input: Tensor,
        /// Window, stride, padding and sizes.
        geometry: Pool2dGeometry,
    },
    /// `linear` or `grouped_linear`.
    GroupedLinear {
        /// The `[B, in]` or `[B, groups*in]` input.
        input: Tensor,
        /// The weight, `[out, in]` or `[groups, out, in]`.
        weight: Tensor,
        /// The bias, if any.
        bias: Option<Tensor>,
        /// The sizes, as the kernels take them.
        shape: GroupedLinearShape,
    },
    /// An op defined outside this crate ([`Tensor::apply_custom`]).
    Custom {
        /// The op, whose `backward` gives the gradients.
        op: Arc<dyn CustomOp>,
        /// Its inputs.
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

    /// A short lowercase name (`"conv2d"`, `"mul"`, `"scale(0.5)"`, a custom op's own), for
    /// messages, `Debug` output and graph dumps; an elementwise op's is its spec name
    /// ([`UnaryOp::name`], [`BinaryOp::name`]), with the scalar where it takes one.
    pub fn name(&self) -> String {
        match self {
            Op::Binary(op, ..) => op.name().into(),
            // The scalar too where there is one ("scale(0.5)"): graph dumps tell them apart.
            Op::Unary(op @ (UnaryOp::Powf(c) | UnaryOp::Scale(c) | UnaryOp::AddScalar(c)), _) => {
                format!("{}({c:?})", op.name())
            }
            Op::Unary(op, _) => op.name().into(),
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
