//! Batch normalization over NCHW arrays, statistics per channel.
//!
//! The input is viewed as `[n, c, hw]` (hw = H*W) and each channel is normalized with the mean
//! and variance of its `n * hw` values (training) or with running statistics (eval). Per-channel
//! sums are accumulated in f64 in a fixed order: over eight lanes per plane with channels in
//! parallel, or, for small planes, per position over the samples and then over the channel's
//! positions. Mean and variance come from one pass of sums around the channel's first value k
//! (`E[(x-k)²] - E[x-k]²`), not `E[x²] - E[x]²`, which loses everything to cancellation when
//! the mean is large; the backward pass gets both its sums in one pass too. Elementwise passes
//! run in parallel over planes, or over whole samples when planes are small. No sum ever spans
//! threads, so results do not depend on the thread count.
use crate::lane_sums;
use rayon::prelude::*;
use senet_spec::batchnorm::{BnShape, BnTrainOut};
use senet_spec::{check_len, Element};

fn check_param<T>(what: &str, name: &str, p: Option<&[T]>, c: usize) {
    if let Some(p) = p {
        check_len(what, name, p.len(), c);
    }
}

/// The `n` contiguous runs of channel `c`, in sample order.
fn channel<T>(s: BnShape, x: &[T], c: usize) -> impl Iterator<Item = &[T]> {
    (0..s.n).map(move |n| &x[(n * s.c + c) * s.hw..][..s.hw])
}

/// Planes of fewer values than this (late layers: 1x1 and 2x2 per sample) are walked sample by
/// sample across all channels at once (see [`channel_sums`] and [`map_elements`]). From 4x4 up
/// the plane-by-plane loops were as fast or faster (measured with `senet bench --profile`).
const SMALL_PLANE: usize = 16;

/// Positions per task in [`channel_sums`]' small-plane path: their f64 sums stay in L1.
const SUM_BLOCK: usize = 1024;

/// Per channel c, the `N` sums of `f(k[c], x, dy)` over its values, in f64, in one pass.
///
/// Large planes: channels in parallel, each plane summed over eight lanes
/// ([`lane_sums`]), planes in order. Small planes would spend that per-plane setup on one to
/// four values, so there each position of a sample's `[c, hw]` block gets its own f64 sum
/// over the samples (in order; positions in parallel, vectorized), and a channel's sum then
/// adds its `hw` positions in order. Either way every sum has a fixed order.
fn channel_sums<T: Element, const N: usize>(
    s: BnShape,
    (x, dy): (&[T], &[T]),
    k: &[f64],
    f: impl Fn(f64, f64, f64) -> [f64; N] + Sync,
) -> Vec<[f64; N]> {
    if s.hw >= SMALL_PLANE {
        return (0..s.c)
            .into_par_iter()
            .map(|c| {
                let mut total = [0f64; N];
                for (xs, ds) in channel(s, x, c).zip(channel(s, dy, c)) {
                    let sums = lane_sums(xs, ds, |v, d| f(k[c], v, d));
                    for (t, v) in total.iter_mut().zip(sums) {
                        *t += v;
                    }
                }
                total
            })
            .collect();
    }
    let row = s.c * s.hw;
    // Each task owns a block of whole channels' positions.
    let block = SUM_BLOCK.div_ceil(s.hw) * s.hw;
    let mut per_position = vec![[0f64; N]; row];
    per_position
        .par_chunks_mut(block)
        .enumerate()
        .for_each(|(t, acc)| {
            let first = t * block;
            let ks: Vec<f64> = (first..first + acc.len()).map(|i| k[i / s.hw]).collect();
            for n in 0..s.n {
                let xs = &x[n * row + first..][..acc.len()];
                let ds = &dy[n * row + first..][..acc.len()];
                for (((a, &kc), &v), &d) in acc.iter_mut().zip(&ks).zip(xs).zip(ds) {
                    for (a, t) in a.iter_mut().zip(f(kc, v.to_f64(), d.to_f64())) {
                        *a += t;
                    }
                }
            }
        });
    per_position
        .chunks_exact(s.hw)
        .map(|positions| {
            let mut total = [0f64; N];
            for p in positions {
                for (t, v) in total.iter_mut().zip(p) {
                    *t += v;
                }
            }
            total
        })
        .collect()
}

