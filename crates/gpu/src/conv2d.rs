//! 2-D convolution (NCHW, stride, padding, dilation, groups) on the GPU, with the semantics of
//! `senet_cpu::conv2d`.
//!
//! Everything is an implicit GEMM: the product of the weights with the im2col matrix of the
//! input, where the tiled GEMM computes each im2col entry on the fly from the input in place
//! instead of reading a materialized im2col buffer (which would be kh*kw times the input:
//! 302 MB for a 3x3 conv on 64 channels at 32x32, batch 128, over the 128 MiB a storage
//! binding may hold). Per group:
//!
//! | pass            | M        | N                    | K                  |
//! |-----------------|----------|----------------------|--------------------|
//! | forward         | `cout_g` | `batch*out_h*out_w`  | `cin_g*kh*kw`      |
//! | backward_input  | `cin_g`  | `batch*in_h*in_w`    | `cout_g*kh*kw`     |
//! | backward_weight | `cout_g` | `cin_g*kh*kw`        | `batch*out_h*out_w`|
//!
//! The group is part of the workgroup index, so each pass is one dispatch for all groups. The
//! input gradient is a gather (each input pixel sums the output positions that read it), and
//! the weight gradient splits its long K into ranges whose partial results are added in a
//! fixed order, so every result is deterministic without atomics. Convolutions with small groups
//! (at most [`DIRECT_MAX_GROUP`] channels in and out: ResNeXt's early stages, depthwise), where
//! a GEMM tile would be a few rows tall, use direct kernels instead. On an adapter with 8-wide
//! subgroups (a CPU adapter such as lavapipe) the three GEMMs run the register-blocked subgroup
//! GEMM of `shaders/gemm_subgroup.wgsl` over the same M, N and K, each shader defining its
//! `sg_*` view of the operands next to the tiled GEMM's. The algorithms are
//! described in `shaders/conv2d.wgsl`, `shaders/conv2d_backward_input.wgsl` and
//! `shaders/conv2d_backward_weight.wgsl`.
use crate::matmul::to_u32;
use crate::{gemm_subgroup, Gpu, GpuBuffer, GpuError, Result, Shader};
use senet_spec::conv2d::Conv2dGeometry;

/// Forward: `forward` (implicit GEMM) and `direct_forward`.
pub const SHADER: Shader = shader!(
    "conv2d",
    [
        "invocation.wgsl",
        "gemm_tile.wgsl",
        "gemm_subgroup.wgsl",
        "conv2d_common.wgsl",
        "conv2d.wgsl"
    ]
);
/// Input gradient: `backward_input` (implicit GEMM) and `direct_backward_input`.
pub const BACKWARD_INPUT_SHADER: Shader = shader!(
    "conv2d_backward_input",
    [
        "invocation.wgsl",
        "gemm_tile.wgsl",
        "gemm_subgroup.wgsl",
        "conv2d_common.wgsl",
        "conv2d_backward_input.wgsl"
    ]
);
/// Weight and bias gradients: `backward_weight` (implicit GEMM) with `reduce_splits`,
/// `direct_backward_weight` and `backward_bias`.
pub const BACKWARD_WEIGHT_SHADER: Shader = shader!(
    "conv2d_backward_weight",
    [
        "invocation.wgsl",
        "workgroup_reduce.wgsl",
        "gemm_tile.wgsl",
        "gemm_subgroup.wgsl",
        "conv2d_common.wgsl",
        "conv2d_backward_weight.wgsl"
    ]
);

/// `shader` with the subgroup GEMM's entry point `gemm_subgroup` appended, built once.
pub(crate) fn subgroup_shader(shader: &Shader) -> Shader {
    use std::sync::OnceLock;
    static FORWARD: OnceLock<String> = OnceLock::new();
    static INPUT: OnceLock<String> = OnceLock::new();
    static WEIGHT: OnceLock<String> = OnceLock::new();
    let (cell, name) = match shader.name {
        "conv2d" => (&FORWARD, "conv2d_subgroup"),
        "conv2d_backward_input" => (&INPUT, "conv2d_backward_input_subgroup"),
        _ => (&WEIGHT, "conv2d_backward_weight_subgroup"),
    };
    Shader {
        name,
        source: gemm_subgroup::with_entry_point(cell, shader.source),
    }
}

