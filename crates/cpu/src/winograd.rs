//! 3x3 convolution with stride 1 by Winograd's minimal filtering, F(2x2, 3x3) (Lavin and Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2015).
//!
//! im2col + GEMM spends 9 multiply-adds per input channel on each output pixel. Winograd's
//! algorithm computes a 2x2 block of outputs from a 4x4 patch of input with 16 multiplies
//! instead of 36, once both are moved into a transformed space by a few additions:
//!
//! ```text
//! Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A     g: 3x3 kernel, d: 4x4 input patch, Y: 2x2 output
//! ```
//!
//! Summed over input channels, the elementwise product `⊙` at each of the 16 positions `ξ`
//! becomes a matrix product: `M_ξ [cout, tiles] = U_ξ [cout, cin] @ V_ξ [cin, tiles]`, with
//! `U = G g G^T` the transformed weight and `V = B^T d B` the transformed input. So a
//! convolution is an input transform, 16 GEMMs doing 16/36 = 4/9 of im2col's multiply-adds,
//! and an output transform. The transforms only add and halve, so the result differs from
//! the direct sum by rounding alone (a few ulps in f32); every output is computed the same
//! way whatever the chunking, so results do not depend on the thread count.
//!
//! [`crate::conv2d`] uses this for 3x3, stride 1, undilated, ungrouped convolutions over
//! planes of 16x16 and up, and 8x8 ones with many channels ([`pays`]): the forward pass, and
//! the input gradient, which is such a convolution of dy.
use crate::gemm::{chunk_gemm, Mat, MatMut};
use rayon::prelude::*;
use senet_spec::conv2d::Conv2dGeometry;
use senet_spec::Element;

/// True for the convolutions this module computes.
pub fn applies(g: &Conv2dGeometry) -> bool {
    g.kernel == (3, 3) && g.stride == (1, 1) && g.dilation == (1, 1) && g.groups == 1
}

/// True where it is also the faster way, as measured on the kernels of the benchmark networks
/// (batch 64-128):
/// - output planes of 16x16 and up, from 16 input channels: 64 channels at 32x32 and 128 at
///   16x16 ran 15-20% faster;
/// - 8x8 planes from 256 input channels: 256 channels at 8x8 ran 11% faster (forward and input
///   gradient each), where 64 channels at 8x8 ran 15% slower;
/// - not 4x4 planes: 512 channels at 4x4 ran 15% slower.
///
/// On small planes the transformed input and output (16 values per 2x2 tile) outweigh
/// im2col's columns unless the GEMMs are deep. With few input channels the 16 GEMMs (inner
/// dimension: the channels) are too thin to repay the transforms: the CIFAR stem's 3 -> 64 at
/// batch 64 took 3.1 ms through Winograd and takes 1.1 ms through im2col.
pub fn pays(g: &Conv2dGeometry) -> bool {
    let plane = g.out_h() * g.out_w();
    applies(g) && g.in_channels >= 16 && (plane >= 256 || (plane >= 64 && g.in_channels >= 256))
}

/// Tiles (columns of each GEMM) a chunk of samples should give at least.
const TARGET_TILES: usize = 256;

/// `U_ξ = G g G^T` for every (output, input) channel pair: `[16, cout, cin]`, so that each
/// `U_ξ` is a row-major `[cout, cin]` matrix, GEMM's A read in place.
fn transform_weight<T: Element>(g: &Conv2dGeometry, w: &[T]) -> Vec<T> {
    let (cout, cin) = (g.out_channels, g.in_channels);
    let half = T::from_f64(0.5);
    let mut u = vec![T::zero(); 16 * cout * cin];
    for (pair, k) in w.chunks_exact(9).enumerate() {
        // G k: 4 rows of 3, G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
        let mut gk = [[T::zero(); 3]; 4];
        for c in 0..3 {
            let (k0, k1, k2) = (k[c], k[3 + c], k[6 + c]);
            gk[0][c] = k0;
            gk[1][c] = (k0 + k1 + k2) * half;
            gk[2][c] = (k0 - k1 + k2) * half;
            gk[3][c] = k2;
        }
        // (G k) G^T: the same combination along each row.
        for (i, row) in gk.iter().enumerate() {
            let [k0, k1, k2] = *row;
            let vals = [k0, (k0 + k1 + k2) * half, (k0 - k1 + k2) * half, k2];
            for (j, v) in vals.into_iter().enumerate() {
                u[(i * 4 + j) * cout * cin + pair] = v;
            }
        }
    }
    u
}

