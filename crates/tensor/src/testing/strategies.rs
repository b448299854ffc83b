//! proptest strategies for shapes, tensors and layer geometries. Sizes stay small (gradcheck
//! perturbs every element) and deliberately awkward: odd, non-square, batch 1, stride 2,
//! padding, dilation, groups > 1 and depthwise.
use super::random_tensor;
use crate::{Conv2dOptions, Pool2dOptions, Tensor};
use proptest::prelude::*;

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
    pub input: Vec<usize>,
    pub weight: Vec<usize>,
    pub bias: bool,
    pub options: Conv2dOptions,
}

/// Convolutions with batch 1..=2, 1..=3 groups or depthwise, kernels 1..=3 (non-square),
/// stride 1..=2, padding 0..=2, dilation 1..=2, and input sizes that just fit or exceed.
pub fn conv2d_case() -> impl Strategy<Value = Conv2dCase> {
    (
        1usize..=2,
        prop_oneof![Just(None), (1usize..=3).prop_map(Some)],
        (1usize..=2, 1usize..=2),
        (
            (1usize..=3, 1usize..=3),
            (1usize..=2, 1usize..=2),
            (0usize..=2, 0usize..=1),
            (1usize..=2, 1usize..=2),
        ),
        (0usize..=4, 0usize..=3),
        any::<bool>(),
    )
        .prop_map(
            |(
                batch,
                groups,
                (cin_g, cout_g),
                (kernel, stride, padding, dilation),
                (extra_h, extra_w),
                bias,
            )| {
                // `None` means depthwise: groups = channels, one input and one output channel each.
                let (groups, cin_g, cout_g) = match groups {
                    Some(g) => (g, cin_g, cout_g),
                    None => (cin_g + 2, 1, 1),
                };
                // The smallest input that yields one output, plus some extra rows/columns.
                let min =
                    |k: usize, d: usize, p: usize| (d * (k - 1) + 1).saturating_sub(2 * p).max(1);
                let h = min(kernel.0, dilation.0, padding.0) + extra_h;
                let w = min(kernel.1, dilation.1, padding.1) + extra_w;
                Conv2dCase {
                    input: vec![batch, cin_g * groups, h, w],
                    weight: vec![cout_g * groups, cin_g, kernel.0, kernel.1],
                    bias,
                    options: Conv2dOptions {
                        stride,
                        padding,
                        dilation,
                        groups,
                    },
                }
            },
        )
}

/// A pooling op to test: input shape and options (padding at most half the window, as
/// PyTorch requires).
#[derive(Clone, Debug)]
pub struct Pool2dCase {
    pub input: Vec<usize>,
    pub options: Pool2dOptions,
}

pub fn pool2d_case() -> impl Strategy<Value = Pool2dCase> {
    (
        (1usize..=2, 1usize..=3),
        (1usize..=3, 1usize..=3),
        (1usize..=2, 1usize..=2),
        (any::<bool>(), any::<bool>()),
        (0usize..=4, 0usize..=4),
    )
        .prop_map(
            |((batch, channels), kernel, stride, (pad_h, pad_w), (extra_h, extra_w))| {
                let padding = (
                    if pad_h { kernel.0 / 2 } else { 0 },
                    if pad_w { kernel.1 / 2 } else { 0 },
                );
                Pool2dCase {
                    input: vec![batch, channels, kernel.0 + extra_h, kernel.1 + extra_w],
                    options: Pool2dOptions {
                        kernel,
                        stride,
                        padding,
                    },
                }
            },
        )
}

/// Sizes of a grouped dense layer: (batch, groups, in, out, shared input).
pub fn grouped_linear_case() -> impl Strategy<Value = (usize, usize, usize, usize, bool)> {
    (
        1usize..=3,
        1usize..=4,
        1usize..=5,
        1usize..=4,
        any::<bool>(),
    )
}