/// Rows and columns of the output tile of each GEMM workgroup.
pub const TILE: usize = 64;
/// K elements per shared-memory step.
pub const TILE_K: usize = 16;
/// Threads per workgroup of the 1-D kernels (direct convolutions, reductions).
const WORKGROUP: usize = 256;
/// Most channels per group, in and out, that take the direct kernels: the GEMM's 64-row tile
/// would leave at least 7/8 of its rows idle, and the direct loops are at most 8 * kh * kw long.
pub const DIRECT_MAX_GROUP: usize = 8;

/// The kernels that run a pass: the tiled implicit GEMM, or direct loops for small groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Gemm,
    Direct,
    /// The register-blocked GEMM of `gemm_subgroup.wgsl`, on adapters with 8-wide subgroups.
    Subgroup,
}

wgsl_params! {
    /// `ConvParams` of `shaders/conv2d_common.wgsl`, read by every conv2d kernel.
    pub(crate) struct ConvParams {
        batch: u32,
        cin: u32,
        h: u32,
        w: u32,
        cout: u32,
        oh: u32,
        ow: u32,
        groups: u32,
        kh: u32,
        kw: u32,
        sh: u32,
        sw: u32,
        ph: u32,
        pw: u32,
        dh: u32,
        dw: u32,
        cin_g: u32,
        cout_g: u32,
        /// Weight gradient: number of K ranges, and the length of each (a multiple of TILE_K).
        splits: u32,
        k_split: u32,
        /// Elements of the weight.
        len: u32,
        /// Rounds the uniform up to 16 bytes.
        _pad: [u32; 3],
    }
}

/// A checked geometry: the sizes every pass needs and the shader parameters.
struct Checked {
    p: ConvParams,
    x_len: usize,
    y_len: usize,
    w_len: usize,
    cin_g: usize,
    cout_g: usize,
    taps: usize,
}

impl Checked {
    fn new(g: &Conv2dGeometry, what: &str) -> Result<Checked> {
        g.validate()
            .map_err(|e| GpuError::Validation(format!("{what}: {e}")))?;
        let too_big = || GpuError::Validation(format!("{what}: the sizes of {g:?} overflow"));
        let (oh, ow) = (g.out_h(), g.out_w());
        let mul = |v: &[usize]| {
            v.iter()
                .try_fold(1usize, |a, &b| a.checked_mul(b))
                .ok_or_else(too_big)
        };
        let x_len = mul(&[g.batch, g.in_channels, g.in_h, g.in_w])?;
        let y_len = mul(&[g.batch, g.out_channels, oh, ow])?;
        let taps = mul(&[g.kernel.0, g.kernel.1])?;
        let (cin_g, cout_g) = (g.in_channels / g.groups, g.out_channels / g.groups);
        let w_len = mul(&[g.out_channels, cin_g, taps])?;
        // Every index a kernel forms is below one of these lengths.
        for (name, v) in [
            ("input", x_len),
            ("output", y_len),
            ("weight", w_len),
            (
                "padded input",
                mul(&[g.in_h + 2 * g.padding.0, g.in_w + 2 * g.padding.1])?,
            ),
        ] {
            to_u32(&format!("{what}: {name} of {g:?}"), v)?;
        }
        let u = |v: usize| v as u32; // each is at most one of the lengths checked above
        let p = ConvParams {
            batch: u(g.batch),
            cin: u(g.in_channels),
            h: u(g.in_h),
            w: u(g.in_w),
            cout: u(g.out_channels),
            oh: u(oh),
            ow: u(ow),
            groups: u(g.groups),
            kh: u(g.kernel.0),
            kw: u(g.kernel.1),
            sh: to_u32(what, g.stride.0)?,
            sw: to_u32(what, g.stride.1)?,
            ph: u(g.padding.0),
            pw: u(g.padding.1),
            dh: to_u32(what, g.dilation.0)?,
            dw: to_u32(what, g.dilation.1)?,
            cin_g: u(cin_g),
            cout_g: u(cout_g),
            splits: 1,
            k_split: 0,
            len: u(w_len),
            _pad: [0; 3],
        };
        Ok(Checked {
            p,
            x_len,
            y_len,
            w_len,
            cin_g,
            cout_g,
            taps,
        })
    }

    /// `forced` (tests run every geometry every way), else the fastest one on `gpu` for these
    /// groups.
    /// `texel_len` is the length of the array the subgroup GEMM reads through the texel
    /// texture (its B).
    fn method(&self, forced: Option<Method>, gpu: &Gpu, texel_len: usize) -> Method {
        forced.unwrap_or(if self.cin_g.max(self.cout_g) <= DIRECT_MAX_GROUP {
            Method::Direct
        } else if gemm_subgroup::available(gpu) && gpu.texels_fit(texel_len) {
            Method::Subgroup
        } else {
            Method::Gemm
        })
    }
}

