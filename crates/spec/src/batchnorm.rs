//! Batch normalization over NCHW arrays, statistics per channel: the shape, what a training
//! forward returns, and the textbook loops of both modes and their gradients.
use crate::{from_f64, Element};

/// `x` is `[n, c, hw]` flattened (hw = H*W).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BnShape {
    /// Batch size.
    pub n: usize,
    /// Channels: one mean and variance each.
    pub c: usize,
    /// Pixels per channel plane, `H * W` (1 for a `[n, c]` input).
    pub hw: usize,
}

impl BnShape {
    /// Elements of `x`, `n * c * hw`.
    pub fn numel(self) -> usize {
        self.n * self.c * self.hw
    }
}

/// What training-mode forward returns: output and the per-channel batch statistics.
pub struct BnTrainOut<T> {
    /// The normalized, scaled and shifted output, shaped like `x`.
    pub y: Vec<T>,
    /// Batch mean per channel.
    pub mean: Vec<T>,
    /// Biased batch variance (divides by n*hw), the one used to normalize.
    pub var: Vec<T>,
    /// `1 / sqrt(var + eps)` per channel, kept for the backward pass.
    pub invstd: Vec<T>,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::rand_vec;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    /// The reference training backward against central differences of the reference forward,
    /// through sum(y * r) for a random r, so every output's gradient matters.
    #[test]
    fn reference_backward_train_matches_finite_differences() {
        let mut rng = StdRng::seed_from_u64(2);
        let s = BnShape { n: 3, c: 2, hw: 4 };
        let len = s.n * s.c * s.hw;
        let x = rand_vec::<f64>(&mut rng, len, -2.0, 3.0);
        let r = rand_vec::<f64>(&mut rng, len, -1.0, 1.0);
        let w = rand_vec::<f64>(&mut rng, s.c, 0.5, 1.5);
        let b = rand_vec::<f64>(&mut rng, s.c, -1.0, 1.0);
        let eps = 1e-3;
        let loss = |x: &[f64], w: &[f64], b: &[f64]| -> f64 {
            let y = batch_norm2d_forward_train(s, x, Some(w), Some(b), eps).y;
            y.iter().zip(&r).map(|(a, b)| a * b).sum()
        };
        let out = batch_norm2d_forward_train(s, &x, Some(&w), Some(&b), eps);
        let (dx, dw, db) = batch_norm2d_backward_train(s, &x, &r, Some(&w), &out.mean, &out.invstd);
        let h = 1e-6;
        let numeric = |v: &[f64], i: usize, f: &dyn Fn(&[f64]) -> f64| {
            let (mut p, mut m) = (v.to_vec(), v.to_vec());
            p[i] += h;
            m[i] -= h;
            (f(&p) - f(&m)) / (2.0 * h)
        };
        for (i, &a) in dx.iter().enumerate() {
            let n = numeric(&x, i, &|x| loss(x, &w, &b));
            assert!((n - a).abs() < 1e-6, "dx[{i}]: numeric {n}, analytic {a}");
        }
        for c in 0..s.c {
            let n = numeric(&w, c, &|w| loss(&x, w, &b));
            assert!(
                (n - dw[c]).abs() < 1e-6,
                "dweight[{c}]: numeric {n}, analytic {}",
                dw[c]
            );
            let n = numeric(&b, c, &|b| loss(&x, &w, b));
            assert!(
                (n - db[c]).abs() < 1e-6,
                "dbias[{c}]: numeric {n}, analytic {}",
                db[c]
            );
        }
    }
}