/// Planes are handed to threads in groups of at least this many elements, so that a layer
/// with 1x1 planes is not split into one task per value.
const MIN_TASK: usize = 4096;

/// `out[i] = f(x[i], dy[i], coef[c])` for every element, c being its channel and `coef[j][c]`
/// the channel's j-th coefficient. `dy` may be `x` when there is no second input.
///
/// Large planes run plane by plane with the channel's coefficients held fixed. Small planes
/// run a whole sample's `[c, hw]` block as one loop over coefficients spread to every
/// position: a 1x1 plane is one value, and a loop per plane cost more than the value.
fn map_elements<T: Element, const K: usize>(
    s: BnShape,
    (x, dy): (&[T], &[T]),
    coef: [&[T]; K],
    f: impl Fn(T, T, [T; K]) -> T + Sync,
) -> Vec<T> {
    let mut out = vec![T::zero(); s.numel()];
    if s.hw == 0 || s.n == 0 {
        return out;
    }
    if s.hw >= SMALL_PLANE {
        let per_task = MIN_TASK.div_ceil(s.hw) * s.hw;
        out.par_chunks_mut(per_task)
            .zip(x.par_chunks(per_task))
            .zip(dy.par_chunks(per_task))
            .enumerate()
            .for_each(|(t, ((o, xs), ds))| {
                let mut c = (t * per_task / s.hw) % s.c;
                let planes = o.chunks_mut(s.hw).zip(xs.chunks(s.hw)).zip(ds.chunks(s.hw));
                for ((o, xp), dp) in planes {
                    let k: [T; K] = std::array::from_fn(|j| coef[j][c]);
                    for ((o, &v), &d) in o.iter_mut().zip(xp).zip(dp) {
                        *o = f(v, d, k);
                    }
                    // The channel counts up plane by plane (no division per plane).
                    c += 1;
                    if c == s.c {
                        c = 0;
                    }
                }
            });
        return out;
    }
    let row = s.c * s.hw;
    let spread: [Vec<T>; K] =
        std::array::from_fn(|j| (0..row).map(|i| coef[j][i / s.hw]).collect());
    let rows = MIN_TASK.div_ceil(row).max(1);
    out.par_chunks_mut(rows * row)
        .zip(x.par_chunks(rows * row))
        .zip(dy.par_chunks(rows * row))
        .for_each(|((o, xs), ds)| {
            for ((o, xr), dr) in o.chunks_mut(row).zip(xs.chunks(row)).zip(ds.chunks(row)) {
                for i in 0..row {
                    o[i] = f(xr[i], dr[i], std::array::from_fn(|j| spread[j][i]));
                }
            }
        });
    out
}

