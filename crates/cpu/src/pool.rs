//! Max and average 2-D pooling over NCHW arrays, with PyTorch's semantics (ceil_mode = false).
//!
//! Every (sample, channel) plane is pooled on its own, so the kernels run in parallel over
//! planes and never reduce across them: results do not depend on the thread count. Max pooling
//! treats padding as -infinity (padded positions are simply skipped) and also returns, for each
//! output, where its maximum came from as `h * in_w + w` within the input plane; the backward
//! pass scatters the gradient there. Average pooling counts padded zeros (count_include_pad),
//! so every window divides by the full kernel area.
use rayon::prelude::*;
use senet_spec::pool::Pool2dGeometry;
use senet_spec::{check_len, Element};
use std::hint::select_unpredictable;

/// Checked sizes of one call: input plane, output plane, output width.
struct Planes {
    inp: usize,
    out: usize,
    wo: usize,
}

fn planes(g: &Pool2dGeometry, what: &str) -> Planes {
    // The tensor layer validates shapes first, so a bad geometry here is a caller bug.
    if let Err(e) = g.validate() {
        panic!("{what}: {e}");
    }
    Planes {
        inp: g.in_h * g.in_w,
        out: g.out_h() * g.out_w(),
        wo: g.out_w(),
    }
}

/// Input rows (or columns) `lo..hi` that output position `o` covers, padding cut off.
fn window(o: usize, stride: usize, pad: usize, k: usize, len: usize) -> (usize, usize) {
    let start = (o * stride) as isize - pad as isize;
    let lo = start.max(0) as usize;
    let hi = ((start + k as isize).max(0) as usize).min(len);
    (lo, hi)
}

/// Calls `f(out_index, rows, cols)` for every output position of a plane, with the window's
/// real input rows and columns.
fn for_each_window(
    g: &Pool2dGeometry,
    p: &Planes,
    mut f: impl FnMut(usize, (usize, usize), (usize, usize)),
) {
    for oh in 0..g.out_h() {
        let rows = window(oh, g.stride.0, g.padding.0, g.kernel.0, g.in_h);
        for ow in 0..p.wo {
            let cols = window(ow, g.stride.1, g.padding.1, g.kernel.1, g.in_w);
            f(oh * p.wo + ow, rows, cols);
        }
    }
}

/// An integer with the order max pooling compares by: `order_key(a) > order_key(b)` exactly
/// when `a > b`, except that a NaN is above everything (a NaN wins, as in PyTorch). -0 and
/// +0 share a key (they compare equal), and so do all NaNs, so with a strict `>` the first
/// of equal values keeps the window.
///
/// Why integers: which pixel wins depends on the data, so a branch on it is mispredicted
/// about once per window, and a float comparison feeding a select compiles to exactly such a
/// branch. An integer select is a conditional move.
#[inline(always)]
fn order_key<T: Element>(v: T) -> i64 {
    // Adding +0 turns -0 into +0 and leaves every other value alone.
    let bits = (v.to_f64() + 0.0).to_bits() as i64;
    // Negative floats count down as their bits count up: flip all but the sign.
    let key = bits ^ (((bits >> 63) as u64) >> 1) as i64;
    select_unpredictable(v.is_nan(), i64::MAX, key)
}

/// Planes per parallel task: enough work (about 16k inputs) that a task costs more than
/// handing it out.
fn planes_per_task(inp: usize) -> usize {
    (1usize << 14).div_ceil(inp.max(1))
}

