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
//! [`crate::conv2d`] uses this for 3x3, stride 1, undilated, ungrouped convolutions where it
//! pays ([`choose`]): the forward pass, and the input gradient, which is such a convolution
//! of dy; and, on small planes, the weight gradient ([`backward_weight_channels_last`]).
use crate::gemm::{chunk_gemm, Mat, MatMut};
use rayon::prelude::*;
use senet_spec::conv2d::Conv2dGeometry;
use senet_spec::Element;

/// True for the convolutions this module computes.
pub fn applies(g: &Conv2dGeometry) -> bool {
    g.kernel == (3, 3) && g.stride == (1, 1) && g.dilation == (1, 1) && g.groups == 1
}

/// Rows and columns of 2x2 output tiles per sample (the last row and column cut short when the
/// output is odd).
///
/// # Panics
/// If the convolution is not one this module computes ([`applies`]).
fn tile_grid(g: &Conv2dGeometry) -> (usize, usize) {
    assert!(
        applies(g),
        "winograd: not a 3x3 stride-1 ungrouped convolution"
    );
    (g.out_h().div_ceil(2), g.out_w().div_ceil(2))
}

/// The two ways this module lays a convolution out (same results, to the bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// [`forward`]: transforms along rows of tiles of each channel's plane.
    Planes,
    /// [`forward_channels_last`]: transforms along the channels of each tile.
    ChannelsLast,
}

/// Where Winograd is also the faster way, and in which layout; `None`: im2col. As measured on
/// the 3x3 layers of the benchmark networks at batch 64 and 128 (`mp` kernels harness):
/// - channels last on planes of 2x2 to 8x8 from 32 input channels: 512 channels at 4x4 and
///   256 at 8x8 ran 34% and 25-30% faster than im2col, 64 at 8x8 and 128 at 4x4 40-50%
///   faster. On 2x2 planes the weight transform (16 values per channel pair) must be repaid
///   by enough tiles: 512 channels at 2x2 ran 28% slower at batch 64, 14% faster at 128.
/// - channels last also on 16x16 planes from 128 channels (8% faster than by planes);
/// - by planes on 16x16 planes and up from 16 channels: 64 channels at 32x32 and at 16x16
///   ran 15-20% faster than im2col, and as fast as or faster than channels last.
///
/// With few input channels the 16 GEMMs (inner dimension: the channels) are too thin to repay
/// the transforms: the CIFAR stem's 3 -> 64 at batch 64 took 3.1 ms through Winograd and takes
/// 1.1 ms through im2col. The choice depends on the geometry alone, never the thread count.
pub fn choose(g: &Conv2dGeometry) -> Option<Layout> {
    if !applies(g) {
        return None;
    }
    let (plane, cin) = (g.out_h() * g.out_w(), g.in_channels);
    let (th, tw) = tile_grid(g);
    let tiles = g.batch * th * tw;
    let small = cin >= 32 && (4..=64).contains(&plane) && 4 * tiles >= cin;
    let mid = cin >= 128 && (65..=256).contains(&plane);
    if small || mid {
        Some(Layout::ChannelsLast)
    } else if cin >= 16 && plane >= 256 {
        Some(Layout::Planes)
    } else {
        None
    }
}

/// Where [`backward_weight_channels_last`] is faster than im2col: planes of 2x2 to 16x16
/// between at least 32 channels. Measured at batch 64 and 128: 30-40% faster on 512 channels
/// at 4x4, 256 at 8x8 and 128 at 16x16, 17-35% on 64 at 8x8 and 16x16; on 64 channels at
/// 32x32 it ran 50% slower at batch 64 (its transformed input and gradient, 4x the size of x
/// and dy, no longer stay in cache), and the CIFAR stem's 3 input channels are far too few.
pub fn weight_grad_pays(g: &Conv2dGeometry) -> bool {
    let plane = g.out_h() * g.out_w();
    applies(g) && g.in_channels >= 32 && g.out_channels >= 32 && (4..=256).contains(&plane)
}

/// Tiles (columns of each GEMM) a chunk of samples should give at least.
const TARGET_TILES: usize = 256;

/// The transformed weight: `U_ξ = G g G^T` for every (output, input) channel pair, laid out
/// `[cout, 16, cin]`, so that `U_ξ` is a row-major `[cout, cin]` matrix with rows `16 cin`
/// apart, GEMM's A read in place ([`Self::u`]); or, `channels_last`, `[cin, 16, cout]`, and
/// `U_ξ^T` a `[cin, cout]` matrix ([`Self::u_t`]) for [`forward_channels_last`]. Either way one
/// channel's 16 values are together, so the channels are transformed in parallel, each
/// writing its own contiguous block.
struct Transformed<T> {
    u: Vec<T>,
    cin: usize,
    cout: usize,
}

