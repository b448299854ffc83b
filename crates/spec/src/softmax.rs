//! Softmax, log-softmax and the cross-entropy loss with label smoothing, from their definitions.

/// Softmax (or log-softmax) along the middle axis of `[outer, len, inner]`, straight from
/// the definition `exp(x_i) / sum_j exp(x_j)` (fine for the small values tests use).
pub fn softmax(x: &[f64], outer: usize, len: usize, inner: usize, log: bool) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |a: usize| (o * len + a) * inner + i;
            let denom: f64 = (0..len).map(|a| x[at(a)].exp()).sum();
            for a in 0..len {
                let p = x[at(a)].exp() / denom;
                out[at(a)] = if log { p.ln() } else { p };
            }
        }
    }
    out
}

/// Mean over the batch of `-sum_c target_c * log softmax(logits)_c` with a smoothed one-hot target.
pub fn cross_entropy(
    logits: &[f64],
    batch: usize,
    classes: usize,
    labels: &[u32],
    eps: f64,
) -> f64 {
    let logp = softmax(logits, batch, classes, 1, true);
    let mut total = 0.0;
    for b in 0..batch {
        for c in 0..classes {
            let target = if c == labels[b] as usize {
                1.0 - eps + eps / classes as f64
            } else {
                eps / classes as f64
            };
            total -= target * logp[b * classes + c];
        }
    }
    total / batch as f64
}
