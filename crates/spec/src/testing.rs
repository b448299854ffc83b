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
    pub abs: f64,
    pub rel: f64,
}

/// A single number is the same bound relative to `|want|` and absolute near zero:
/// `tol * (1 + |want|)`.
impl From<f64> for Tol {
    fn from(tol: f64) -> Tol {
        Tol { abs: tol, rel: tol }
    }
}

/// Asserts `got` is within `tol` of `want` element by element (computed in f64); the message
/// names `what` and the first index that is not.
pub fn assert_close<T: Element>(what: &str, got: &[T], want: &[T], tol: impl Into<Tol>) {
    let tol = tol.into();
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let (a, b) = (a.to_f64(), b.to_f64());
        assert!(
            (a - b).abs() <= tol.abs + tol.rel * b.abs() || (a.is_nan() && b.is_nan()),
            "{what}[{i}]: got {a}, want {b} (tolerance {} + {} * |want|)",
            tol.abs,
            tol.rel
        );
    }
}
