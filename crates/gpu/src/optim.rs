//! Launchers for `shaders/optim.wgsl`: SGD and AdamW steps that update a parameter and its
//! optimizer state in place, one dispatch each, with the semantics (and the f64 -> f32
//! roundings of the hyperparameters) of `senet_cpu::optim`.
use crate::elementwise::check_len;
use crate::{GpuBuffer, GpuError, Result, Shader};
use senet_spec::optim::AdamScalars;

pub const SHADER: Shader = shader!("optim", ["invocation.wgsl", "optim.wgsl"]);

/// Threads per workgroup of both kernels.
const WORKGROUP: usize = 256;

wgsl_params! {
    /// `SgdParams` of the shader.
    pub(crate) struct SgdParams {
        len: u32,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        nesterov: u32,
        first_step: u32,
        /// Rounds the uniform up to 16 bytes.
        _pad: [u32; 2],
    }
}

wgsl_params! {
    /// `AdamParams` of the shader: the scalars of `AdamScalars`, rounded to f32.
    pub(crate) struct AdamParams {
        len: u32,
        lr: f32,
        beta1: f32,
        beta2: f32,
        one_minus_beta1: f32,
        one_minus_beta2: f32,
        eps: f32,
        /// 1 - lr * weight_decay.
        decay: f32,
        /// 1 - beta1^step and 1 - beta2^step.
        bias1: f32,
        bias2: f32,
        /// Rounds the uniform up to 16 bytes.
        _pad: [u32; 2],
    }
}

/// Errors unless every named buffer holds at least `len` elements.
fn check_buffers(what: &str, len: usize, bufs: &[(&str, &GpuBuffer)]) -> Result<u32> {
    for (name, b) in bufs {
        if b.len() < len {
            return Err(GpuError::Validation(format!(
                "{what}: {name} holds {} elements, the step updates {len}",
                b.len()
            )));
        }
    }
    check_len(what, len)
}

/// One SGD step on the first `len` elements, updating `param` and `velocity` in place:
/// `g = grad + weight_decay * param`; with momentum `v = first_step ? g : momentum * v + g`,
/// `g = nesterov ? g + momentum * v : v`; `param -= lr * g`. With `momentum == 0` the velocity
/// is untouched and may be any buffer, even an empty one.
#[allow(clippy::too_many_arguments)] // mirrors torch.optim.SGD's hyperparameters one for one
pub fn sgd_step(
    param: &GpuBuffer,
    grad: &GpuBuffer,
    velocity: &GpuBuffer,
    len: usize,
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    nesterov: bool,
    first_step: bool,
) -> Result<()> {
    let mut bufs = vec![("param", param), ("grad", grad)];
    if momentum != 0.0 {
        bufs.push(("velocity", velocity));
    }
    let n = check_buffers("sgd_step", len, &bufs)?;
    if len == 0 {
        return Ok(());
    }
    let params = SgdParams {
        len: n,
        lr: lr as f32,
        momentum: momentum as f32,
        weight_decay: weight_decay as f32,
        nesterov: nesterov as u32,
        first_step: first_step as u32,
        _pad: [0; 2],
    };
    let gpu = param.gpu();
    gpu.dispatch(
        &SHADER,
        "sgd_step",
        &[],
        bytemuck::bytes_of(&params),
        &[(1, param), (2, grad), (3, velocity)],
        gpu.grid_1d(len.div_ceil(WORKGROUP)),
    )
}

