//! Grouped linear layer (k independent dense layers; k = 1 with a shared input is Linear) on
//! the GPU, with the semantics of `senet_cpu::grouped_linear`.
//!
//! Group `g` reads columns `g*in..(g+1)*in` of the input `[batch, k*in]` (or all of a shared
//! `[batch, in]` input) and writes columns `g*out..(g+1)*out` of the output `[batch, k*out]`.
//! Such a column slice of a row-major array is a strided matrix (row stride = the full row,
//! batch stride = the slice width), so every product below is ONE dispatch of the strided
//! batched GEMM in [`crate::matmul::gemm`] with the group as its batch index:
//!
//! - forward: `y_g = x_g @ W_g^T + b_g` (the bias is added by the GEMM as it writes);
//! - dx: `dx_g = dy_g @ W_g`; for a shared input the groups' contributions add up, and
//!   `sum_g dy_g @ W_g` is exactly `dy [batch, k*out] @ W [k*out, in]`: one plain GEMM;
//! - dW: `dW_g = dy_g^T @ x_g` (K = batch);
//! - db: the column sums of dy (`shaders/grouped_linear.wgsl`, a fixed-order reduction).
use crate::matmul::{gemm, to_u32, GemmShape, MatrixLayout};
use crate::{GpuBuffer, GpuError, Result, Shader};
use senet_spec::grouped_linear::GroupedLinearShape;

pub const SHADER: Shader = shader!("grouped_linear", ["invocation.wgsl", "grouped_linear.wgsl"]);

/// Columns per workgroup of `column_sum`.
const SUM_COLUMNS: usize = 16;

wgsl_params! {
    /// `SumParams` of `shaders/grouped_linear.wgsl`.
    pub(crate) struct SumParams {
        rows: u32,
        cols: u32,
        /// Rounds the uniform up to 16 bytes.
        _pad: [u32; 2],
    }
}

/// Errors unless `buf` has exactly `want` elements.
fn check(
    what: &str,
    name: &str,
    buf: &GpuBuffer,
    want: usize,
    s: &GroupedLinearShape,
) -> Result<()> {
    if buf.len() == want {
        Ok(())
    } else {
        Err(GpuError::Validation(format!(
            "grouped_linear {what}: {name} has {} elements, the shape needs {want} ({s:?})",
            buf.len()
        )))
    }
}

/// Sizes every call checks: (x row, y row, weight length) or an error naming the shape.
fn sizes(s: &GroupedLinearShape) -> Result<(usize, usize, usize)> {
    let (k, fi, fo) = (s.groups, s.in_features, s.out_features);
    let too_big = || GpuError::Validation(format!("grouped_linear: the sizes of {s:?} overflow"));
    let xr = if s.shared_input {
        fi
    } else {
        k.checked_mul(fi).ok_or_else(too_big)?
    };
    let yr = k.checked_mul(fo).ok_or_else(too_big)?;
    let wl = yr.checked_mul(fi).ok_or_else(too_big)?;
    s.batch.checked_mul(xr.max(yr)).ok_or_else(too_big)?;
    Ok((xr, yr, wl))
}

/// Group `g`'s input columns as a `[batch, in]` matrix (the same one for every group when the
/// input is shared).
fn x_layout(s: &GroupedLinearShape, xr: usize) -> MatrixLayout {
    MatrixLayout {
        offset: 0,
        batch_stride: if s.shared_input { 0 } else { s.in_features },
        row_stride: xr,
        col_stride: 1,
    }
}

/// Group `g`'s output (or dy) columns as a `[batch, out]` matrix.
fn y_layout(s: &GroupedLinearShape, yr: usize) -> MatrixLayout {
    MatrixLayout {
        offset: 0,
        batch_stride: s.out_features,
        row_stride: yr,
        col_stride: 1,
    }
}

