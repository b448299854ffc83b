//! k independent dense layers over k groups of features, in one op.
//!
//! Group `g` has weight `W_g` `[out, in]` and bias `b_g` `[out]`; it reads columns
//! `g*in..(g+1)*in` of the input (or the whole input, shared by every group) and writes columns
//! `g*out..(g+1)*out` of the output: `y_g = x_g @ W_g^T + b_g`. With one group and a shared
//! input this is an ordinary Linear layer, which is how the framework implements Linear.
//!
//! Each group's slice of a row-major `[batch, k*features]` array is a strided matrix view, so
//! every product is one `general_mat_mul` call with no copying. The forward pass and dx are
//! parallel over fixed blocks of batch rows (no sum crosses a block); dW is parallel over
//! fixed blocks of its own rows, each one GEMM over the whole batch; db sums rows in order.
//! Nothing depends on the thread count, so results are bit-identical on any number of threads.
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};
use rayon::prelude::*;
use senet_spec::grouped_linear::GroupedLinearShape;
use senet_spec::{check_len, Element};

/// Batch rows per parallel task in the forward pass and in dx.
const ROW_BLOCK: usize = 32;
/// Rows of a group's dW per parallel task.
const OUT_BLOCK: usize = 64;

/// `rows x cols` view of `s` with row stride `ld`. Cannot fail: callers pass a slice starting
/// at the view's first element and reaching at least its last one, with cols <= ld.
fn strided<T>(rows: usize, cols: usize, ld: usize, s: &[T]) -> ArrayView2<'_, T> {
    ArrayView2::from_shape((rows, cols).strides((ld, 1)), s).expect("strided view in bounds")
}

fn strided_mut<T>(rows: usize, cols: usize, ld: usize, s: &mut [T]) -> ArrayViewMut2<'_, T> {
    ArrayViewMut2::from_shape((rows, cols).strides((ld, 1)), s).expect("strided view in bounds")
}

/// y `[batch, groups*out]` = per group `x_g @ W_g^T + b_g`.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn forward<T: Element>(s: GroupedLinearShape, x: &[T], w: &[T], b: Option<&[T]>) -> Vec<T> {
    let (k, fi, fo) = (s.groups, s.in_features, s.out_features);
    let (xr, yr) = (s.x_row(), s.y_row());
    check_len("grouped_linear forward", "x", x.len(), s.batch * xr);
    check_len("grouped_linear forward", "weight", w.len(), k * fo * fi);
    if let Some(b) = b {
        check_len("grouped_linear forward", "bias", b.len(), k * fo);
    }
    let mut y = vec![T::zero(); s.batch * yr];
    if y.is_empty() {
        return y;
    }
    if fi == 0 {
        // No inputs: the output is the bias alone (x has no rows to pair blocks with).
        if let Some(b) = b {
            y.chunks_mut(yr).for_each(|row| row.copy_from_slice(b));
        }
        return y;
    }
    y.par_chunks_mut(ROW_BLOCK * yr)
        .zip(x.par_chunks(ROW_BLOCK * xr))
        .for_each(|(y_blk, x_blk)| {
            let rows = y_blk.len() / yr;
            // The bias goes in first and the GEMM accumulates onto it (beta = 1).
            if let Some(b) = b {
                y_blk.chunks_mut(yr).for_each(|row| row.copy_from_slice(b));
            }
            for g in 0..k {
                let x_g = strided(rows, fi, xr, &x_blk[s.x_col(g)..]);
                let w_t = strided(fo, fi, fi, &w[g * fo * fi..][..fo * fi]).reversed_axes();
                let mut y_g = strided_mut(rows, fo, yr, &mut y_blk[g * fo..]);
                general_mat_mul(T::one(), &x_g, &w_t, T::one(), &mut y_g);
            }
        });
    y
}

/// Returns (dx, dw, db): dx like x (summed over groups when the input is shared), dw
/// `[groups, out, in]`, db `[groups, out]` or empty when `with_bias` is false.
///
/// # Panics
/// If a slice length does not match the shape.
pub fn backward<T: Element>(
    s: GroupedLinearShape,
    x: &[T],
    w: &[T],
    dy: &[T],
    with_bias: bool,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (k, fi, fo) = (s.groups, s.in_features, s.out_features);
    let (xr, yr) = (s.x_row(), s.y_row());
    check_len("grouped_linear backward", "x", x.len(), s.batch * xr);
    check_len("grouped_linear backward", "weight", w.len(), k * fo * fi);
    check_len("grouped_linear backward", "dy", dy.len(), s.batch * yr);
    let mut dx = vec![T::zero(); x.len()];
    let mut dw = vec![T::zero(); w.len()];
    let db = if with_bias {
        bias_grad(s, dy)
    } else {
        Vec::new()
    };
    if s.batch == 0 || k == 0 || fi == 0 || fo == 0 {
        // Every product is empty: the gradients are the zeros already there.
        return (dx, dw, db);
    }

    // dx_g = dy_g @ W_g, per block of batch rows; a shared input accumulates the groups in
    // order (beta = 1 after the first).
    dx.par_chunks_mut(ROW_BLOCK * xr)
        .zip(dy.par_chunks(ROW_BLOCK * yr))
        .for_each(|(dx_blk, dy_blk)| {
            let rows = dx_blk.len() / xr;
            for g in 0..k {
                let dy_g = strided(rows, fo, yr, &dy_blk[g * fo..]);
                let w_g = strided(fo, fi, fi, &w[g * fo * fi..][..fo * fi]);
                let beta = if s.shared_input && g > 0 {
                    T::one()
                } else {
                    T::zero()
                };
                let mut dx_g = strided_mut(rows, fi, xr, &mut dx_blk[s.x_col(g)..]);
                general_mat_mul(T::one(), &dy_g, &w_g, beta, &mut dx_g);
            }
        });

    // dW_g[o0..o1] = dy_g[:, o0..o1]^T @ x_g: blocks of dW rows, each over the whole batch.
    dw.par_chunks_mut(fo * fi)
        .enumerate()
        .for_each(|(g, dw_g)| {
            dw_g.par_chunks_mut(OUT_BLOCK * fi)
                .enumerate()
                .for_each(|(blk, dw_blk)| {
                    let o0 = blk * OUT_BLOCK;
                    let n_out = dw_blk.len() / fi;
                    let dy_t = strided(s.batch, n_out, yr, &dy[g * fo + o0..]).reversed_axes();
                    let x_g = strided(s.batch, fi, xr, &x[s.x_col(g)..]);
                    let mut dw_blk = strided_mut(n_out, fi, fi, dw_blk);
                    general_mat_mul(T::one(), &dy_t, &x_g, T::zero(), &mut dw_blk);
                });
        });
    (dx, dw, db)
}

