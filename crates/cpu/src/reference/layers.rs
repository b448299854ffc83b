//! Naive loops for the layer kernels: conv2d, pooling, batch norm and grouped linear.
//!
//! Each function is the textbook definition written as nested loops over every index, with no
//! packing, blocking or threading, so that it can be checked by eye. They take the same geometry
//! structs as the fast kernels and return the same layouts. Everything is computed in f64 and
//! rounded to `T` at the end, so for f32 inputs these are also the most accurate answers we have.
//! The backward passes are derived on their own (scatter loops over output positions), never by
//! calling a fast kernel's building blocks, because they are the ground truth.
use crate::batchnorm::{BnShape, BnTrainOut};
use crate::conv2d::Conv2dGeometry;
use crate::grouped_linear::GroupedLinearShape;
use crate::pool::Pool2dGeometry;
use crate::Element;

fn to_f64<T: Element>(v: &[T]) -> Vec<f64> {
    v.iter().map(|&a| a.to_f64()).collect()
}

fn from_f64<T: Element>(v: Vec<f64>) -> Vec<T> {
    v.into_iter().map(T::from_f64).collect()
}

/// Input coordinate seen by output position `o` through kernel tap `k`, or `None` in the padding.
fn tap(
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    len: usize,
) -> Option<usize> {
    let i = (o * stride + k * dilation) as isize - pad as isize;
    (i >= 0 && (i as usize) < len).then_some(i as usize)
}