/// Training-mode forward: normalizes with the batch statistics and returns them.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn forward_train<T: Element>(
    s: BnShape,
    x: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    eps: f64,
) -> BnTrainOut<T> {
    check_len("batch_norm2d forward_train", "x", x.len(), s.numel());
    check_param("batch_norm2d forward_train", "weight", weight, s.c);
    check_param("batch_norm2d forward_train", "bias", bias, s.c);
    let m = (s.n * s.hw) as f64;
    // One pass: sums of x - k and (x - k)^2 around k, the channel's first value. With k near
    // the data, E[(x-k)^2] - E[x-k]^2 loses nothing to cancellation in f64 (unlike
    // E[x^2] - E[x]^2 around 0 when the mean is large).
    let k: Vec<f64> = (0..s.c)
        .map(|c| x.get(c * s.hw).map_or(0.0, |&v| Element::to_f64(v)))
        .collect();
    let sums = channel_sums(s, (x, x), &k, |k, v, _| [v - k, (v - k) * (v - k)]);
    let stats: Vec<(f64, f64)> = sums
        .iter()
        .zip(&k)
        .map(|(&[s1, s2], &k)| {
            let (d, sq) = (s1 / m, s2 / m);
            (k + d, (sq - d * d).max(0.0))
        })
        .collect();
    let invstd: Vec<f64> = stats.iter().map(|&(_, v)| 1.0 / (v + eps).sqrt()).collect();
    let mean: Vec<T> = stats.iter().map(|&(mu, _)| T::from_f64(mu)).collect();
    let (scale, shift) = affine(s.c, &invstd, weight, bias);
    let y = map_elements(s, (x, x), [&mean, &scale, &shift], |v, _, [mu, a, b]| {
        (v - mu) * a + b
    });
    BnTrainOut {
        y,
        mean,
        var: stats.iter().map(|&(_, v)| T::from_f64(v)).collect(),
        invstd: invstd.into_iter().map(T::from_f64).collect(),
    }
}

/// Eval-mode forward with running statistics: y = (x - mean) / sqrt(var + eps) * weight + bias.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn forward_eval<T: Element>(
    s: BnShape,
    x: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    mean: &[T],
    var: &[T],
    eps: f64,
) -> Vec<T> {
    check_len("batch_norm2d forward_eval", "x", x.len(), s.numel());
    check_param("batch_norm2d forward_eval", "weight", weight, s.c);
    check_param("batch_norm2d forward_eval", "bias", bias, s.c);
    check_len("batch_norm2d forward_eval", "mean", mean.len(), s.c);
    check_len("batch_norm2d forward_eval", "var", var.len(), s.c);
    let invstd: Vec<f64> = var
        .iter()
        .map(|&v| 1.0 / (Element::to_f64(v) + eps).sqrt())
        .collect();
    let (scale, shift) = affine(s.c, &invstd, weight, bias);
    map_elements(s, (x, x), [mean, &scale, &shift], |v, _, [mu, a, b]| {
        (v - mu) * a + b
    })
}

/// Training-mode backward through the batch statistics, with `mean`/`invstd` from
/// [`forward_train`]. Returns (dx, dweight, dbias); dweight/dbias are per channel.
///
/// dx = weight * invstd / M * (M * dy - dbias - xhat * dweight), M = n * hw, computed as
/// weight * invstd * (dy - dbias / M - xhat * dweight / M) to keep f32 terms small.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn backward_train<T: Element>(
    s: BnShape,
    x: &[T],
    dy: &[T],
    weight: Option<&[T]>,
    mean: &[T],
    invstd: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    check_lens(
        "batch_norm2d backward_train",
        s,
        x,
        dy,
        weight,
        mean,
        invstd,
    );
    let m = (s.n * s.hw) as f64;
    let (dweight, dbias) = param_grads(s, x, dy, mean, invstd);
    // Per channel: the factor a, mean(dy), and k with xhat * mean(dy * xhat) = (x - mean) * k.
    let (mut a, mut mean_dy, mut k) = (Vec::new(), Vec::new(), Vec::new());
    for c in 0..s.c {
        let is = invstd[c].to_f64();
        a.push(T::from_f64(weight.map_or(1.0, |w| w[c].to_f64()) * is));
        mean_dy.push(T::from_f64(dbias[c] / m));
        k.push(T::from_f64(is * dweight[c] / m));
    }
    let coef = [&a[..], &mean_dy[..], &k[..], mean];
    let dx = map_elements(s, (x, dy), coef, |v, d, [a, mean_dy, k, mu]| {
        a * (d - mean_dy - (v - mu) * k)
    });
    (dx, to_t(dweight), to_t(dbias))
}

