//! Where a step's time goes: per-kernel timing for `senet bench --profile`.
//!
//! When [`enable`]d, every kernel run through `kernel.rs` is timed and added to a table keyed by
//! the phase it ran in (forward, backward, optimizer, data) and its label (a kernel names its
//! geometry, say `conv2d 3x3/1 64->64 8x8`, and counts its FLOPs where they are defined). On a
//! GPU each timed kernel is waited for, so the table is the same on either device. Disabled, the
//! cost is one relaxed atomic load per kernel.
use crate::error::Result;
pub use crate::storage::{live_tensor_bytes, peak_tensor_bytes, reset_peak_tensor_bytes};
use senet_gpu::Gpu;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The part of a training step a kernel belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Loading and augmenting the batch, and moving it to the device.
    Data,
    /// The model's forward pass and the loss (the default).
    Forward,
    /// `backward`: the gradient rules.
    Backward,
    /// The parameter updates.
    Optimizer,
}

impl Phase {
    /// The lowercase name shown in the table.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Data => "data",
            Phase::Forward => "forward",
            Phase::Backward => "backward",
            Phase::Optimizer => "optimizer",
        }
    }
}

/// One line of the table: every call of one label in one phase.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The phase the calls ran in.
    pub phase: Phase,
    /// The kernel and its geometry, e.g. `conv2d 3x3/1 64->64 8x8`.
    pub label: String,
    /// How many times it ran.
    pub calls: u64,
    /// Total seconds of all calls.
    pub secs: f64,
    /// Floating-point operations of all calls, where the kernel defines them.
    pub flops: Option<f64>,
}