/// Calls `f(x_index, w_index, y_index)` for every (input pixel, weight, output pixel) triple
/// that a convolution multiplies together; all four conv loops below are this one walk.
fn conv_walk(g: &Conv2dGeometry, mut f: impl FnMut(usize, usize, usize)) {
    let (ho, wo) = (g.out_h(), g.out_w());
    let cin_g = g.in_channels / g.groups;
    let cout_g = g.out_channels / g.groups;
    for n in 0..g.batch {
        for co in 0..g.out_channels {
            let grp = co / cout_g;
            for oh in 0..ho {
                for ow in 0..wo {
                    let yi = ((n * g.out_channels + co) * ho + oh) * wo + ow;
                    for cl in 0..cin_g {
                        let ci = grp * cin_g + cl;
                        for kh in 0..g.kernel.0 {
                            let Some(ih) =
                                tap(oh, kh, g.stride.0, g.padding.0, g.dilation.0, g.in_h)
                            else {
                                continue;
                            };
                            for kw in 0..g.kernel.1 {
                                let Some(iw) =
                                    tap(ow, kw, g.stride.1, g.padding.1, g.dilation.1, g.in_w)
                                else {
                                    continue;
                                };
                                let xi = ((n * g.in_channels + ci) * g.in_h + ih) * g.in_w + iw;
                                let wi = ((co * cin_g + cl) * g.kernel.0 + kh) * g.kernel.1 + kw;
                                f(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// y[n, co, oh, ow] = bias[co] + sum over (ci in co's group, kh, kw) of x * w.
pub fn conv2d_forward<T: Element>(
    g: &Conv2dGeometry,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let (x, w) = (to_f64(x), to_f64(w));
    let plane = g.out_h() * g.out_w();
    let mut y = vec![0.0; g.batch * g.out_channels * plane];
    if let Some(b) = bias {
        for (i, v) in y.iter_mut().enumerate() {
            *v = b[(i / plane) % g.out_channels].to_f64();
        }
    }
    conv_walk(g, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
    from_f64(y)
}

/// dx: each output gradient scattered back through every weight to the pixel it read.
pub fn conv2d_backward_input<T: Element>(g: &Conv2dGeometry, w: &[T], dy: &[T]) -> Vec<T> {
    let (w, dy) = (to_f64(w), to_f64(dy));
    let mut dx = vec![0.0; g.batch * g.in_channels * g.in_h * g.in_w];
    conv_walk(g, |xi, wi, yi| dx[xi] += w[wi] * dy[yi]);
    from_f64(dx)
}

/// dw: every (pixel, output gradient) pair a weight multiplied, summed over the batch.
pub fn conv2d_backward_weight<T: Element>(g: &Conv2dGeometry, x: &[T], dy: &[T]) -> Vec<T> {
    let (x, dy) = (to_f64(x), to_f64(dy));
    let cin_g = g.in_channels / g.groups;
    let mut dw = vec![0.0; g.out_channels * cin_g * g.kernel.0 * g.kernel.1];
    conv_walk(g, |xi, wi, yi| dw[wi] += x[xi] * dy[yi]);
    from_f64(dw)
}

/// dbias[co] = sum of dy over batch and positions.
pub fn conv2d_backward_bias<T: Element>(g: &Conv2dGeometry, dy: &[T]) -> Vec<T> {
    let plane = g.out_h() * g.out_w();
    let mut db = vec![0.0; g.out_channels];
    for (i, &v) in dy.iter().enumerate() {
        db[(i / plane) % g.out_channels] += v.to_f64();
    }
    from_f64(db)
}

/// Calls `f(plane, out_index, in_index_within_plane)` for each valid (non-padding) input pixel of
/// each pooling window, in row-major window order.
fn pool_walk(g: &Pool2dGeometry, mut f: impl FnMut(usize, usize, usize)) {
    let (ho, wo) = (g.out_h(), g.out_w());
    for p in 0..g.batch * g.channels {
        for oh in 0..ho {
            for ow in 0..wo {
                let yi = (p * ho + oh) * wo + ow;
                for kh in 0..g.kernel.0 {
                    let Some(ih) = tap(oh, kh, g.stride.0, g.padding.0, 1, g.in_h) else {
                        continue;
                    };
                    for kw in 0..g.kernel.1 {
                        let Some(iw) = tap(ow, kw, g.stride.1, g.padding.1, 1, g.in_w) else {
                            continue;
                        };
                        f(p, yi, ih * g.in_w + iw);
                    }
                }
            }
        }
    }
}

/// Max over each window (padding never wins); argmax is `h * in_w + w` in the input plane, the
/// first maximum in row-major order, and a NaN counts as larger than everything.
pub fn max_pool2d_forward<T: Element>(g: &Pool2dGeometry, x: &[T]) -> (Vec<T>, Vec<u32>) {
    let len = g.batch * g.channels * g.out_h() * g.out_w();
    let plane = g.in_h * g.in_w;
    let mut y = vec![f64::NEG_INFINITY; len];
    let mut arg: Vec<Option<u32>> = vec![None; len];
    pool_walk(g, |p, yi, i| {
        let v = x[p * plane + i].to_f64();
        if arg[yi].is_none() || v > y[yi] || (v.is_nan() && !y[yi].is_nan()) {
            y[yi] = v;
            arg[yi] = Some(i as u32);
        }
    });
    let arg = arg
        .into_iter()
        .map(|a| a.expect("every window holds an input pixel"))
        .collect();
    (from_f64(y), arg)
}

/// dx[argmax] += dy, over every window.
pub fn max_pool2d_backward<T: Element>(g: &Pool2dGeometry, argmax: &[u32], dy: &[T]) -> Vec<T> {
    let plane = g.in_h * g.in_w;
    let out_plane = g.out_h() * g.out_w();
    let mut dx = vec![0.0; g.batch * g.channels * plane];
    for (yi, (&a, &d)) in argmax.iter().zip(dy).enumerate() {
        dx[(yi / out_plane) * plane + a as usize] += d.to_f64();
    }
    from_f64(dx)
}

/// Mean over each window, padded zeros included (divides by kernel area always).
pub fn avg_pool2d_forward<T: Element>(g: &Pool2dGeometry, x: &[T]) -> Vec<T> {
    let plane = g.in_h * g.in_w;
    let area = (g.kernel.0 * g.kernel.1) as f64;
    let mut y = vec![0.0; g.batch * g.channels * g.out_h() * g.out_w()];
    pool_walk(g, |p, yi, i| y[yi] += x[p * plane + i].to_f64());
    from_f64(y.into_iter().map(|v| v / area).collect())
}

/// Each window's gradient, divided by the kernel area, added to every real pixel of the window.
pub fn avg_pool2d_backward<T: Element>(g: &Pool2dGeometry, dy: &[T]) -> Vec<T> {
    let plane = g.in_h * g.in_w;
    let area = (g.kernel.0 * g.kernel.1) as f64;
    let mut dx = vec![0.0; g.batch * g.channels * plane];
    pool_walk(g, |p, yi, i| dx[p * plane + i] += dy[yi].to_f64() / area);
    from_f64(dx)
}

/// Index of element (n, c, i) of an `[n, c, hw]` array.
fn bn_at(s: BnShape, n: usize, c: usize, i: usize) -> usize {
    (n * s.c + c) * s.hw + i
}

/// Per-channel values of an optional parameter (absent means `default` everywhere).
fn param<T: Element>(p: Option<&[T]>, c: usize, default: f64) -> f64 {
    p.map_or(default, |p| p[c].to_f64())
}

/// Batch statistics per channel (mean, then the biased variance around it), and the normalized
/// output y = (x - mean) / sqrt(var + eps) * weight + bias.
pub fn batch_norm2d_forward_train<T: Element>(
    s: BnShape,
    x: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    eps: f64,
) -> BnTrainOut<T> {
    let m = (s.n * s.hw) as f64;
    let (mut mean, mut var, mut invstd) = (vec![], vec![], vec![]);
    let mut y = vec![0.0; x.len()];
    for c in 0..s.c {
        let mut sum = 0.0;
        for n in 0..s.n {
            for i in 0..s.hw {
                sum += x[bn_at(s, n, c, i)].to_f64();
            }
        }
        let mu = sum / m;
        let mut sq = 0.0;
        for n in 0..s.n {
            for i in 0..s.hw {
                sq += (x[bn_at(s, n, c, i)].to_f64() - mu).powi(2);
            }
        }
        let v = sq / m;
        let is = 1.0 / (v + eps).sqrt();
        for n in 0..s.n {
            for i in 0..s.hw {
                let j = bn_at(s, n, c, i);
                y[j] = (x[j].to_f64() - mu) * is * param(weight, c, 1.0) + param(bias, c, 0.0);
            }
        }
        mean.push(mu);
        var.push(v);
        invstd.push(is);
    }
    BnTrainOut {
        y: from_f64(y),
        mean: from_f64(mean),
        var: from_f64(var),
        invstd: from_f64(invstd),
    }
}

/// y = (x - running_mean) / sqrt(running_var + eps) * weight + bias.
pub fn batch_norm2d_forward_eval<T: Element>(
    s: BnShape,
    x: &[T],
    weight: Option<&[T]>,
    bias: Option<&[T]>,
    mean: &[T],
    var: &[T],
    eps: f64,
) -> Vec<T> {
    let mut y = vec![0.0; x.len()];
    for n in 0..s.n {
        for c in 0..s.c {
            let is = 1.0 / (var[c].to_f64() + eps).sqrt();
            for i in 0..s.hw {
                let j = bn_at(s, n, c, i);
                y[j] = (x[j].to_f64() - mean[c].to_f64()) * is * param(weight, c, 1.0)
                    + param(bias, c, 0.0);
            }
        }
    }
    from_f64(y)
}

/// Training-mode gradients, written in the "mean" form of the chain rule through the batch
/// statistics: dx = weight * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)).
/// Returns (dx, dweight, dbias).
pub fn batch_norm2d_backward_train<T: Element>(
    s: BnShape,
    x: &[T],
    dy: &[T],
    weight: Option<&[T]>,
    mean: &[T],
    invstd: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let m = (s.n * s.hw) as f64;
    let mut dx = vec![0.0; x.len()];
    let (mut dw, mut db) = (vec![0.0; s.c], vec![0.0; s.c]);
    for c in 0..s.c {
        let (mu, is) = (mean[c].to_f64(), invstd[c].to_f64());
        let xhat = |j: usize| (x[j].to_f64() - mu) * is;
        for n in 0..s.n {
            for i in 0..s.hw {
                let j = bn_at(s, n, c, i);
                db[c] += dy[j].to_f64();
                dw[c] += dy[j].to_f64() * xhat(j);
            }
        }
        let (mean_dy, mean_dy_xhat) = (db[c] / m, dw[c] / m);
        for n in 0..s.n {
            for i in 0..s.hw {
                let j = bn_at(s, n, c, i);
                dx[j] = param(weight, c, 1.0)
                    * is
                    * (dy[j].to_f64() - mean_dy - xhat(j) * mean_dy_xhat);
            }
        }
    }
    (from_f64(dx), from_f64(dw), from_f64(db))
}

/// Eval-mode gradients (the statistics are constants): dx = dy * weight * invstd.
/// Returns (dx, dweight, dbias).
pub fn batch_norm2d_backward_eval<T: Element>(
    s: BnShape,
    x: &[T],
    dy: &[T],
    weight: Option<&[T]>,
    mean: &[T],
    invstd: &[T],
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut dx = vec![0.0; x.len()];
    let (mut dw, mut db) = (vec![0.0; s.c], vec![0.0; s.c]);
    for n in 0..s.n {
        for c in 0..s.c {
            let (mu, is) = (mean[c].to_f64(), invstd[c].to_f64());
            for i in 0..s.hw {
                let j = bn_at(s, n, c, i);
                let d = dy[j].to_f64();
                dx[j] = d * param(weight, c, 1.0) * is;
                dw[c] += d * (x[j].to_f64() - mu) * is;
                db[c] += d;
            }
        }
    }
    (from_f64(dx), from_f64(dw), from_f64(db))
}

/// Index into x of feature `i` of group `grp` for batch row `b`.
fn gl_x(s: GroupedLinearShape, b: usize, grp: usize, i: usize) -> usize {
    if s.shared_input {
        b * s.in_features + i
    } else {
        (b * s.groups + grp) * s.in_features + i
    }
}

/// y[b, g*out + o] = b[g, o] + sum_i x_g[b, i] * w[g, o, i].
pub fn grouped_linear_forward<T: Element>(
    s: GroupedLinearShape,
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
) -> Vec<T> {
    let (k, fi, fo) = (s.groups, s.in_features, s.out_features);
    let mut y = vec![0.0; s.batch * k * fo];
    for b in 0..s.batch {
        for grp in 0..k {
            for o in 0..fo {
                let mut acc = bias.map_or(0.0, |bs| bs[grp * fo + o].to_f64());
                for i in 0..fi {
                    acc += x[gl_x(s, b, grp, i)].to_f64() * w[(grp * fo + o) * fi + i].to_f64();
                }
                y[(b * k + grp) * fo + o] = acc;
            }
        }
    }
    from_f64(y)
}

/// Returns (dx, dw, db); dx sums over groups when the input is shared, db is empty when
/// `with_bias` is false.
pub fn grouped_linear_backward<T: Element>(
    s: GroupedLinearShape,
    x: &[T],
    w: &[T],
    dy: &[T],
    with_bias: bool,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (k, fi, fo) = (s.groups, s.in_features, s.out_features);
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; k * fo * fi];
    let mut db = vec![0.0; if with_bias { k * fo } else { 0 }];
    for b in 0..s.batch {
        for grp in 0..k {
            for o in 0..fo {
                let d = dy[(b * k + grp) * fo + o].to_f64();
                if with_bias {
                    db[grp * fo + o] += d;
                }
                for i in 0..fi {
                    let (xi, wi) = (gl_x(s, b, grp, i), (grp * fo + o) * fi + i);
                    dx[xi] += d * w[wi].to_f64();
                    dw[wi] += d * x[xi].to_f64();
                }
            }
        }
    }
    (from_f64(dx), from_f64(dw), from_f64(db))
}