/// db `[groups*out]`: dy summed over the batch, row after row, in f64.
fn bias_grad<T: Element>(s: GroupedLinearShape, dy: &[T]) -> Vec<T> {
    let yr = s.y_row();
    let mut acc = vec![0.0f64; yr];
    if yr > 0 {
        for row in dy.chunks(yr) {
            acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v.to_f64());
        }
    }
    acc.into_iter().map(T::from_f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use senet_spec::grouped_linear as reference;
    use senet_spec::testing::{assert_close, rand_vec};

    fn check<T: Element>(tol: f64) {
        let mut rng = StdRng::seed_from_u64(13);
        for s in senet_spec::cases::grouped_linear_cases() {
            let x = rand_vec::<T>(&mut rng, s.batch * s.x_row(), -1.0, 1.0);
            let w = rand_vec::<T>(
                &mut rng,
                s.groups * s.out_features * s.in_features,
                -1.0,
                1.0,
            );
            let b = rand_vec::<T>(&mut rng, s.groups * s.out_features, -1.0, 1.0);
            let dy = rand_vec::<T>(&mut rng, s.batch * s.y_row(), -1.0, 1.0);
            let ctx = format!("{} {s:?}", T::NAME);
            for bias in [Some(&b[..]), None] {
                assert_close(
                    &format!("forward bias={} {ctx}", bias.is_some()),
                    &forward(s, &x, &w, bias),
                    &reference::grouped_linear_forward(s, &x, &w, bias),
                    tol,
                );
            }
            for with_bias in [true, false] {
                let (dx, dw, db) = backward(s, &x, &w, &dy, with_bias);
                let (rdx, rdw, rdb) = reference::grouped_linear_backward(s, &x, &w, &dy, with_bias);
                assert_close(&format!("dx {ctx}"), &dx, &rdx, tol);
                assert_close(&format!("dw {ctx}"), &dw, &rdw, tol);
                assert_close(&format!("db with_bias={with_bias} {ctx}"), &db, &rdb, tol);
                assert_eq!(
                    db.len(),
                    if with_bias {
                        s.groups * s.out_features
                    } else {
                        0
                    }
                );
            }
        }
    }

    #[test]
    fn matches_reference_f64() {
        check::<f64>(5e-11);
    }

    // Sums of at most 70 products of values in [-1, 1]: f32 error is ~1e-6, far below 5e-5.
    #[test]
    fn matches_reference_f32() {
        check::<f32>(5e-5);
    }

    #[test]
    fn empty_sizes_give_empty_or_zero_results() {
        let s = senet_spec::cases::grouped_linear_shape(4, 2, 0, 3, false);
        let b = [1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0];
        let y = forward(s, &[], &[], Some(&b));
        assert_eq!(y, b.repeat(4));
        let (dx, dw, db) = backward(s, &[], &[], &[1.0; 24], true);
        assert!(dx.is_empty() && dw.is_empty());
        assert_eq!(db, vec![4.0; 6]);
        let s = senet_spec::cases::grouped_linear_shape(0, 2, 3, 3, true);
        assert!(forward::<f32>(s, &[], &[0.0; 18], None).is_empty());
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let mut rng = StdRng::seed_from_u64(6);
        let s = senet_spec::cases::grouped_linear_shape(100, 3, 17, 70, true);
        let x = rand_vec::<f32>(&mut rng, s.batch * s.x_row(), -1.0, 1.0);
        let w = rand_vec::<f32>(
            &mut rng,
            s.groups * s.out_features * s.in_features,
            -1.0,
            1.0,
        );
        let dy = rand_vec::<f32>(&mut rng, s.batch * s.y_row(), -1.0, 1.0);
        let run = |threads: usize| {
            crate::on_threads(threads, || {
                let (dx, dw, db) = backward(s, &x, &w, &dy, true);
                [forward(s, &x, &w, None), dx, dw, db]
                    .concat()
                    .into_iter()
                    .map(f32::to_bits)
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(run(1), run(2));
    }
}
