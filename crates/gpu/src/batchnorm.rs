//! Launchers for `shaders/batchnorm.wgsl`: batch normalization over x viewed as `[n, c, hw]`
//! with per-channel statistics, and its backward passes.
//!
//! Semantics are those of `senet_cpu::batchnorm`. Per-channel sums are deterministic two-stage
//! tree reductions (a workgroup per channel and chunk of `CHUNK` values, then a workgroup per
//! channel over the chunk partials, both in a fixed order, no atomics); the variance is a
//! second pass around the mean. A missing weight or bias is a flag in the uniform plus a
//! 1-element dummy buffer in its binding, which the shader never reads.
use crate::elementwise::check_len;
use crate::{Gpu, GpuBuffer, GpuError, Result, Shader};
use senet_spec::batchnorm::BnShape;
use slot::*;
use std::sync::Arc;

pub const SHADER: Shader = shader!(
    "batchnorm",
    ["invocation.wgsl", "workgroup_reduce.wgsl", "batchnorm.wgsl"]
);

/// Threads per workgroup of every kernel in the shader.
const WORKGROUP: usize = 256;
/// Values of one channel summed by one workgroup of a `*_partial` pass (`CHUNK` in the shader).
const CHUNK: usize = 4096;
/// Bits of `BnParams::flags`, as in the shader.
const HAS_WEIGHT: u32 = 1;
const HAS_BIAS: u32 = 2;

wgsl_params! {
    /// `BnParams` of the shader.
    pub(crate) struct BnParams {
        n: u32,
        c: u32,
        hw: u32,
        /// Chunks of CHUNK values per channel.
        chunks: u32,
        /// Elements of x.
        len: u32,
        flags: u32,
        /// n * hw
        m: f32,
        eps: f32,
    }
}

/// The binding slot of each buffer, as the shader declares it: one slot per buffer whatever the
/// kernel (the kernel that computes a statistic binds the same slot to write it).
mod slot {
    pub const X: u32 = 1;
    pub const DY: u32 = 2;
    pub const WEIGHT: u32 = 3;
    pub const BIAS: u32 = 4;
    pub const MEAN: u32 = 5;
    pub const VAR: u32 = 6;
    pub const INVSTD: u32 = 7;
    pub const DWEIGHT: u32 = 8;
    pub const DBIAS: u32 = 9;
    /// The chunk partial sums, and the second ones of the backward pass.
    pub const PART: u32 = 10;
    pub const PART2: u32 = 11;
    /// y, or dx.
    pub const OUT: u32 = 12;
}

/// What [`forward_train`] returns: output and per-channel batch statistics.
pub struct BnTrainOut {
    pub y: GpuBuffer,
    pub mean: GpuBuffer,
    /// Biased batch variance (divides by n*hw), the one used to normalize.
    pub var: GpuBuffer,
    /// 1 / sqrt(var + eps)
    pub invstd: GpuBuffer,
}

/// Checks one call's buffers against the shape and packs the uniform.
struct Call<'a> {
    what: &'static str,
    s: BnShape,
    gpu: &'a Arc<Gpu>,
    params: BnParams,
}