#[derive(Default)]
struct Entry {
    calls: u64,
    secs: f64,
    flops: Option<f64>,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<BTreeMap<(Phase, String), Entry>> = Mutex::new(BTreeMap::new());

thread_local! {
    static PHASE: Cell<Phase> = const { Cell::new(Phase::Forward) };
}

/// A kernel run on a GPU whose dispatches carry timestamp queries: its time is the device's
/// time of the dispatches it made, known once they are collected (by [`rows`]).
struct GpuCall {
    phase: Phase,
    label: String,
    flops: Option<f64>,
    gpu: Arc<Gpu>,
    /// The dispatch numbers it made: `GpuStats::dispatches` before and after.
    dispatches: Range<u64>,
}

static GPU_CALLS: Mutex<Vec<GpuCall>> = Mutex::new(Vec::new());
/// The GPUs whose dispatches are being timed for this profile.
static TIMED_GPUS: Mutex<Vec<Arc<Gpu>>> = Mutex::new(Vec::new());
/// Whether any GPU kernel of the current profile was timed by timestamp queries.
static GPU_TIMESTAMPS: AtomicBool = AtomicBool::new(false);

/// Starts (or stops) timing kernels. Starting clears the table; stopping collects the GPU
/// times still outstanding and switches the GPUs' timestamp queries off.
pub fn enable(on: bool) {
    settle_gpu_calls();
    let gpus = std::mem::take(&mut *TIMED_GPUS.lock().unwrap_or_else(|e| e.into_inner()));
    for gpu in gpus {
        // Off again; an error here would only mean the device is lost, which its next use
        // reports.
        let _ = gpu.set_kernel_timing(false);
    }
    if on {
        lock().clear();
        GPU_TIMESTAMPS.store(false, Ordering::Relaxed);
    }
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the GPU kernels of the current profile were timed by the device's timestamp
/// queries (else by wall time with a wait after each).
pub fn gpu_timestamps() -> bool {
    GPU_TIMESTAMPS.load(Ordering::Relaxed)
}

/// Whether kernels are being timed (see [`enable`]).
pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The rows recorded since [`enable`], in phase order, then by time spent (largest first).
pub fn rows() -> Vec<Row> {
    settle_gpu_calls();
    let mut rows: Vec<Row> = lock()
        .iter()
        .map(|((phase, label), e)| Row {
            phase: *phase,
            label: label.clone(),
            calls: e.calls,
            secs: e.secs,
            flops: e.flops,
        })
        .collect();
    rows.sort_by(|a, b| a.phase.cmp(&b.phase).then(b.secs.total_cmp(&a.secs)));
    rows
}

/// Kernels run on this thread until the guard drops count toward `phase`.
#[must_use = "the phase ends when the guard drops"]
pub struct PhaseGuard(Phase);

/// Counts the kernels run on this thread toward `phase` until the returned guard drops,
/// then goes back to the phase before.
pub fn phase(phase: Phase) -> PhaseGuard {
    PhaseGuard(PHASE.with(|p| p.replace(phase)))
}

impl Drop for PhaseGuard {
    fn drop(&mut self) {
        PHASE.with(|p| p.set(self.0));
    }
}

/// Adds `secs` (and `flops`) to `label` in the current phase.
pub fn record(label: String, secs: f64, flops: Option<f64>) {
    add(PHASE.with(Cell::get), label, secs, flops);
}

fn add(phase: Phase, label: String, secs: f64, flops: Option<f64>) {
    let mut table = lock();
    let e = table.entry((phase, label)).or_default();
    e.calls += 1;
    e.secs += secs;
    e.flops = match (e.flops, flops) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    };
}

/// Runs `f`, recording its time under `label()` when profiling is on.
pub fn timed<R>(label: impl FnOnce() -> (String, Option<f64>), f: impl FnOnce() -> R) -> R {
    if !is_enabled() {
        return f();
    }
    let t = Instant::now();
    let r = f();
    let secs = t.elapsed().as_secs_f64();
    let (label, flops) = label();
    record(label, secs, flops);
    r
}

/// Runs `f`, kernels on `gpu`, recording under `label()` when profiling is on: with the
/// device's timestamp queries where it has them (no wait: the times are collected later), else
/// wall time with a wait for the device after `f`, so the time is the run and not only the
/// submission.
pub fn timed_gpu<R>(
    gpu: &Arc<Gpu>,
    label: impl FnOnce() -> (String, Option<f64>),
    f: impl FnOnce() -> Result<R>,
) -> Result<R> {
    if !is_enabled() {
        return f();
    }
    if gpu.kernel_timing() || start_timing(gpu)? {
        let first = gpu.stats().dispatches;
        let r = f()?;
        let end = gpu.stats().dispatches;
        let (label, flops) = label();
        GPU_TIMESTAMPS.store(true, Ordering::Relaxed);
        gpu_calls().push(GpuCall {
            phase: PHASE.with(Cell::get),
            label,
            flops,
            gpu: gpu.clone(),
            dispatches: first..end,
        });
        return Ok(r);
    }
    timed(label, || {
        let r = f()?;
        gpu.synchronize()?;
        Ok(r)
    })
}

/// Starts timing `gpu`'s dispatches, if it has timestamp queries.
fn start_timing(gpu: &Arc<Gpu>) -> Result<bool> {
    let on = gpu.set_kernel_timing(true)?;
    if on {
        let mut gpus = TIMED_GPUS.lock().unwrap_or_else(|e| e.into_inner());
        if !gpus.iter().any(|g| Arc::ptr_eq(g, gpu)) {
            gpus.push(gpu.clone());
        }
    }
    Ok(on)
}

/// Collects the device times of the GPU kernels run so far and adds them to the table.
fn settle_gpu_calls() {
    let calls = std::mem::take(&mut *gpu_calls());
    let gpus = TIMED_GPUS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for gpu in gpus {
        let times: BTreeMap<u64, f64> = match gpu.take_kernel_times() {
            Ok(t) => t.into_iter().collect(),
            Err(e) => {
                eprintln!("profile: the GPU kernel times were lost: {e}");
                continue;
            }
        };
        for c in calls.iter().filter(|c| Arc::ptr_eq(&c.gpu, &gpu)) {
            let secs = times.range(c.dispatches.clone()).map(|(_, s)| s).sum();
            add(c.phase, c.label.clone(), secs, c.flops);
        }
    }
}

fn gpu_calls() -> std::sync::MutexGuard<'static, Vec<GpuCall>> {
    GPU_CALLS.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock() -> std::sync::MutexGuard<'static, BTreeMap<(Phase, String), Entry>> {
    // A panic while holding the lock leaves a table that is still valid.
    TABLE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Formats `rows` as a table, with each phase's total and, when `step_secs` (the wall time of
/// all profiled steps) is given, the time outside kernels (allocation, autograd bookkeeping).
pub fn format_table(rows: &[Row], steps: usize, step_secs: Option<f64>) -> String {
    use std::fmt::Write;
    let steps = steps.max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<44} {:>6} {:>10} {:>6} {:>9}",
        "phase", "op", "calls", "ms/step", "share", "GFLOP/s"
    );
    let total: f64 = rows.iter().map(|r| r.secs).sum();
    let whole = step_secs.unwrap_or(total).max(f64::MIN_POSITIVE);
    let phase_total = |out: &mut String, phase: Phase| {
        let secs: f64 = rows
            .iter()
            .filter(|r| r.phase == phase)
            .map(|r| r.secs)
            .sum();
        let _ = writeln!(
            out,
            "{:<10} {:<44} {:>6} {:>10.2} {:>5.1}%",
            phase.name(),
            "(all kernels of the phase)",
            "",
            secs / steps * 1e3,
            100.0 * secs / whole
        );
    };
    let mut last = None;
    for r in rows {
        if last.is_some_and(|p| p != r.phase) {
            phase_total(&mut out, last.unwrap_or(r.phase));
        }
        last = Some(r.phase);
        let gflops = r
            .flops
            .filter(|_| r.secs > 0.0)
            .map_or(String::new(), |f| format!("{:.1}", f / r.secs / 1e9));
        let _ = writeln!(
            out,
            "{:<10} {:<44} {:>6} {:>10.2} {:>5.1}% {:>9}",
            r.phase.name(),
            r.label,
            (r.calls as f64 / steps).round(),
            r.secs / steps * 1e3,
            100.0 * r.secs / whole,
            gflops
        );
    }
    if let Some(p) = last {
        phase_total(&mut out, p);
    }
    if let Some(step) = step_secs {
        let _ = writeln!(
            out,
            "{:<10} {:<44} {:>6} {:>10.2} {:>5.1}%",
            "other",
            "(outside kernels: allocation, autograd, copies)",
            "",
            (step - total) / steps * 1e3,
            100.0 * (step - total) / whole
        );
        let _ = writeln!(
            out,
            "{:<10} {:<44} {:>6} {:>10.2} {:>5.1}%",
            "step",
            "(wall time)",
            "",
            step / steps * 1e3,
            100.0
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test touches the global table, so tests running in parallel cannot race on it.
    #[test]
    fn records_by_phase_and_label_and_formats_a_table() {
        enable(true);
        record("a".into(), 0.5, Some(1e9));
        {
            let _g = phase(Phase::Backward);
            record("a".into(), 0.25, None);
            record("a".into(), 0.25, None);
        }
        timed(|| ("b".into(), None), || ());
        enable(false);
        timed(|| panic!("not called when disabled"), || ());
        let rows = rows();
        assert_eq!(rows.len(), 3);
        assert_eq!(
            (rows[0].phase, rows[0].calls, rows[0].secs),
            (Phase::Forward, 1, 0.5)
        );
        assert_eq!(rows[0].flops, Some(1e9));
        assert_eq!(rows[1].label, "b");
        assert_eq!(
            (rows[2].phase, rows[2].calls, rows[2].secs),
            (Phase::Backward, 2, 0.5)
        );
        let table = format_table(&rows, 1, Some(2.0));
        assert!(table.contains("2.0"), "{table}"); // 1e9 FLOP in 0.5 s
                                                   // 2 s of wall time, 1 s of it in kernels: about 1000 ms outside them.
        let other = table
            .lines()
            .find(|l| l.starts_with("other"))
            .expect("an `other` row");
        let ms: f64 = other
            .split_whitespace()
            .rev()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        assert!((ms - 1000.0).abs() < 1.0, "{table}");
    }
}
