//! Batched matrix product on top of `ndarray`'s GEMM (matrixmultiply): `c[b] = a[b] @ b[b]`. Batches run in parallel; each product is computed the same
//! way whatever the thread count.
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;
use senet_spec::matmul::MatmulShape;
use senet_spec::Element;

/// `out = a @ b` for one matrix pair of sizes `s` (its `batch` is ignored); `out` is
/// overwritten.
pub fn gemm<T: Element>(a: &[T], b: &[T], out: &mut [T], s: &MatmulShape) {
    let (m, k, n) = (s.m, s.k, s.n);
    let av = ArrayView2::from_shape((m, k), a).expect("a has m*k elements");
    let bv = ArrayView2::from_shape((k, n), b).expect("b has k*n elements");
    let mut cv = ArrayViewMut2::from_shape((m, n), out).expect("out has m*n elements");
    general_mat_mul(T::one(), &av, &bv, T::zero(), &mut cv);
}

pub fn matmul<T: Element>(a: &[T], b: &[T], s: MatmulShape) -> Vec<T> {
    let (sa, sb, sc) = (s.m * s.k, s.k * s.n, s.m * s.n);
    assert_eq!(a.len(), s.batch * sa, "matmul: a has the wrong length");
    assert_eq!(b.len(), s.batch * sb, "matmul: b has the wrong length");
    let mut out = vec![T::zero(); s.batch * sc];
    if sc == 0 {
        return out;
    }
    let one =
        |i: usize, c: &mut [T]| gemm(&a[i * sa..(i + 1) * sa], &b[i * sb..(i + 1) * sb], c, &s);
    if s.batch > 1 {
        out.par_chunks_mut(sc)
            .enumerate()
            .for_each(|(i, c)| one(i, c));
    } else {
        one(0, &mut out);
    }
    out
}

/// Rows of C per parallel task in [`par_gemm`]: fixed, so the split (and the result) does not
/// depend on the number of threads; large enough that re-packing B per block stays cheap.
const ROW_BLOCK: usize = 64;

/// `c = a @ b` (overwriting `c`), with the rows of `c` split into fixed blocks computed in
/// parallel. Each element of `c` is one dot product computed the same way whatever the split,
/// so the result is bit-identical to a single `general_mat_mul`.
pub fn par_gemm<T: Element>(
    a: ndarray::ArrayView2<T>,
    b: ndarray::ArrayView2<T>,
    mut c: ndarray::ArrayViewMut2<T>,
) {
    use ndarray::Axis;
    if c.nrows() <= ROW_BLOCK {
        general_mat_mul(T::one(), &a, &b, T::zero(), &mut c);
        return;
    }
    let blocks: Vec<_> = c
        .axis_chunks_iter_mut(Axis(0), ROW_BLOCK)
        .zip(a.axis_chunks_iter(Axis(0), ROW_BLOCK))
        .collect();
    blocks
        .into_par_iter()
        .for_each(|(mut c, a)| general_mat_mul(T::one(), &a, &b, T::zero(), &mut c));
}
