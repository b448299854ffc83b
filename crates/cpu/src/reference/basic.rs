//! Naive elementwise, reduction, matmul, softmax and cross-entropy loops, in f64.

/// `c[b,i,j] = sum_k a[b,i,k] * b[b,k,j]`, all contiguous.
pub fn matmul(a: &[f64], b: &[f64], batch: usize, m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; batch * m * n];
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    s += a[bi * m * k + i * k + p] * b[bi * k * n + p * n + j];
                }
                c[bi * m * n + i * n + j] = s;
            }
        }
    }
    c
}

/// Sum (or max) over the middle axis of `[outer, reduced, inner]`.
pub fn reduce(x: &[f64], outer: usize, reduced: usize, inner: usize, max: bool) -> Vec<f64> {
    let mut out = Vec::with_capacity(outer * inner);
    for o in 0..outer {
        for i in 0..inner {
            let vals = (0..reduced).map(|r| x[(o * reduced + r) * inner + i]);
            out.push(if max {
                vals.fold(f64::NEG_INFINITY, f64::max)
            } else {
                vals.sum()
            });
        }
    }
    out
}

/// Softmax (or log-softmax) along the middle axis of `[outer, axis, inner]`, straight from
/// the definition `exp(x_i) / sum_j exp(x_j)` (fine for the small values tests use).
pub fn softmax(x: &[f64], outer: usize, axis: usize, inner: usize, log: bool) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for o in 0..outer {
        for i in 0..inner {
            let at = |a: usize| (o * axis + a) * inner + i;
            let denom: f64 = (0..axis).map(|a| x[at(a)].exp()).sum();
            for a in 0..axis {
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

/// Row-major strides of `shape`.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// `f(a, b)` with numpy broadcasting, computing each output's input positions from scratch.
pub fn broadcast_binary(
    a: &[f64],
    a_shape: &[usize],
    b: &[f64],
    b_shape: &[usize],
    f: impl Fn(f64, f64) -> f64,
) -> (Vec<f64>, Vec<usize>) {
    let rank = a_shape.len().max(b_shape.len());
    let pad = |s: &[usize]| -> Vec<usize> {
        std::iter::repeat_n(1, rank - s.len())
            .chain(s.iter().copied())
            .collect()
    };
    let (ap, bp) = (pad(a_shape), pad(b_shape));
    let out_shape: Vec<usize> = ap.iter().zip(&bp).map(|(&x, &y)| x.max(y)).collect();
    let (sa, sb, so) = (strides(&ap), strides(&bp), strides(&out_shape));
    let n: usize = out_shape.iter().product();
    let mut out = Vec::with_capacity(n);
    for flat in 0..n {
        let (mut ia, mut ib) = (0, 0);
        for d in 0..rank {
            let i = (flat / so[d]) % out_shape[d];
            ia += if ap[d] == 1 { 0 } else { i * sa[d] };
            ib += if bp[d] == 1 { 0 } else { i * sb[d] };
        }
        out.push(f(a[ia], b[ib]));
    }
    (out, out_shape)
}

/// Moves the axes of a contiguous array: output axis `i` is input axis `axes[i]`.
pub fn permute(x: &[f64], shape: &[usize], axes: &[usize]) -> Vec<f64> {
    let out_shape: Vec<usize> = axes.iter().map(|&a| shape[a]).collect();
    let (si, so) = (strides(shape), strides(&out_shape));
    (0..x.len())
        .map(|flat| {
            let src: usize = (0..axes.len())
                .map(|d| ((flat / so[d]) % out_shape[d]) * si[axes[d]])
                .sum();
            x[src]
        })
        .collect()
}
