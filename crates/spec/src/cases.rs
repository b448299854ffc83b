//! The shapes every kernel is tested on: the CPU kernels against the reference loops, the WGSL
//! kernels against the CPU ones. One list per op family, so both backends are always checked
//! on the same edge cases. Small sizes: lavapipe runs them too.
use crate::batchnorm::BnShape;
use crate::conv2d::Conv2dGeometry;
use crate::grouped_linear::GroupedLinearShape;
use crate::pool::Pool2dGeometry;

/// A convolution from `(batch, in_channels, in_h, in_w, out_channels)` and the
/// `(height, width)` pairs of kernel, stride, padding and dilation.
pub fn conv2d_geometry(
    (batch, in_channels, in_h, in_w, out_channels): (usize, usize, usize, usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
) -> Conv2dGeometry {
    Conv2dGeometry {
        batch,
        in_channels,
        in_h,
        in_w,
        out_channels,
        kernel,
        stride,
        padding,
        dilation,
        groups,
    }
}

/// Stride 2, padding, dilation 2, groups 2 and 3, ResNeXt-like and depthwise groups, batch 1,
/// odd non-square sizes, 1x1 kernels (plain and strided), batches that are not a multiple of a
/// CPU chunk, and sizes past one 64-wide GPU tile.
pub fn conv2d_cases() -> Vec<Conv2dGeometry> {
    let g = conv2d_geometry;
    vec![
        g((2, 3, 7, 5, 4), (3, 3), (1, 1), (1, 1), (1, 1), 1),
        g((3, 4, 9, 8, 6), (3, 3), (2, 2), (1, 1), (1, 1), 1),
        g((2, 2, 9, 7, 3), (3, 3), (1, 1), (2, 2), (2, 2), 1),
        g((2, 4, 6, 7, 6), (3, 2), (1, 2), (1, 0), (1, 1), 2),
        // Depthwise, one with stride 2 and dilation 2.
        g((2, 5, 8, 6, 5), (3, 3), (2, 1), (1, 1), (1, 1), 5),
        g((1, 4, 9, 7, 4), (3, 3), (2, 2), (2, 1), (2, 2), 4),
        // Groups 3 with two output channels per input channel, batch 1.
        g((1, 3, 5, 5, 6), (3, 3), (1, 1), (1, 1), (1, 1), 3),
        g((2, 6, 7, 5, 9), (3, 3), (2, 1), (1, 2), (1, 1), 3),
        g((1, 6, 5, 4, 3), (1, 1), (1, 1), (0, 0), (1, 1), 1),
        g((9, 4, 3, 5, 6), (1, 1), (1, 1), (0, 0), (1, 1), 2),
        g((3, 4, 7, 7, 8), (1, 1), (2, 2), (0, 0), (1, 1), 2),
        g((5, 3, 10, 11, 2), (2, 4), (3, 2), (0, 2), (2, 1), 1),
        g((2, 2, 3, 3, 2), (5, 5), (1, 1), (1, 1), (1, 1), 1),
        g((6, 2, 4, 9, 3), (3, 1), (1, 3), (2, 0), (1, 1), 1),
        // Past one GPU tile: cout_g 66 and 70, cin_g*kh*kw 180, batch*positions 270.
        g((2, 8, 6, 7, 132), (3, 3), (1, 1), (1, 1), (1, 1), 2),
        g((2, 20, 6, 5, 70), (3, 3), (1, 1), (1, 1), (1, 1), 1),
        g((3, 3, 9, 10, 5), (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // ResNeXt-like groups: 4 in and 4 out per group with stride 2; 3 in and 5 out.
        g((2, 16, 7, 7, 16), (3, 3), (2, 2), (1, 1), (1, 1), 4),
        g((2, 12, 6, 5, 20), (3, 3), (1, 1), (1, 1), (1, 1), 4),
        // Stride 1 with more padding than the kernel spans: the CPU's input gradient cannot
        // run as a flipped convolution and takes the col2im path.
        g((2, 3, 5, 6, 4), (2, 2), (1, 1), (2, 1), (1, 1), 1),
        // "Same" stride-1 convolutions at least 8 wide (the CPU unfolds them by shifted
        // copies): a 5x5 kernel (column shifts of 2) and a 1x3 one.
        g((2, 3, 9, 11, 4), (5, 5), (1, 1), (2, 2), (1, 1), 1),
        g((3, 2, 5, 8, 3), (1, 3), (1, 1), (0, 1), (1, 1), 1),
        // A single row: the taps above and below read nothing but padding.
        g((2, 2, 1, 9, 3), (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // And stride 2 over outputs 16 wide, from the plane's four phases: 3x3, a 7x7 stem-like
        // kernel with padding 3, and 2x2 with no padding (each phase read once).
        g((2, 2, 6, 32, 3), (3, 3), (2, 2), (1, 1), (1, 1), 1),
        g((1, 2, 4, 32, 2), (7, 7), (2, 2), (3, 3), (1, 1), 1),
        g((2, 3, 4, 32, 2), (2, 2), (2, 2), (0, 0), (1, 1), 1),
        // One output position per sample (the CPU's samples-as-rows path), grouped: a 1x1/2
        // over 2x2 maps, and a 3x3 window as large as the input.
        g((3, 4, 2, 2, 6), (1, 1), (2, 2), (0, 0), (1, 1), 2),
        g((2, 6, 3, 3, 4), (3, 3), (1, 1), (0, 0), (1, 1), 2),
        // 16 input channels over a 16x16 plane: the CPU's Winograd path, and its transposed
        // input gradient (4 -> 16) through im2col.
        g((1, 16, 16, 16, 4), (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // 32 input and 40 output channels over a 5x7 plane: the CPU's channels-last Winograd,
        // for the forward pass and the input gradient, with tiles cut at the edges; and 128
        // input channels over 9x12, channels last on a larger plane.
        g((2, 32, 5, 7, 40), (3, 3), (1, 1), (1, 1), (1, 1), 1),
        g((1, 128, 9, 12, 3), (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // Strides larger than the kernel (stride phases with no tap, one with no row), and
        // stride 2 with dilation 3 (each phase's taps 3 apart in the output).
        g((2, 3, 3, 5, 4), (2, 2), (4, 3), (1, 0), (1, 1), 1),
        g((2, 2, 9, 9, 3), (3, 3), (2, 2), (3, 3), (3, 3), 1),
        // batch*positions 800: the GPU weight gradient splits K in 3 by itself.
        g((2, 2, 20, 20, 3), (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ]
}

/// A pooling from `(batch, channels, in_h, in_w)` and the `(height, width)` pairs of kernel,
/// stride and padding.
pub fn pool2d_geometry(
    (batch, channels, in_h, in_w): (usize, usize, usize, usize),
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
) -> Pool2dGeometry {
    Pool2dGeometry {
        batch,
        channels,
        in_h,
        in_w,
        kernel,
        stride,
        padding,
    }
}

/// Batch 1 and one channel, odd and non-square planes, strides 1 to 3, padding, kernels 1 to 4
/// (non-square too), a window as large as the input and a 1x1 input whose windows are mostly
/// padding.
pub fn pool2d_cases() -> Vec<Pool2dGeometry> {
    let g = pool2d_geometry;
    vec![
        g((2, 3, 8, 8), (2, 2), (2, 2), (0, 0)),
        g((2, 3, 7, 9), (3, 3), (2, 2), (1, 1)),
        g((1, 2, 5, 6), (3, 2), (1, 2), (1, 1)),
        g((3, 1, 9, 4), (4, 3), (3, 1), (2, 0)),
        g((2, 2, 4, 4), (4, 4), (1, 1), (0, 0)),
        g((1, 4, 6, 5), (1, 1), (2, 2), (0, 0)),
        g((2, 2, 1, 1), (2, 2), (1, 1), (1, 1)),
        g((1, 1, 5, 7), (3, 3), (1, 1), (1, 1)),
        g((2, 3, 7, 9), (3, 2), (2, 2), (1, 1)),
        g((3, 2, 8, 3), (3, 1), (2, 1), (1, 0)),
        g((1, 3, 9, 4), (2, 3), (1, 2), (1, 1)),
        g((2, 5, 11, 13), (3, 3), (2, 2), (1, 1)),
    ]
}

/// Batch 1, one channel, a 1x1 plane, odd sizes, and channels of 5,000 and 9,000 values that
/// span several chunks of the GPU's two-stage reduction (the last one partial).
pub fn batch_norm_cases() -> Vec<BnShape> {
    let s = |n, c, hw| BnShape { n, c, hw };
    vec![
        s(2, 3, 5),
        s(1, 4, 9),
        s(5, 2, 1),
        s(3, 1, 12),
        s(7, 6, 35),
        s(1, 1, 7),
        s(1, 5, 15),
        s(2, 3, 2500),
        s(3, 2, 3000),
    ]
}

/// A grouped linear layer from `batch`, `groups`, features in and out per group, and whether
/// every group reads the same input.
pub fn grouped_linear_shape(
    batch: usize,
    groups: usize,
    in_features: usize,
    out_features: usize,
    shared_input: bool,
) -> GroupedLinearShape {
    GroupedLinearShape {
        batch,
        groups,
        in_features,
        out_features,
        shared_input,
    }
}

/// Shared and unshared input, one group (a Linear layer), batch 1, batches and widths that
/// cross the CPU kernel's row blocks (32 rows, 64 outputs) and one 64-wide GPU tile, and no
/// input features (the output is the bias).
pub fn grouped_linear_cases() -> Vec<GroupedLinearShape> {
    let shape = grouped_linear_shape;
    let mut v = vec![];
    for shared in [false, true] {
        v.extend([
            shape(3, 4, 5, 2, shared),
            shape(1, 3, 7, 6, shared),
            shape(70, 2, 9, 67, shared),
            shape(5, 1, 13, 3, shared),
            shape(33, 1, 20, 130, shared),
            shape(4, 2, 0, 3, shared),
        ]);
    }
    v
}

/// How many numbers the `*_random` generators below read. Gradient tests draw them from
/// proptest (which then shrinks failures toward small draws, that is small shapes) and the
/// self-test from a seeded generator; both get their shapes from these functions alone.
pub const RANDOM_DRAWS: usize = 16;

/// Turns raw draws into choices: each `pick` scales the next draw into a range, so a smaller
/// draw never gives a larger choice, and draws of 0 give the smallest shape.
struct Picks<'a> {
    draws: &'a [u32],
    next: usize,
}

impl Picks<'_> {
    fn new(draws: &[u32]) -> Picks<'_> {
        Picks { draws, next: 0 }
    }
    /// A value in `lo..=hi`.
    fn pick(&mut self, lo: usize, hi: usize) -> usize {
        debug_assert!(
            self.next < RANDOM_DRAWS,
            "a generator reads at most RANDOM_DRAWS"
        );
        let d = self.draws.get(self.next).copied().unwrap_or(0) as u64;
        self.next += 1;
        // d / 2^32 of the way from lo to hi: monotone in d, unlike d % n.
        lo + ((d * (hi - lo + 1) as u64) >> 32) as usize
    }
    fn pair(&mut self, lo: usize, hi: usize) -> (usize, usize) {
        (self.pick(lo, hi), self.pick(lo, hi))
    }
}

/// A small random convolution for gradient checks, and whether it has a bias: batch 1-2,
/// 1-3 groups or depthwise, 1-2 channels in and out per group, kernels 1-3 (non-square),
/// stride 1-2, padding 0-2 by 0-1, dilation 1-2, and an input that just fits the kernel or
/// exceeds it by a few rows and columns.
pub fn conv2d_random(draws: &[u32]) -> (Conv2dGeometry, bool) {
    let mut p = Picks::new(draws);
    let batch = p.pick(1, 2);
    // The fourth choice is depthwise: 3 or 4 groups of one channel in and out.
    let (groups, cin_g, cout_g) = match (p.pick(1, 4), p.pair(1, 2)) {
        (4, (c, _)) => (c + 2, 1, 1),
        (g, (cin, cout)) => (g, cin, cout),
    };
    let kernel = p.pair(1, 3);
    let stride = p.pair(1, 2);
    let padding = (p.pick(0, 2), p.pick(0, 1));
    let dilation = p.pair(1, 2);
    // The smallest input that yields one output, plus some extra rows and columns.
    let fit = |k: usize, d: usize, pad: usize| (d * (k - 1) + 1).saturating_sub(2 * pad).max(1);
    let in_h = fit(kernel.0, dilation.0, padding.0) + p.pick(0, 4);
    let in_w = fit(kernel.1, dilation.1, padding.1) + p.pick(0, 3);
    let g = conv2d_geometry(
        (batch, cin_g * groups, in_h, in_w, cout_g * groups),
        kernel,
        stride,
        padding,
        dilation,
        groups,
    );
    (g, p.pick(0, 1) == 1)
}

/// A small random pooling: batch 1-2, 1-3 channels, windows 1-3 (non-square), stride 1-2,
/// padding 0 or half the window (PyTorch's limit), inputs up to 4 past the window.
pub fn pool2d_random(draws: &[u32]) -> Pool2dGeometry {
    let mut p = Picks::new(draws);
    let (batch, channels) = (p.pick(1, 2), p.pick(1, 3));
    let kernel = p.pair(1, 3);
    let stride = p.pair(1, 2);
    let padding = (kernel.0 / 2 * p.pick(0, 1), kernel.1 / 2 * p.pick(0, 1));
    let (in_h, in_w) = (kernel.0 + p.pick(0, 4), kernel.1 + p.pick(0, 4));
    pool2d_geometry((batch, channels, in_h, in_w), kernel, stride, padding)
}

/// A small random grouped dense layer: batch 1-3, 1-4 groups, 1-5 features in and 1-4 out
/// per group, shared input or not.
pub fn grouped_linear_random(draws: &[u32]) -> GroupedLinearShape {
    let mut p = Picks::new(draws);
    let (batch, groups) = (p.pick(1, 3), p.pick(1, 4));
    let (fin, fout) = (p.pick(1, 5), p.pick(1, 4));
    grouped_linear_shape(batch, groups, fin, fout, p.pick(0, 1) == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every draw gives a valid geometry, and zeros give the smallest one.
    #[test]
    fn random_geometries_are_valid() {
        let mut state = 1u64;
        for _ in 0..2000 {
            let draws: Vec<u32> = (0..RANDOM_DRAWS)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (state >> 32) as u32
                })
                .collect();
            let (g, _) = conv2d_random(&draws);
            g.validate().unwrap();
            pool2d_random(&draws).validate().unwrap();
            let s = grouped_linear_random(&draws);
            assert!(s.batch >= 1 && s.groups >= 1 && s.in_features >= 1);
        }
        let (g, bias) = conv2d_random(&[0; RANDOM_DRAWS]);
        assert_eq!((g.batch, g.kernel, g.groups, bias), (1, (1, 1), 1, false));
        assert_eq!((g.in_channels, g.out_channels, g.in_h), (1, 1, 1));
    }
}