/// Max pooling: returns `(y, argmax)`, argmax being `h * in_w + w` in the input plane of the
/// first maximum in row-major window order (a NaN wins, as in PyTorch).
///
/// Separable, like a max filter: each input row is first reduced over every output column's
/// window (`[in_h, out_w]` keys and positions), then each output row takes the first maximum
/// down its window's rows. The first maximum along rows, then the first along columns, is the
/// first in row-major order, so ties and NaNs resolve exactly as a window-at-a-time loop, and
/// a 3x3 window costs 3 + 2 comparisons per output instead of 9. Values are compared as
/// `order_key`s, without branches; each output then reads its value at its argmax.
///
/// # Panics
/// If the geometry is invalid or x's length does not match it.
pub fn max_forward<T: Element>(g: &Pool2dGeometry, x: &[T]) -> (Vec<T>, Vec<u32>) {
    let p = planes(g, "max_pool2d forward");
    let n_planes = g.batch * g.channels;
    check_len("max_pool2d forward", "x", x.len(), n_planes * p.inp);
    let (ho, wo) = (g.out_h(), p.wo);
    let rows: Vec<(usize, usize)> = (0..ho)
        .map(|o| window(o, g.stride.0, g.padding.0, g.kernel.0, g.in_h))
        .collect();
    let cols: Vec<(usize, usize)> = (0..wo)
        .map(|o| window(o, g.stride.1, g.padding.1, g.kernel.1, g.in_w))
        .collect();
    let mut y = vec![T::zero(); n_planes * p.out];
    let mut arg = vec![0u32; n_planes * p.out];
    let per = planes_per_task(p.inp);
    y.par_chunks_mut(per * p.out)
        .zip(arg.par_chunks_mut(per * p.out))
        .zip(x.par_chunks(per * p.inp))
        .for_each_init(
            || {
                let plane_keys = vec![0i64; p.inp];
                (vec![0i64; g.in_h * wo], vec![0u32; g.in_h * wo], plane_keys)
            },
            |(row_key, row_arg, plane_keys), ((y_t, a_t), x_t)| {
                let planes = y_t
                    .chunks_mut(p.out)
                    .zip(a_t.chunks_mut(p.out))
                    .zip(x_t.chunks(p.inp));
                for ((y_p, a_p), x_p) in planes {
                    // Every pixel's key, in one pass that vectorizes.
                    for (k, &v) in plane_keys.iter_mut().zip(x_p) {
                        *k = order_key(v);
                    }
                    // Pass 1: every input row's first maximum over each output column's window.
                    for ih in 0..g.in_h {
                        let line = &plane_keys[ih * g.in_w..][..g.in_w];
                        let keys = row_key[ih * wo..][..wo].iter_mut();
                        let args = row_arg[ih * wo..][..wo].iter_mut();
                        for ((k, a), &(w0, w1)) in keys.zip(args).zip(&cols) {
                            // validate() guarantees a non-empty window.
                            let (mut best, mut at) = (line[w0], w0);
                            for (iw, &key) in line[..w1].iter().enumerate().skip(w0 + 1) {
                                let take = key > best;
                                best = select_unpredictable(take, key, best);
                                at = select_unpredictable(take, iw, at);
                            }
                            *k = best;
                            *a = (ih * g.in_w + at) as u32;
                        }
                    }
                    // Pass 2: down each output row's window rows.
                    for (oh, &(h0, h1)) in rows.iter().enumerate() {
                        let a_r = &mut a_p[oh * wo..][..wo];
                        for (ow, a) in a_r.iter_mut().enumerate() {
                            let (mut best, mut at) = (row_key[h0 * wo + ow], row_arg[h0 * wo + ow]);
                            for ih in h0 + 1..h1 {
                                let (key, cand) = (row_key[ih * wo + ow], row_arg[ih * wo + ow]);
                                let take = key > best;
                                best = select_unpredictable(take, key, best);
                                at = select_unpredictable(take, cand, at);
                            }
                            *a = at;
                        }
                        for (y, &a) in y_p[oh * wo..][..wo].iter_mut().zip(a_r.iter()) {
                            *y = x_p[a as usize];
                        }
                    }
                }
            },
        );
    (y, arg)
}

/// dx `[batch, channels, in_h, in_w]`: each dy added at its argmax (overlapping windows add).
///
/// # Panics
/// If the geometry is invalid, a slice length does not match it or an argmax is out of range.
pub fn max_backward<T: Element>(g: &Pool2dGeometry, argmax: &[u32], dy: &[T]) -> Vec<T> {
    let p = planes(g, "max_pool2d backward");
    let n_planes = g.batch * g.channels;
    check_len(
        "max_pool2d backward",
        "argmax",
        argmax.len(),
        n_planes * p.out,
    );
    check_len("max_pool2d backward", "dy", dy.len(), n_planes * p.out);
    let mut dx = vec![T::zero(); n_planes * p.inp];
    dx.par_chunks_mut(p.inp)
        .zip(argmax.par_chunks(p.out))
        .zip(dy.par_chunks(p.out))
        .for_each(|((dx_p, a_p), dy_p)| {
            for (&a, &d) in a_p.iter().zip(dy_p) {
                dx_p[a as usize] += d;
            }
        });
    dx
}

/// Average pooling, dividing by the kernel area whatever the padding.
///
/// # Panics
/// If the geometry is invalid or x's length does not match it.
pub fn avg_forward<T: Element>(g: &Pool2dGeometry, x: &[T]) -> Vec<T> {
    let p = planes(g, "avg_pool2d forward");
    let n_planes = g.batch * g.channels;
    check_len("avg_pool2d forward", "x", x.len(), n_planes * p.inp);
    let area = T::from_f64((g.kernel.0 * g.kernel.1) as f64);
    let mut y = vec![T::zero(); n_planes * p.out];
    y.par_chunks_mut(p.out)
        .zip(x.par_chunks(p.inp))
        .for_each(|(y_p, x_p)| {
            for_each_window(g, &p, |o, (h0, h1), (w0, w1)| {
                let mut acc = T::zero();
                for ih in h0..h1 {
                    for &v in &x_p[ih * g.in_w + w0..ih * g.in_w + w1] {
                        acc += v;
                    }
                }
                y_p[o] = acc / area;
            });
        });
    y
}

