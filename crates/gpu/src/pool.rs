//! Launchers for `shaders/pool.wgsl`: max and average 2-D pooling and their backward passes,
//! with the semantics of `senet_cpu::pool` (PyTorch's, ceil_mode = false).
//!
//! Max pooling also returns the argmax of every output as a u32 `h * in_w + w` within its
//! (sample, channel) plane. The backward kernels gather (one thread per input element over the
//! windows that cover it) instead of scattering, so they need no atomics and are deterministic.
use crate::elementwise::check_len;
use crate::{GpuBuffer, GpuError, Result, Shader};
use senet_spec::pool::Pool2dGeometry;
use std::sync::Arc;

pub const SHADER: Shader = shader!("pool", ["invocation.wgsl", "pool.wgsl"]);

/// Threads per workgroup of every kernel in the shader.
const WORKGROUP: usize = 256;

wgsl_params! {
    /// `PoolParams` of the shader.
    pub(crate) struct PoolParams {
        len: u32,
        in_h: u32,
        in_w: u32,
        out_h: u32,
        out_w: u32,
        kh: u32,
        kw: u32,
        sh: u32,
        sw: u32,
        ph: u32,
        pw: u32,
        /// Rounds the uniform up to 16 bytes.
        _pad: u32,
    }
}

/// A validated geometry: element counts of x and y, and the uniform (its `len` still unset).
struct Checked {
    n_in: usize,
    n_out: usize,
    params: PoolParams,
}

fn check(what: &str, g: &Pool2dGeometry) -> Result<Checked> {
    // The shader works in u32 on padded coordinates: in + 2 * pad bounds every position, kernel
    // and padding (validate() has k <= in + 2 * pad), and the stride is only divided by.
    let dims = [
        ("height", g.in_h, g.padding.0, g.stride.0),
        ("width", g.in_w, g.padding.1, g.stride.1),
    ];
    for (name, input, pad, stride) in dims {
        let padded = pad.checked_mul(2).and_then(|p| p.checked_add(input));
        if padded.is_none_or(|v| v > u32::MAX as usize) || stride > u32::MAX as usize {
            return Err(GpuError::Validation(format!("{what}: padded input {name} ({input} + 2 * {pad}) and stride {stride} must fit in 32 bits")));
        }
    }
    // After the 32-bit check, so validate()'s own arithmetic cannot overflow.
    g.validate()
        .map_err(|e| GpuError::Validation(format!("{what}: {e}")))?;
    let planes = g.batch.checked_mul(g.channels);
    let n_in = planes.and_then(|p| p.checked_mul(g.in_h * g.in_w));
    let n_out = planes.and_then(|p| p.checked_mul(g.out_h() * g.out_w()));
    let (Some(n_in), Some(n_out)) = (n_in, n_out) else {
        return Err(GpuError::Validation(format!(
            "{what}: {g:?} has more elements than memory can hold"
        )));
    };
    check_len(&format!("{what} input {g:?}"), n_in)?;
    check_len(&format!("{what} output {g:?}"), n_out)?;
    let params = PoolParams {
        len: 0,
        in_h: g.in_h as u32,
        in_w: g.in_w as u32,
        out_h: g.out_h() as u32,
        out_w: g.out_w() as u32,
        kh: g.kernel.0 as u32,
        kw: g.kernel.1 as u32,
        sh: g.stride.0 as u32,
        sw: g.stride.1 as u32,
        ph: g.padding.0 as u32,
        pw: g.padding.1 as u32,
        _pad: 0,
    };
    Ok(Checked {
        n_in,
        n_out,
        params,
    })
}

fn expect(what: &str, name: &str, b: &GpuBuffer, want: usize, g: &Pool2dGeometry) -> Result<()> {
    if b.len() != want {
        return Err(GpuError::Validation(format!(
            "{what}: {name} has {} elements, the geometry {g:?} needs {want}",
            b.len()
        )));
    }
    Ok(())
}

