//! 2-D convolution over NCHW arrays, computed as im2col + GEMM.
//!
//! For one sample and one group, im2col ("image to columns") copies every input pixel each
//! output position sees into a matrix `cols` of shape `[cin_g * kh * kw, out_h * out_w]`; the
//! convolution is then the matrix product `W_g [cout_g, cin_g*kh*kw] @ cols`. Several samples
//! are packed side by side in one `cols` (their columns next to each other) so that each GEMM
//! is wide even when the output planes are small, and each GEMM (`crate::gemm`) computes
//! its tiles in parallel; chunks of samples also run in parallel. The
//! backward passes reuse the same matrices: `dcols = W_g^T @ dy_g` scattered back with col2im
//! gives dx, and `dW_g = dy_g @ cols^T` gives dw. dw sums over the batch: its chunks of
//! samples are sized by the geometry alone and their partial sums added in chunk order, so
//! results do not depend on the number of threads.
//!
//! A 1x1 convolution with stride 1 and no padding needs no im2col at all: the input plane of a
//! sample already is its `cols` matrix. A stride-1 input gradient runs as the forward
//! convolution of dy by the flipped weight ([`backward_input`]), and 3x3 stride-1 forward
//! passes go to [`crate::winograd`] instead of im2col where that pays.
use crate::gemm::{chunk_gemm, gemm, Mat, MatMut};
use crate::winograd::Layout;
use crate::{copy_short, lane_sums, transpose};
use rayon::prelude::*;
use senet_spec::conv2d::Conv2dGeometry;
use senet_spec::{check_len, Element};

/// The fewest samples in one partial sum of the weight gradient (chunks grow past it to give
/// each GEMM `TARGET_COLS` columns). Fixed, never derived from the thread count, so the
/// summation order and hence the bits of the result are fixed. One sample: on large planes a
/// chunk's `cols` then stays in cache between im2col and the GEMM's packing (four 32x32
/// samples of 64 channels made 9 MiB, read back from memory; the backward kernels bench ran 5%
/// faster with one).
const BATCH_CHUNK: usize = 1;

/// Sizes derived once per call.
struct Dims {
    cin_g: usize,
    cout_g: usize,
    /// Input plane, `in_h * in_w`.
    hw: usize,
    wo: usize,
    /// Output plane, `ho * wo`: the columns of `cols`.
    p: usize,
    /// Rows of `cols`, `cin_g * kh * kw`: the GEMM's inner dimension.
    k: usize,
    /// 1x1, stride 1, no padding: `cols` is the input itself.
    pointwise: bool,
    /// Equal strides s, no dilation, an input plane s times the output's in each direction
    /// ("same" padding) and an output at least [`SHIFT_MIN_WIDTH`] wide (twice that when
    /// strided): each tap's row of `cols` is then one of the plane's s x s phases shifted, see
    /// [`im2col_channel`].
    shifted: bool,
    /// One entry per kernel tap (i, j) that reads any real pixel, the same for every channel
    /// and sample.
    taps: Vec<Tap>,
    /// For each tap index `i * kw + j`, its place in `taps` (None: it only reads padding).
    tap_at: Vec<Option<usize>>,
    /// Small output planes only (empty otherwise): for tap index t and output position q,
    /// `gather[t * p + q]` is the input pixel (`ih * in_w + iw`) that position reads, or
    /// `NO_PIXEL` for padding. See [`SMALL_PLANE`].
    gather: Vec<u32>,
}

/// Output planes of at most this many positions (8x8 and below) unfold through `Dims::gather`:
/// copying a tap's run of a row costs a slice split, two fills and a copy per output row, which
/// for rows of 2 to 8 values cost more than the values themselves (a 3x3/2 conv over 4x4 maps
/// spent longer in im2col than in its GEMM). A table lookup per value has no per-row cost.
const SMALL_PLANE: usize = 64;

/// The narrowest output plane [`im2col_channel`] unfolds by shifted copies: on 4x4 planes the
/// per-row fix-ups of the shifted copy cost more than the table lookups (512 channels at 4x4
/// ran 10% slower), from 8x8 up they are 10-25% faster.
const SHIFT_MIN_WIDTH: usize = 8;

/// A padding position in `Dims::gather`.
const NO_PIXEL: u32 = u32::MAX;

/// Where kernel tap (i, j) reads: output rows `oh_lo..oh_hi` read input row
/// `oh * stride_h + off_h`, and output columns `ow_lo..ow_hi` read input columns from `iw0` on,
/// `stride_w` apart. Computed once per call, not once per channel and sample.
struct Tap {
    /// The tap's index `i * kw + j` among the kernel's taps.
    index: usize,
    off_h: isize,
    oh_lo: usize,
    oh_hi: usize,
    ow_lo: usize,
    ow_hi: usize,
    iw0: usize,
}