/// Copies a `[in_h, in_w]` plane, shifted by the padding and with zeros around it, into two
/// planes `hp` rows by `half` columns: `even` holds the padded plane's even columns and `odd`
/// its odd ones. Every tile then reads whole contiguous rows: tile column tc needs padded
/// columns 2tc..2tc+4, that is `even[tc]`, `odd[tc]`, `even[tc + 1]`, `odd[tc + 1]`.
fn split_padded<T: Element>(
    g: &Conv2dGeometry,
    plane: &[T],
    even: &mut [T],
    odd: &mut [T],
    half: usize,
) {
    even.fill(T::zero());
    odd.fill(T::zero());
    let (ph, pw) = g.padding;
    let hp = even.len() / half;
    for ih in 0..g.in_h.min(hp.saturating_sub(ph)) {
        let (e, o) = (
            &mut even[(ih + ph) * half..][..half],
            &mut odd[(ih + ph) * half..][..half],
        );
        let line = &plane[ih * g.in_w..][..g.in_w.min(2 * half - pw)];
        // Padded column q = iw + pw goes to even[q / 2] or odd[q / 2]; with odd padding the
        // first input column is an odd one.
        let (first, second) = if pw % 2 == 0 { (e, o) } else { (o, e) };
        let pairs = line.len() / 2;
        let (first, second) = (&mut first[pw / 2..], &mut second[pw.div_ceil(2)..]);
        if line.len() % 2 == 1 {
            first[pairs] = line[2 * pairs];
        }
        // Exactly sized slices and plain indices: the compiler turns this into vector
        // shuffles (through `step_by(2)` it was a scalar loop).
        let (first, second, line) = (
            &mut first[..pairs],
            &mut second[..pairs],
            &line[..2 * pairs],
        );
        for i in 0..pairs {
            first[i] = line[2 * i];
            second[i] = line[2 * i + 1];
        }
    }
}

/// y = conv(x, w) + bias for a geometry where [`applies`] holds.
///
/// # Panics
/// If it does not, or a slice length does not match the geometry (checked by the caller).
pub fn forward<T: Element>(g: &Conv2dGeometry, x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    assert!(
        applies(g),
        "winograd: not a 3x3 stride-1 ungrouped convolution"
    );
    let (cin, cout) = (g.in_channels, g.out_channels);
    let (ho, wo) = (g.out_h(), g.out_w());
    // 2x2 output tiles per sample, the last row and column cut short when odd.
    let (th, tw) = (ho.div_ceil(2), wo.div_ceil(2));
    let tiles = th * tw;
    // The padded input each sample's tiles read: 2 * th + 2 rows, 2 * tw + 2 columns.
    let (hp, half) = (2 * th + 2, tw + 1);
    let u = transform_weight(g, w);
    let (x_n, y_n) = (cin * g.in_h * g.in_w, cout * ho * wo);
    let mut y = vec![T::zero(); g.batch * y_n];
    let threads = rayon::current_num_threads().max(1);
    let chunk = TARGET_TILES
        .div_ceil(tiles)
        .min(g.batch.div_ceil(threads))
        .max(1);
    let one_thread = g.batch.div_ceil(chunk) >= threads;
    y.par_chunks_mut(chunk * y_n)
        .zip(x.par_chunks(chunk * x_n))
        .for_each_init(Scratch::default, |sc: &mut Scratch<T>, (y_c, x_c)| {
            let samples = x_c.len() / x_n;
            let n = samples * tiles;
            sc.size(16 * cin * n, 16 * cout * n, hp * half, tw);
            let Scratch {
                v,
                m,
                even,
                odd,
                t,
                out,
                ce,
                co,
            } = sc;
            // V `[16, cin, n]`: column s * tiles + t is tile t of sample s.
            for s in 0..samples {
                for c in 0..cin {
                    let plane = &x_c[s * x_n + c * g.in_h * g.in_w..][..g.in_h * g.in_w];
                    split_padded(g, plane, even, odd, half);
                    for tr in 0..th {
                        input_tile_row(even, odd, half, tr, tw, t, ce, co);
                        let col0 = s * tiles + tr * tw;
                        for (xi, vals) in t.chunks_exact(tw).enumerate() {
                            crate::copy_short(&mut v[(xi * cin + c) * n + col0..][..tw], vals);
                        }
                    }
                }
            }
            // M_ξ = U_ξ @ V_ξ: 16 products of [cout, cin] by [cin, n].
            for xi in 0..16 {
                chunk_gemm(
                    one_thread,
                    Mat::new(&u[xi * cout * cin..][..cout * cin], cout, cin),
                    Mat::new(&v[xi * cin * n..][..cin * n], cin, n),
                    MatMut::new(&mut m[xi * cout * n..][..cout * n], cout, n),
                );
            }
            // Y = A^T M A, a row of tiles at a time: each of the 16 values of the row's
            // tiles is a contiguous run of M.
            for s in 0..samples {
                for co in 0..cout {
                    let y_co = &mut y_c[s * y_n + co * ho * wo..][..ho * wo];
                    let b = bias.map_or(T::zero(), |b| b[co]);
                    for tr in 0..th {
                        let col0 = s * tiles + tr * tw;
                        let runs: [&[T]; 16] =
                            std::array::from_fn(|xi| &m[(xi * cout + co) * n + col0..][..tw]);
                        output_tile_row(&runs, b, out);
                        // out: rows 2tr and 2tr + 1, each as tw even then tw odd columns.
                        for i in 0..2.min(ho - 2 * tr) {
                            let line = &mut y_co[(2 * tr + i) * wo..][..wo];
                            let (ev, od) = out[2 * i * tw..][..2 * tw].split_at(tw);
                            let mut pairs = line.chunks_exact_mut(2);
                            for ((pair, &e), &o) in (&mut pairs).zip(ev).zip(od) {
                                pair[0] = e;
                                pair[1] = o;
                            }
                            if let [last] = pairs.into_remainder() {
                                *last = ev[tw - 1];
                            }
                        }
                    }
                }
            }
        });
    y
}

