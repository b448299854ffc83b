//! Helpers for the kernel tests of every crate (feature `testing`): random inputs and the one
//! tolerance check they all use.
use crate::Element;
use rand::rngs::StdRng;
use rand::Rng;

/// `n` values drawn uniformly from `lo..hi` (as f64, then converted to `T`).
pub fn rand_vec<T: Element>(rng: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<T> {
    (0..n)
        .map(|_| T::from_f64(rng.random_range(lo..hi)))
        .collect()
}

/// How far a result may be from the expected one: `|got - want| <= abs + rel * |want|`.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    /// Allowed error near zero.
    pub abs: f64,
    /// Allowed error as a fraction of `|want|`.
    pub rel: f64,
}

/// A single number is the same bound relative to `|want|` and absolute near zero:
/// `tol * (1 + |want|)`.
impl From<f64> for Tol {
    fn from(tol: f64) -> Tol {
        Tol { abs: tol, rel: tol }
    }
}

impl Tol {
    /// How far `got` is from `want`, as a multiple of what this tolerance allows there:
    /// `|got - want| / (abs + rel * |want|)`. A NaN on either side is infinitely far.
    /// An exact match is 0 even under a zero tolerance.
    pub fn ratio(self, got: f64, want: f64) -> f64 {
        let diff = (got - want).abs();
        if diff.is_nan() {
            f64::INFINITY
        } else if diff == 0.0 {
            0.0
        } else {
            diff / (self.abs + self.rel * want.abs())
        }
    }
}

/// The largest [`Tol::ratio`] over two slices; infinite when their lengths differ.
pub fn worst_ratio<T: Element>(got: &[T], want: &[T], tol: impl Into<Tol>) -> f64 {
    let tol = tol.into();
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    got.iter()
        .zip(want)
        .map(|(&a, &b)| tol.ratio(a.to_f64(), b.to_f64()))
        .fold(0.0, f64::max)
}

/// Asserts `got` is within `tol` of `want` element by element (computed in f64); the message
/// names `what` and the first index that is not. A NaN never passes.
pub fn assert_close<T: Element>(what: &str, got: &[T], want: &[T], tol: impl Into<Tol>) {
    let tol = tol.into();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let (a, b) = (a.to_f64(), b.to_f64());
        assert!(
            tol.ratio(a, b) <= 1.0,
            "{what}[{i}]: got {a}, want {b} (tolerance {} + {} * |want|)",
            tol.abs,
            tol.rel
        );
    }
}
