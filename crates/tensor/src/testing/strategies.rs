//! proptest strategies for shapes, tensors and layer geometries. Sizes stay small (gradcheck
//! perturbs every element) and deliberately awkward: odd, non-square, batch 1, stride 2,
//! padding, dilation, groups > 1 and depthwise.
use super::random_tensor;
use crate::{Conv2dOptions, Pool2dOptions, Tensor};
use proptest::prelude::*;
use senet_spec::cases::{conv2d_random, grouped_linear_random, pool2d_random, RANDOM_DRAWS};
use senet_spec::grouped_linear::GroupedLinearShape;

/// A shape of rank `1..=max_rank` with every dimension in `1..=max_dim`.
pub fn shape(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1..=max_dim, 1..=max_rank)
}

/// A standard-normal f64 tensor of the given shape.
pub fn tensor(shape: Vec<usize>) -> impl Strategy<Value = Tensor> {
    any::<u64>().prop_map(move |seed| random_tensor(&shape, seed))
}

/// A random f64 tensor of random shape.
pub fn any_tensor(max_rank: usize, max_dim: usize) -> impl Strategy<Value = Tensor> {
    shape(max_rank, max_dim).prop_flat_map(tensor)
}

/// A tensor of `shape` whose layout is *not* row-major: the buffer holds the axes in reverse
/// order and the tensor is a permuted view of it (for shapes with two or more non-1 axes).
pub fn non_contiguous(shape: Vec<usize>) -> impl Strategy<Value = Tensor> {
    any::<u64>().prop_map(move |seed| {
        let reversed: Vec<usize> = shape.iter().rev().copied().collect();
        let axes: Vec<usize> = (0..shape.len()).rev().collect();
        random_tensor(&reversed, seed)
            .permute(&axes)
            .expect("reversing the axes is a permutation")
    })
}

/// Two shapes that broadcast together: the second drops some leading axes and sets some
/// others to 1 (and sometimes it is the first that is stretched).
pub fn broadcast_shapes(
    max_rank: usize,
    max_dim: usize,
) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    shape(max_rank, max_dim).prop_flat_map(|full| {
        let rank = full.len();
        (
            Just(full),
            0..=rank,
            prop::collection::vec(any::<bool>(), rank),
            any::<bool>(),
        )
            .prop_map(|(full, drop, ones, swap)| {
                let small: Vec<usize> = full
                    .iter()
                    .zip(&ones)
                    .skip(drop)
                    .map(|(&d, &one)| if one { 1 } else { d })
                    .collect();
                if swap {
                    (small, full)
                } else {
                    (full, small)
                }
            })
    })
}

/// A convolution to test: input shape, weight shape and options, all consistent.
#[derive(Clone, Debug)]
pub struct Conv2dCase {
    /// `[N, Cin, H, W]`.
    pub input: Vec<usize>,
    /// `[Cout, Cin/groups, kh, kw]`.
    pub weight: Vec<usize>,
    /// Whether to pass a `[Cout]` bias.
    pub bias: bool,
    /// Stride, padding, dilation and groups.
    pub options: Conv2dOptions,
}

/// Random draws for the shape generators of `senet_spec::cases`; proptest shrinks them toward
/// zero, that is toward the smallest shapes.
fn draws() -> impl Strategy<Value = Vec<u32>> {
    prop::collection::vec(any::<u32>(), RANDOM_DRAWS)
}

/// Convolutions from `senet_spec::cases::conv2d_random`: batch 1 or 2, one to three groups or
/// depthwise, non-square kernels, stride 2, padding, dilation, inputs that just fit.
pub fn conv2d_case() -> impl Strategy<Value = Conv2dCase> {
    draws().prop_map(|d| {
        let (g, bias) = conv2d_random(&d);
        Conv2dCase {
            input: vec![g.batch, g.in_channels, g.in_h, g.in_w],
            weight: vec![
                g.out_channels,
                g.in_channels / g.groups,
                g.kernel.0,
                g.kernel.1,
            ],
            bias,
            options: Conv2dOptions {
                stride: g.stride,
                padding: g.padding,
                dilation: g.dilation,
                groups: g.groups,
            },
        }
    })
}

/// A pooling op to test: input shape and options (padding at most half the window, as
/// PyTorch requires).
#[derive(Clone, Debug)]
pub struct Pool2dCase {
    /// `[N, C, H, W]`.
    pub input: Vec<usize>,
    /// Window, stride and padding.
    pub options: Pool2dOptions,
}

/// Poolings from `senet_spec::cases::pool2d_random`.
pub fn pool2d_case() -> impl Strategy<Value = Pool2dCase> {
    draws().prop_map(|d| {
        let g = pool2d_random(&d);
        Pool2dCase {
            input: vec![g.batch, g.channels, g.in_h, g.in_w],
            options: Pool2dOptions {
                kernel: g.kernel,
                stride: g.stride,
                padding: g.padding,
            },
        }
    })
}

/// Grouped dense layers from `senet_spec::cases::grouped_linear_random`.
pub fn grouped_linear_case() -> impl Strategy<Value = GroupedLinearShape> {
    draws().prop_map(|d| grouped_linear_random(&d))
}