/// Eval-mode backward (statistics are constants), with `invstd` computed from the running
/// variance. Returns (dx, dweight, dbias); dweight/dbias are per channel.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn backward_eval<T: Element>(
    s: BnShape,
    x: &[T],
    dy: &[T],
    weight: Option<&[T]>,
    mean: &[T],
    invstd: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    check_lens("batch_norm2d backward_eval", s, x, dy, weight, mean, invstd);
    let (dweight, dbias) = param_grads(s, x, dy, mean, invstd);
    let a: Vec<T> = (0..s.c)
        .map(|c| T::from_f64(weight.map_or(1.0, |w| w[c].to_f64()) * invstd[c].to_f64()))
        .collect();
    let dx = map_elements(s, (dy, dy), [&a], |d, _, [a]| d * a);
    (dx, to_t(dweight), to_t(dbias))
}

fn check_lens<T>(
    what: &str,
    s: BnShape,
    x: &[T],
    dy: &[T],
    weight: Option<&[T]>,
    mean: &[T],
    invstd: &[T],
) {
    check_len(what, "x", x.len(), s.numel());
    check_len(what, "dy", dy.len(), s.numel());
    check_param(what, "weight", weight, s.c);
    check_len(what, "mean", mean.len(), s.c);
    check_len(what, "invstd", invstd.len(), s.c);
}

/// Per channel (sum of dy * xhat, sum of dy) in f64: dweight and dbias.
fn param_grads<T: Element>(
    s: BnShape,
    x: &[T],
    dy: &[T],
    mean: &[T],
    invstd: &[T],
) -> (Vec<f64>, Vec<f64>) {
    let mu: Vec<f64> = mean.iter().map(|&v| Element::to_f64(v)).collect();
    // invstd factored out of the sum: one multiply per channel instead of per element.
    let sums = channel_sums(s, (x, dy), &mu, |mu, v, d| [d * (v - mu), d]);
    sums.iter()
        .zip(invstd)
        .map(|(&[dw, db], &is)| (dw * is.to_f64(), db))
        .unzip()
}

/// Per channel, `scale = invstd * weight` and `shift = bias`: computed once per channel, not
/// once per (sample, channel) plane, which on 1x1 planes meant once per value.
fn affine<T: Element>(
    c: usize,
    invstd: &[f64],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
) -> (Vec<T>, Vec<T>) {
    (0..c)
        .map(|c| {
            let scale = T::from_f64(invstd[c] * weight.map_or(1.0, |w| w[c].to_f64()));
            (scale, bias.map_or(T::zero(), |b| b[c]))
        })
        .unzip()
}