/// Buffers of one rayon job, reused across its chunks.
#[derive(Default)]
struct Scratch<T> {
    v: Vec<T>,
    m: Vec<T>,
    even: Vec<T>,
    odd: Vec<T>,
    /// One tile row's transformed input, `[16, tw]`.
    t: Vec<T>,
    /// One tile row's output, `[2 rows, even then odd columns, tw]`.
    out: Vec<T>,
    /// A row of `B^T d` at the even and at the odd columns.
    ce: Vec<T>,
    co: Vec<T>,
}

impl<T: Element> Scratch<T> {
    fn size(&mut self, v: usize, m: usize, plane: usize, tw: usize) {
        let grow = |b: &mut Vec<T>, len: usize| b.resize(len.max(b.len()), T::zero());
        grow(&mut self.v, v);
        grow(&mut self.m, m);
        self.even.resize(plane, T::zero());
        self.odd.resize(plane, T::zero());
        self.t.resize(16 * tw, T::zero());
        self.out.resize(4 * tw, T::zero());
        self.ce.resize(tw + 1, T::zero());
        self.co.resize(tw + 1, T::zero());
    }
}

/// `B^T d B` for every tile of tile row `tr` at once, into `t` `[16, tw]` (value `(i, j)` of
/// tile tc at `t[(i * 4 + j) * tw + tc]`), with `ce`, `co` scratch of `half` values.
/// B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]. Every loop runs over
/// contiguous columns, so it vectorizes.
#[allow(clippy::too_many_arguments)]
fn input_tile_row<T: Element>(
    even: &[T],
    odd: &[T],
    half: usize,
    tr: usize,
    tw: usize,
    t: &mut [T],
    ce: &mut [T],
    co: &mut [T],
) {
    let e: [&[T]; 4] = std::array::from_fn(|i| &even[(2 * tr + i) * half..][..half]);
    let o: [&[T]; 4] = std::array::from_fn(|i| &odd[(2 * tr + i) * half..][..half]);
    for (i, dst) in t.chunks_exact_mut(4 * tw).enumerate() {
        // Row i of B^T d, at the even and at the odd columns.
        b_t_row(i, &e, ce);
        b_t_row(i, &o, co);
        // Then B along the row: columns 2tc..2tc+4 are ce[tc], co[tc], ce[tc+1], co[tc+1]
        // = c0..c3, combined as c0 - c2, c1 + c2, c2 - c1, c1 - c3.
        let (d0, rest) = dst.split_at_mut(tw);
        let (d1, rest) = rest.split_at_mut(tw);
        let (d2, d3) = rest.split_at_mut(tw);
        // Slices of exactly tw values zipped together: no bounds test in the loop, which
        // therefore vectorizes.
        let (c0, c1, c2, c3) = (&ce[..tw], &co[..tw], &ce[1..=tw], &co[1..=tw]);
        let outs = d0
            .iter_mut()
            .zip(d1.iter_mut())
            .zip(d2.iter_mut().zip(d3.iter_mut()));
        let ins = c0.iter().zip(c1).zip(c2.iter().zip(c3));
        for (((o0, o1), (o2, o3)), ((&c0, &c1), (&c2, &c3))) in outs.zip(ins) {
            *o0 = c0 - c2;
            *o1 = c1 + c2;
            *o2 = c2 - c1;
            *o3 = c1 - c3;
        }
    }
}