/// y `[batch, groups*out]` = per group `x_g @ W_g^T + b_g`; `w` is `[groups, out, in]`, `b`
/// `[groups, out]`.
pub fn forward(
    s: GroupedLinearShape,
    x: &GpuBuffer,
    w: &GpuBuffer,
    b: Option<&GpuBuffer>,
) -> Result<GpuBuffer> {
    let (xr, yr, wl) = sizes(&s)?;
    check("forward", "x", x, s.batch * xr, &s)?;
    check("forward", "weight", w, wl, &s)?;
    if let Some(b) = b {
        check("forward", "bias", b, yr, &s)?;
    }
    let y = x.gpu().alloc(s.batch * yr)?;
    let (fi, fo) = (s.in_features, s.out_features);
    let shape = GemmShape {
        batch: s.groups,
        m: s.batch,
        n: fo,
        k: fi,
        a: x_layout(&s, xr),
        // W_g^T: W_g is [out, in] row-major, read as [in, out].
        b: MatrixLayout {
            offset: 0,
            batch_stride: fo * fi,
            row_stride: 1,
            col_stride: fi,
        },
        c: y_layout(&s, yr),
    };
    // The same bias row for every batch row: row stride 0.
    let bias = b.map(|b| {
        (
            b,
            MatrixLayout {
                offset: 0,
                batch_stride: fo,
                row_stride: 0,
                col_stride: 1,
            },
        )
    });
    gemm(&shape, x, w, bias, &y)?;
    Ok(y)
}

/// Returns (dx, dw, db): dx like x (summed over groups when the input is shared), dw
/// `[groups, out, in]`, db `[groups, out]`, or empty (length 0) when `with_bias` is false.
pub fn backward(
    s: GroupedLinearShape,
    x: &GpuBuffer,
    w: &GpuBuffer,
    dy: &GpuBuffer,
    with_bias: bool,
) -> Result<(GpuBuffer, GpuBuffer, GpuBuffer)> {
    let (xr, yr, wl) = sizes(&s)?;
    check("backward", "x", x, s.batch * xr, &s)?;
    check("backward", "weight", w, wl, &s)?;
    check("backward", "dy", dy, s.batch * yr, &s)?;
    let gpu = x.gpu();
    let (k, fi, fo) = (s.groups, s.in_features, s.out_features);

    let dx = gpu.alloc(s.batch * xr)?;
    let dx_shape = if s.shared_input {
        // sum_g dy_g @ W_g = dy [batch, k*out] @ W [k*out, in].
        GemmShape {
            batch: 1,
            m: s.batch,
            n: fi,
            k: yr,
            a: MatrixLayout::row_major(s.batch, yr),
            b: MatrixLayout::row_major(yr, fi),
            c: MatrixLayout::row_major(s.batch, fi),
        }
    } else {
        GemmShape {
            batch: k,
            m: s.batch,
            n: fi,
            k: fo,
            a: y_layout(&s, yr),
            b: MatrixLayout::row_major(fo, fi),
            c: x_layout(&s, xr),
        }
    };
    gemm(&dx_shape, dy, w, None, &dx)?;

    let dw = gpu.alloc(wl)?;
    let dw_shape = GemmShape {
        batch: k,
        m: fo,
        n: fi,
        k: s.batch,
        // dy_g^T: [out, batch], column j of it is row j of dy_g.
        a: MatrixLayout {
            offset: 0,
            batch_stride: fo,
            row_stride: 1,
            col_stride: yr,
        },
        b: x_layout(&s, xr),
        c: MatrixLayout::row_major(fo, fi),
    };
    gemm(&dw_shape, dy, x, None, &dw)?;

    let db = if with_bias {
        column_sum(dy, s.batch, yr)?
    } else {
        gpu.alloc(0)?
    };
    Ok((dx, dw, db))
}

