//! Launcher for `shaders/reduce.wgsl`: sum or max over the middle axis of `[outer, reduced,
//! inner]`, deterministic (a fixed combination order chosen from the sizes alone, no atomics).
//!
//! Two kernels cover the shapes that matter: `reduce_rows` (a workgroup tree per output) for
//! long rows with few columns, such as a total sum; `reduce_cols` (a thread per output) for many
//! columns or short rows, such as a bias gradient `[1, batch, C]`. When there are too few
//! outputs to keep a GPU busy, a long axis is cut into chunks reduced in parallel, and the
//! `[outer, chunks, inner]` partials are reduced again by the same rules.
use crate::elementwise::check_len;
use crate::{GpuBuffer, GpuError, Result, Shader};
use senet_spec::reduce::ReduceOp;

pub const SHADER: Shader = shader!(
    "reduce",
    ["invocation.wgsl", "workgroup_reduce.wgsl", "reduce.wgsl"]
);

/// Threads per workgroup of both kernels.
const WORKGROUP: usize = 256;
/// Reduced indices per `reduce_rows` workgroup when a row is split: 16 per thread.
const ROW_CHUNK: usize = WORKGROUP * 16;
/// Reduced indices per `reduce_cols` thread when columns are split.
const COL_CHUNK: usize = 256;
/// Columns from which `reduce_cols` reads well (a thread per column, coalesced).
const COLS_MIN_INNER: usize = 32;
/// Rows this short are summed by one thread each, whatever `inner` is.
const ROWS_MIN_LEN: usize = 64;
/// Fewer workgroups (rows) or threads (cols) than this leave a GPU idle: split the axis.
const ROWS_SPLIT_BELOW: usize = 1024;
const COLS_SPLIT_BELOW: usize = 1 << 14;

wgsl_params! {
    /// `ReduceParams` of the shader.
    pub(crate) struct ReduceParams {
        outer: u32,
        reduced: u32,
        inner: u32,
        chunk: u32,
        chunks: u32,
        total: u32,
        /// Rounds the uniform up to 16 bytes.
        _pad: [u32; 2],
    }
}