impl Dims {
    /// Panics with validate()'s message on a bad geometry: the tensor layer checks shapes before
    /// calling a kernel, so reaching this is a bug in the caller.
    fn new(g: &Conv2dGeometry, what: &str) -> Dims {
        if let Err(e) = g.validate() {
            panic!("conv2d {what}: {e}");
        }
        let (ho, wo) = (g.out_h(), g.out_w());
        let cin_g = g.in_channels / g.groups;
        let (kh, kw) = g.kernel;
        let taps = (0..kh * kw)
            .filter_map(|index| {
                let (i, j) = (index / kw, index % kw);
                let off_h = (i * g.dilation.0) as isize - g.padding.0 as isize;
                let off_w = (j * g.dilation.1) as isize - g.padding.1 as isize;
                let (oh_lo, oh_hi) = valid_range(ho, g.in_h, g.stride.0, off_h);
                let (ow_lo, ow_hi) = valid_range(wo, g.in_w, g.stride.1, off_w);
                // A tap that only ever reads padding contributes nothing.
                (ow_lo < ow_hi && oh_lo < oh_hi).then(|| Tap {
                    index,
                    off_h,
                    oh_lo,
                    oh_hi,
                    ow_lo,
                    ow_hi,
                    iw0: ((ow_lo * g.stride.1) as isize + off_w) as usize,
                })
            })
            .collect::<Vec<Tap>>();
        let mut tap_at = vec![None; kh * kw];
        for (at, t) in taps.iter().enumerate() {
            tap_at[t.index] = Some(at);
        }
        let p = ho * wo;
        let mut gather = Vec::new();
        if p <= SMALL_PLANE {
            gather = vec![NO_PIXEL; kh * kw * p];
            for t in &taps {
                for oh in t.oh_lo..t.oh_hi {
                    let ih = ((oh * g.stride.0) as isize + t.off_h) as usize;
                    for ow in t.ow_lo..t.ow_hi {
                        let iw = t.iw0 + (ow - t.ow_lo) * g.stride.1;
                        gather[t.index * p + oh * wo + ow] = (ih * g.in_w + iw) as u32;
                    }
                }
            }
        }
        Dims {
            cin_g,
            cout_g: g.out_channels / g.groups,
            hw: g.in_h * g.in_w,
            wo,
            p,
            k: cin_g * g.kernel.0 * g.kernel.1,
            pointwise: g.kernel == (1, 1) && g.stride == (1, 1) && g.padding == (0, 0),
            shifted: g.stride.0 == g.stride.1
                && g.dilation == (1, 1)
                && (ho * g.stride.0, wo * g.stride.1) == (g.in_h, g.in_w)
                && if g.stride.0 == 1 {
                    wo >= SHIFT_MIN_WIDTH
                } else {
                    // Splitting the phases is a pass more: it pays for a kernel of several
                    // taps over 16x16 outputs and up, not for 1x1 or over 8x8.
                    wo >= 2 * SHIFT_MIN_WIDTH && g.kernel.0 * g.kernel.1 > 1
                },
            taps,
            tap_at,
            gather,
        }
    }
}

/// The output positions `o` in `0..out_len` whose input coordinate `o * stride + offset` falls
/// inside `0..in_len`; they are contiguous, so the copy loops below need no bounds tests.
fn valid_range(out_len: usize, in_len: usize, stride: usize, offset: isize) -> (usize, usize) {
    let lo = if offset >= 0 {
        0
    } else {
        offset.unsigned_abs().div_ceil(stride)
    };
    let room = in_len as isize - offset;
    let hi = if room <= 0 {
        0
    } else {
        (room as usize).div_ceil(stride).min(out_len)
    };
    (lo.min(hi), hi)
}

/// Calls `f(row, plane_offset, oh, ow_lo, ow_hi, iw0)` for each (cols row, output row) pair
/// that reads real pixels: `cols[row, oh*wo + ow]` for `ow` in `ow_lo..ow_hi` corresponds to
/// input `x[plane_offset + iw0 + (ow - ow_lo) * stride_w]`. col2im walks the real pixels with it;
/// im2col walks the same `Tap`s row by row, writing the padding's zeros as it goes.
fn for_each_tap_row(
    g: &Conv2dGeometry,
    d: &Dims,
    mut f: impl FnMut(usize, usize, usize, usize, usize, usize),
) {
    let taps_per_channel = g.kernel.0 * g.kernel.1;
    for c in 0..d.cin_g {
        for t in &d.taps {
            let row = c * taps_per_channel + t.index;
            for oh in t.oh_lo..t.oh_hi {
                let ih = ((oh * g.stride.0) as isize + t.off_h) as usize;
                f(row, c * d.hw + ih * g.in_w, oh, t.ow_lo, t.ow_hi, t.iw0);
            }
        }
    }
}