fn to_t<T: Element>(v: Vec<f64>) -> Vec<T> {
    v.into_iter().map(T::from_f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use senet_spec::batchnorm as reference;
    use senet_spec::testing::{assert_close, rand_vec};

    fn check<T: Element>(tol: f64) {
        let mut rng = StdRng::seed_from_u64(21);
        let eps = 1e-5;
        for s in senet_spec::cases::batch_norm_cases() {
            let len = s.n * s.c * s.hw;
            // An offset mean and spread that is not 1, so mistakes in either show up.
            let x = rand_vec::<T>(&mut rng, len, 2.0, 5.0);
            let dy = rand_vec::<T>(&mut rng, len, -1.0, 1.0);
            let w = rand_vec::<T>(&mut rng, s.c, 0.5, 1.5);
            let b = rand_vec::<T>(&mut rng, s.c, -1.0, 1.0);
            let rmean = rand_vec::<T>(&mut rng, s.c, 2.0, 4.0);
            let rvar = rand_vec::<T>(&mut rng, s.c, 0.5, 2.0);
            let ctx = format!("{} {s:?}", T::NAME);
            for (wo, bo) in [(Some(&w[..]), Some(&b[..])), (None, None)] {
                let got = forward_train(s, &x, wo, bo, eps);
                let want = reference::batch_norm2d_forward_train(s, &x, wo, bo, eps);
                assert_close(&format!("train y {ctx}"), &got.y, &want.y, tol);
                assert_close(&format!("train mean {ctx}"), &got.mean, &want.mean, tol);
                assert_close(&format!("train var {ctx}"), &got.var, &want.var, tol);
                assert_close(
                    &format!("train invstd {ctx}"),
                    &got.invstd,
                    &want.invstd,
                    tol,
                );
                assert_close(
                    &format!("eval y {ctx}"),
                    &forward_eval(s, &x, wo, bo, &rmean, &rvar, eps),
                    &reference::batch_norm2d_forward_eval(s, &x, wo, bo, &rmean, &rvar, eps),
                    tol,
                );
                let (dx, dw, db) = backward_train(s, &x, &dy, wo, &want.mean, &want.invstd);
                let (rdx, rdw, rdb) = reference::batch_norm2d_backward_train(
                    s,
                    &x,
                    &dy,
                    wo,
                    &want.mean,
                    &want.invstd,
                );
                assert_close(&format!("train dx {ctx}"), &dx, &rdx, tol);
                assert_close(&format!("train dweight {ctx}"), &dw, &rdw, tol);
                assert_close(&format!("train dbias {ctx}"), &db, &rdb, tol);
                let invstd: Vec<T> = rvar
                    .iter()
                    .map(|&v| T::from_f64(1.0 / (v.to_f64() + eps).sqrt()))
                    .collect();
                let (dx, dw, db) = backward_eval(s, &x, &dy, wo, &rmean, &invstd);
                let (rdx, rdw, rdb) =
                    reference::batch_norm2d_backward_eval(s, &x, &dy, wo, &rmean, &invstd);
                assert_close(&format!("eval dx {ctx}"), &dx, &rdx, tol);
                assert_close(&format!("eval dweight {ctx}"), &dw, &rdw, tol);
                assert_close(&format!("eval dbias {ctx}"), &db, &rdb, tol);
            }
        }
    }

    #[test]
    fn matches_reference_f64() {
        check::<f64>(5e-11);
    }

    // Sums are f64 in both; what remains is f32 rounding of a few products per element, but the
    // backward subtracts nearly equal terms (dy - mean(dy) - ...), so allow 5e-5 of
    // `1 + |reference|`.
    #[test]
    fn matches_reference_f32() {
        check::<f32>(5e-5);
    }

    /// A large mean over a small spread: E[x²] - E[x]² would lose the variance entirely in f32.
    #[test]
    fn variance_survives_a_large_mean() {
        let s = BnShape {
            n: 4,
            c: 1,
            hw: 256,
        };
        let x: Vec<f32> = (0..1024).map(|i| 10_000.0 + (i % 2) as f32 * 0.5).collect();
        let out = forward_train(s, &x, None, None, 0.0);
        assert!((out.var[0] - 0.0625).abs() < 1e-6, "var {}", out.var[0]);
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let mut rng = StdRng::seed_from_u64(8);
        // Small planes in one task and in several, and large planes.
        for s in [
            BnShape { n: 9, c: 5, hw: 49 },
            BnShape {
                n: 6,
                c: 300,
                hw: 16,
            },
            BnShape {
                n: 4,
                c: 3,
                hw: 100,
            },
        ] {
            let x = rand_vec::<f32>(&mut rng, s.n * s.c * s.hw, -1.0, 2.0);
            let dy = rand_vec::<f32>(&mut rng, s.n * s.c * s.hw, -1.0, 1.0);
            let run = |threads: usize| {
                crate::on_threads(threads, || {
                    let out = forward_train(s, &x, None, None, 1e-5);
                    let (dx, dw, db) = backward_train(s, &x, &dy, None, &out.mean, &out.invstd);
                    [out.y, out.var, dx, dw, db]
                        .concat()
                        .into_iter()
                        .map(f32::to_bits)
                        .collect::<Vec<_>>()
                })
            };
            assert_eq!(run(1), run(2), "{s:?}");
            assert_eq!(run(1), run(3), "{s:?}");
        }
    }
}