impl<T: Element> Transformed<T> {
    fn new(g: &Conv2dGeometry, w: &[T], channels_last: bool) -> Self {
        let (cout, cin) = (g.out_channels, g.in_channels);
        let mut u = vec![T::zero(); 16 * cout * cin];
        if channels_last {
            // Block ci: `[16, cout]`, from the kernels w[co][ci] for every co.
            u.par_chunks_mut(16 * cout)
                .enumerate()
                .for_each(|(ci, u_ci)| {
                    for co in 0..cout {
                        let k = &w[(co * cin + ci) * 9..][..9];
                        for (xi, v) in transform_kernel(k).into_iter().enumerate() {
                            u_ci[xi * cout + co] = v;
                        }
                    }
                });
        } else {
            // Block co: `[16, cin]`, from the kernels w[co][ci], contiguous in w.
            u.par_chunks_mut(16 * cin)
                .zip(w.par_chunks(9 * cin))
                .for_each(|(u_co, w_co)| {
                    for (ci, k) in w_co.chunks_exact(9).enumerate() {
                        for (xi, v) in transform_kernel(k).into_iter().enumerate() {
                            u_co[xi * cin + ci] = v;
                        }
                    }
                });
        }
        Transformed { u, cin, cout }
    }

    /// `U_ξ` `[cout, cin]` (the layout that is not `channels_last`).
    fn u(&self, xi: usize) -> Mat<'_, T> {
        Mat::strided(
            &self.u[xi * self.cin..],
            self.cout,
            self.cin,
            16 * self.cin,
            1,
        )
    }

    /// `U_ξ^T` `[cin, cout]` (the `channels_last` layout).
    fn u_t(&self, xi: usize) -> Mat<'_, T> {
        Mat::strided(
            &self.u[xi * self.cout..],
            self.cin,
            self.cout,
            16 * self.cout,
            1,
        )
    }
}

