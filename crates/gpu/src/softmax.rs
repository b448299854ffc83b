//! Launchers for `shaders/softmax_xent.wgsl`: softmax and log-softmax along the middle axis of
//! `[outer, axis, inner]`, their backward passes, and label-smoothed cross-entropy with its
//! gradient, all with the semantics of `senet_cpu::softmax`.
//!
//! Rows (`inner == 1`) get a workgroup each; other shapes a thread per column. The batch mean
//! of the cross-entropy goes through [`crate::reduce::reduce`], so it is deterministic, and its
//! backward pass reads the incoming gradient from a GPU buffer, so nothing waits on a readback.
use crate::elementwise::check_len;
use crate::reduce::reduce;
use crate::{GpuBuffer, GpuError, Result, Shader};
use bytemuck::Zeroable;
use senet_spec::reduce::ReduceOp;

pub const SHADER: Shader = shader!(
    "softmax_xent",
    [
        "invocation.wgsl",
        "workgroup_reduce.wgsl",
        "softmax_xent.wgsl"
    ]
);

/// Threads per workgroup of the column kernels (the row kernels use 64, one row each).
const WORKGROUP: usize = 256;

wgsl_params! {
    /// `SoftmaxParams` of the shader.
    pub(crate) struct SoftmaxParams {
        outer: u32,
        axis: u32,
        inner: u32,
        total: u32,
        log: u32,
        eps: f32,
        on: f32,
        off: f32,
    }
}

/// Checks that each named buffer holds `outer * axis * inner` elements; returns that count.
fn check_sizes(
    what: &str,
    outer: usize,
    axis: usize,
    inner: usize,
    bufs: &[(&str, &GpuBuffer)],
) -> Result<usize> {
    let n = outer
        .checked_mul(axis)
        .and_then(|n| n.checked_mul(inner))
        .ok_or_else(|| {
            GpuError::Validation(format!(
                "{what}: [outer {outer}, axis {axis}, inner {inner}] overflows"
            ))
        })?;
    check_len(what, n)?;
    for (name, b) in bufs {
        if b.len() < n {
            return Err(GpuError::Validation(format!("{what}: {name} holds {} elements, [outer {outer}, axis {axis}, inner {inner}] needs {n}", b.len())));
        }
    }
    Ok(n)
}

/// Runs the rows or cols variant of `kernel` over `[outer, axis, inner]`; `inputs` go to
/// bindings 1, 2, ... and the result to binding 3.
fn launch(
    kernel: &str,
    inputs: &[&GpuBuffer],
    n: usize,
    outer: usize,
    axis: usize,
    inner: usize,
    log: bool,
) -> Result<GpuBuffer> {
    let gpu = inputs[0].gpu();
    let out = gpu.alloc(n)?;
    if n == 0 {
        return Ok(out);
    }
    let params = SoftmaxParams {
        outer: outer as u32,
        axis: axis as u32,
        inner: inner as u32,
        total: (outer * inner) as u32,
        log: log as u32,
        ..Zeroable::zeroed()
    };
    let mut bindings: Vec<(u32, &GpuBuffer)> = inputs
        .iter()
        .enumerate()
        .map(|(i, b)| (i as u32 + 1, *b))
        .collect();
    bindings.push((3, &out));
    let (entry, groups) = if inner == 1 {
        (format!("{kernel}_rows"), outer)
    } else {
        (
            format!("{kernel}_cols"),
            (outer * inner).div_ceil(WORKGROUP),
        )
    };
    gpu.dispatch(
        &SHADER,
        &entry,
        &[],
        bytemuck::bytes_of(&params),
        &bindings,
        gpu.grid_1d(groups),
    )?;
    Ok(out)
}

/// Softmax (or log-softmax when `log`) of `x` along the middle axis of `[outer, axis, inner]`.
pub fn softmax(
    x: &GpuBuffer,
    outer: usize,
    axis: usize,
    inner: usize,
    log: bool,
) -> Result<GpuBuffer> {
    let n = check_sizes("softmax", outer, axis, inner, &[("x", x)])?;
    launch("softmax", &[x], n, outer, axis, inner, log)
}

/// Gradient of softmax/log-softmax from its output `y` and incoming gradient `dy`:
/// softmax `y * (dy - sum(dy * y))`, log-softmax `dy - exp(y) * sum(dy)`.
pub fn softmax_backward(
    y: &GpuBuffer,
    dy: &GpuBuffer,
    outer: usize,
    axis: usize,
    inner: usize,
    log: bool,
) -> Result<GpuBuffer> {
    let n = check_sizes(
        "softmax_backward",
        outer,
        axis,
        inner,
        &[("y", y), ("dy", dy)],
    )?;
    launch("softmax_backward", &[y, dy], n, outer, axis, inner, log)
}