impl<'a> Call<'a> {
    /// `x` is any buffer of the call (it names the GPU); `train` demands n * hw > 0, without
    /// which the batch statistics are undefined.
    fn new(
        what: &'static str,
        s: BnShape,
        x: &'a GpuBuffer,
        train: bool,
        eps: f64,
    ) -> Result<Call<'a>> {
        let too_big = || {
            GpuError::Validation(format!(
                "batchnorm {what}: shape {s:?} has more elements than a kernel can index (2^32)"
            ))
        };
        let m = s.n.checked_mul(s.hw).ok_or_else(too_big)?;
        let len = m.checked_mul(s.c).ok_or_else(too_big)?;
        let len32 = check_len(&format!("batchnorm {what} {s:?}"), len)?;
        if train && s.c > 0 && m == 0 {
            return Err(GpuError::Validation(format!("batchnorm {what}: shape {s:?} has no values per channel (n * hw = 0), so the batch statistics are undefined")));
        }
        let params = BnParams {
            n: s.n as u32,
            c: s.c as u32,
            hw: s.hw as u32,
            chunks: m.div_ceil(CHUNK) as u32,
            len: len32,
            flags: 0,
            m: m as f32,
            eps: eps as f32,
        };
        Ok(Call {
            what,
            s,
            gpu: x.gpu(),
            params,
        })
    }

    fn len(&self) -> usize {
        self.params.len as usize
    }

    fn expect(&self, name: &str, b: &GpuBuffer, want: usize) -> Result<()> {
        if !Arc::ptr_eq(b.gpu(), self.gpu) {
            return Err(GpuError::Validation(format!(
                "batchnorm {}: {name} lives on gpu:{}, the other inputs on gpu:{}",
                self.what,
                b.gpu().id,
                self.gpu.id
            )));
        }
        if b.len() != want {
            return Err(GpuError::Validation(format!(
                "batchnorm {}: {name} has {} elements, the shape {:?} needs {want}",
                self.what,
                b.len(),
                self.s
            )));
        }
        Ok(())
    }

    /// Checks an optional per-channel parameter, sets its flag and returns the buffer to bind
    /// (a 1-element dummy when absent).
    fn param(&mut self, name: &str, b: Option<&GpuBuffer>, flag: u32) -> Result<Binding> {
        match b {
            Some(b) => {
                self.expect(name, b, self.s.c)?;
                self.params.flags |= flag;
                Ok(Binding::Given)
            }
            None => Ok(Binding::Dummy(self.gpu.alloc(1)?)),
        }
    }

    fn dispatch(
        &self,
        entry: &str,
        buffers: &[(u32, &GpuBuffer)],
        workgroups: usize,
    ) -> Result<()> {
        self.gpu.dispatch(
            &SHADER,
            entry,
            &[("RWG", f64::from(self.gpu.reduce_workgroup()))],
            bytemuck::bytes_of(&self.params),
            buffers,
            self.gpu.grid_1d(workgroups),
        )
    }

    /// One workgroup per (channel, chunk).
    fn partial_groups(&self) -> usize {
        self.s.c * self.params.chunks as usize
    }
}

/// An optional parameter's binding: the caller's buffer or a dummy the shader never reads.
enum Binding {
    Given,
    Dummy(GpuBuffer),
}

impl Binding {
    fn or<'b>(&'b self, given: Option<&'b GpuBuffer>) -> &'b GpuBuffer {
        match (self, given) {
            (Binding::Dummy(d), _) => d,
            (Binding::Given, Some(b)) => b,
            (Binding::Given, None) => unreachable!("Binding::Given is only made for Some"),
        }
    }
}

/// Training-mode forward: normalizes with the batch statistics and returns them.
pub fn forward_train(
    s: BnShape,
    x: &GpuBuffer,
    weight: Option<&GpuBuffer>,
    bias: Option<&GpuBuffer>,
    eps: f64,
) -> Result<BnTrainOut> {
    let mut call = Call::new("forward_train", s, x, true, eps)?;
    call.expect("x", x, call.len())?;
    let wb = call.param("weight", weight, HAS_WEIGHT)?;
    let bb = call.param("bias", bias, HAS_BIAS)?;
    let gpu = call.gpu;
    let part = gpu.alloc(call.partial_groups())?;
    let (mean, var, invstd) = (gpu.alloc(s.c)?, gpu.alloc(s.c)?, gpu.alloc(s.c)?);
    let y = gpu.alloc(call.len())?;
    if s.c == 0 {
        return Ok(BnTrainOut {
            y,
            mean,
            var,
            invstd,
        });
    }
    call.dispatch(
        "mean_partial",
        &[(X, x), (PART, &part)],
        call.partial_groups(),
    )?;
    call.dispatch(
        "mean_finalize",
        &[(X, x), (PART, &part), (MEAN, &mean)],
        s.c,
    )?;
    // The queue orders the passes, so the variance pass may reuse the partials buffer.
    call.dispatch(
        "var_partial",
        &[(X, x), (MEAN, &mean), (PART, &part)],
        call.partial_groups(),
    )?;
    call.dispatch(
        "var_finalize",
        &[(PART, &part), (VAR, &var), (INVSTD, &invstd)],
        s.c,
    )?;
    call.dispatch(
        "apply_norm",
        &[
            (X, x),
            (MEAN, &mean),
            (INVSTD, &invstd),
            (WEIGHT, wb.or(weight)),
            (BIAS, bb.or(bias)),
            (OUT, &y),
        ],
        call.partial_groups(),
    )?;
    Ok(BnTrainOut {
        y,
        mean,
        var,
        invstd,
    })
}