/// Unfolds one group of one sample, `x` = `[cin_g, in_h, in_w]`, into the `[k, p]` matrix whose
/// row `r` starts at `cols[r * ld]` (`ld` = p when dense; larger when samples are packed side by
/// side). Every value is written once: padding positions get their zero as the row is filled,
/// rather than zeroing all of `cols` first and writing most of it again.
fn im2col<T: Element>(
    g: &Conv2dGeometry,
    d: &Dims,
    x: &[T],
    cols: &mut [T],
    ld: usize,
    phases: &mut Vec<T>,
) {
    let taps_per_channel = g.kernel.0 * g.kernel.1;
    for (c, plane) in x.chunks_exact(d.hw).take(d.cin_g).enumerate() {
        im2col_channel(
            g,
            d,
            plane,
            &mut cols[c * taps_per_channel * ld..],
            ld,
            phases,
        );
    }
}

/// [`im2col`] of one channel's plane: its `kh * kw` rows of `cols`, row `t` at `cols[t * ld]`.
/// `phases` is scratch for strided planes.
fn im2col_channel<T: Element>(
    g: &Conv2dGeometry,
    d: &Dims,
    plane: &[T],
    cols: &mut [T],
    ld: usize,
    phases: &mut Vec<T>,
) {
    let (sw, ho, zero) = (g.stride.1, d.p / d.wo.max(1), T::zero());
    if d.shifted {
        // With stride s, input row s * oh + r (r = i - padding for tap row i) is row
        // oh + floor(r / s) of the plane's phase r mod s (its rows r mod s, s apart); the same
        // for columns, with r' = j - padding for tap column j. Each of the s x s phases is a
        // plane of the output's size, so output q = oh * wo + ow reads its tap's phase at
        // q + delta, delta = floor(r / s) * wo + floor(r' / s): one contiguous copy per tap. Sources before the phase's start or past
        // its end are rows of padding (zeros); a column shift also wraps each row's first or
        // last values round from the neighbouring row, and those are padding too. A
        // per-value table lookup or a strided copy per output row cost more than the
        // multiply on small planes, and the 7x7/2 stem spent 40% of its time unfolding.
        let s = g.stride.0;
        let phases: &[T] = if s == 1 {
            plane
        } else {
            phases.resize(d.hw, zero);
            // (Only the phases some tap reads: a 1x1/2 kernel reads one of the four.)
            let (ph0, pw0) = (g.padding.0 as isize, g.padding.1 as isize);
            let used = |b: usize, k: usize, pad: isize| {
                (0..k as isize).any(|i| (i - pad).rem_euclid(s as isize) == b as isize)
            };
            for (ph, dst) in phases.chunks_exact_mut(d.p).enumerate() {
                let (bh, bw) = (ph / s, ph % s);
                if !used(bh, g.kernel.0, ph0) || !used(bw, g.kernel.1, pw0) {
                    continue;
                }
                for (oh, line) in dst.chunks_exact_mut(d.wo).enumerate() {
                    let src = &plane[(s * oh + bh) * g.in_w + bw..];
                    for (o, &v) in line.iter_mut().zip(src.iter().step_by(s)) {
                        *o = v;
                    }
                }
            }
            phases
        };
        let (wo, p, s) = (d.wo as isize, d.p as isize, s as isize);
        for (t, row) in cols.chunks_mut(ld).take(d.tap_at.len()).enumerate() {
            let row = &mut row[..d.p];
            let (i, j) = (t / g.kernel.1, t % g.kernel.1);
            let (ri, rj) = (
                i as isize - g.padding.0 as isize,
                j as isize - g.padding.1 as isize,
            );
            let phase = (ri.rem_euclid(s) * s + rj.rem_euclid(s)) as usize;
            let src = &phases[phase * d.p..][..d.p];
            let (di, dj) = (ri.div_euclid(s), rj.div_euclid(s));
            let delta = di * wo + dj;
            let lo = (-delta).clamp(0, p) as usize;
            let hi = (p - delta).clamp(lo as isize, p) as usize;
            row[..lo].fill(zero);
            row[hi..].fill(zero);
            if lo < hi {
                let from = (lo as isize + delta) as usize;
                copy_short(&mut row[lo..hi], &src[from..from + (hi - lo)]);
            }
            // Columns ow with ow + dj outside 0..wo.
            let (c_lo, c_hi) = ((-dj).clamp(0, wo) as usize, (wo - dj).clamp(0, wo) as usize);
            let c_hi = c_hi.max(c_lo);
            if c_lo > 0 || c_hi < d.wo {
                for line in row.chunks_exact_mut(d.wo) {
                    line[..c_lo].fill(zero);
                    line[c_hi..].fill(zero);
                }
            }
        }
        return;
    }
    if !d.gather.is_empty() {
        for (t, offsets) in d.gather.chunks_exact(d.p).enumerate() {
            let row = &mut cols[t * ld..][..d.p];
            for (o, &i) in row.iter_mut().zip(offsets) {
                *o = if i == NO_PIXEL {
                    zero
                } else {
                    plane[i as usize]
                };
            }
        }
        return;
    }
    for (t, at) in d.tap_at.iter().enumerate() {
        let row = &mut cols[t * ld..][..d.p];
        let Some(&at) = at.as_ref() else {
            row.fill(zero);
            continue;
        };
        let tap = &d.taps[at];
        for (oh, out) in row.chunks_exact_mut(d.wo).enumerate().take(ho) {
            if !(tap.oh_lo..tap.oh_hi).contains(&oh) {
                out.fill(zero);
                continue;
            }
            let ih = ((oh * g.stride.0) as isize + tap.off_h) as usize;
            let src = &plane[ih * g.in_w + tap.iw0..];
            let (lo, hi) = (tap.ow_lo, tap.ow_hi);
            out[..lo].fill(zero);
            out[hi..].fill(zero);
            if sw == 1 {
                copy_short(&mut out[lo..hi], &src[..hi - lo]);
            } else {
                for (o, s) in out[lo..hi].iter_mut().zip(src.iter().step_by(sw)) {
                    *o = *s;
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each entry of `cols` = `[k, p]` (row `r` at `cols[r * ld]`) into the pixel it came from
/// in `dx` = `[cin_g, in_h, in_w]` (overlapping windows add up).
fn col2im<T: Element>(g: &Conv2dGeometry, d: &Dims, cols: &[T], ld: usize, dx: &mut [T]) {
    let sw = g.stride.1;
    if !d.gather.is_empty() {
        // The same order as below (channel, tap, position), so the same sums.
        let taps_per_channel = g.kernel.0 * g.kernel.1;
        for (c, plane) in dx.chunks_exact_mut(d.hw).take(d.cin_g).enumerate() {
            let table = d.gather.chunks_exact(d.p);
            for (t, offsets) in table.enumerate() {
                let row = &cols[(c * taps_per_channel + t) * ld..][..d.p];
                for (&v, &i) in row.iter().zip(offsets) {
                    if i != NO_PIXEL {
                        plane[i as usize] += v;
                    }
                }
            }
        }
        return;
    }
    for_each_tap_row(g, d, |row, dst, oh, lo, hi, iw0| {
        let src = &cols[row * ld + oh * d.wo..][lo..hi];
        let dst = &mut dx[dst + iw0..];
        for (o, s) in dst.iter_mut().step_by(sw).zip(src) {
            *o += *s;
        }
    });
}

/// Row-major matrix views of exactly sized slices.
fn mat<T>(rows: usize, cols: usize, s: &[T]) -> Mat<'_, T> {
    Mat::new(s, rows, cols)
}

fn mat_mut<T>(rows: usize, cols: usize, s: &mut [T]) -> MatMut<'_, T> {
    MatMut::new(s, rows, cols)
}

/// Output columns a GEMM should see at least: late layers have tiny output planes (1x1 to 8x8
/// on CIFAR), and a GEMM per sample would be a matrix-vector product that re-packs the weight
/// for every sample. Samples are therefore packed side by side, `chunk * p` columns per GEMM.
const TARGET_COLS: usize = 256;

/// Samples per chunk for forward and input-gradient passes: enough for `TARGET_COLS` columns,
/// but leaving at least one chunk per thread. (Each output element is one dot product whatever
/// the chunking, so this may depend on the thread count without changing any result.)
fn chunk_samples(batch: usize, p: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    TARGET_COLS.div_ceil(p).min(batch.div_ceil(threads)).max(1)
}

/// y = conv(x, w) + bias, `[batch, out_channels, out_h, out_w]`.
///
/// # Panics
/// If the geometry is invalid or a slice length does not match it.
pub fn forward<T: Element>(g: &Conv2dGeometry, x: &[T], w: &[T], bias: Option<&[T]>) -> Vec<T> {
    let d = Dims::new(g, "forward");
    check_len(
        "conv2d forward",
        "x",
        x.len(),
        g.batch * g.in_channels * d.hw,
    );
    check_len("conv2d forward", "weight", w.len(), g.weight_len());
    if let Some(b) = bias {
        check_len("conv2d forward", "bias", b.len(), g.out_channels);
    }
    match crate::winograd::choose(g) {
        Some(Layout::Planes) => return crate::winograd::forward(g, x, w, bias),
        Some(Layout::ChannelsLast) => return crate::winograd::forward_channels_last(g, x, w, bias),
        None => {}
    }
    let mut y = vec![T::zero(); g.batch * g.out_channels * d.p];
    let chunk = chunk_samples(g.batch, d.p);
    let one_thread = g.batch.div_ceil(chunk) >= rayon::current_num_threads();
    let (x_n, y_n) = (g.in_channels * d.hw, g.out_channels * d.p);
    y.par_chunks_mut(chunk * y_n)
        .zip(x.par_chunks(chunk * x_n))
        // Buffers live as long as a rayon job, across its chunks; im2col and the GEMM
        // overwrite every value they read.
        .for_each_init(
            || (Vec::new(), Vec::new(), Vec::new()),
            |(cols, out, phases): &mut (Vec<T>, Vec<T>, Vec<T>), (y_c, x_c)| {
                let m = x_c.len() / x_n;
                let mp = m * d.p;
                // cols `[k, m*p]`: sample s fills columns s*p..(s+1)*p.
                // With several samples, out `[cout_g, m*p]` holds them side by side and is then
                // spread into y; one sample's output goes straight to y.
                let out_len = if m > 1 { d.cout_g * mp } else { 0 };
                out.resize(out_len.max(out.len()), T::zero());
                cols.resize((d.k * mp).max(cols.len()), T::zero());
                let (cols, out) = (&mut cols[..d.k * mp], &mut out[..out_len]);
                for grp in 0..g.groups {
                    for s in 0..m {
                        let x_g = &x_c[s * x_n + grp * d.cin_g * d.hw..][..d.cin_g * d.hw];
                        if d.pointwise {
                            for (dst, src) in cols.chunks_mut(mp).zip(x_g.chunks(d.hw)) {
                                copy_short(&mut dst[s * d.p..][..d.p], src);
                            }
                        } else {
                            im2col(g, &d, x_g, &mut cols[s * d.p..], mp, phases);
                        }
                    }
                    let w_g = mat(d.cout_g, d.k, &w[grp * d.cout_g * d.k..][..d.cout_g * d.k]);
                    if m == 1 {
                        let y_g = &mut y_c[grp * d.cout_g * d.p..][..d.cout_g * d.p];
                        let y_g = mat_mut(d.cout_g, d.p, y_g);
                        chunk_gemm(one_thread, w_g, mat(d.k, mp, cols), y_g);
                        continue;
                    }
                    chunk_gemm(
                        one_thread,
                        w_g,
                        mat(d.k, mp, cols),
                        mat_mut(d.cout_g, mp, out),
                    );
                    for s in 0..m {
                        let y_g = &mut y_c[s * y_n + grp * d.cout_g * d.p..][..d.cout_g * d.p];
                        for (dst, src) in y_g.chunks_mut(d.p).zip(out.chunks(mp)) {
                            copy_short(dst, &src[s * d.p..][..d.p]);
                        }
                    }
                }
                if let Some(b) = bias {
                    for y_s in y_c.chunks_mut(y_n) {
                        for (row, &bc) in y_s.chunks_mut(d.p).zip(b) {
                            row.iter_mut().for_each(|v| *v += bc);
                        }
                    }
                }
            },
        );
    y
}

/// dx `[batch, in_channels, in_h, in_w]` from the output gradient dy.
///
/// # Panics
/// If the geometry is invalid or a slice length does not match it.
pub fn backward_input<T: Element>(g: &Conv2dGeometry, w: &[T], dy: &[T]) -> Vec<T> {
    let d = Dims::new(g, "backward_input");
    check_len("conv2d backward_input", "weight", w.len(), g.weight_len());
    check_len(
        "conv2d backward_input",
        "dy",
        dy.len(),
        g.batch * g.out_channels * d.p,
    );
    if let Some(gt) = transposed_geometry(g) {
        return forward(&gt, dy, &flip_weight(g, w), None);
    }
    let mut dx = vec![T::zero(); g.batch * g.in_channels * d.hw];
    let chunk = chunk_samples(g.batch, d.p);
    let one_thread = g.batch.div_ceil(chunk) >= rayon::current_num_threads();
    let (x_n, y_n) = (g.in_channels * d.hw, g.out_channels * d.p);
    dx.par_chunks_mut(chunk * x_n)
        .zip(dy.par_chunks(chunk * y_n))
        .for_each(|(dx_c, dy_c)| {
            let m = dy_c.len() / y_n;
            let mp = m * d.p;
            // dy of the chunk's samples side by side `[cout_g, m*p]`; dcols = W_g^T @ dy `[k, m*p]`.
            let mut dyp = vec![T::zero(); d.cout_g * mp];
            let mut dcols = vec![T::zero(); d.k * mp];
            for grp in 0..g.groups {
                for s in 0..m {
                    let dy_g = &dy_c[s * y_n + grp * d.cout_g * d.p..][..d.cout_g * d.p];
                    for (dst, src) in dyp.chunks_mut(mp).zip(dy_g.chunks(d.p)) {
                        copy_short(&mut dst[s * d.p..][..d.p], src);
                    }
                }
                let w_t = mat(d.cout_g, d.k, &w[grp * d.cout_g * d.k..][..d.cout_g * d.k]).t();
                let dcols_m = mat_mut(d.k, mp, &mut dcols);
                chunk_gemm(one_thread, w_t, mat(d.cout_g, mp, &dyp), dcols_m);
                for s in 0..m {
                    let dx_g = &mut dx_c[s * x_n + grp * d.cin_g * d.hw..][..d.cin_g * d.hw];
                    if d.pointwise {
                        for (dst, src) in dx_g.chunks_mut(d.hw).zip(dcols.chunks(mp)) {
                            copy_short(dst, &src[s * d.p..][..d.p]);
                        }
                    } else {
                        col2im(g, &d, &dcols[s * d.p..], mp, dx_g);
                    }
                }
            }
        });
    dx
}

/// With stride 1, dx is itself a convolution: of dy, by the weight with its input and output
/// channels swapped and its taps flipped, padded by `(k - 1) * dilation - padding` (the
/// window that saw `x[ih]` at tap `i` sits at `oh = ih + padding - i * dilation`). That is
/// the geometry of that convolution, when its padding is not negative. Running dx through
/// [`forward`] replaces `W^T @ dy` and the col2im scatter-add of its `[k, p]` result, which
/// went out to memory and back, with the forward pass's im2col of dy: about a quarter faster
/// on the 3x3 layers.
fn transposed_geometry(g: &Conv2dGeometry) -> Option<Conv2dGeometry> {
    let pad = |k: usize, dil: usize, p: usize| ((k - 1) * dil).checked_sub(p);
    if g.stride != (1, 1) {
        return None;
    }
    Some(Conv2dGeometry {
        batch: g.batch,
        in_channels: g.out_channels,
        in_h: g.out_h(),
        in_w: g.out_w(),
        out_channels: g.in_channels,
        kernel: g.kernel,
        stride: (1, 1),
        padding: (
            pad(g.kernel.0, g.dilation.0, g.padding.0)?,
            pad(g.kernel.1, g.dilation.1, g.padding.1)?,
        ),
        dilation: g.dilation,
        groups: g.groups,
    })
}

/// The weight of [`transposed_geometry`]'s convolution: `[in_channels, cout_g, kh, kw]`, in
/// each group `wt[ci][co][i][j] = w[co][ci][kh-1-i][kw-1-j]`.
fn flip_weight<T: Element>(g: &Conv2dGeometry, w: &[T]) -> Vec<T> {
    let (cin_g, cout_g) = (g.in_channels / g.groups, g.out_channels / g.groups);
    let taps = g.kernel.0 * g.kernel.1;
    let mut wt = vec![T::zero(); w.len()];
    let group_len = cout_g * cin_g * taps;
    for (w_g, wt_g) in w.chunks(group_len).zip(wt.chunks_mut(group_len)) {
        if taps == 1 {
            // A 1x1 kernel has nothing to flip: the group's `[cout_g, cin_g]` is transposed.
            transpose(w_g, cout_g, cin_g, wt_g, cout_g);
            continue;
        }
        // Read in order, one (co, ci) kernel of `taps` values at a time, written reversed.
        for (co, w_co) in w_g.chunks(cin_g * taps).enumerate() {
            for (ci, kernel) in w_co.chunks(taps).enumerate() {
                let dst = &mut wt_g[(ci * cout_g + co) * taps..][..taps];
                for (o, &v) in dst.iter_mut().zip(kernel.iter().rev()) {
                    *o = v;
                }
            }
        }
    }
    wt
}

/// dw with the weight's shape, summed over the batch. Bit-identical for any thread count.
///
/// # Panics
/// If the geometry is invalid or a slice length does not match it.
pub fn backward_weight<T: Element>(g: &Conv2dGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    let d = Dims::new(g, "backward_weight");
    check_len(
        "conv2d backward_weight",
        "x",
        x.len(),
        g.batch * g.in_channels * d.hw,
    );
    check_len(
        "conv2d backward_weight",
        "dy",
        dy.len(),
        g.batch * g.out_channels * d.p,
    );
    if d.p == 1 {
        return backward_weight_one_position(g, &d, x, dy);
    }
    if crate::winograd::weight_grad_pays(g) {
        return crate::winograd::backward_weight_channels_last(g, x, dy);
    }
    let wlen = g.weight_len();
    // Fixed (thread-independent) chunks: the partial sums are added in chunk order.
    let per = TARGET_COLS.div_ceil(d.p).max(BATCH_CHUNK).min(g.batch);
    let chunks = g.batch.div_ceil(per);
    // Chunks run a window of `2 x threads` at a time (below): with a full window's worth,
    // each product runs on its own thread.
    let window = 2 * rayon::current_num_threads().max(1);
    let one_thread = chunks >= window;
    // Each chunk's samples are packed side by side, cols `[k, m*p]` and dy `[cout_g, m*p]`, so
    // one GEMM with inner dimension m*p covers the chunk: when the output plane is small (late
    // layers) a GEMM per sample would mostly re-read and re-write dW.
    let col_len = d.k * per * d.p;
    // A lone sample's dy is read in place, with no buffer.
    let dy_len = if per > 1 { d.cout_g * per * d.p } else { 0 };
    let partial = |(cols, dyp, phases): &mut (Vec<T>, Vec<T>, Vec<T>), chunk: usize| -> Vec<T> {
        let first = chunk * per;
        let m = per.min(g.batch - first);
        let mp = m * d.p;
        let mut dw_t = vec![T::zero(); wlen];
        for grp in 0..g.groups {
            for s in 0..m {
                let n = first + s;
                let x_g = &x[(n * g.in_channels + grp * d.cin_g) * d.hw..][..d.cin_g * d.hw];
                let dy_g = &dy[(n * g.out_channels + grp * d.cout_g) * d.p..][..d.cout_g * d.p];
                // (A lone sample's dy is read in place below.)
                if m > 1 {
                    let rows = dyp[..d.cout_g * mp].chunks_mut(mp);
                    for (dst, src) in rows.zip(dy_g.chunks(d.p)) {
                        copy_short(&mut dst[s * d.p..][..d.p], src);
                    }
                }
                if d.pointwise {
                    for (dst, src) in cols[..d.k * mp].chunks_mut(mp).zip(x_g.chunks(d.hw)) {
                        copy_short(&mut dst[s * d.p..][..d.p], src);
                    }
                } else {
                    im2col(g, &d, x_g, &mut cols[s * d.p..], mp, phases);
                }
            }
            // dW_g^T = cols @ dy^T `[k, cout_g]`: cols, the larger operand, is then GEMM's
            // A, read in place, and only dy (cout_g rows rather than k) needs the transposing
            // pack. Each element is the same sum in the same order as dy @ cols^T, so the
            // bits are the same; the partials stay transposed until the end.
            let dy_m = if m == 1 {
                &dy[(first * g.out_channels + grp * d.cout_g) * d.p..][..d.cout_g * d.p]
            } else {
                &dyp[..d.cout_g * mp]
            };
            let dy_t = mat(d.cout_g, mp, dy_m).t();
            let dw_t = &mut dw_t[grp * d.cout_g * d.k..][..d.cout_g * d.k];
            chunk_gemm(
                one_thread,
                mat(d.k, mp, &cols[..d.k * mp]),
                dy_t,
                mat_mut(d.k, d.cout_g, dw_t),
            );
        }
        dw_t
    };
    // Partials are computed a window at a time to bound memory; the window only changes how
    // many are alive at once, not the order in which they are added.
    let mut dw_t: Option<Vec<T>> = None;
    for start in (0..chunks).step_by(window) {
        let partials: Vec<Vec<T>> = (start..(start + window).min(chunks))
            .into_par_iter()
            .map_init(
                || {
                    (
                        vec![T::zero(); col_len],
                        vec![T::zero(); dy_len],
                        Vec::new(),
                    )
                },
                partial,
            )
            .collect();
        for p in partials {
            match dw_t.as_mut() {
                // The first partial is the running sum; the others are added to it in chunk
                // order, element by element (split across threads, each element's sum the same).
                None => dw_t = Some(p),
                Some(sum) => sum
                    .par_chunks_mut(1 << 14)
                    .zip(p.par_chunks(1 << 14))
                    .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, b)| *a += *b)),
            }
        }
    }
    let dw_t = dw_t.expect("a batch has at least one chunk");
    // Each group's `[k, cout_g]` sum into the weight's `[cout_g, k]`.
    let mut dw = vec![T::zero(); wlen];
    for (src, dst) in dw_t
        .chunks(d.k * d.cout_g)
        .zip(dw.chunks_mut(d.k * d.cout_g))
    {
        transpose(src, d.k, d.cout_g, dst, d.k);
    }
    dw
}

