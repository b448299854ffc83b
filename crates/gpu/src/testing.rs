//! For tests only: the GPU to run them on, one test at a time, and (for this crate's unit
//! tests, as rand is a dev-dependency) random inputs and tolerance checks shared by the kernels.
use crate::{DeviceRequest, Gpu};
use std::sync::{Arc, Mutex, MutexGuard};

/// The best adapter (lavapipe in CI) and a lock that serializes GPU tests within a process:
/// lavapipe is slow, and wgpu 30.0.2 races when several threads poll one device. Returns
/// `None` (after printing why) when there is no adapter — except under `CI=true`, where a
/// missing adapter is a failure, never a silent pass.
pub fn gpu_for_tests() -> Option<(MutexGuard<'static, ()>, Arc<Gpu>)> {
    static LOCK: Mutex<()> = Mutex::new(());
    let guard = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    match Gpu::open(&DeviceRequest::Gpu) {
        Ok(Some(gpu)) => Some((guard, gpu)),
        Ok(None) => unreachable!("DeviceRequest::Gpu either finds an adapter or errors"),
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but no GPU adapter is available: {e}");
            }
            eprintln!("SKIPPED (no GPU adapter): {e}");
            None
        }
    }
}

/// `n` f32 values drawn uniformly from `lo..hi`. Test-only: rand is a dev-dependency.
#[cfg(test)]
pub(crate) fn rand_vec(rng: &mut rand::rngs::StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    use rand::Rng;
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Tolerance for [`assert_close`] on results of the GEMM kernels (matmul, conv2d,
/// grouped_linear): |gpu - cpu| <= 1e-4 (1 + |cpu|). The GPU sums each dot product in a
/// different order (tile by tile, with fma) than matrixmultiply, so f32 rounding differs by
/// ~1e-6 per ~100 terms; 1e-4 leaves a wide margin while still catching any indexing error.
#[cfg(test)]
pub(crate) const GEMM_TOL: f32 = 1e-4;

/// `|got - want| <= tol * (1 + |want|)` element by element, in f32: relative error, absolute
/// near zero.
#[cfg(test)]
pub(crate) fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: gpu {g}, cpu {w}"
        );
    }
}

/// `|got - want| <= abs + rel * |want|` element by element, in f32: separate absolute and
/// relative bounds (unlike [`assert_close`], where one tolerance serves as both).
#[cfg(test)]
pub(crate) fn assert_close_abs_rel(what: &str, got: &[f32], want: &[f32], abs: f32, rel: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= abs + rel * w.abs(),
            "{what}[{i}]: gpu {g}, cpu {w}"
        );
    }
}