/// Checks the shared arguments of the cross-entropy pair.
fn check_xent(
    what: &str,
    batch: usize,
    classes: usize,
    labels: &GpuBuffer,
    eps: f64,
) -> Result<()> {
    if batch == 0 || classes == 0 {
        return Err(GpuError::Validation(format!(
            "{what}: the mean over a batch of {batch} rows of {classes} classes is undefined"
        )));
    }
    if labels.len() < batch {
        return Err(GpuError::Validation(format!(
            "{what}: {} labels for a batch of {batch}",
            labels.len()
        )));
    }
    if !(0.0..=1.0).contains(&eps) {
        return Err(GpuError::Validation(format!(
            "{what}: label smoothing {eps} is outside [0, 1]"
        )));
    }
    Ok(())
}

/// Mean cross-entropy of `logits [batch, classes]` against `labels` (u32, each `< classes`;
/// a bad label makes the loss NaN) with label smoothing `eps`. Returns the loss (one element)
/// and the softmax probabilities `[batch, classes]` that the backward pass needs.
pub fn cross_entropy(
    logits: &GpuBuffer,
    batch: usize,
    classes: usize,
    labels: &GpuBuffer,
    eps: f64,
) -> Result<(GpuBuffer, GpuBuffer)> {
    check_xent("cross_entropy", batch, classes, labels, eps)?;
    let n = check_sizes("cross_entropy", batch, classes, 1, &[("logits", logits)])?;
    let gpu = logits.gpu();
    let probs = gpu.alloc(n)?;
    let row_loss = gpu.alloc(batch)?;
    let params = SoftmaxParams {
        outer: batch as u32,
        axis: classes as u32,
        inner: 1,
        total: batch as u32,
        log: 1,
        eps: eps as f32,
        ..Zeroable::zeroed()
    };
    gpu.dispatch(
        &SHADER,
        "xent_rows",
        &[],
        bytemuck::bytes_of(&params),
        &[(1, logits), (2, labels), (3, &probs), (4, &row_loss)],
        gpu.grid_1d(batch),
    )?;
    let loss = reduce(&row_loss, 1, batch, 1, ReduceOp::Sum)?;
    Ok((loss, probs))
}