/// Eval-mode forward with running statistics: y = (x - mean) / sqrt(var + eps) * weight + bias.
pub fn forward_eval(
    s: BnShape,
    x: &GpuBuffer,
    weight: Option<&GpuBuffer>,
    bias: Option<&GpuBuffer>,
    mean: &GpuBuffer,
    var: &GpuBuffer,
    eps: f64,
) -> Result<GpuBuffer> {
    let mut call = Call::new("forward_eval", s, x, false, eps)?;
    call.expect("x", x, call.len())?;
    call.expect("mean", mean, s.c)?;
    call.expect("var", var, s.c)?;
    let wb = call.param("weight", weight, HAS_WEIGHT)?;
    let bb = call.param("bias", bias, HAS_BIAS)?;
    let gpu = call.gpu;
    let invstd = gpu.alloc(s.c)?;
    let y = gpu.alloc(call.len())?;
    if s.c == 0 {
        return Ok(y);
    }
    call.dispatch(
        "eval_invstd",
        &[(VAR, var), (INVSTD, &invstd)],
        s.c.div_ceil(WORKGROUP),
    )?;
    call.dispatch(
        "apply_norm",
        &[
            (X, x),
            (MEAN, mean),
            (INVSTD, &invstd),
            (WEIGHT, wb.or(weight)),
            (BIAS, bb.or(bias)),
            (OUT, &y),
        ],
        call.partial_groups(),
    )?;
    Ok(y)
}

/// dweight = invstd * sum(dy * (x - mean)) and dbias = sum(dy), per channel.
fn param_grads(
    call: &Call,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    mean: &GpuBuffer,
    invstd: &GpuBuffer,
) -> Result<(GpuBuffer, GpuBuffer)> {
    let gpu = call.gpu;
    // With n * hw = 0 the sums are empty: zeros, as on the CPU.
    if call.partial_groups() == 0 {
        return Ok((gpu.zeros(call.s.c)?, gpu.zeros(call.s.c)?));
    }
    let (dweight, dbias) = (gpu.alloc(call.s.c)?, gpu.alloc(call.s.c)?);
    let part_dy = gpu.alloc(call.partial_groups())?;
    let part_dyx = gpu.alloc(call.partial_groups())?;
    call.dispatch(
        "grad_partial",
        &[
            (X, x),
            (DY, dy),
            (MEAN, mean),
            (PART, &part_dy),
            (PART2, &part_dyx),
        ],
        call.partial_groups(),
    )?;
    call.dispatch(
        "grad_finalize",
        &[
            (PART, &part_dy),
            (PART2, &part_dyx),
            (INVSTD, invstd),
            (DWEIGHT, &dweight),
            (DBIAS, &dbias),
        ],
        call.s.c,
    )?;
    Ok((dweight, dbias))
}

/// Checks the inputs common to both backward passes.
fn backward_call<'a>(
    what: &'static str,
    s: BnShape,
    x: &'a GpuBuffer,
    dy: &GpuBuffer,
    mean: &GpuBuffer,
    invstd: &GpuBuffer,
) -> Result<Call<'a>> {
    let call = Call::new(what, s, x, false, 0.0)?;
    call.expect("x", x, call.len())?;
    call.expect("dy", dy, call.len())?;
    call.expect("mean", mean, s.c)?;
    call.expect("invstd", invstd, s.c)?;
    Ok(call)
}

/// Training-mode backward through the batch statistics, with `mean`/`invstd` from
/// [`forward_train`]. Returns (dx, dweight, dbias); dweight/dbias are per channel whether or
/// not there is a weight.
pub fn backward_train(
    s: BnShape,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    weight: Option<&GpuBuffer>,
    mean: &GpuBuffer,
    invstd: &GpuBuffer,
) -> Result<(GpuBuffer, GpuBuffer, GpuBuffer)> {
    let mut call = backward_call("backward_train", s, x, dy, mean, invstd)?;
    let wb = call.param("weight", weight, HAS_WEIGHT)?;
    let (dweight, dbias) = param_grads(&call, x, dy, mean, invstd)?;
    let dx = call.gpu.alloc(call.len())?;
    call.dispatch(
        "dx_train",
        &[
            (X, x),
            (DY, dy),
            (MEAN, mean),
            (INVSTD, invstd),
            (WEIGHT, wb.or(weight)),
            (DWEIGHT, &dweight),
            (DBIAS, &dbias),
            (OUT, &dx),
        ],
        call.partial_groups(),
    )?;
    Ok((dx, dweight, dbias))
}