/// The weight gradient of layers with one output position per sample (1x1 outputs, such as
/// the last stage of the ImageNet-stem networks on CIFAR's 32x32 images). There the samples
/// themselves are the GEMM's inner dimension: sample n's unfolded window is row n of `cols`
/// `[batch, k]`, dy is already `[batch, cout]`, and `dW = dy^T @ cols` comes out in the
/// weight's own layout. The general path's `[k, samples]` layout gathered every value into
/// its own column one element at a time and left a `[k, cout]` result to transpose: on 2048
/// channels that copying cost more than the multiplies (7.3 ms against 2.0 ms now for the
/// 1x1/2 1024->2048 layer at batch 128). The forward and input-gradient passes gained nothing
/// from the same layout and keep the general path.
fn backward_weight_one_position<T: Element>(
    g: &Conv2dGeometry,
    d: &Dims,
    x: &[T],
    dy: &[T],
) -> Vec<T> {
    let x_n = g.in_channels * d.hw;
    let mut dw = vec![T::zero(); g.weight_len()];
    let mut cols = vec![T::zero(); g.batch * d.k];
    for (grp, dw_g) in dw.chunks_mut(d.cout_g * d.k).enumerate() {
        cols.par_chunks_mut(d.k).enumerate().for_each(|(n, row)| {
            im2col(
                g,
                d,
                &x[n * x_n + grp * d.cin_g * d.hw..],
                row,
                1,
                &mut Vec::new(),
            );
        });
        // dy's columns of this group, `[batch, cout_g]`, transposed as a view.
        let dy_g = Mat::strided(&dy[grp * d.cout_g..], g.batch, d.cout_g, g.out_channels, 1);
        // Each element is summed over the batch in sample order, whatever the thread count.
        gemm(
            dy_g.t(),
            mat(g.batch, d.k, &cols),
            MatMut::new(dw_g, d.cout_g, d.k),
        );
    }
    dw
}

