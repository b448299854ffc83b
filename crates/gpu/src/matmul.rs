//! Launchers for `shaders/matmul.wgsl`: a tiled GEMM over strided, batched operands.
//!
//! [`gemm`] computes `C[g] = A[g] @ B[g] (+ bias[g])` where each operand is a [`MatrixLayout`]:
//! an offset and a batch, row and column stride into a flat buffer. That one description covers
//! a plain row-major product, transposed operands (swap the strides), a column slice of a wider
//! array (a group of a grouped linear layer: row stride = full row, batch stride = slice
//! width), and an operand shared by every batch entry (batch stride 0). [`matmul`] is the
//! plain batched product of `senet_spec::matmul` built on it.
//!
//! The kernel gives each workgroup a [`TILE_M`] x [`TILE_N`] tile of C and walks K in steps of
//! [`TILE_K`] through workgroup memory; the shader's header explains the tiling. All batch
//! entries and tiles go in one dispatch.
use crate::runtime::TEXEL_ROW;
use crate::{gemm_subgroup, Gpu, GpuBuffer, GpuError, Result, Shader};
use senet_spec::matmul::MatmulShape;

pub const SHADER: Shader = shader!(
    "matmul",
    [
        "invocation.wgsl",
        "gemm_tile.wgsl",
        "gemm_subgroup.wgsl",
        "matmul.wgsl"
    ]
);

/// [`SHADER`] with the subgroup GEMM's entry points `gemm_subgroup` and `gemm_subgroup_vec4`
/// appended.
pub fn subgroup_shader() -> Shader {
    static SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let source = SOURCE.get_or_init(|| {
        format!(
            "{}\n{}\n{}",
            SHADER.source,
            gemm_subgroup::entry_point(),
            gemm_subgroup::entry_point_vec4()
        )
    });
    Shader {
        name: "matmul_subgroup",
        source,
    }
}

/// Whether the subgroup GEMM can read A and B four elements per texel fetch
/// (`gemm_subgroup_vec4`): both have rows of stride-1 elements, every offset and stride of
/// theirs is a multiple of 4, and so is n. `la`, `lb` are the checked layouts (offset, batch,
/// row, column stride).
fn four_wide(n: usize, la: [u32; 4], lb: [u32; 4]) -> bool {
    let aligned = |l: [u32; 4]| l[3] == 1 && l[..3].iter().all(|v| v.is_multiple_of(4));
    n.is_multiple_of(4) && aligned(la) && aligned(lb)
}

/// Rows of C per workgroup.
pub const TILE_M: usize = 64;
/// Columns of C per workgroup.
pub const TILE_N: usize = 64;
/// K elements per shared-memory step.
pub const TILE_K: usize = 16;

/// Where a batch of matrices lives in a flat array: element `(g, i, j)` is at
/// `offset + g * batch_stride + i * row_stride + j * col_stride`. Strides may be 0 (the same
/// row, column or matrix repeated).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MatrixLayout {
    pub offset: usize,
    pub batch_stride: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl MatrixLayout {
    /// A contiguous row-major `[batch, rows, cols]` array.
    pub fn row_major(rows: usize, cols: usize) -> Self {
        MatrixLayout {
            offset: 0,
            batch_stride: rows * cols,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The largest index a `[batch, rows, cols]` view touches, `None` when it is empty.
    fn last_index(&self, batch: usize, rows: usize, cols: usize) -> Option<usize> {
        if batch == 0 || rows == 0 || cols == 0 {
            return None;
        }
        // Saturating: an overflow reads as "past the end", which the caller reports.
        let far = ((batch - 1).saturating_mul(self.batch_stride))
            .saturating_add((rows - 1).saturating_mul(self.row_stride))
            .saturating_add((cols - 1).saturating_mul(self.col_stride));
        Some(self.offset.saturating_add(far))
    }
}

/// Sizes and layouts of a strided batched product: `C[g] (m x n) = A[g] (m x k) @ B[g] (k x n)`
/// for `g` in `0..batch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmShape {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: MatrixLayout,
    pub b: MatrixLayout,
    pub c: MatrixLayout,
}

wgsl_params! {
    /// `GemmParams` of `shaders/matmul.wgsl`. A layout is (offset, batch stride, row stride,
    /// column stride), a `vec4<u32>` in the shader.
    pub(crate) struct GemmParams {
        m: u32,
        n: u32,
        k: u32,
        batch: u32,
        a: [u32; 4],
        b: [u32; 4],
        c: [u32; 4],
        bias: [u32; 4],
    }
}

/// `v` as a shader index, or an error naming `what` when it does not fit in u32.
pub(crate) fn to_u32(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        GpuError::OutOfMemory(format!(
            "{what}: {v} is more than a kernel can index (2^32)"
        ))
    })
}

