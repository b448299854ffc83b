//! Launchers for `shaders/elementwise.wgsl`.
use crate::{GpuBuffer, GpuError, Result, Shader};
use bytemuck::{Pod, Zeroable};
use senet_cpu::elementwise::UnaryOp;

pub const SHADER: Shader = Shader { name: "elementwise", source: include_str!("../../../shaders/elementwise.wgsl") };

/// Threads per workgroup of every 1-D kernel in the shader.
const WORKGROUP: usize = 256;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct UnaryParams {
    len: u32,
    arg: f32,
    _pad: [u32; 2],
}

/// Errors unless `len` elements can be indexed with u32 in a shader.
pub(crate) fn check_len(what: &str, len: usize) -> Result<u32> {
    u32::try_from(len).map_err(|_| GpuError::OutOfMemory(format!("{what}: {len} elements are more than a kernel can index (2^32)")))
}

/// `op` applied to each of the first `len` elements of `x`.
pub fn unary(x: &GpuBuffer, len: usize, op: UnaryOp) -> Result<GpuBuffer> {
    let gpu = x.gpu();
    // Codes match the `switch` in the shader.
    let (code, arg) = match op {
        UnaryOp::Neg => (0, 0.0),
        UnaryOp::Exp => (1, 0.0),
        UnaryOp::Log => (2, 0.0),
        UnaryOp::Sqrt => (3, 0.0),
        UnaryOp::Powf(p) => (4, p),
        UnaryOp::Relu => (5, 0.0),
        UnaryOp::Sigmoid => (6, 0.0),
        UnaryOp::Tanh => (7, 0.0),
        UnaryOp::Scale(c) => (8, c),
        UnaryOp::AddScalar(c) => (9, c),
        UnaryOp::Step => (10, 0.0),
    };
    let params = UnaryParams { len: check_len("unary", len)?, arg: arg as f32, _pad: [0; 2] };
    let y = gpu.alloc(len)?;
    gpu.dispatch(&SHADER, "unary", &[("OP", code as f64)], bytemuck::bytes_of(&params), &[(1, x), (2, &y)], gpu.grid_1d(len.div_ceil(WORKGROUP)))?;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::gpu_for_tests;
    use rand::{Rng, SeedableRng};

    #[test]
    fn unary_ops_match_the_cpu_kernel() {
        let Some((_lock, gpu)) = gpu_for_tests() else { return };
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        // Sizes below, at and above one workgroup.
        for len in [1usize, 255, 256, 1000] {
            let x: Vec<f32> = (0..len).map(|_| rng.random_range(0.1f32..3.0)).collect();
            let xb = gpu.upload(&x).unwrap();
            for op in [UnaryOp::Neg, UnaryOp::Exp, UnaryOp::Log, UnaryOp::Sqrt, UnaryOp::Powf(1.5), UnaryOp::Relu, UnaryOp::Sigmoid, UnaryOp::Tanh, UnaryOp::Scale(-2.0), UnaryOp::AddScalar(0.5), UnaryOp::Step] {
                let got: Vec<f32> = gpu.read(&unary(&xb, len, op).unwrap()).unwrap();
                let want = senet_cpu::elementwise::unary(&x, op);
                for (g, w) in got.iter().zip(&want) {
                    // GPU transcendental functions may differ by a few ulps from Rust's.
                    assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{op:?}: {g} vs {w}");
                }
            }
        }
    }
}