/// Gradient of the mean cross-entropy w.r.t. the logits: `(probs - target) * grad[0] / batch`,
/// the target holding `1 - eps + eps / classes` on the label and `eps / classes` elsewhere.
pub fn cross_entropy_backward(
    probs: &GpuBuffer,
    labels: &GpuBuffer,
    batch: usize,
    classes: usize,
    eps: f64,
    grad: &GpuBuffer,
) -> Result<GpuBuffer> {
    check_xent("cross_entropy_backward", batch, classes, labels, eps)?;
    let n = check_sizes(
        "cross_entropy_backward",
        batch,
        classes,
        1,
        &[("probs", probs)],
    )?;
    if grad.is_empty() {
        return Err(GpuError::Validation(
            "cross_entropy_backward: the incoming gradient buffer is empty (one element needed)"
                .into(),
        ));
    }
    let gpu = probs.gpu();
    let dx = gpu.alloc(n)?;
    // Same f64 -> f32 roundings as the CPU kernel's `T::from_f64`.
    let off = eps / classes as f64;
    let params = SoftmaxParams {
        outer: batch as u32,
        axis: classes as u32,
        inner: 1,
        total: n as u32,
        log: 0,
        eps: eps as f32,
        on: ((1.0 - eps) as f32) + off as f32,
        off: off as f32,
    };
    gpu.dispatch(
        &SHADER,
        "xent_backward",
        &[],
        bytemuck::bytes_of(&params),
        &[(1, probs), (2, labels), (3, &dx), (4, grad)],
        gpu.grid_1d(n.div_ceil(WORKGROUP)),
    )?;
    Ok(dx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gpu_for_tests;
    use rand::{Rng, SeedableRng};
    use senet_spec::testing::{assert_close, rand_vec};

    /// (outer, axis, inner): rows with one and several elements per thread, columns with an
    /// axis of 1, and a column count past one workgroup.
    const SHAPES: [(usize, usize, usize); 6] = [
        (1, 1, 1),
        (4, 10, 1),
        (3, 300, 1),
        (2, 5, 7),
        (1, 1, 3),
        (2, 3, 300),
    ];

    #[test]
    fn softmax_and_backward_match_the_cpu_kernels() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for (outer, axis, inner) in SHAPES {
            let n = outer * axis * inner;
            let x = rand_vec::<f32>(&mut rng, n, -4.0, 4.0);
            let dy = rand_vec::<f32>(&mut rng, n, -1.0, 1.0);
            let (xb, dyb) = (gpu.upload(&x).unwrap(), gpu.upload(&dy).unwrap());
            for log in [false, true] {
                let what = format!("[{outer}, {axis}, {inner}] log={log}");
                // exp/log on the GPU are within a few ulps; sums of up to 300 terms in another
                // order add ~300 * 2^-24 relative: 1e-5 relative covers both.
                let y = gpu
                    .read(&softmax(&xb, outer, axis, inner, log).unwrap())
                    .unwrap();
                let want = senet_cpu::softmax::softmax(&x, outer, axis, inner, log);
                assert_close(&format!("softmax {what}"), &y, &want, 1e-5);
                // Backward from the CPU's y so both sides start from the same values; the
                // results are differences of O(1) terms, hence the absolute part of the bound.
                let yb = gpu.upload(&want).unwrap();
                let dx = gpu
                    .read(&softmax_backward(&yb, &dyb, outer, axis, inner, log).unwrap())
                    .unwrap();
                let want_dx = senet_cpu::softmax::softmax_backward(&want, &dy, axis, inner, log);
                assert_close(&format!("softmax_backward {what}"), &dx, &want_dx, 1e-5);
            }
        }
    }

    #[test]
    fn cross_entropy_and_backward_match_the_cpu_kernels() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        for (batch, classes) in [(1, 1), (5, 10), (3, 150), (70, 4)] {
            let logits = rand_vec::<f32>(&mut rng, batch * classes, -5.0, 5.0);
            let labels: Vec<u32> = (0..batch)
                .map(|_| rng.random_range(0..classes as u32))
                .collect();
            let (lb, yb) = (gpu.upload(&logits).unwrap(), gpu.upload(&labels).unwrap());
            for eps in [0.0, 0.1] {
                let what = format!("batch {batch}, classes {classes}, eps {eps}");
                let (loss, probs) = cross_entropy(&lb, batch, classes, &yb, eps).unwrap();
                let (want_loss, want_probs) =
                    senet_cpu::softmax::cross_entropy(&logits, batch, classes, &labels, eps);
                // As for softmax: a few ulps from exp/log, sums of up to 150 terms reordered.
                assert_close(
                    &format!("loss {what}"),
                    &gpu.read(&loss).unwrap(),
                    &[want_loss],
                    1e-5,
                );
                assert_close(
                    &format!("probs {what}"),
                    &gpu.read(&probs).unwrap(),
                    &want_probs,
                    1e-5,
                );
                // The gradient from the CPU's probs: one subtraction and one product, exact up to
                // an ulp or two of the division by the batch.
                let g = gpu.upload(&[0.7f32]).unwrap();
                let pb = gpu.upload(&want_probs).unwrap();
                let dx = gpu
                    .read(&cross_entropy_backward(&pb, &yb, batch, classes, eps, &g).unwrap())
                    .unwrap();
                let want_dx = senet_cpu::softmax::cross_entropy_backward(
                    &want_probs,
                    batch,
                    classes,
                    &labels,
                    eps,
                    0.7f32,
                );
                assert_close(&format!("d logits {what}"), &dx, &want_dx, 1e-6);
            }
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let x = gpu.upload(&[0.0f32; 6]).unwrap();
        let labels = gpu.upload(&[0u32; 2]).unwrap();
        let msg = |r: Result<GpuBuffer>| match r {
            Err(GpuError::Validation(m)) => m,
            _ => panic!("not a validation error"),
        };
        assert!(msg(softmax(&x, 2, 2, 2, false)).contains("needs 8"));
        assert!(msg(softmax_backward(&x, &labels, 1, 3, 2, true)).contains("dy holds 2"));
        assert!(
            matches!(cross_entropy(&x, 3, 2, &labels, 0.0), Err(GpuError::Validation(m)) if m.contains("2 labels for a batch of 3"))
        );
        assert!(matches!(
            cross_entropy(&x, 0, 2, &labels, 0.0),
            Err(GpuError::Validation(_))
        ));
        assert!(matches!(
            cross_entropy(&x, 2, 3, &labels, 1.5),
            Err(GpuError::Validation(_))
        ));
        let empty = gpu.alloc(0).unwrap();
        assert!(msg(cross_entropy_backward(&x, &labels, 2, 3, 0.0, &empty)).contains("empty"));
    }
}