/// Errors unless every index of the view is inside a buffer of `len` elements.
fn check_view(
    what: &str,
    name: &str,
    l: &MatrixLayout,
    (batch, rows, cols): (usize, usize, usize),
    len: usize,
) -> Result<[u32; 4]> {
    if let Some(last) = l.last_index(batch, rows, cols) {
        if last >= len {
            return Err(GpuError::Validation(format!("{what}: {name} viewed as [{batch}, {rows}, {cols}] with {l:?} reaches index {last}, but the buffer has {len} elements")));
        }
        to_u32(&format!("{what}: the last index of {name}"), last)?;
    }
    let u = |v: usize| {
        u32::try_from(v).map_err(|_| {
            GpuError::OutOfMemory(format!(
                "{what}: {name} layout {l:?} needs indices beyond 2^32"
            ))
        })
    };
    Ok([
        u(l.offset)?,
        u(l.batch_stride)?,
        u(l.row_stride)?,
        u(l.col_stride)?,
    ])
}

/// `c = a @ b (+ bias)` over strided batched views; `c` is written in place (only the elements
/// its view covers). `bias` is a buffer and the layout of an `m x n` view of it per batch
/// entry, usually with stride 0 along one axis (a per-column bias has `row_stride` 0). `c`'s
/// view must not overlap itself and `c` must be a different buffer from `a`, `b` and `bias`.
/// One dispatch for all batch entries.
pub fn gemm(
    s: &GemmShape,
    a: &GpuBuffer,
    b: &GpuBuffer,
    bias: Option<(&GpuBuffer, MatrixLayout)>,
    c: &GpuBuffer,
) -> Result<()> {
    gemm_using(s, a, b, bias, c, None)
}

