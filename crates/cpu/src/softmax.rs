//! Softmax, log-softmax and cross-entropy. The input is viewed as `[outer, axis, inner]` and
//! normalized along the middle axis, subtracting the maximum first so `exp` cannot overflow.
use rayon::prelude::*;
use senet_spec::Element;

/// Softmax (or log-softmax when `log`) along the middle axis of `[outer, axis, inner]`.
pub fn softmax<T: Element>(x: &[T], outer: usize, axis: usize, inner: usize, log: bool) -> Vec<T> {
    let mut out = vec![T::zero(); x.len()];
    let block = axis * inner;
    if block == 0 {
        return out;
    }
    out.par_chunks_mut(block)
        .zip(x.par_chunks(block))
        .for_each(|(o, xb)| {
            for j in 0..inner {
                let max = (0..axis)
                    .map(|a| xb[a * inner + j])
                    .fold(T::neg_infinity(), T::max);
                let sum: T = (0..axis).map(|a| (xb[a * inner + j] - max).exp()).sum();
                let log_sum = sum.ln();
                for a in 0..axis {
                    let z = xb[a * inner + j] - max;
                    o[a * inner + j] = if log { z - log_sum } else { z.exp() / sum };
                }
            }
        });
    debug_assert_eq!(out.len(), outer * block);
    out
}

/// Gradient of softmax/log-softmax given its output `y` and the incoming gradient `dy`:
/// softmax: `dx = y * (dy - sum(dy * y))`; log-softmax: `dx = dy - exp(y) * sum(dy)`.
pub fn softmax_backward<T: Element>(
    y: &[T],
    dy: &[T],
    axis: usize,
    inner: usize,
    log: bool,
) -> Vec<T> {
    let mut dx = vec![T::zero(); y.len()];
    let block = axis * inner;
    if block == 0 {
        return dx;
    }
    dx.par_chunks_mut(block)
        .zip(y.par_chunks(block).zip(dy.par_chunks(block)))
        .for_each(|(d, (yb, gb))| {
            for j in 0..inner {
                let idx = |a: usize| a * inner + j;
                if log {
                    let s: T = (0..axis).map(|a| gb[idx(a)]).sum();
                    for a in 0..axis {
                        d[idx(a)] = gb[idx(a)] - yb[idx(a)].exp() * s;
                    }
                } else {
                    let s: T = (0..axis).map(|a| gb[idx(a)] * yb[idx(a)]).sum();
                    for a in 0..axis {
                        d[idx(a)] = yb[idx(a)] * (gb[idx(a)] - s);
                    }
                }
            }
        });
    dx
}

/// Mean cross-entropy of `logits [batch, classes]` against integer `labels`, with label
/// smoothing `eps` (the target puts `1 - eps + eps/classes` on the label and `eps/classes`
/// elsewhere, as PyTorch does). Returns the loss and the softmax probabilities, which the
/// backward pass needs. Labels must be `< classes` (the caller checks).
pub fn cross_entropy<T: Element>(
    logits: &[T],
    batch: usize,
    classes: usize,
    labels: &[u32],
    eps: f64,
) -> (T, Vec<T>) {
    let logp = softmax(logits, batch, classes, 1, true);
    let eps_t = T::from_f64(eps);
    let c = T::from_f64(classes as f64);
    let mut total = T::zero();
    for (row, &label) in logp.chunks_exact(classes).zip(labels) {
        let nll = -row[label as usize];
        let smooth = -row.iter().copied().sum::<T>() / c;
        total += (T::one() - eps_t) * nll + eps_t * smooth;
    }
    let probs = logp.into_iter().map(T::exp).collect();
    (total / T::from_f64(batch as f64), probs)
}

/// Gradient of the mean cross-entropy w.r.t. the logits, scaled by the incoming gradient `g`:
/// `(probs - target) * g / batch`.
pub fn cross_entropy_backward<T: Element>(
    probs: &[T],
    batch: usize,
    classes: usize,
    labels: &[u32],
    eps: f64,
    g: T,
) -> Vec<T> {
    let scale = g / T::from_f64(batch as f64);
    let off = T::from_f64(eps / classes as f64);
    let on = T::from_f64(1.0 - eps) + off;
    let mut dx = Vec::with_capacity(probs.len());
    for (row, &label) in probs.chunks_exact(classes).zip(labels) {
        for (j, &p) in row.iter().enumerate() {
            let target = if j == label as usize { on } else { off };
            dx.push((p - target) * scale);
        }
    }
    dx
}