/// dbias `[out_channels]`: dy summed over batch and positions, in f64 and in a fixed order
/// (channels in parallel, each plane over eight lanes, planes in order).
///
/// # Panics
/// If the geometry is invalid or dy's length does not match it.
pub fn backward_bias<T: Element>(g: &Conv2dGeometry, dy: &[T]) -> Vec<T> {
    let d = Dims::new(g, "backward_bias");
    check_len(
        "conv2d backward_bias",
        "dy",
        dy.len(),
        g.batch * g.out_channels * d.p,
    );
    (0..g.out_channels)
        .into_par_iter()
        .map(|co| {
            let mut acc = 0.0f64;
            for n in 0..g.batch {
                let plane = &dy[(n * g.out_channels + co) * d.p..][..d.p];
                acc += lane_sums(plane, plane, |v, _| [v])[0];
            }
            T::from_f64(acc)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use senet_spec::cases::conv2d_geometry as geom;
    use senet_spec::conv2d as reference;
    use senet_spec::testing::{assert_close, rand_vec};

    fn check_against_reference<T: Element>(tol: f64) {
        let mut rng = StdRng::seed_from_u64(7);
        for g in senet_spec::cases::conv2d_cases() {
            g.validate().unwrap();
            let x = rand_vec::<T>(
                &mut rng,
                g.batch * g.in_channels * g.in_h * g.in_w,
                -1.0,
                1.0,
            );
            let w = rand_vec::<T>(&mut rng, g.weight_len(), -1.0, 1.0);
            let b = rand_vec::<T>(&mut rng, g.out_channels, -1.0, 1.0);
            let dy = rand_vec::<T>(
                &mut rng,
                g.batch * g.out_channels * g.out_h() * g.out_w(),
                -1.0,
                1.0,
            );
            let ctx = format!("{} {g:?}", T::NAME);
            assert_close(
                &format!("forward {ctx}"),
                &forward(&g, &x, &w, Some(&b)),
                &reference::conv2d_forward(&g, &x, &w, Some(&b)),
                tol,
            );
            assert_close(
                &format!("forward no bias {ctx}"),
                &forward(&g, &x, &w, None),
                &reference::conv2d_forward(&g, &x, &w, None),
                tol,
            );
            assert_close(
                &format!("backward_input {ctx}"),
                &backward_input(&g, &w, &dy),
                &reference::conv2d_backward_input(&g, &w, &dy),
                tol,
            );
            assert_close(
                &format!("backward_weight {ctx}"),
                &backward_weight(&g, &x, &dy),
                &reference::conv2d_backward_weight(&g, &x, &dy),
                tol,
            );
            assert_close(
                &format!("backward_bias {ctx}"),
                &backward_bias(&g, &dy),
                &reference::conv2d_backward_bias(&g, &dy),
                tol,
            );
        }
    }

    // f64 agrees to rounding; f32 sums up to ~100 products of values in [-1, 1], so 5e-5 of
    // `1 + |reference|` leaves a wide margin over the ~1e-6 accumulation error.
    #[test]
    fn matches_reference_f64() {
        check_against_reference::<f64>(5e-11);
    }

    #[test]
    fn matches_reference_f32() {
        check_against_reference::<f32>(5e-5);
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let mut rng = StdRng::seed_from_u64(11);
        for g in [
            geom((13, 4, 9, 7, 6), (3, 3), (2, 1), (1, 1), (1, 1), 2),
            geom((10, 6, 5, 5, 8), (1, 1), (1, 1), (0, 0), (1, 1), 1),
            // Winograd by planes (forward and input gradient, 16x16), and its weight gradient
            // over two chunks of samples.
            geom((18, 32, 16, 16, 33), (3, 3), (1, 1), (1, 1), (1, 1), 1),
            // Winograd channels last: forward, input and weight gradients.
            geom((3, 32, 6, 6, 40), (3, 3), (1, 1), (1, 1), (1, 1), 1),
        ] {
            let x = rand_vec::<f32>(
                &mut rng,
                g.batch * g.in_channels * g.in_h * g.in_w,
                -1.0,
                1.0,
            );
            let w = rand_vec::<f32>(&mut rng, g.weight_len(), -1.0, 1.0);
            let dy = rand_vec::<f32>(
                &mut rng,
                g.batch * g.out_channels * g.out_h() * g.out_w(),
                -1.0,
                1.0,
            );
            let run = |threads: usize| {
                crate::on_threads(threads, || {
                    let mut all = backward_weight(&g, &x, &dy);
                    all.extend(backward_bias(&g, &dy));
                    all.extend(backward_input(&g, &w, &dy));
                    all.extend(forward(&g, &x, &w, None));
                    all.into_iter().map(f32::to_bits).collect::<Vec<_>>()
                })
            };
            assert_eq!(run(1), run(2), "{g:?}");
            assert_eq!(run(1), run(3), "{g:?}");
        }
    }
}