/// [`gemm`] with the kernel chosen: the subgroup GEMM (`Some(true)`, only on a device that
/// has it), the tiled one (`Some(false)`), or `None` for [`gemm_subgroup::available`].
pub fn gemm_using(
    s: &GemmShape,
    a: &GpuBuffer,
    b: &GpuBuffer,
    bias: Option<(&GpuBuffer, MatrixLayout)>,
    c: &GpuBuffer,
    use_subgroups: Option<bool>,
) -> Result<()> {
    let what = "gemm";
    let dims = format!("batch {} x m {} x n {} x k {}", s.batch, s.m, s.n, s.k);
    let what_dims = format!("{what} ({dims})");
    let la = check_view(&what_dims, "a", &s.a, (s.batch, s.m, s.k), a.len())?;
    let lb = check_view(&what_dims, "b", &s.b, (s.batch, s.k, s.n), b.len())?;
    let lc = check_view(&what_dims, "c", &s.c, (s.batch, s.m, s.n), c.len())?;
    let lbias = match &bias {
        Some((buf, l)) => check_view(&what_dims, "bias", l, (s.batch, s.m, s.n), buf.len())?,
        None => [0; 4],
    };
    let tiles =
        s.m.div_ceil(TILE_M)
            .checked_mul(s.n.div_ceil(TILE_N))
            .and_then(|t| t.checked_mul(s.batch));
    let tiles = match tiles {
        Some(0) => return Ok(()),
        Some(t) => t,
        None => return Err(GpuError::Validation(format!("{what_dims}: too many tiles"))),
    };
    let params_struct = GemmParams {
        m: to_u32(&what_dims, s.m)?,
        n: to_u32(&what_dims, s.n)?,
        k: to_u32(&what_dims, s.k)?,
        batch: to_u32(&what_dims, s.batch)?,
        a: la,
        b: lb,
        c: lc,
        bias: lbias,
    };
    let gpu = c.gpu();
    let has_bias = if bias.is_some() { 1.0 } else { 0.0 };
    // Without a bias the (unused but declared) binding 3 gets `a`: two read-only uses are fine.
    let bias_buf = bias.map(|(buf, _)| buf).unwrap_or(a);
    let buffers = [(1, a), (2, b), (3, bias_buf), (4, c)];
    let constants = [("HAS_BIAS", has_bias)];
    let params = bytemuck::bytes_of(&params_struct);
    let subgroups = gemm_subgroup::available(gpu) && gpu.texels_fit(b.len());
    if use_subgroups.unwrap_or(subgroups) {
        if gpu.subgroup_size() != Some(gemm_subgroup::LANES as u32) {
            return Err(GpuError::Validation(format!(
                "{what_dims}: the subgroup GEMM needs subgroups of {} threads, {} has none",
                gemm_subgroup::LANES,
                gpu.summary
            )));
        }
        let groups = gemm_subgroup::workgroups(s.m, s.n, s.batch);
        let shader = subgroup_shader();
        let grid = gpu.grid_1d(groups);
        if four_wide(s.n, la, lb) && gpu.vec4_texels_fit(&[a.len(), b.len()]) {
            // A and B both go through the four-channel texture, B's rows after A's.
            let b_start = Gpu::texel_rows(a.len()) * TEXEL_ROW;
            let mut params = params_struct;
            params.b[0] = to_u32(&what_dims, lb[0] as usize + b_start)?;
            let buffers = [(3, bias_buf), (4, c)];
            return gpu.dispatch_reading_vec4_texels(
                &shader,
                "gemm_subgroup_vec4",
                &constants,
                bytemuck::bytes_of(&params),
                &buffers,
                &[a, b],
                grid,
            );
        }
        // B is read through the texel texture (see shaders/gemm_subgroup.wgsl).
        let buffers = [(1, a), (3, bias_buf), (4, c)];
        return gpu.dispatch_reading_texels(
            &shader,
            "gemm_subgroup",
            &constants,
            params,
            &buffers,
            Some(b),
            grid,
        );
    }
    gpu.dispatch(
        &SHADER,
        "gemm",
        &constants,
        params,
        &buffers,
        gpu.grid_1d(tiles),
    )
}