fn check_len(
    what: &str,
    name: &str,
    buf: &GpuBuffer,
    want: usize,
    g: &Conv2dGeometry,
) -> Result<()> {
    if buf.len() == want {
        Ok(())
    } else {
        Err(GpuError::Validation(format!(
            "{what}: {name} has {} elements, the geometry needs {want} ({g:?})",
            buf.len()
        )))
    }
}

/// One dispatch of a pass. The subgroup GEMM reads the array at `b_binding` (its B) through
/// the texel texture (see `shaders/gemm_subgroup.wgsl`), so that one is left out of its buffers.
#[allow(clippy::too_many_arguments)]
fn launch(
    gpu: &Gpu,
    method: Method,
    shader: &Shader,
    entry: &str,
    constants: &[(&str, f64)],
    params: &ConvParams,
    buffers: &[(u32, &GpuBuffer)],
    b_binding: u32,
    groups: usize,
) -> Result<()> {
    let params = bytemuck::bytes_of(params);
    let grid = gpu.grid_1d(groups);
    if method != Method::Subgroup {
        return gpu.dispatch(shader, entry, constants, params, buffers, grid);
    }
    let b = buffers
        .iter()
        .find(|(at, _)| *at == b_binding)
        .map(|(_, b)| *b);
    let rest: Vec<(u32, &GpuBuffer)> = buffers
        .iter()
        .filter(|(at, _)| *at != b_binding)
        .copied()
        .collect();
    gpu.dispatch_reading_texels(shader, entry, constants, params, &rest, b, grid)
}

/// Workgroups of a GEMM with an `m x n` output per group (and per K split).
fn gemm_tiles(m: usize, n: usize, copies: usize) -> usize {
    m.div_ceil(TILE) * n.div_ceil(TILE) * copies
}

/// y = conv(x, w) + bias, `[batch, out_channels, out_h, out_w]`; `x` is
/// `[batch, in_channels, in_h, in_w]`, `w` `[out_channels, in_channels / groups, kh, kw]`,
/// `bias` `[out_channels]`.
pub fn forward(
    g: &Conv2dGeometry,
    x: &GpuBuffer,
    w: &GpuBuffer,
    bias: Option<&GpuBuffer>,
) -> Result<GpuBuffer> {
    forward_using(g, x, w, bias, None)
}

fn forward_using(
    g: &Conv2dGeometry,
    x: &GpuBuffer,
    w: &GpuBuffer,
    bias: Option<&GpuBuffer>,
    method: Option<Method>,
) -> Result<GpuBuffer> {
    let what = "conv2d forward";
    let c = Checked::new(g, what)?;
    check_len(what, "x", x, c.x_len, g)?;
    check_len(what, "weight", w, c.w_len, g)?;
    if let Some(b) = bias {
        check_len(what, "bias", b, g.out_channels, g)?;
    }
    let gpu = x.gpu();
    let y = gpu.alloc(c.y_len)?;
    let constants = [("HAS_BIAS", if bias.is_some() { 1.0 } else { 0.0 })];
    // Without a bias the declared binding 3 gets `w` (two read-only uses are fine).
    let buffers = [(1, x), (2, w), (3, bias.unwrap_or(w)), (4, &y)];
    let method = c.method(method, gpu, c.x_len);
    let (shader, entry, groups) = match method {
        Method::Direct => (SHADER, "direct_forward", c.y_len.div_ceil(WORKGROUP)),
        Method::Gemm => (
            SHADER,
            "forward",
            gemm_tiles(c.cout_g, c.y_len / g.out_channels, g.groups),
        ),
        Method::Subgroup => (
            subgroup_shader(&SHADER),
            "gemm_subgroup",
            gemm_subgroup::workgroups(c.cout_g, c.y_len / g.out_channels, g.groups),
        ),
    };
    launch(
        gpu, method, &shader, entry, &constants, &c.p, &buffers, 1, groups,
    )?;
    Ok(y)
}

/// dx `[batch, in_channels, in_h, in_w]` from the output gradient `dy`.
pub fn backward_input(g: &Conv2dGeometry, w: &GpuBuffer, dy: &GpuBuffer) -> Result<GpuBuffer> {
    backward_input_using(g, w, dy, None)
}