/// `out[j] = sum_i x[i, j]` for a row-major `[rows, cols]` array, summed in a fixed order.
pub fn column_sum(x: &GpuBuffer, rows: usize, cols: usize) -> Result<GpuBuffer> {
    if rows.checked_mul(cols) != Some(x.len()) {
        return Err(GpuError::Validation(format!(
            "column_sum: x has {} elements, not {rows} rows x {cols} columns",
            x.len()
        )));
    }
    let gpu = x.gpu();
    let out = gpu.alloc(cols)?;
    if cols == 0 {
        return Ok(out);
    }
    let params = SumParams {
        rows: to_u32("column_sum rows", rows)?,
        cols: to_u32("column_sum cols", cols)?,
        _pad: [0; 2],
    };
    gpu.dispatch(
        &SHADER,
        "column_sum",
        &[],
        bytemuck::bytes_of(&params),
        &[(1, x), (2, &out)],
        gpu.grid_1d(cols.div_ceil(SUM_COLUMNS)),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{gpu_for_tests, GEMM_TOL};
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use senet_cpu::grouped_linear as cpu;
    use senet_spec::testing::{assert_close, rand_vec};

    #[test]
    fn forward_and_backward_match_the_cpu_kernel() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let mut rng = StdRng::seed_from_u64(3);
        for s in senet_spec::cases::grouped_linear_cases() {
            let x = rand_vec::<f32>(&mut rng, s.batch * s.x_row(), -1.0, 1.0);
            let w = rand_vec::<f32>(
                &mut rng,
                s.groups * s.out_features * s.in_features,
                -1.0,
                1.0,
            );
            let b = rand_vec::<f32>(&mut rng, s.groups * s.out_features, -1.0, 1.0);
            let dy = rand_vec::<f32>(&mut rng, s.batch * s.y_row(), -1.0, 1.0);
            let (xg, wg, bg, dyg) = (
                gpu.upload(&x).unwrap(),
                gpu.upload(&w).unwrap(),
                gpu.upload(&b).unwrap(),
                gpu.upload(&dy).unwrap(),
            );
            for bias in [true, false] {
                let y = forward(s, &xg, &wg, bias.then_some(&bg)).unwrap();
                let want = cpu::forward(s, &x, &w, bias.then_some(&b[..]));
                assert_close(
                    &format!("forward bias={bias} {s:?}"),
                    &gpu.read::<f32>(&y).unwrap(),
                    &want,
                    GEMM_TOL,
                );
            }
            for with_bias in [true, false] {
                let (dx, dw, db) = backward(s, &xg, &wg, &dyg, with_bias).unwrap();
                let (wdx, wdw, wdb) = cpu::backward(s, &x, &w, &dy, with_bias);
                assert_close(
                    &format!("dx {s:?}"),
                    &gpu.read::<f32>(&dx).unwrap(),
                    &wdx,
                    GEMM_TOL,
                );
                assert_close(
                    &format!("dw {s:?}"),
                    &gpu.read::<f32>(&dw).unwrap(),
                    &wdw,
                    GEMM_TOL,
                );
                assert_close(
                    &format!("db with_bias={with_bias} {s:?}"),
                    &gpu.read::<f32>(&db).unwrap(),
                    &wdb,
                    GEMM_TOL,
                );
            }
        }
    }

    #[test]
    fn bad_sizes_are_errors() {
        let Some((_lock, gpu)) = gpu_for_tests() else {
            return;
        };
        let s = GroupedLinearShape {
            batch: 2,
            groups: 3,
            in_features: 4,
            out_features: 5,
            shared_input: false,
        };
        let x = gpu.upload(&[0.0f32; 24]).unwrap();
        let w = gpu.upload(&[0.0f32; 59]).unwrap();
        match forward(s, &x, &w, None) {
            Err(GpuError::Validation(m)) => {
                assert!(m.contains("weight has 59") && m.contains("60"), "{m}")
            }
            other => panic!("expected a validation error, got {other:?}"),
        }
        let w = gpu.upload(&[0.0f32; 60]).unwrap();
        let dy = gpu.upload(&[0.0f32; 7]).unwrap();
        assert!(matches!(
            backward(s, &x, &w, &dy, true),
            Err(GpuError::Validation(_))
        ));
    }
}