/// dx `[batch, channels, in_h, in_w]`: each window's dy / area added to its real pixels.
///
/// # Panics
/// If the geometry is invalid or dy's length does not match it.
pub fn avg_backward<T: Element>(g: &Pool2dGeometry, dy: &[T]) -> Vec<T> {
    let p = planes(g, "avg_pool2d backward");
    let n_planes = g.batch * g.channels;
    check_len("avg_pool2d backward", "dy", dy.len(), n_planes * p.out);
    let area = T::from_f64((g.kernel.0 * g.kernel.1) as f64);
    let mut dx = vec![T::zero(); n_planes * p.inp];
    dx.par_chunks_mut(p.inp)
        .zip(dy.par_chunks(p.out))
        .for_each(|(dx_p, dy_p)| {
            for_each_window(g, &p, |o, (h0, h1), (w0, w1)| {
                let d = dy_p[o] / area;
                for ih in h0..h1 {
                    for v in &mut dx_p[ih * g.in_w + w0..ih * g.in_w + w1] {
                        *v += d;
                    }
                }
            });
        });
    dx
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use senet_spec::cases::pool2d_geometry as geom;
    use senet_spec::pool as reference;
    use senet_spec::testing::assert_close;

    fn check<T: Element>(tol: f64) {
        let mut rng = StdRng::seed_from_u64(5);
        for g in senet_spec::cases::pool2d_cases() {
            g.validate().unwrap();
            let n_in = g.batch * g.channels * g.in_h * g.in_w;
            let n_out = g.batch * g.channels * g.out_h() * g.out_w();
            // Few distinct values so windows have ties: checks the first-max rule.
            let ties: Vec<T> = (0..n_in)
                .map(|_| T::from_f64(rng.random_range(0..3) as f64))
                .collect();
            let x: Vec<T> = (0..n_in)
                .map(|_| T::from_f64(rng.random_range(-1.0..1.0)))
                .collect();
            let dy: Vec<T> = (0..n_out)
                .map(|_| T::from_f64(rng.random_range(-1.0..1.0)))
                .collect();
            let ctx = format!("{} {g:?}", T::NAME);
            for input in [&ties, &x] {
                let (y, arg) = max_forward(&g, input);
                let (ry, rarg) = reference::max_pool2d_forward(&g, input);
                assert_close(&format!("max y {ctx}"), &y, &ry, tol);
                assert_eq!(arg, rarg, "max argmax {ctx}");
                assert_close(
                    &format!("max backward {ctx}"),
                    &max_backward(&g, &arg, &dy),
                    &reference::max_pool2d_backward(&g, &rarg, &dy),
                    tol,
                );
                assert_close(
                    &format!("avg {ctx}"),
                    &avg_forward(&g, input),
                    &reference::avg_pool2d_forward(&g, input),
                    tol,
                );
            }
            assert_close(
                &format!("avg backward {ctx}"),
                &avg_backward(&g, &dy),
                &reference::avg_pool2d_backward(&g, &dy),
                tol,
            );
        }
    }

    #[test]
    fn matches_reference_f64() {
        check::<f64>(5e-13);
    }

    // Windows hold at most 16 values: f32 rounding stays far below 1e-5.
    #[test]
    fn matches_reference_f32() {
        check::<f32>(5e-6);
    }

    #[test]
    fn max_pool_skips_padding_and_takes_nan() {
        // All-negative input: a zero-padded max would wrongly return 0.
        let g = geom((1, 1, 2, 2), (2, 2), (1, 1), (1, 1));
        let (y, arg) = max_forward(&g, &[-4.0f64, -3.0, -2.0, -1.0]);
        assert_eq!(
            y,
            vec![-4.0, -3.0, -3.0, -2.0, -1.0, -1.0, -2.0, -1.0, -1.0]
        );
        assert_eq!(arg, vec![0, 1, 1, 2, 3, 3, 2, 3, 3]);
        let g = geom((1, 1, 1, 3), (1, 3), (1, 1), (0, 0));
        let (y, arg) = max_forward(&g, &[1.0f32, f32::NAN, 2.0]);
        assert!(y[0].is_nan());
        assert_eq!(arg, vec![1]);
    }

    #[test]
    fn max_pool_takes_the_first_nan_of_each_window() {
        // Several NaNs per window: the separable passes must still pick the first one in
        // row-major order, as the reference does; and of -0 and +0 (equal), the first.
        let mut rng = StdRng::seed_from_u64(9);
        for g in senet_spec::cases::pool2d_cases() {
            let n_in = g.batch * g.channels * g.in_h * g.in_w;
            let x: Vec<f32> = (0..n_in)
                .map(|_| match rng.random_range(0..6) {
                    0 => f32::NAN,
                    1 => -0.0,
                    2 => 0.0,
                    k => k as f32,
                })
                .collect();
            let (y, arg) = max_forward(&g, &x);
            let (ry, rarg) = reference::max_pool2d_forward(&g, &x);
            assert_eq!(arg, rarg, "{g:?}");
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y), bits(&ry), "{g:?}");
        }
    }

    #[test]
    fn avg_pool_counts_padding() {
        let g = geom((1, 1, 2, 2), (2, 2), (2, 2), (1, 1));
        // Each 2x2 window holds one real pixel and three padded zeros.
        assert_eq!(
            avg_forward(&g, &[4.0f64, 8.0, 12.0, 16.0]),
            vec![1.0, 2.0, 3.0, 4.0]
        );
    }
}