fn backward_input_using(
    g: &Conv2dGeometry,
    w: &GpuBuffer,
    dy: &GpuBuffer,
    method: Option<Method>,
) -> Result<GpuBuffer> {
    let what = "conv2d backward_input";
    let c = Checked::new(g, what)?;
    check_len(what, "weight", w, c.w_len, g)?;
    check_len(what, "dy", dy, c.y_len, g)?;
    let gpu = w.gpu();
    let dx = gpu.alloc(c.x_len)?;
    let method = c.method(method, gpu, c.y_len);
    let (shader, entry, groups, constants) = match method {
        Method::Direct => (
            BACKWARD_INPUT_SHADER,
            "direct_backward_input",
            c.x_len.div_ceil(WORKGROUP),
            vec![],
        ),
        Method::Gemm => (
            BACKWARD_INPUT_SHADER,
            "backward_input",
            gemm_tiles(c.cin_g, c.x_len / g.in_channels, g.groups),
            vec![],
        ),
        Method::Subgroup => {
            // One product per (group, stride phase), each over the largest phase's pixels
            // (shaders/conv2d_backward_input.wgsl).
            let (sh, sw) = g.stride;
            let columns = g.batch * g.in_h.div_ceil(sh) * g.in_w.div_ceil(sw);
            let products = g
                .groups
                .checked_mul(sh)
                .and_then(|v| v.checked_mul(sw))
                .filter(|&v| u32::try_from(v).is_ok())
                .ok_or_else(|| {
                    GpuError::Validation(format!(
                        "{what}: {} groups x {sh} x {sw} stride phases do not fit in u32 ({g:?})",
                        g.groups
                    ))
                })?;
            (
                subgroup_shader(&BACKWARD_INPUT_SHADER),
                "gemm_subgroup",
                gemm_subgroup::workgroups(c.cin_g, columns, products),
                vec![],
            )
        }
    };
    let buffers = [(1, w), (2, dy), (3, &dx)];
    launch(
        gpu, method, &shader, entry, &constants, &c.p, &buffers, 2, groups,
    )?;
    Ok(dx)
}

/// dw with the weight's shape, summed over the batch in a fixed order.
pub fn backward_weight(g: &Conv2dGeometry, x: &GpuBuffer, dy: &GpuBuffer) -> Result<GpuBuffer> {
    backward_weight_using(g, x, dy, None, None)
}

/// How many K ranges the weight gradient's GEMM is split into: enough workgroups to fill a
/// large GPU, each range still long enough to amortize its tile setup and the extra pass over
/// its partial result, and the scratch buffer at most 64 MiB.
fn weight_splits(tiles: usize, kdim: usize, w_len: usize) -> usize {
    const TARGET_WORKGROUPS: usize = 512;
    const MIN_K_PER_SPLIT: usize = 256;
    const MAX_SCRATCH: usize = 16 << 20;
    TARGET_WORKGROUPS
        .div_ceil(tiles)
        .min(kdim / MIN_K_PER_SPLIT)
        .min(MAX_SCRATCH / w_len)
        .clamp(1, 64)
}