/// One thread per element of `len`; `buffers` are (binding, buffer), the last the output.
fn run(
    entry: &str,
    mut params: PoolParams,
    len: usize,
    buffers: &[(u32, &GpuBuffer)],
) -> Result<()> {
    let gpu = buffers[buffers.len() - 1].1.gpu();
    if let Some((binding, b)) = buffers.iter().find(|(_, b)| !Arc::ptr_eq(b.gpu(), gpu)) {
        return Err(GpuError::Validation(format!(
            "pool {entry}: binding {binding} lives on gpu:{}, the output on gpu:{}",
            b.gpu().id,
            gpu.id
        )));
    }
    params.len = len as u32;
    gpu.dispatch(
        &SHADER,
        entry,
        &[],
        bytemuck::bytes_of(&params),
        buffers,
        gpu.grid_1d(len.div_ceil(WORKGROUP)),
    )
}

/// Max pooling: returns `(y, argmax)`, argmax being the u32 `h * in_w + w` within the input
/// plane of the first maximum in row-major window order (a NaN wins, as in PyTorch).
pub fn max_forward(g: &Pool2dGeometry, x: &GpuBuffer) -> Result<(GpuBuffer, GpuBuffer)> {
    let what = "max_pool2d forward";
    let c = check(what, g)?;
    expect(what, "x", x, c.n_in, g)?;
    let gpu = x.gpu();
    let (y, arg) = (gpu.alloc(c.n_out)?, gpu.alloc(c.n_out)?);
    run(
        "max_forward",
        c.params,
        c.n_out,
        &[(1, x), (2, &y), (3, &arg)],
    )?;
    Ok((y, arg))
}

/// dx `[batch, channels, in_h, in_w]`: every dy summed into the input element its argmax names.
pub fn max_backward(g: &Pool2dGeometry, argmax: &GpuBuffer, dy: &GpuBuffer) -> Result<GpuBuffer> {
    let what = "max_pool2d backward";
    let c = check(what, g)?;
    expect(what, "argmax", argmax, c.n_out, g)?;
    expect(what, "dy", dy, c.n_out, g)?;
    let dx = dy.gpu().alloc(c.n_in)?;
    run(
        "max_backward",
        c.params,
        c.n_in,
        &[(1, dy), (3, argmax), (2, &dx)],
    )?;
    Ok(dx)
}

/// Average pooling, dividing by the kernel area whatever the padding (count_include_pad).
pub fn avg_forward(g: &Pool2dGeometry, x: &GpuBuffer) -> Result<GpuBuffer> {
    let what = "avg_pool2d forward";
    let c = check(what, g)?;
    expect(what, "x", x, c.n_in, g)?;
    let y = x.gpu().alloc(c.n_out)?;
    run("avg_forward", c.params, c.n_out, &[(1, x), (2, &y)])?;
    Ok(y)
}