/// One AdamW step (`step` counts from 1) on the first `len` elements, updating `param`, `m` and
/// `v` in place: `param *= 1 - lr * weight_decay`, then the Adam update with bias corrections
/// `1 - beta^step`.
#[allow(clippy::too_many_arguments)] // mirrors torch.optim.AdamW's hyperparameters one for one
pub fn adamw_step(
    param: &GpuBuffer,
    grad: &GpuBuffer,
    m: &GpuBuffer,
    v: &GpuBuffer,
    len: usize,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    step: u64,
) -> Result<()> {
    let n = check_buffers(
        "adamw_step",
        len,
        &[("param", param), ("grad", grad), ("m", m), ("v", v)],
    )?;
    if step == 0 {
        return Err(GpuError::Validation(
            "adamw_step: step 0 (steps count from 1; the bias corrections would divide by 0)"
                .into(),
        ));
    }
    if len == 0 {
        return Ok(());
    }
    let s = AdamScalars::new(lr, beta1, beta2, eps, weight_decay, step);
    let params = AdamParams {
        len: n,
        lr: s.lr as f32,
        beta1: s.beta1 as f32,
        beta2: s.beta2 as f32,
        one_minus_beta1: s.one_minus_beta1 as f32,
        one_minus_beta2: s.one_minus_beta2 as f32,
        eps: s.eps as f32,
        decay: s.decay as f32,
        bias1: s.bias1 as f32,
        bias2: s.bias2 as f32,
        _pad: [0; 2],
    };
    let gpu = param.gpu();
    gpu.dispatch(
        &SHADER,
        "adamw_step",
        &[],
        bytemuck::bytes_of(&params),
        &[(1, param), (2, grad), (3, m), (4, v)],
        gpu.grid_1d(len.div_ceil(WORKGROUP)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gpu_for_tests;
    use rand::SeedableRng;
    use senet_spec::testing::{assert_close, rand_vec, Tol};

    /// The update itself is a handful of f32 operations done in the same order on both sides;
    /// GPU division and sqrt may be a couple of ulps off (and a compiler may fuse a multiply-add),
    /// which 3 steps compound to well under 1e-6 relative (plus 1e-7 absolute near 0).
    const ABS_TOL: f64 = 1e-7;
    const REL_TOL: f64 = 1e-6;

    #[test]
    fn sgd_matches_the_cpu_step_over_three_steps() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let n = 300; // more than one workgroup
        for (momentum, nesterov, wd) in [
            (0.9, false, 5e-4),
            (0.9, true, 0.01),
            (0.0, true, 0.01),
            (0.5, false, 0.0),
        ] {
            let mut p = rand_vec::<f32>(&mut rng, n, -1.0, 1.0);
            let mut vel = vec![0.0f32; n];
            let (pb, vb) = (gpu.upload(&p).unwrap(), gpu.upload(&vel).unwrap());
            for step in 0..3 {
                let g = rand_vec::<f32>(&mut rng, n, -1.0, 1.0);
                let gb = gpu.upload(&g).unwrap();
                sgd_step(&pb, &gb, &vb, n, 0.1, momentum, wd, nesterov, step == 0).unwrap();
                senet_cpu::optim::sgd_step(
                    &mut p,
                    &g,
                    &mut vel,
                    0.1,
                    momentum,
                    wd,
                    nesterov,
                    step == 0,
                );
            }
            let what = format!("momentum {momentum} nesterov {nesterov} wd {wd}");
            assert_close(
                &format!("param, {what}"),
                &gpu.read(&pb).unwrap(),
                &p,
                Tol {
                    abs: ABS_TOL,
                    rel: REL_TOL,
                },
            );
            assert_close(
                &format!("velocity, {what}"),
                &gpu.read(&vb).unwrap(),
                &vel,
                Tol {
                    abs: ABS_TOL,
                    rel: REL_TOL,
                },
            );
        }
    }

    #[test]
    fn adamw_matches_the_cpu_step_over_three_steps() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let n = 300;
        let mut p = rand_vec::<f32>(&mut rng, n, -1.0, 1.0);
        let (mut m, mut v) = (vec![0.0f32; n], vec![0.0f32; n]);
        let (pb, mb, vb) = (
            gpu.upload(&p).unwrap(),
            gpu.upload(&m).unwrap(),
            gpu.upload(&v).unwrap(),
        );
        for step in 1..=3 {
            let g = rand_vec::<f32>(&mut rng, n, -1.0, 1.0);
            let gb = gpu.upload(&g).unwrap();
            adamw_step(&pb, &gb, &mb, &vb, n, 1e-2, 0.9, 0.999, 1e-8, 0.05, step).unwrap();
            senet_cpu::optim::adamw_step(
                &mut p, &g, &mut m, &mut v, 1e-2, 0.9, 0.999, 1e-8, 0.05, step,
            );
        }
        assert_close(
            "param",
            &gpu.read(&pb).unwrap(),
            &p,
            Tol {
                abs: ABS_TOL,
                rel: REL_TOL,
            },
        );
        assert_close(
            "m",
            &gpu.read(&mb).unwrap(),
            &m,
            Tol {
                abs: ABS_TOL,
                rel: REL_TOL,
            },
        );
        assert_close(
            "v",
            &gpu.read(&vb).unwrap(),
            &v,
            Tol {
                abs: ABS_TOL,
                rel: REL_TOL,
            },
        );
    }

    #[test]
    fn bad_sizes_are_errors() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let (a, b) = (
            gpu.upload(&[0.0f32; 4]).unwrap(),
            gpu.upload(&[0.0f32; 4]).unwrap(),
        );
        let short = gpu.upload(&[0.0f32; 2]).unwrap();
        assert!(
            matches!(sgd_step(&a, &b, &short, 4, 0.1, 0.9, 0.0, false, true), Err(GpuError::Validation(m)) if m.contains("velocity holds 2"))
        );
        // No momentum: the velocity is not used, so its size does not matter.
        sgd_step(&a, &b, &short, 4, 0.1, 0.0, 0.0, false, true).unwrap();
        let (m, v) = (
            gpu.upload(&[0.0f32; 4]).unwrap(),
            gpu.upload(&[0.0f32; 4]).unwrap(),
        );
        assert!(
            matches!(adamw_step(&a, &b, &m, &v, 4, 0.1, 0.9, 0.999, 1e-8, 0.0, 0), Err(GpuError::Validation(m)) if m.contains("step 0"))
        );
        assert!(
            matches!(adamw_step(&a, &short, &m, &v, 4, 0.1, 0.9, 0.999, 1e-8, 0.0, 1), Err(GpuError::Validation(m)) if m.contains("grad holds 2"))
        );
    }
}