/// [`backward_weight`] with the method and the GEMM's number of K ranges chosen (`None`: by
/// [`Checked::method`] and [`weight_splits`]).
fn backward_weight_using(
    g: &Conv2dGeometry,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    method: Option<Method>,
    splits: Option<usize>,
) -> Result<GpuBuffer> {
    let what = "conv2d backward_weight";
    let mut c = Checked::new(g, what)?;
    check_len(what, "x", x, c.x_len, g)?;
    check_len(what, "dy", dy, c.y_len, g)?;
    let gpu = x.gpu();
    let dw = gpu.alloc(c.w_len)?;
    let method = c.method(method, gpu, c.x_len);
    if method == Method::Direct {
        gpu.dispatch(
            &BACKWARD_WEIGHT_SHADER,
            "direct_backward_weight",
            &[("RWG", f64::from(gpu.reduce_workgroup()))],
            bytemuck::bytes_of(&c.p),
            &[(1, dy), (2, x), (3, &dw)],
            gpu.grid_1d(c.w_len),
        )?;
        return Ok(dw);
    }
    let kdim = c.y_len / g.out_channels;
    let (shader, entry, tiles) = if method == Method::Subgroup {
        let tiles = gemm_subgroup::workgroups(c.cout_g, c.cin_g * c.taps, g.groups);
        (
            subgroup_shader(&BACKWARD_WEIGHT_SHADER),
            "gemm_subgroup",
            tiles,
        )
    } else {
        let tiles = gemm_tiles(c.cout_g, c.cin_g * c.taps, g.groups);
        (BACKWARD_WEIGHT_SHADER, "backward_weight", tiles)
    };
    let splits = splits
        .unwrap_or_else(|| weight_splits(tiles, kdim, c.w_len))
        .clamp(1, kdim);
    let k_split = kdim.div_ceil(splits).next_multiple_of(TILE_K);
    // Rounding k_split up may leave fewer non-empty ranges than asked for.
    let splits = kdim.div_ceil(k_split);
    c.p.splits = splits as u32; // at most kdim, checked to fit in u32
    c.p.k_split = k_split as u32; // at most kdim + 15: fine, kdim is at most y_len
    if splits == 1 {
        let buffers = [(1, dy), (2, x), (3, &dw)];
        launch(gpu, method, &shader, entry, &[], &c.p, &buffers, 2, tiles)?;
        return Ok(dw);
    }
    let scratch_len = splits * c.w_len;
    to_u32(
        &format!("{what}: {splits} partial weight gradients"),
        scratch_len,
    )?;
    let partials = gpu.alloc(scratch_len)?;
    let buffers = [(1, dy), (2, x), (3, &partials)];
    launch(
        gpu,
        method,
        &shader,
        entry,
        &[],
        &c.p,
        &buffers,
        2,
        tiles * splits,
    )?;
    gpu.dispatch(
        &BACKWARD_WEIGHT_SHADER,
        "reduce_splits",
        &[],
        bytemuck::bytes_of(&c.p),
        &[(1, &partials), (3, &dw)],
        gpu.grid_1d(c.w_len.div_ceil(WORKGROUP)),
    )?;
    Ok(dw)
}