/// dx `[batch, channels, in_h, in_w]`: each window's dy / area summed over the windows that
/// cover the element.
pub fn avg_backward(g: &Pool2dGeometry, dy: &GpuBuffer) -> Result<GpuBuffer> {
    let what = "avg_pool2d backward";
    let c = check(what, g)?;
    expect(what, "dy", dy, c.n_out, g)?;
    let dx = dy.gpu().alloc(c.n_in)?;
    run("avg_backward", c.params, c.n_in, &[(1, dy), (2, &dx)])?;
    Ok(dx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gpu_for_tests;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use senet_cpu::pool as cpu;
    use senet_spec::cases::{pool2d_cases, pool2d_geometry as geom};
    use senet_spec::testing::{assert_close, rand_vec};

    /// f32 on both devices, but WGSL allows division 2.5 ulps of error and the GPU may fuse or
    /// reorder; 1e-4 relative (absolute near zero) is far above that and far below any bug.
    const TOL: f64 = 1e-4;

    /// `n` distinct values in random order, all negative when `n` is small (so a padded zero
    /// would win a max if padding were treated as 0).
    fn distinct(rng: &mut StdRng, n: usize) -> Vec<f32> {
        let mut v: Vec<f32> = (0..n).map(|i| i as f32 * 0.37 - 50.0).collect();
        for i in (1..n).rev() {
            v.swap(i, rng.random_range(0..=i));
        }
        v
    }

    #[test]
    fn pooling_matches_the_cpu_kernel() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = StdRng::seed_from_u64(7);
        for g in pool2d_cases() {
            let n_in = g.batch * g.channels * g.in_h * g.in_w;
            let n_out = g.batch * g.channels * g.out_h() * g.out_w();
            let x = distinct(&mut rng, n_in);
            // Few distinct values, so windows tie: the first-max rule must match too.
            let ties: Vec<f32> = (0..n_in).map(|_| rng.random_range(0..3) as f32).collect();
            let dy = rand_vec::<f32>(&mut rng, n_out, -1.0, 1.0);
            let dyb = gpu.upload(&dy).unwrap();
            for (kind, input) in [("distinct", &x), ("ties", &ties)] {
                let ctx = format!("{kind} {g:?}");
                let xb = gpu.upload(input).unwrap();
                let (y, arg) = max_forward(&g, &xb).unwrap();
                let (ry, rarg) = cpu::max_forward(&g, input);
                assert_close(
                    &format!("max y {ctx}"),
                    &gpu.read::<f32>(&y).unwrap(),
                    &ry,
                    TOL,
                );
                assert_eq!(gpu.read::<u32>(&arg).unwrap(), rarg, "max argmax {ctx}");
                let dx = max_backward(&g, &arg, &dyb).unwrap();
                assert_close(
                    &format!("max backward {ctx}"),
                    &gpu.read::<f32>(&dx).unwrap(),
                    &cpu::max_backward(&g, &rarg, &dy),
                    TOL,
                );
                let y = avg_forward(&g, &xb).unwrap();
                assert_close(
                    &format!("avg y {ctx}"),
                    &gpu.read::<f32>(&y).unwrap(),
                    &cpu::avg_forward(&g, input),
                    TOL,
                );
            }
            let dx = avg_backward(&g, &dyb).unwrap();
            assert_close(
                &format!("avg backward {g:?}"),
                &gpu.read::<f32>(&dx).unwrap(),
                &cpu::avg_backward(&g, &dy),
                TOL,
            );
        }
    }

    #[test]
    fn max_pool_takes_nan_like_the_cpu() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let g = geom((1, 1, 2, 3), (2, 2), (1, 1), (0, 0));
        let x = [1.0f32, f32::NAN, 2.0, 5.0, 0.0, 3.0];
        let (y, arg) = max_forward(&g, &gpu.upload(&x).unwrap()).unwrap();
        let (y, arg) = (gpu.read::<f32>(&y).unwrap(), gpu.read::<u32>(&arg).unwrap());
        let (ry, rarg) = cpu::max_forward(&g, &x);
        assert!(
            y.iter()
                .zip(&ry)
                .all(|(a, b)| a.is_nan() && b.is_nan() || a == b),
            "{y:?} vs {ry:?}"
        );
        assert_eq!(arg, rarg);
    }

    #[test]
    fn pooling_rejects_bad_sizes() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let g = geom((1, 2, 4, 4), (2, 2), (2, 2), (0, 0));
        let x = gpu.upload(&[0.0f32; 31]).unwrap();
        let msg = |r: Result<()>| match r {
            Err(GpuError::Validation(m)) => m,
            other => panic!("expected a validation error, got {:?}", other.err()),
        };
        let m = msg(max_forward(&g, &x).map(|_| ()));
        assert!(m.contains("x has 31") && m.contains("32"), "{m}");
        let dy = gpu.upload(&[0.0f32; 8]).unwrap();
        let m = msg(max_backward(&g, &gpu.upload(&[0u32; 7]).unwrap(), &dy).map(|_| ()));
        assert!(m.contains("argmax has 7"), "{m}");
        let m = msg(avg_backward(&g, &x).map(|_| ()));
        assert!(m.contains("dy has 31"), "{m}");
        let bad = Pool2dGeometry {
            padding: (2, 0),
            ..g
        };
        let m = msg(avg_forward(&bad, &x).map(|_| ()));
        assert!(m.contains("padding height 2"), "{m}");
        let m = msg(avg_forward(
            &Pool2dGeometry {
                stride: (0, 1),
                ..g
            },
            &x,
        )
        .map(|_| ()));
        assert!(m.contains("stride"), "{m}");
        // A stride that would wrap to 0 in the shader's u32.
        let huge = Pool2dGeometry {
            stride: (1 << 40, 1),
            ..g
        };
        let m = msg(max_forward(&huge, &x).map(|_| ()));
        assert!(
            m.contains("stride 1099511627776") && m.contains("32 bits"),
            "{m}"
        );
    }
}
