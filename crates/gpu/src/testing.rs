//! For tests only: the GPU to run them on, one test at a time.
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

/// Tolerance for `senet_spec::testing::assert_close` on results of the GEMM kernels (matmul,
/// conv2d, grouped_linear): |gpu - cpu| <= 1e-4 (1 + |cpu|). The GPU sums each dot product in a
/// different order (tile by tile, with fma) than matrixmultiply, so f32 rounding differs by
/// ~1e-6 per ~100 terms; 1e-4 leaves a wide margin while still catching any indexing error.
#[cfg(test)]
pub(crate) const GEMM_TOL: f64 = 1e-4;