/// Reduces `x` viewed as `[outer, reduced, inner]` along the middle axis; the result is
/// `[outer, inner]` (the identity, 0 or -inf, where `reduced` is 0).
pub fn reduce(
    x: &GpuBuffer,
    outer: usize,
    reduced: usize,
    inner: usize,
    op: ReduceOp,
) -> Result<GpuBuffer> {
    let gpu = x.gpu();
    let numel = outer
        .checked_mul(reduced)
        .and_then(|n| n.checked_mul(inner));
    match numel {
        Some(n) if n <= x.len() => check_len("reduce", n)?,
        _ => return Err(GpuError::Validation(format!("reduce: [outer {outer}, reduced {reduced}, inner {inner}] needs more elements than the {} in its input", x.len()))),
    };
    check_len("reduce", outer * inner)?;
    let code = match op {
        ReduceOp::Sum => 0.0,
        ReduceOp::Max => 1.0,
    };
    if outer * inner == 0 {
        return gpu.alloc(0);
    }
    // `cur` is the input of the next pass: x, then the partials of the previous pass.
    let mut partials: Option<GpuBuffer> = None;
    let mut reduced = reduced;
    loop {
        let outputs = outer * inner;
        let rows = inner < COLS_MIN_INNER && reduced > ROWS_MIN_LEN;
        let chunk = match rows {
            true if outputs < ROWS_SPLIT_BELOW && reduced > ROW_CHUNK => ROW_CHUNK,
            false if outputs < COLS_SPLIT_BELOW && reduced > COL_CHUNK => COL_CHUNK,
            _ => reduced.max(1),
        };
        let chunks = reduced.div_ceil(chunk).max(1);
        let total = outputs * chunks;
        let params = ReduceParams {
            outer: outer as u32,
            reduced: reduced as u32,
            inner: inner as u32,
            chunk: chunk as u32,
            chunks: chunks as u32,
            total: total as u32,
            _pad: [0; 2],
        };
        let y = gpu.alloc(total)?;
        let cur = partials.as_ref().unwrap_or(x);
        let (entry, groups) = if rows {
            ("reduce_rows", total)
        } else {
            ("reduce_cols", total.div_ceil(WORKGROUP))
        };
        gpu.dispatch(
            &SHADER,
            entry,
            &[("OP", code)],
            bytemuck::bytes_of(&params),
            &[(1, cur), (2, &y)],
            gpu.grid_1d(groups),
        )?;
        if chunks == 1 {
            return Ok(y);
        }
        // Dropping the previous partials is safe: the queue runs the pass that reads them first.
        partials = Some(y);
        reduced = chunks;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gpu_for_tests;
    use rand::{Rng, SeedableRng};

    #[test]
    fn reduce_matches_the_cpu_kernel() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        // (outer, reduced, inner), each comment naming the path it takes.
        let cases = [
            (1, 1, 1),       // reduced = 1, outer = 1
            (3, 1, 5),       // reduced = 1
            (5, 7, 3),       // short rows: cols
            (1, 200_000, 1), // total sum: rows split into 49 chunks, then a second pass
            (4, 1000, 1),    // rows, one pass
            (2, 300, 9),     // rows with inner > 1 (strided reads)
            (1, 128, 64),    // bias gradient: cols, one pass
            (1, 3000, 40),   // cols split into 12 chunks, then a second pass
            (70, 90, 33),    // cols, one pass, several workgroups
            (2, 0, 3),       // empty reduction: the identity
            (0, 5, 3),       // no outputs
        ];
        for (outer, reduced, inner) in cases {
            let x: Vec<f32> = (0..outer * reduced * inner)
                .map(|_| rng.random_range(-1.0f32..1.0))
                .collect();
            let xb = gpu.upload(&x).unwrap();
            let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
            for op in [ReduceOp::Sum, ReduceOp::Max] {
                let got: Vec<f32> = gpu
                    .read(&reduce(&xb, outer, reduced, inner, op).unwrap())
                    .unwrap();
                // Reference in f64 (the CPU kernel on the same f32 values). A chain of n f32
                // additions errs by at most (n - 1) * 2^-24 * sum|x|; the longest chain here is
                // 256 + 12 (the split cols case; the total sum has 16 + 8 + 49), so 2e-5 *
                // sum|x| bounds the GPU's error. Max only selects: exact.
                let want = senet_cpu::reduce::reduce(&x64, outer, reduced, inner, op);
                let abs = senet_cpu::reduce::reduce(
                    &x64.iter().map(|v| v.abs()).collect::<Vec<_>>(),
                    outer,
                    reduced,
                    inner,
                    ReduceOp::Sum,
                );
                let tol = |a: f64| if op == ReduceOp::Max { 0.0 } else { 2e-5 * a };
                assert_eq!(got.len(), want.len());
                for ((g, w), a) in got.iter().zip(&want).zip(&abs) {
                    assert!(
                        *g as f64 == *w || (*g as f64 - w).abs() <= tol(*a),
                        "{op:?} [{outer}, {reduced}, {inner}]: {g} vs {w}"
                    );
                }
                // The f32 CPU kernel adds in index order, with its own error |cpu - f64|: by the
                // triangle inequality the two f32 results differ by at most the sum of both.
                let cpu32 = senet_cpu::reduce::reduce(&x, outer, reduced, inner, op);
                for (((g, c), w), a) in got.iter().zip(&cpu32).zip(&want).zip(&abs) {
                    let cpu_err = if c == &(*w as f32) {
                        0.0
                    } else {
                        (*c as f64 - w).abs()
                    };
                    assert!(
                        g == c || ((g - c) as f64).abs() <= tol(*a) + cpu_err,
                        "{op:?} [{outer}, {reduced}, {inner}] vs f32 CPU: {g} vs {c}"
                    );
                }
            }
        }
    }

    #[test]
    fn reduce_is_deterministic() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let x: Vec<f32> = (0..100_000)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5)
            .collect();
        let xb = gpu.upload(&x).unwrap();
        let first: Vec<f32> = gpu
            .read(&reduce(&xb, 1, 100_000, 1, ReduceOp::Sum).unwrap())
            .unwrap();
        for _ in 0..3 {
            let again: Vec<f32> = gpu
                .read(&reduce(&xb, 1, 100_000, 1, ReduceOp::Sum).unwrap())
                .unwrap();
            assert_eq!(first[0].to_bits(), again[0].to_bits());
        }
    }

    #[test]
    fn sizes_beyond_the_input_are_errors() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let xb = gpu.upload(&[0.0f32; 10]).unwrap();
        match reduce(&xb, 2, 3, 2, ReduceOp::Sum) {
            Err(GpuError::Validation(m)) => assert!(
                m.contains("outer 2, reduced 3, inner 2") && m.contains("10"),
                "{m}"
            ),
            _ => panic!("accepted 12 elements out of 10"),
        }
        assert!(matches!(
            reduce(&xb, usize::MAX, 2, 2, ReduceOp::Max),
            Err(GpuError::Validation(_))
        ));
    }
}