/// The batched product `c[b] = a[b] @ b[b]` of `senet_spec::matmul`: `a` is `[batch, m, k]`,
/// `b` is `[batch, k, n]`, the result `[batch, m, n]`.
pub fn matmul(a: &GpuBuffer, b: &GpuBuffer, s: MatmulShape) -> Result<GpuBuffer> {
    let need = |name: &str, got: usize, rows: usize, cols: usize| {
        let want = s.batch.checked_mul(rows).and_then(|v| v.checked_mul(cols));
        if want == Some(got) {
            Ok(())
        } else {
            Err(GpuError::Validation(format!("matmul: {name} has {got} elements, but batch {} x {rows} x {cols} needs {} ({s:?})", s.batch, want.map_or("more than usize".to_string(), |w| w.to_string()))))
        }
    };
    need("a", a.len(), s.m, s.k)?;
    need("b", b.len(), s.k, s.n)?;
    let out_len = s
        .batch
        .checked_mul(s.m)
        .and_then(|v| v.checked_mul(s.n))
        .ok_or_else(|| GpuError::Validation(format!("matmul: output of {s:?} is too large")))?;
    let c = a.gpu().alloc(out_len)?;
    let shape = GemmShape {
        batch: s.batch,
        m: s.m,
        n: s.n,
        k: s.k,
        a: MatrixLayout::row_major(s.m, s.k),
        b: MatrixLayout::row_major(s.k, s.n),
        c: MatrixLayout::row_major(s.m, s.n),
    };
    gemm(&shape, a, b, None, &c)?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{gemm_kernels, gpu_for_tests, GEMM_TOL};
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use senet_spec::testing::{assert_close, rand_vec};

    #[test]
    fn matmul_matches_the_cpu_kernel() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = StdRng::seed_from_u64(1);
        // (batch, m, k, n): single tile, odd sizes crossing tile edges in every dimension,
        // batch > 1, k = 0, k not a multiple of TILE_K, vectors.
        let sizes = [
            (1, 3, 5, 4),
            (2, 67, 33, 70),
            (3, 17, 1, 65),
            (2, 5, 0, 7),
            (1, 130, 20, 9),
            (4, 1, 40, 1),
        ];
        for (batch, m, k, n) in sizes {
            let s = MatmulShape { batch, m, k, n };
            let a = rand_vec::<f32>(&mut rng, batch * m * k, -1.0, 1.0);
            let b = rand_vec::<f32>(&mut rng, batch * k * n, -1.0, 1.0);
            let want = senet_cpu::matmul::matmul(&a, &b, s);
            for subgroups in gemm_kernels(&gpu) {
                let shape = GemmShape {
                    batch,
                    m,
                    n,
                    k,
                    a: MatrixLayout::row_major(m, k),
                    b: MatrixLayout::row_major(k, n),
                    c: MatrixLayout::row_major(m, n),
                };
                let c = gpu.alloc(batch * m * n).unwrap();
                let (ga, gb) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
                gemm_using(&shape, &ga, &gb, None, &c, Some(subgroups)).unwrap();
                let got: Vec<f32> = gpu.read(&c).unwrap();
                assert_close(
                    &format!("{s:?} subgroups {subgroups}"),
                    &got,
                    &want,
                    GEMM_TOL,
                );
            }
        }
    }

    #[test]
    fn gemm_handles_offsets_broadcast_and_bias() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = StdRng::seed_from_u64(2);
        let (batch, m, k, n) = (3, 9, 21, 70);
        // a: one [m, k] matrix at offset 5 shared by every batch entry (batch stride 0).
        let a = rand_vec::<f32>(&mut rng, 5 + m * k, -1.0, 1.0);
        let b = rand_vec::<f32>(&mut rng, batch * k * n, -1.0, 1.0);
        // bias: one value per column, per batch entry.
        let bias = rand_vec::<f32>(&mut rng, batch * n, -1.0, 1.0);
        let s = GemmShape {
            batch,
            m,
            n,
            k,
            a: MatrixLayout {
                offset: 5,
                batch_stride: 0,
                row_stride: k,
                col_stride: 1,
            },
            b: MatrixLayout::row_major(k, n),
            c: MatrixLayout::row_major(m, n),
        };
        let bias_layout = MatrixLayout {
            offset: 0,
            batch_stride: n,
            row_stride: 0,
            col_stride: 1,
        };
        let mut want = vec![0.0f32; batch * m * n];
        for g in 0..batch {
            let prod = senet_cpu::matmul::matmul(
                &a[5..],
                &b[g * k * n..][..k * n],
                MatmulShape { batch: 1, m, k, n },
            );
            for i in 0..m {
                for j in 0..n {
                    want[(g * m + i) * n + j] = prod[i * n + j] + bias[g * n + j];
                }
            }
        }
        for subgroups in gemm_kernels(&gpu) {
            let c = gpu.alloc(batch * m * n).unwrap();
            gemm_using(
                &s,
                &gpu.upload(&a).unwrap(),
                &gpu.upload(&b).unwrap(),
                Some((&gpu.upload(&bias).unwrap(), bias_layout)),
                &c,
                Some(subgroups),
            )
            .unwrap();
            let got: Vec<f32> = gpu.read(&c).unwrap();
            assert_close(
                &format!("strided gemm, subgroups {subgroups}"),
                &got,
                &want,
                GEMM_TOL,
            );
        }
    }

    #[test]
    fn the_four_wide_subgroup_gemm_matches_the_cpu_kernel() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        if !gemm_kernels(&gpu).contains(&true) {
            return;
        }
        let mut rng = StdRng::seed_from_u64(5);
        // (batch, m, k, n, a's row stride, b's row stride). Row strides past k and n leave
        // padding that holds inf: a K range not a multiple of 4 must zero what a fetch reads
        // past it, never multiply it. Edges: m and n not multiples of the 64 x 128 tile, one
        // row, k = 4 exactly, k = 2 (one fetch covers the whole range and more).
        let cases = [
            (1, 64, 8, 128, 8, 128),
            (2, 70, 12, 132, 12, 132),
            (1, 1, 4, 4, 4, 4),
            (3, 130, 6, 8, 8, 12),
            (2, 9, 2, 16, 4, 20),
        ];
        for (batch, m, k, n, ars, brs) in cases {
            let pad = f32::INFINITY;
            let mut a = vec![pad; batch * m * ars];
            let mut b = vec![pad; batch * k * brs];
            let da = rand_vec::<f32>(&mut rng, batch * m * k, -1.0, 1.0);
            let db = rand_vec::<f32>(&mut rng, batch * k * n, -1.0, 1.0);
            for g in 0..batch {
                for i in 0..m {
                    for j in 0..k {
                        a[(g * m + i) * ars + j] = da[(g * m + i) * k + j];
                    }
                }
                for i in 0..k {
                    for j in 0..n {
                        b[(g * k + i) * brs + j] = db[(g * k + i) * n + j];
                    }
                }
            }
            let want = senet_cpu::matmul::matmul(&da, &db, MatmulShape { batch, m, k, n });
            let layout = |rows: usize, stride: usize| MatrixLayout {
                offset: 0,
                batch_stride: rows * stride,
                row_stride: stride,
                col_stride: 1,
            };
            let shape = GemmShape {
                batch,
                m,
                n,
                k,
                a: layout(m, ars),
                b: layout(k, brs),
                c: MatrixLayout::row_major(m, n),
            };
            let as_u32 = |l: MatrixLayout| {
                [l.offset, l.batch_stride, l.row_stride, l.col_stride].map(|v| v as u32)
            };
            assert!(four_wide(n, as_u32(shape.a), as_u32(shape.b)));
            let c = gpu.alloc(batch * m * n).unwrap();
            let (ga, gb) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
            gemm_using(&shape, &ga, &gb, None, &c, Some(true)).unwrap();
            let got: Vec<f32> = gpu.read(&c).unwrap();
            assert_close(&format!("four-wide {shape:?}"), &got, &want, GEMM_TOL);
        }
        // What does not qualify: a column stride, an odd offset, n not a multiple of 4.
        let plain = [0, 64, 8, 1];
        assert!(!four_wide(8, [0, 64, 8, 2], plain));
        assert!(!four_wide(8, plain, [1, 64, 8, 1]));
        assert!(!four_wide(6, plain, plain));
    }

    // About 7 s on lavapipe (66,000 workgroups): slow, but cheap enough to run in CI every time.
    #[test]
    fn more_than_65535_tiles_fold_into_a_2d_grid() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = StdRng::seed_from_u64(4);
        // 66,000 batch entries of 1x2 @ 2x1: one workgroup each, beyond one grid dimension.
        let s = MatmulShape {
            batch: 66_000,
            m: 1,
            k: 2,
            n: 1,
        };
        let a = rand_vec::<f32>(&mut rng, s.batch * 2, -1.0, 1.0);
        let b = rand_vec::<f32>(&mut rng, s.batch * 2, -1.0, 1.0);
        let got: Vec<f32> = gpu
            .read(&matmul(&gpu.upload(&a).unwrap(), &gpu.upload(&b).unwrap(), s).unwrap())
            .unwrap();
        assert_close(
            "folded grid",
            &got,
            &senet_cpu::matmul::matmul(&a, &b, s),
            GEMM_TOL,
        );
    }

    #[test]
    fn bad_sizes_are_errors() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let a = gpu.upload(&[0.0f32; 6]).unwrap();
        let b = gpu.upload(&[0.0f32; 6]).unwrap();
        let s = MatmulShape {
            batch: 1,
            m: 2,
            k: 4,
            n: 3,
        };
        match matmul(&a, &b, s) {
            Err(GpuError::Validation(m)) => {
                assert!(m.contains("6 elements") && m.contains("8"), "{m}")
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
        let view = GemmShape {
            batch: 1,
            m: 2,
            n: 3,
            k: 3,
            a: MatrixLayout::row_major(2, 3),
            b: MatrixLayout::row_major(3, 3),
            c: MatrixLayout::row_major(2, 3),
        };
        let c = gpu.alloc(6).unwrap();
        assert!(matches!(
            gemm(&view, &a, &b, None, &c),
            Err(GpuError::Validation(_))
        ));
    }
}
