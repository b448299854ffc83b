//! Per-dispatch GPU time from timestamp queries, for `senet bench --profile`.
//!
//! While [`Gpu::set_kernel_timing`] is on (and the device has `Features::TIMESTAMP_QUERY`),
//! every dispatch's compute pass writes a timestamp at its start and end into a query set. When
//! the set is full, or when [`Gpu::take_kernel_times`] is called, the recorded pairs are
//! resolved into a buffer, read back and turned into seconds per dispatch number (the
//! [`crate::GpuStats::dispatches`] count before the dispatch). No wait per kernel: the times are
//! the device's own, so a profiled step runs as fast as an unprofiled one.
use crate::runtime::{Gpu, Result};

/// Dispatches timed per query set: each writes two timestamps, and wgpu caps a set at 4096.
const SLOTS: u32 = 2048;

pub(crate) struct KernelTiming {
    queries: wgpu::QuerySet,
    /// Where the queries are resolved (QUERY_RESOLVE), then copied to `readback`.
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    /// The dispatch number of each slot written since the last collection, in slot order.
    slots: Vec<u64>,
    /// Collected (dispatch number, seconds).
    done: Vec<(u64, f64)>,
}

impl Gpu {
    /// Whether the device can time kernels with timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.device()
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Starts (true) or stops timing every dispatch with timestamp queries; returns whether
    /// timing is on. Starting discards earlier times; without timestamp queries it stays off.
    pub fn set_kernel_timing(&self, on: bool) -> Result<bool> {
        let mut t = self.timing().lock().unwrap_or_else(|e| e.into_inner());
        if !on || !self.has_timestamps() {
            *t = None;
            return Ok(false);
        }
        let bytes = u64::from(SLOTS) * 16;
        let device = self.device();
        let made = self.scoped("creating the timestamp queries", || {
            let buffer = |label, usage| {
                device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: bytes,
                    usage,
                    mapped_at_creation: false,
                })
            };
            KernelTiming {
                queries: device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("kernel timestamps"),
                    ty: wgpu::QueryType::Timestamp,
                    count: 2 * SLOTS,
                }),
                resolve: buffer(
                    "timestamp resolve",
                    wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                ),
                readback: buffer(
                    "timestamp readback",
                    wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                ),
                slots: Vec::new(),
                done: Vec::new(),
            }
        })?;
        *t = Some(made);
        Ok(true)
    }

    /// Whether dispatches are being timed.
    pub fn kernel_timing(&self) -> bool {
        self.timing()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Waits for the device and returns (dispatch number, seconds on the device) of every
    /// dispatch timed since timing started or the last call, in dispatch order.
    pub fn take_kernel_times(&self) -> Result<Vec<(u64, f64)>> {
        let mut t = self.timing().lock().unwrap_or_else(|e| e.into_inner());
        let Some(t) = t.as_mut() else {
            return Ok(Vec::new());
        };
        self.collect(t)?;
        Ok(std::mem::take(&mut t.done))
    }

    /// The query-set slot pair of dispatch `number` and the set, when timing is on (collecting
    /// the full set first). Called before the dispatch takes the pending-commands lock.
    pub(crate) fn timing_slot(&self, number: u64) -> Result<Option<(wgpu::QuerySet, u32)>> {
        let mut t = self.timing().lock().unwrap_or_else(|e| e.into_inner());
        let Some(t) = t.as_mut() else {
            return Ok(None);
        };
        if t.slots.len() == SLOTS as usize {
            self.collect(t)?;
        }
        t.slots.push(number);
        Ok(Some((t.queries.clone(), t.slots.len() as u32 - 1)))
    }

    /// Resolves and reads back the written slots.
    fn collect(&self, t: &mut KernelTiming) -> Result<()> {
        let n = t.slots.len() as u32;
        if n == 0 {
            return Ok(());
        }
        let bytes = u64::from(n) * 16;
        self.record(|enc| {
            enc.resolve_query_set(&t.queries, 0..2 * n, &t.resolve, 0);
            enc.copy_buffer_to_buffer(&t.resolve, 0, &t.readback, 0, bytes);
        })?;
        let ticks: Vec<u64> = self.map_and_read(&t.readback, bytes)?;
        let period = f64::from(self.queue().get_timestamp_period()) * 1e-9;
        for (i, &number) in t.slots.iter().enumerate() {
            let (begin, end) = (ticks[2 * i], ticks[2 * i + 1]);
            t.done
                .push((number, end.saturating_sub(begin) as f64 * period));
        }
        t.slots.clear();
        Ok(())
    }
}
