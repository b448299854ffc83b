//! Helpers shared by the unit tests of the kernels.
use crate::Element;
use rand::rngs::StdRng;
use rand::Rng;

/// `n` values drawn uniformly from `lo..hi` (as f64, then converted to `T`).
pub(crate) fn rand_vec<T: Element>(rng: &mut StdRng, n: usize, lo: f64, hi: f64) -> Vec<T> {
    (0..n)
        .map(|_| T::from_f64(rng.random_range(lo..hi)))
        .collect()
}

/// |a - b| <= tol * max(1, |b|) elementwise, computed in f64.
pub(crate) fn assert_close<T: Element>(what: &str, got: &[T], want: &[T], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        let (a, b) = (a.to_f64(), b.to_f64());
        assert!(
            (a - b).abs() <= tol * b.abs().max(1.0),
            "{what}[{i}]: got {a}, want {b}"
        );
    }
}