/// `G k G^T` for one 3x3 kernel `k` (row-major): the 16 values, row-major 4x4.
fn transform_kernel<T: Element>(k: &[T]) -> [T; 16] {
    let half = T::from_f64(0.5);
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
    let mut u = [T::zero(); 16];
    for (i, row) in gk.iter().enumerate() {
        let [k0, k1, k2] = *row;
        let vals = [k0, (k0 + k1 + k2) * half, (k0 - k1 + k2) * half, k2];
        u[i * 4..][..4].copy_from_slice(&vals);
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
    let (th, tw) = tile_grid(g);
    let (cin, cout) = (g.in_channels, g.out_channels);
    let (ho, wo) = (g.out_h(), g.out_w());
    let tiles = th * tw;
    // The padded input each sample's tiles read: 2 * th + 2 rows, 2 * tw + 2 columns.
    let (hp, half) = (2 * th + 2, tw + 1);
    let u = Transformed::new(g, w, false);
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
                    u.u(xi),
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

/// Tiles (rows of each GEMM) a chunk of samples should give at least in
/// [`forward_channels_last`].
const CL_TARGET_TILES: usize = 512;

/// [`forward`] for small planes, with the channels as the innermost dimension.
///
/// On a 4x4 or 8x8 plane a sample has only 4 or 16 tiles, so [`forward`]'s transforms, which
/// run along a row of tiles, worked on runs of 2 or 4 values: on 512 channels at 4x4 they took
/// as long as the 16 GEMMs. Here each sample's planes are first transposed to `[pixel,
/// channel]`, so that every value of a tile is a vector of all its channels, and the
/// transforms run along those vectors. The GEMMs then take the tiles as rows:
/// `M_ξ^T [tiles, cout] = V_ξ^T [tiles, cin] @ U_ξ^T [cin, cout]`, and the output transform
/// gives `[pixel, cout]`, transposed back into `y`. Each output is the same sum as in
/// [`forward`], in the same order, so the two agree to the bit.
pub fn forward_channels_last<T: Element>(
    g: &Conv2dGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let (th, tw) = tile_grid(g);
    let (cin, cout) = (g.in_channels, g.out_channels);
    let (ho, wo) = (g.out_h(), g.out_w());
    let tiles = th * tw;
    let (in_hw, out_hw) = (g.in_h * g.in_w, ho * wo);
    let (x_n, y_n) = (cin * in_hw, cout * out_hw);
    let u = Transformed::new(g, w, true);
    let mut y = vec![T::zero(); g.batch * y_n];
    let no_bias = vec![T::zero(); cout];
    let bias = bias.unwrap_or(&no_bias);
    let chunk = CL_TARGET_TILES.div_ceil(tiles).min(g.batch).max(1);
    let (mut v, mut m) = (Vec::new(), Vec::new());
    // Chunks run one after the other, each step of a chunk in parallel: every output is
    // computed the same way whatever the thread count.
    for (y_c, x_c) in y.chunks_mut(chunk * y_n).zip(x.chunks(chunk * x_n)) {
        let n = x_c.len() / x_n * tiles;
        v.resize((16 * n * cin).max(v.len()), T::zero());
        m.resize((16 * n * cout).max(m.len()), T::zero());
        // V `[n, 16, cin]`: tile t's 16 transformed vectors side by side.
        transform_inputs_channels_last(g, x_c, &mut v[..16 * n * cin]);
        // M^T `[16, n, cout]`: the 16 products side by side, each on one thread.
        let v = &v[..16 * n * cin];
        m[..16 * n * cout]
            .par_chunks_mut(n * cout)
            .enumerate()
            .for_each(|(xi, m_xi)| {
                crate::gemm::serial(|| {
                    crate::gemm::gemm(
                        Mat::strided(&v[xi * cin..], n, cin, 16 * cin, 1),
                        u.u_t(xi),
                        MatMut::new(m_xi, n, cout),
                    )
                })
            });
        // Y = A^T M A per tile, into `[pixel, cout]`, then into the sample's planes.
        let m = &m[..16 * n * cout];
        y_c.par_chunks_mut(y_n).enumerate().for_each_init(
            || (vec![T::zero(); y_n], vec![T::zero(); 4 * cout]),
            |(yt, out), (s, y_s)| {
                for t in 0..tiles {
                    let (tr, tc) = (t / tw, t % tw);
                    let row = s * tiles + t;
                    let runs: [&[T]; 16] =
                        std::array::from_fn(|xi| &m[(xi * n + row) * cout..][..cout]);
                    output_tile_channels_last(&runs, bias, out);
                    for (k, o) in out.chunks_exact(cout).enumerate() {
                        let (oh, ow) = (2 * tr + k / 2, 2 * tc + k % 2);
                        if oh < ho && ow < wo {
                            yt[(oh * wo + ow) * cout..][..cout].copy_from_slice(o);
                        }
                    }
                }
                crate::transpose_serial(yt, out_hw, cout, y_s, out_hw);
            },
        );
    }
    y
}

/// `V` `[n, 16, cin]` for a chunk of samples `x_c` (n: their tiles): each sample's planes
/// transposed to `[pixel, cin]`, then `B^T d B` for each tile, along the channels. The samples
/// run in parallel.
fn transform_inputs_channels_last<T: Element>(g: &Conv2dGeometry, x_c: &[T], v: &mut [T]) {
    let cin = g.in_channels;
    let in_hw = g.in_h * g.in_w;
    let (th, tw) = tile_grid(g);
    let tiles = th * tw;
    // The vector a tile reads where its window lies on the padding.
    let zeros = vec![T::zero(); cin];
    let (ph, pw) = (g.padding.0 as isize, g.padding.1 as isize);
    v.par_chunks_mut(16 * tiles * cin)
        .zip(x_c.par_chunks(cin * in_hw))
        .for_each_init(
            || (vec![T::zero(); cin * in_hw], vec![T::zero(); 4 * cin]),
            |(xt, bt), (v_s, x_s)| {
                crate::transpose_serial(x_s, cin, in_hw, xt, cin);
                for (t, v_t) in v_s.chunks_exact_mut(16 * cin).enumerate() {
                    let (tr, tc) = (t / tw, t % tw);
                    // d[i * 4 + j]: the input pixel at row 2tr + i, column 2tc + j of the
                    // padded plane.
                    let d: [&[T]; 16] = std::array::from_fn(|ij| {
                        let ih = (2 * tr + ij / 4) as isize - ph;
                        let iw = (2 * tc + ij % 4) as isize - pw;
                        let inside = (0..g.in_h as isize).contains(&ih)
                            && (0..g.in_w as isize).contains(&iw);
                        if inside {
                            &xt[(ih as usize * g.in_w + iw as usize) * cin..][..cin]
                        } else {
                            &zeros[..]
                        }
                    });
                    input_tile_channels_last(&d, bt, v_t, cin);
                }
            },
        );
}

/// Tiles (the GEMMs' inner dimension) per chunk of samples in
/// [`backward_weight_channels_last`]; fixed, so the chunks' sums are too.
const WEIGHT_GRAD_TILES: usize = 1024;

/// dw `[cout, cin, 3, 3]` of a convolution where [`applies`] holds, by Winograd's algorithm
/// run backwards, channels last.
///
/// The forward pass computes `M_ξ = U_ξ V_ξ` per tile and `Y = A^T M A`, so the gradient of
/// `M` is `dM = A dY A^T` per 2x2 block of dy, that of `U_ξ` is `dU_ξ = sum over tiles of dM_ξ
/// V_ξ^T`, and that of the kernel `g` is `G^T dU G`. The sum over every tile of the batch is
/// 16 GEMMs `dU_ξ^T [cout, cin] += dM_ξ^T [cout, tiles] @ V_ξ [tiles, cin]`, with 16/36 of
/// im2col's multiply-adds, and the batch is the GEMMs' inner dimension: chunks of samples
/// (fixed by `WEIGHT_GRAD_TILES`) add into the same sum in order, so there are no
/// per-chunk copies of dw to add up.
pub fn backward_weight_channels_last<T: Element>(g: &Conv2dGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    let (th, tw) = tile_grid(g);
    let tiles = th * tw;
    let (cin, cout) = (g.in_channels, g.out_channels);
    let (ho, wo) = (g.out_h(), g.out_w());
    let (x_n, y_n) = (cin * g.in_h * g.in_w, cout * ho * wo);
    let chunk = WEIGHT_GRAD_TILES.div_ceil(tiles).min(g.batch).max(1);
    let zeros = vec![T::zero(); cout];
    // dU^T `[16, cout, cin]`.
    let mut du = vec![T::zero(); 16 * cout * cin];
    let (mut v, mut dm) = (Vec::new(), Vec::new());
    for (i, (x_c, dy_c)) in x
        .chunks(chunk * x_n)
        .zip(dy.chunks(chunk * y_n))
        .enumerate()
    {
        let n = x_c.len() / x_n * tiles;
        v.resize((16 * n * cin).max(v.len()), T::zero());
        dm.resize((16 * n * cout).max(dm.len()), T::zero());
        transform_inputs_channels_last(g, x_c, &mut v[..16 * n * cin]);
        // dM `[n, 16, cout]` from each sample's dy, transposed to `[pixel, cout]`.
        dm[..16 * n * cout]
            .par_chunks_mut(16 * tiles * cout)
            .zip(dy_c.par_chunks(y_n))
            .for_each_init(
                || vec![T::zero(); y_n],
                |dyt, (dm_s, dy_s)| {
                    crate::transpose_serial(dy_s, cout, ho * wo, dyt, cout);
                    for (t, dm_t) in dm_s.chunks_exact_mut(16 * cout).enumerate() {
                        let (tr, tc) = (t / tw, t % tw);
                        // The tile's 2x2 outputs; those cut off at the edge have no gradient.
                        let d: [&[T]; 4] = std::array::from_fn(|k| {
                            let (oh, ow) = (2 * tr + k / 2, 2 * tc + k % 2);
                            if oh < ho && ow < wo {
                                &dyt[(oh * wo + ow) * cout..][..cout]
                            } else {
                                &zeros[..]
                            }
                        });
                        output_grad_tile_channels_last(&d, dm_t);
                    }
                },
            );
        let (v, dm) = (&v[..16 * n * cin], &dm[..16 * n * cout]);
        du.par_chunks_mut(cout * cin)
            .enumerate()
            .for_each(|(xi, du_xi)| {
                crate::gemm::serial(|| {
                    crate::gemm::gemm_into(
                        Mat::strided(&dm[xi * cout..], n, cout, 16 * cout, 1).t(),
                        Mat::strided(&v[xi * cin..], n, cin, 16 * cin, 1),
                        MatMut::new(du_xi, cout, cin),
                        i > 0,
                    )
                })
            });
    }
    // dw = G^T dU G for every channel pair; output channel co's kernels are contiguous.
    let mut dw = vec![T::zero(); cout * cin * 9];
    dw.par_chunks_mut(cin * 9)
        .enumerate()
        .for_each(|(co, dw_co)| {
            for (ci, k) in dw_co.chunks_exact_mut(9).enumerate() {
                let du_pair: [T; 16] = std::array::from_fn(|xi| du[(xi * cout + co) * cin + ci]);
                k.copy_from_slice(&untransform_kernel(&du_pair));
            }
        });
    dw
}

/// `A dY A^T` for one tile, whose 2x2 output gradients are the vectors `d` (one value per
/// output channel each; (0, 0), (0, 1), (1, 0), (1, 1)), into `dm` `[16, cout]`. A's rows are
/// (1, 0), (1, 1), (1, -1) and (0, -1), applied down the columns and then along the rows.
fn output_grad_tile_channels_last<T: Element>(d: &[&[T]; 4], dm: &mut [T]) {
    let c = d[0].len();
    let mut rows = dm.chunks_exact_mut(c);
    let out: [&mut [T]; 16] = std::array::from_fn(|_| rows.next().expect("16 rows"));
    let d: [&[T]; 4] = std::array::from_fn(|k| &d[k][..c]);
    for q in 0..c {
        let (d00, d01, d10, d11) = (d[0][q], d[1][q], d[2][q], d[3][q]);
        // A dY: 4 rows of 2.
        let e = [
            [d00, d01],
            [d00 + d10, d01 + d11],
            [d00 - d10, d01 - d11],
            [-d10, -d11],
        ];
        // (A dY) A^T: the same combination along each row.
        for (r, [e0, e1]) in e.into_iter().enumerate() {
            out[r * 4][q] = e0;
            out[r * 4 + 1][q] = e0 + e1;
            out[r * 4 + 2][q] = e0 - e1;
            out[r * 4 + 3][q] = -e1;
        }
    }
}

/// `G^T x G` for one channel pair's 16 values `x` (row-major 4x4): the 3x3 kernel's gradient,
/// row-major. G^T's rows are (1, 1/2, 1/2, 0), (0, 1/2, -1/2, 0) and (0, 1/2, 1/2, 1).
fn untransform_kernel<T: Element>(x: &[T; 16]) -> [T; 9] {
    let half = T::from_f64(0.5);
    let combine = |v: [T; 4]| {
        let (s, d) = ((v[1] + v[2]) * half, (v[1] - v[2]) * half);
        [v[0] + s, d, s + v[3]]
    };
    // G^T x: down each column.
    let cols: [[T; 3]; 4] = std::array::from_fn(|c| combine([x[c], x[4 + c], x[8 + c], x[12 + c]]));
    // Then G along each of the 3 rows.
    let mut k = [T::zero(); 9];
    for a in 0..3 {
        k[a * 3..][..3].copy_from_slice(&combine([cols[0][a], cols[1][a], cols[2][a], cols[3][a]]));
    }
    k
}

/// `B^T d B` for one tile whose 16 input values are the channel vectors `d` (row-major 4x4),
/// into `v` `[16, c]`, with `bt` scratch of `4 c`: the same additions as [`input_tile_row`],
/// along the channels.
fn input_tile_channels_last<T: Element>(d: &[&[T]; 16], bt: &mut [T], v: &mut [T], c: usize) {
    for i in 0..4 {
        // Row i of B^T d: column j combines the column's four values.
        for (j, bt_j) in bt.chunks_exact_mut(c).enumerate() {
            b_t_row(i, &[d[j], d[4 + j], d[8 + j], d[12 + j]], bt_j);
        }
        // Then B along the row: the same combinations of its four columns.
        let cols = [&bt[..c], &bt[c..2 * c], &bt[2 * c..3 * c], &bt[3 * c..]];
        for (j, v_ij) in v[i * 4 * c..][..4 * c].chunks_exact_mut(c).enumerate() {
            b_t_row(j, &cols, v_ij);
        }
    }
}

/// `A^T M A` plus the bias for one tile, from its 16 transformed vectors `runs` (one value per
/// output channel each), into `out`: outputs (0, 0), (0, 1), (1, 0) and (1, 1) of the tile,
/// one after the other. The same additions as [`output_tile_row`], along the channels.
fn output_tile_channels_last<T: Element>(runs: &[&[T]; 16], bias: &[T], out: &mut [T]) {
    let c = bias.len();
    let (o00, rest) = out.split_at_mut(c);
    let (o01, rest) = rest.split_at_mut(c);
    let (o10, o11) = rest.split_at_mut(c);
    let (o10, o11) = (&mut o10[..c], &mut o11[..c]);
    // Every run cut to exactly c values, so that the loop's reads need no bounds tests.
    let runs: [&[T]; 16] = std::array::from_fn(|xi| &runs[xi][..c]);
    for q in 0..c {
        let m = |xi: usize| runs[xi][q];
        let a: [T; 4] = std::array::from_fn(|j| m(j) + m(4 + j) + m(8 + j));
        let z: [T; 4] = std::array::from_fn(|j| m(4 + j) - m(8 + j) - m(12 + j));
        let b = bias[q];
        o00[q] = a[0] + a[1] + a[2] + b;
        o01[q] = a[1] - a[2] - a[3] + b;
        o10[q] = z[0] + z[1] + z[2] + b;
        o11[q] = z[1] - z[2] - z[3] + b;
    }
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

    /// (batch, cin, h, w, cout, padding): paddings 0, 1 and 2 (even and odd shifts of the split
    /// planes), odd and even output sizes (cut tiles), a single pixel, and enough channels for
    /// a real GEMM.
    const SHAPES: [(usize, usize, usize, usize, usize, usize); 5] = [
        (2, 3, 7, 5, 4, 1),
        (1, 2, 6, 9, 3, 0),
        (2, 4, 5, 4, 2, 2),
        (1, 1, 1, 1, 1, 1),
        (3, 40, 8, 8, 33, 1),
    ];

    #[test]
    fn matches_the_direct_sum_for_every_padding_and_parity() {
        let mut rng = StdRng::seed_from_u64(17);
        for (n, cin, h, w, cout, pad) in SHAPES {
            let g = geom((n, cin, h, w, cout), (3, 3), (1, 1), (pad, pad), (1, 1), 1);
            let x = rand_vec::<f64>(&mut rng, n * cin * h * w, -1.0, 1.0);
            let wt = rand_vec::<f64>(&mut rng, g.weight_len(), -1.0, 1.0);
            let b = rand_vec::<f64>(&mut rng, cout, -1.0, 1.0);
            let planes = forward(&g, &x, &wt, Some(&b));
            assert_close(
                &format!("{g:?}"),
                &planes,
                &reference::conv2d_forward(&g, &x, &wt, Some(&b)),
                1e-12,
            );
            // The channels-last layout does the same additions in the same order.
            let last = forward_channels_last(&g, &x, &wt, Some(&b));
            assert_eq!(
                last.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                planes.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "channels last, {g:?}"
            );
        }
    }

    #[test]
    fn weight_gradient_matches_the_direct_sum() {
        // The same shapes, and (70 samples of 7x7, 16 tiles each, against chunks of 64
        // samples) two chunks of samples added into one sum.
        let mut rng = StdRng::seed_from_u64(19);
        for (n, cin, h, w, cout, pad) in SHAPES.into_iter().chain([(70, 3, 7, 7, 2, 1)]) {
            let g = geom((n, cin, h, w, cout), (3, 3), (1, 1), (pad, pad), (1, 1), 1);
            let x = rand_vec::<f64>(&mut rng, n * cin * h * w, -1.0, 1.0);
            let dy = rand_vec::<f64>(&mut rng, n * cout * g.out_h() * g.out_w(), -1.0, 1.0);
            assert_close(
                &format!("{g:?}"),
                &backward_weight_channels_last(&g, &x, &dy),
                &reference::conv2d_backward_weight(&g, &x, &dy),
                1e-11,
            );
        }
    }

    #[test]
    fn choose_picks_the_layout_by_geometry() {
        let g = |n, c, hw| geom((n, c, hw, hw, c), (3, 3), (1, 1), (1, 1), (1, 1), 1);
        assert_eq!(choose(&g(64, 512, 4)), Some(Layout::ChannelsLast));
        assert_eq!(choose(&g(64, 128, 16)), Some(Layout::ChannelsLast));
        assert_eq!(choose(&g(64, 64, 32)), Some(Layout::Planes));
        // Too few channels, too few tiles to repay the weight transform, a 1x1 plane.
        assert_eq!(choose(&g(64, 3, 32)), None);
        assert_eq!(choose(&g(64, 512, 2)), None);
        assert_eq!(choose(&g(128, 512, 2)), Some(Layout::ChannelsLast));
        assert_eq!(choose(&g(64, 512, 1)), None);
        // Not 3x3 stride 1.
        let strided = geom((64, 64, 32, 32, 64), (3, 3), (2, 2), (1, 1), (1, 1), 1);
        assert_eq!(choose(&strided), None);
    }
}