/// Row `i` of `B^T d` over whole rows: `d0 - d2`, `d1 + d2`, `d2 - d1` or `d1 - d3`.
fn b_t_row<T: Element>(i: usize, d: &[&[T]; 4], out: &mut [T]) {
    let n = out.len();
    let (d0, d1, d2, d3) = (&d[0][..n], &d[1][..n], &d[2][..n], &d[3][..n]);
    match i {
        0 => (0..n).for_each(|q| out[q] = d0[q] - d2[q]),
        1 => (0..n).for_each(|q| out[q] = d1[q] + d2[q]),
        2 => (0..n).for_each(|q| out[q] = d2[q] - d1[q]),
        _ => (0..n).for_each(|q| out[q] = d1[q] - d3[q]),
    }
}

/// `A^T M A` plus the bias for every tile of a row, from the 16 runs of M, into `out`: output
/// row 0's even columns, its odd columns, then row 1's. A^T = [[1, 1, 1, 0], [0, 1, -1, -1]].
fn output_tile_row<T: Element>(runs: &[&[T]; 16], b: T, out: &mut [T]) {
    let tw = runs[0].len();
    let (r0e, rest) = out.split_at_mut(tw);
    let (r0o, rest) = rest.split_at_mut(tw);
    let (r1e, r1o) = rest.split_at_mut(tw);
    let (r0e, r0o, r1e, r1o) = (
        &mut r0e[..tw],
        &mut r0o[..tw],
        &mut r1e[..tw],
        &mut r1o[..tw],
    );
    // Every run cut to exactly tw values, so that the loop's reads need no bounds tests.
    let runs: [&[T]; 16] = std::array::from_fn(|xi| &runs[xi][..tw]);
    for tc in 0..tw {
        let m = |xi: usize| runs[xi][tc];
        // A^T M: rows m0c + m1c + m2c and m1c - m2c - m3c for each column c.
        let a: [T; 4] = std::array::from_fn(|c| m(c) + m(4 + c) + m(8 + c));
        let z: [T; 4] = std::array::from_fn(|c| m(4 + c) - m(8 + c) - m(12 + c));
        r0e[tc] = a[0] + a[1] + a[2] + b;
        r0o[tc] = a[1] - a[2] - a[3] + b;
        r1e[tc] = z[0] + z[1] + z[2] + b;
        r1o[tc] = z[1] - z[2] - z[3] + b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use senet_spec::cases::conv2d_geometry as geom;
    use senet_spec::conv2d as reference;
    use senet_spec::testing::{assert_close, rand_vec};

    #[test]
    fn matches_the_direct_sum_for_every_padding_and_parity() {
        // Paddings 0, 1 and 2 (even and odd shifts of the split planes), odd and even output
        // sizes (cut tiles), a single pixel, and enough channels for a real GEMM.
        let mut rng = StdRng::seed_from_u64(17);
        for (n, cin, h, w, cout, pad) in [
            (2, 3, 7, 5, 4, 1),
            (1, 2, 6, 9, 3, 0),
            (2, 4, 5, 4, 2, 2),
            (1, 1, 1, 1, 1, 1),
            (3, 40, 8, 8, 33, 1),
        ] {
            let g = geom((n, cin, h, w, cout), (3, 3), (1, 1), (pad, pad), (1, 1), 1);
            let x = rand_vec::<f64>(&mut rng, n * cin * h * w, -1.0, 1.0);
            let wt = rand_vec::<f64>(&mut rng, g.weight_len(), -1.0, 1.0);
            let b = rand_vec::<f64>(&mut rng, cout, -1.0, 1.0);
            assert_close(
                &format!("{g:?}"),
                &forward(&g, &x, &wt, Some(&b)),
                &reference::conv2d_forward(&g, &x, &wt, Some(&b)),
                1e-12,
            );
        }
    }
}
