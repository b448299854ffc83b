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

/// The GEMM kernels to test on `gpu`: the tiled one (`false`) always, and the subgroup one
/// (`true`) where the adapter runs it. Under `CI=true` the subgroup kernel must be testable
/// (lavapipe offers 8-wide subgroups), so it is never skipped silently.
#[cfg(test)]
pub(crate) fn gemm_kernels(gpu: &Gpu) -> Vec<bool> {
    if gpu.subgroup_size() == Some(crate::gemm_subgroup::LANES as u32) {
        return vec![false, true];
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "CI=true but {} has no 8-wide subgroups: the subgroup kernels would go untested",
            gpu.summary
        );
    }
    eprintln!(
        "SKIPPED the subgroup kernels: {} has no 8-wide subgroups",
        gpu.summary
    );
    vec![false]
}

/// Runs `f` with the plain kernels and then with the tuned ones (8-thread reductions on a CPU
/// adapter, the subgroup GEMM), passing which; the device's setting is restored afterwards,
/// even when `f` panics.
#[cfg(test)]
pub(crate) fn with_each_kernel_choice(gpu: &Gpu, mut f: impl FnMut(bool)) {
    struct Restore<'a>(&'a Gpu, bool);
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            self.0.set_tuned_kernels(self.1);
        }
    }
    let _restore = Restore(gpu, gpu.tuned_kernels());
    for tuned in [false, true] {
        gpu.set_tuned_kernels(tuned);
        f(tuned);
    }
}