/// dbias `[out_channels]`: dy summed over the batch and the output positions.
pub fn backward_bias(g: &Conv2dGeometry, dy: &GpuBuffer) -> Result<GpuBuffer> {
    let what = "conv2d backward_bias";
    let c = Checked::new(g, what)?;
    check_len(what, "dy", dy, c.y_len, g)?;
    let gpu = dy.gpu();
    let db = gpu.alloc(g.out_channels)?;
    gpu.dispatch(
        &BACKWARD_WEIGHT_SHADER,
        "backward_bias",
        &[("RWG", f64::from(gpu.reduce_workgroup()))],
        bytemuck::bytes_of(&c.p),
        &[(1, dy), (3, &db)],
        gpu.grid_1d(g.out_channels),
    )?;
    Ok(db)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{gemm_kernels, gpu_for_tests, GEMM_TOL};
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use senet_cpu::conv2d as cpu;
    use senet_spec::cases::{conv2d_cases, conv2d_geometry as geom};
    use senet_spec::testing::{assert_close, rand_vec};

    #[test]
    fn every_pass_matches_the_cpu_kernel() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = StdRng::seed_from_u64(5);
        for g in conv2d_cases() {
            let x = rand_vec::<f32>(
                &mut rng,
                g.batch * g.in_channels * g.in_h * g.in_w,
                -1.0,
                1.0,
            );
            let w = rand_vec::<f32>(&mut rng, g.weight_len(), -1.0, 1.0);
            let b = rand_vec::<f32>(&mut rng, g.out_channels, -1.0, 1.0);
            let dy = rand_vec::<f32>(
                &mut rng,
                g.batch * g.out_channels * g.out_h() * g.out_w(),
                -1.0,
                1.0,
            );
            let (xg, wg, bg, dyg) = (
                gpu.upload(&x).unwrap(),
                gpu.upload(&w).unwrap(),
                gpu.upload(&b).unwrap(),
                gpu.upload(&dy).unwrap(),
            );
            let read = |buf: GpuBuffer| gpu.read::<f32>(&buf).unwrap();
            let (want_y, want_y_nobias) = (
                cpu::forward(&g, &x, &w, Some(&b)),
                cpu::forward(&g, &x, &w, None),
            );
            let (want_dx, want_dw) = (
                cpu::backward_input(&g, &w, &dy),
                cpu::backward_weight(&g, &x, &dy),
            );
            // Both methods on every geometry: each is correct for any groups, and the automatic
            // choice depends on the group size.
            let mut methods = vec![Method::Gemm, Method::Direct];
            if gemm_kernels(&gpu).contains(&true) {
                methods.push(Method::Subgroup);
            }
            for &m in &methods {
                let case = format!("{m:?} {g:?}");
                let got = read(forward_using(&g, &xg, &wg, Some(&bg), Some(m)).unwrap());
                assert_close(&format!("forward {case}"), &got, &want_y, GEMM_TOL);
                let got = read(forward_using(&g, &xg, &wg, None, Some(m)).unwrap());
                assert_close(
                    &format!("forward no bias {case}"),
                    &got,
                    &want_y_nobias,
                    GEMM_TOL,
                );
                let got = read(backward_input_using(&g, &wg, &dyg, Some(m)).unwrap());
                assert_close(&format!("backward_input {case}"), &got, &want_dx, GEMM_TOL);
                // The direct kernel reduces in a workgroup: both its sizes (RWG 256 and 8).
                crate::testing::with_each_kernel_choice(&gpu, |tuned| {
                    if tuned || m == Method::Direct {
                        let got =
                            read(backward_weight_using(&g, &xg, &dyg, Some(m), None).unwrap());
                        let what = format!("backward_weight tuned {tuned} {case}");
                        assert_close(&what, &got, &want_dw, GEMM_TOL);
                    }
                });
            }
            // The public entry points (automatic method).
            assert_close(
                &format!("forward {g:?}"),
                &read(forward(&g, &xg, &wg, Some(&bg)).unwrap()),
                &want_y,
                GEMM_TOL,
            );
            assert_close(
                &format!("backward_input {g:?}"),
                &read(backward_input(&g, &wg, &dyg).unwrap()),
                &want_dx,
                GEMM_TOL,
            );
            assert_close(
                &format!("backward_weight {g:?}"),
                &read(backward_weight(&g, &xg, &dyg).unwrap()),
                &want_dw,
                GEMM_TOL,
            );
            crate::testing::with_each_kernel_choice(&gpu, |tuned| {
                assert_close(
                    &format!("backward_bias tuned {tuned} {g:?}"),
                    &read(backward_bias(&g, &dyg).unwrap()),
                    &cpu::backward_bias(&g, &dy),
                    GEMM_TOL,
                );
            });
            // Forced K splits of the GEMM, including more splits than K steps (some clamp away).
            let gemms = methods.iter().filter(|&&m| m != Method::Direct);
            for (&m, splits) in gemms.flat_map(|m| [2, 3, 1000].map(|s| (m, s))) {
                let got =
                    read(backward_weight_using(&g, &xg, &dyg, Some(m), Some(splits)).unwrap());
                assert_close(
                    &format!("backward_weight {m:?} splits={splits} {g:?}"),
                    &got,
                    &want_dw,
                    GEMM_TOL,
                );
            }
        }
    }

    #[test]
    fn weight_gradient_is_deterministic() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = StdRng::seed_from_u64(6);
        let g = geom((2, 2, 20, 20, 3), (3, 3), (1, 1), (1, 1), (1, 1), 1);
        let x = gpu
            .upload(&rand_vec::<f32>(&mut rng, 2 * 2 * 400, -1.0, 1.0))
            .unwrap();
        let dy = gpu
            .upload(&rand_vec::<f32>(&mut rng, 2 * 3 * 400, -1.0, 1.0))
            .unwrap();
        let mut methods = vec![Method::Gemm, Method::Direct];
        if gemm_kernels(&gpu).contains(&true) {
            methods.push(Method::Subgroup);
        }
        for m in methods {
            let run = || {
                gpu.read::<f32>(&backward_weight_using(&g, &x, &dy, Some(m), None).unwrap())
                    .unwrap()
                    .iter()
                    .map(|v| v.to_bits())
                    .collect::<Vec<_>>()
            };
            assert_eq!(run(), run(), "{m:?}");
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let g = geom((2, 4, 5, 5, 6), (3, 3), (1, 1), (1, 1), (1, 1), 2);
        let x = gpu.upload(&vec![0.0f32; 2 * 4 * 25]).unwrap();
        let w = gpu.upload(&vec![0.0f32; g.weight_len() - 1]).unwrap();
        match forward(&g, &x, &w, None) {
            Err(GpuError::Validation(m)) => {
                assert!(m.contains("weight has 107") && m.contains("108"), "{m}")
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
        let bad = Conv2dGeometry { groups: 3, ..g };
        match backward_bias(&bad, &x) {
            Err(GpuError::Validation(m)) => assert!(m.contains("groups 3"), "{m}"),
            other => panic!("expected a validation error, got {other:?}"),
        }
        assert!(matches!(
            backward_weight(&g, &x, &x),
            Err(GpuError::Validation(_))
        ));
    }
}