/// Eval-mode backward (statistics are constants), with `invstd` computed from the running
/// variance. Returns (dx, dweight, dbias); dweight/dbias are per channel.
pub fn backward_eval(
    s: BnShape,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    weight: Option<&GpuBuffer>,
    mean: &GpuBuffer,
    invstd: &GpuBuffer,
) -> Result<(GpuBuffer, GpuBuffer, GpuBuffer)> {
    let mut call = backward_call("backward_eval", s, x, dy, mean, invstd)?;
    let wb = call.param("weight", weight, HAS_WEIGHT)?;
    let (dweight, dbias) = param_grads(&call, x, dy, mean, invstd)?;
    let dx = call.gpu.alloc(call.len())?;
    call.dispatch(
        "dx_eval",
        &[
            (DY, dy),
            (INVSTD, invstd),
            (WEIGHT, wb.or(weight)),
            (OUT, &dx),
        ],
        call.partial_groups(),
    )?;
    Ok((dx, dweight, dbias))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gpu_for_tests;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use senet_cpu::batchnorm as cpu;
    use senet_spec::testing::{assert_close, rand_vec};

    /// f32 on the GPU against f64 sums on the CPU, in a different order (chunked trees vs
    /// sequential): a few ulps of relative error, amplified where backward subtracts nearly
    /// equal terms; 1e-4 relative (absolute near zero) leaves room for that and no more.
    const TOL: f64 = 1e-4;

    /// A standard normal sample (Box-Muller; rand 0.9 has no normal distribution).
    fn normal(rng: &mut StdRng) -> f32 {
        let u: f64 = rng.random_range(f64::EPSILON..1.0);
        let v: f64 = rng.random_range(0.0..1.0);
        ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
    }

    /// x with channel 1 (when there is one) at 1000 + N(0, 1): a large mean over a unit spread,
    /// which E[x^2] - E[x]^2 or unshifted f32 sums would get wrong.
    fn input(rng: &mut StdRng, s: BnShape) -> Vec<f32> {
        (0..s.n * s.c * s.hw)
            .map(|i| match (i / s.hw) % s.c {
                1 => 1000.0 + normal(rng),
                _ => rng.random_range(-1.0f32..3.0) * 1.5,
            })
            .collect()
    }

    #[test]
    fn batchnorm_matches_the_cpu_kernel() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        crate::testing::with_each_kernel_choice(&gpu, |tuned| {
            let mut rng = StdRng::seed_from_u64(11);
            let eps = 1e-5;
            for s in senet_spec::cases::batch_norm_cases() {
                let len = s.n * s.c * s.hw;
                let x = input(&mut rng, s);
                let dy = rand_vec::<f32>(&mut rng, len, -1.0, 1.0);
                let w = rand_vec::<f32>(&mut rng, s.c, 0.5, 1.5);
                let b = rand_vec::<f32>(&mut rng, s.c, -1.0, 1.0);
                let rmean = rand_vec::<f32>(&mut rng, s.c, -1.0, 2.0);
                let rvar = rand_vec::<f32>(&mut rng, s.c, 0.5, 2.0);
                let rinvstd: Vec<f32> = rvar
                    .iter()
                    .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
                    .collect();
                let up = |v: &[f32]| gpu.upload(v).unwrap();
                let (xb, dyb, wb, bb, rmb, rvb, rib) = (
                    up(&x),
                    up(&dy),
                    up(&w),
                    up(&b),
                    up(&rmean),
                    up(&rvar),
                    up(&rinvstd),
                );
                let read = |b: &GpuBuffer| gpu.read::<f32>(b).unwrap();
                for affine in [true, false] {
                    let (wc, bc) = if affine {
                        (Some(&w[..]), Some(&b[..]))
                    } else {
                        (None, None)
                    };
                    let (wg, bg) = if affine {
                        (Some(&wb), Some(&bb))
                    } else {
                        (None, None)
                    };
                    let ctx = format!("{s:?} tuned {tuned} affine {affine}");

                    let want = cpu::forward_train(s, &x, wc, bc, eps);
                    let got = forward_train(s, &xb, wg, bg, eps).unwrap();
                    assert_close(&format!("train y {ctx}"), &read(&got.y), &want.y, TOL);
                    assert_close(
                        &format!("train mean {ctx}"),
                        &read(&got.mean),
                        &want.mean,
                        TOL,
                    );
                    assert_close(&format!("train var {ctx}"), &read(&got.var), &want.var, TOL);
                    assert_close(
                        &format!("train invstd {ctx}"),
                        &read(&got.invstd),
                        &want.invstd,
                        TOL,
                    );

                    let y = forward_eval(s, &xb, wg, bg, &rmb, &rvb, eps).unwrap();
                    assert_close(
                        &format!("eval y {ctx}"),
                        &read(&y),
                        &cpu::forward_eval(s, &x, wc, bc, &rmean, &rvar, eps),
                        TOL,
                    );

                    // Both devices get the CPU's statistics, so only the backward itself is compared.
                    let (mb, ib) = (up(&want.mean), up(&want.invstd));
                    let (dx, dw, db) = backward_train(s, &xb, &dyb, wg, &mb, &ib).unwrap();
                    let (rdx, rdw, rdb) =
                        cpu::backward_train(s, &x, &dy, wc, &want.mean, &want.invstd);
                    assert_close(&format!("train dx {ctx}"), &read(&dx), &rdx, TOL);
                    assert_close(&format!("train dweight {ctx}"), &read(&dw), &rdw, TOL);
                    assert_close(&format!("train dbias {ctx}"), &read(&db), &rdb, TOL);

                    let (dx, dw, db) = backward_eval(s, &xb, &dyb, wg, &rmb, &rib).unwrap();
                    let (rdx, rdw, rdb) = cpu::backward_eval(s, &x, &dy, wc, &rmean, &rinvstd);
                    assert_close(&format!("eval dx {ctx}"), &read(&dx), &rdx, TOL);
                    assert_close(&format!("eval dweight {ctx}"), &read(&dw), &rdw, TOL);
                    assert_close(&format!("eval dbias {ctx}"), &read(&db), &rdb, TOL);
                }
            }
        });
    }

    #[test]
    fn batchnorm_statistics_are_deterministic_and_survive_a_large_mean() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        crate::testing::with_each_kernel_choice(&gpu, |tuned| {
            let mut rng = StdRng::seed_from_u64(12);
            // Three chunks per channel; channel 1 sits at 1000 + N(0, 1).
            let s = BnShape {
                n: 2,
                c: 2,
                hw: 4500,
            };
            let x = input(&mut rng, s);
            let xb = gpu.upload(&x).unwrap();
            let run = || {
                let o = forward_train(s, &xb, None, None, 1e-5).unwrap();
                (
                    gpu.read::<f32>(&o.y).unwrap(),
                    gpu.read::<f32>(&o.mean).unwrap(),
                    gpu.read::<f32>(&o.var).unwrap(),
                )
            };
            let (a, b) = (run(), run());
            assert!(
                a.0.iter()
                    .zip(&b.0)
                    .all(|(p, q)| p.to_bits() == q.to_bits()),
                "y differs between runs (tuned kernels: {tuned})"
            );
            assert_eq!(
                (a.1.clone(), a.2.clone()),
                (b.1, b.2),
                "statistics differ between runs (tuned kernels: {tuned})"
            );
            // The variance of the offset channel is that of N(0, 1), not 0 or noise.
            let want = cpu::forward_train(s, &x, None, None, 1e-5);
            assert!(
                (a.2[1] - want.var[1]).abs() <= 1e-4 * want.var[1],
                "var {} vs {} (tuned kernels: {tuned})",
                a.2[1],
                want.var[1]
            );
            assert!(
                want.var[1] > 0.8 && want.var[1] < 1.2,
                "the test input lost its spread"
            );
        });
    }

    #[test]
    fn batchnorm_rejects_bad_sizes() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let s = BnShape { n: 2, c: 3, hw: 4 };
        let x = gpu.upload(&[0.0f32; 24]).unwrap();
        let short = gpu.upload(&[0.0f32; 23]).unwrap();
        let c3 = gpu.upload(&[1.0f32; 3]).unwrap();
        let c2 = gpu.upload(&[1.0f32; 2]).unwrap();
        let msg = |r: Result<()>| match r {
            Err(GpuError::Validation(m)) => m,
            other => panic!("expected a validation error, got {:?}", other.err()),
        };
        let m = msg(forward_train(s, &short, None, None, 1e-5).map(|_| ()));
        assert!(m.contains("x has 23") && m.contains("24"), "{m}");
        let m = msg(forward_train(s, &x, Some(&c2), None, 1e-5).map(|_| ()));
        assert!(m.contains("weight has 2"), "{m}");
        let m = msg(forward_eval(s, &x, None, Some(&c2), &c3, &c3, 1e-5).map(|_| ()));
        assert!(m.contains("bias has 2"), "{m}");
        let m = msg(backward_train(s, &x, &short, None, &c3, &c3).map(|_| ()));
        assert!(m.contains("dy has 23"), "{m}");
        let m = msg(backward_eval(s, &x, &x, None, &c3, &c2).map(|_| ()));
        assert!(m.contains("invstd has 2"), "{m}");
        let m = msg(forward_train(
            BnShape { n: 0, c: 3, hw: 4 },
            &gpu.zeros(0).unwrap(),
            None,
            None,
            1e-5,
        )
        .map(|_| ()));
        assert!(m.contains("n * hw = 0"), "{m}");
    }
}
