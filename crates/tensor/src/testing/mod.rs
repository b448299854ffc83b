//! Gradient checking as a public API (feature `testing`): [`gradcheck`] compares the analytic
//! gradient of any function of tensors — built-in ops, your own [`crate::CustomOp`]s, whole
//! layers — with central differences computed in f64, and [`strategies`] generates the awkward
//! cases (odd sizes, batch 1, stride 2, padding, dilation, groups, broadcasting, non-contiguous
//! views) for proptest. [`selftest`] runs every built-in op through both checks (the
//! `senet selftest` command).
//!
//! ```
//! use senet_tensor::testing::{gradcheck, random_tensor, GradcheckOptions};
//! let x = random_tensor(&[3, 4], 7);
//! let report = gradcheck(|t| t[0].tanh(), &[x], GradcheckOptions::default()).unwrap();
//! assert!(report.passed(), "{report}");
//! ```
mod op_cases;
pub mod selftest;
pub mod strategies;

use crate::{no_grad, DType, Result, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
pub use senet_spec::testing::{assert_close, Tol};
use std::fmt;

/// Step and tolerances of [`gradcheck`]. An element passes when
/// `|analytic - numeric| <= atol + rtol * |numeric|`.
#[derive(Clone, Copy, Debug)]
pub struct GradcheckOptions {
    /// Central-difference step (in f64).
    pub eps: f64,
    /// Allowed absolute error, for gradients near zero.
    pub atol: f64,
    /// Allowed error relative to the numeric gradient.
    pub rtol: f64,
    /// Seeds the random tensors that place the function mid-graph.
    pub seed: u64,
}

impl Default for GradcheckOptions {
    /// With eps = 1e-6 in f64 the central difference is accurate to about 1e-9 for smooth
    /// functions of O(1) values, so 1e-6 absolute / 1e-5 relative leaves a wide margin while a
    /// wrong rule (errors of order 1e-1) fails by five orders of magnitude.
    fn default() -> Self {
        GradcheckOptions {
            eps: 1e-6,
            atol: 1e-6,
            rtol: 1e-5,
            seed: 0,
        }
    }
}

/// The element whose gradients disagree most.
#[derive(Clone, Debug)]
pub struct Mismatch {
    /// Which input (position in the slice given to `gradcheck`).
    pub input: usize,
    /// Multi-index of the element inside that input.
    pub index: Vec<usize>,
    /// The gradient `backward` computed.
    pub analytic: f64,
    /// The central-difference estimate.
    pub numeric: f64,
}

/// What [`gradcheck`] found: how far the analytic gradients were from the numeric ones.
#[derive(Clone, Debug)]
pub struct GradcheckReport {
    /// Number of input elements compared.
    pub checked: usize,
    /// Largest `|analytic - numeric|`.
    pub max_abs_error: f64,
    /// Largest error divided by its allowance `atol + rtol * |numeric|`; above 1 fails.
    pub max_ratio: f64,
    /// Where `max_ratio` was reached.
    pub worst: Option<Mismatch>,
}

impl GradcheckReport {
    /// Whether every element was within tolerance (`max_ratio <= 1`).
    pub fn passed(&self) -> bool {
        self.max_ratio <= 1.0
    }
}

impl fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} elements, max abs error {:.3e}, worst/allowed {:.3}",
            self.checked, self.max_abs_error, self.max_ratio
        )?;
        if let Some(m) = &self.worst {
            write!(
                f,
                " at input {} index {:?} (analytic {:.9e}, numeric {:.9e})",
                m.input, m.index, m.analytic, m.numeric
            )?;
        }
        Ok(())
    }
}

/// Asserts two tensors have one shape and values within `tol` (read back from any device).
pub fn assert_tensors_close(what: &str, got: &Tensor, want: &Tensor, tol: impl Into<Tol>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    let read = |t: &Tensor| t.to_vec::<f64>().expect("reading a tensor back");
    assert_close(what, &read(got), &read(want), tol);
}

/// An f64 tensor of standard-normal values, repeatable from `seed`.
pub fn random_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    Tensor::from_vec(crate::tensor::normal_samples(n, &mut rng), shape)
        .expect("the length matches the shape")
}

/// An f64 tensor of values uniform in `[low, high)`, repeatable from `seed`.
pub fn uniform_tensor(shape: &[usize], low: f64, high: f64, seed: u64) -> Tensor {
    let mut rng = StdRng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|_| low + (high - low) * rng.random::<f64>())
        .collect();
    Tensor::from_vec::<f64>(v, shape).expect("the length matches the shape")
}

fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        idx[d] = flat % shape[d];
        flat /= shape[d];
    }
    idx
}

/// Checks the gradient of `f` at `inputs` (converted to f64) against central differences.
///
/// `f` is placed mid-graph: the scalar differentiated is `sum(f(x) * R + S)` with random `R`
/// and `S`, so a backward rule that ignores its incoming gradient fails. Every input element
/// is perturbed, so keep inputs small (a few hundred elements).
pub fn gradcheck<F>(f: F, inputs: &[Tensor], opts: GradcheckOptions) -> Result<GradcheckReport>
where
    F: Fn(&[Tensor]) -> Result<Tensor>,
{
    let xs: Vec<Tensor> = inputs
        .iter()
        .map(|t| {
            t.to_dtype(DType::F64)
                .and_then(|t| t.contiguous())
                .map(|t| t.detach().requires_grad())
        })
        .collect::<Result<_>>()?;
    let y = f(&xs)?;
    let r = random_tensor(y.shape(), opts.seed.wrapping_add(1)).to_dtype(y.dtype())?;
    let s = random_tensor(y.shape(), opts.seed.wrapping_add(2)).to_dtype(y.dtype())?;
    let objective = |y: &Tensor| y.mul(&r)?.add(&s)?.sum_all();
    let grads = objective(&y)?.backward()?;

    let mut report = GradcheckReport {
        checked: 0,
        max_abs_error: 0.0,
        max_ratio: 0.0,
        worst: None,
    };
    for (i, x) in xs.iter().enumerate() {
        let analytic = match grads.get(x) {
            Some(g) => g.to_vec::<f64>()?,
            None => vec![0.0; x.numel()],
        };
        let base = x.to_vec::<f64>()?;
        let at = |values: Vec<f64>| -> Result<f64> {
            let mut args = xs.clone();
            args[i] = Tensor::from_vec(values, x.shape())?;
            no_grad(|| objective(&f(&args)?)?.item())
        };
        for j in 0..base.len() {
            let mut plus = base.clone();
            plus[j] += opts.eps;
            let mut minus = base.clone();
            minus[j] -= opts.eps;
            let numeric = (at(plus)? - at(minus)?) / (2.0 * opts.eps);
            let err = (analytic[j] - numeric).abs();
            // NaN compares false everywhere: count it as a failure explicitly.
            let ratio = if err.is_nan() {
                f64::INFINITY
            } else {
                err / (opts.atol + opts.rtol * numeric.abs())
            };
            report.checked += 1;
            report.max_abs_error = report.max_abs_error.max(err);
            if ratio > report.max_ratio || report.worst.is_none() {
                report.max_ratio = ratio.max(report.max_ratio);
                report.worst = Some(Mismatch {
                    input: i,
                    index: unravel(j, x.shape()),
                    analytic: analytic[j],
                    numeric,
                });
            }
        }
    }
    Ok(report)
}
