//! Batched matrix product `c[b] = op(a[b]) @ op(b[b])` where `op` optionally transposes, on the
//! `gemm` crate's packed SIMD kernels (AVX-512 where the CPU has it, else AVX2/FMA). Batches run
//! in parallel; each product is computed the same way whatever the thread count.
use crate::Element;
use ndarray::{ArrayView2, ArrayViewMut2};
use rayon::prelude::*;

/// Sizes of a batched product: `a` is `[batch, m, k]` (or `[batch, k, m]` when `trans_a`), `b`
/// is `[batch, k, n]` (or `[batch, n, k]` when `trans_b`), the result `[batch, m, n]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub trans_a: bool,
    pub trans_b: bool,
}

/// `out = op(a) @ op(b)` for one matrix pair of sizes `s` (its `batch` is ignored); `out` is
/// overwritten. Its rows are split over threads as in [`par_gemm`].
pub fn gemm<T: Element>(a: &[T], b: &[T], out: &mut [T], s: &MatmulShape) {
    let (m, k, n) = (s.m, s.k, s.n);
    let av = if s.trans_a {
        ArrayView2::from_shape((k, m), a)
            .expect("a has k*m elements")
            .reversed_axes()
    } else {
        ArrayView2::from_shape((m, k), a).expect("a has m*k elements")
    };
    let bv = if s.trans_b {
        ArrayView2::from_shape((n, k), b)
            .expect("b has n*k elements")
            .reversed_axes()
    } else {
        ArrayView2::from_shape((k, n), b).expect("b has k*n elements")
    };
    let cv = ArrayViewMut2::from_shape((m, n), out).expect("out has m*n elements");
    par_gemm(av, bv, cv);
}

/// `c = a @ b`, or `c += a @ b` with `accumulate`, for views of any strides, on one thread.
/// Callers split bigger products into pieces whose sizes do not depend on the thread count:
/// the kernel's blocking (and so its order of summation) depends on the sizes it is given.
///
/// # Panics
/// If the sizes do not match.
pub(crate) fn gemm_views<T: Element>(
    a: ArrayView2<T>,
    b: ArrayView2<T>,
    mut c: ArrayViewMut2<T>,
    accumulate: bool,
) {
    let ((m, k), (kb, n)) = (a.dim(), b.dim());
    assert!(
        k == kb && c.dim() == (m, n),
        "gemm: sizes {:?} @ {:?} -> {:?}",
        a.dim(),
        b.dim(),
        c.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(T::zero());
        }
        return;
    }
    let (cs, as_, bs) = (
        c.strides().to_vec(),
        a.strides().to_vec(),
        b.strides().to_vec(),
    );
    // SAFETY: each pointer is element [0, 0] of a live view whose strides describe all of its
    // m x k, k x n and m x n elements; `c` is borrowed mutably, so it overlaps neither input.
    // `gemm` writes dst = alpha * dst + beta * lhs @ rhs, reading dst only when asked to.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            cs[1],
            cs[0],
            accumulate,
            a.as_ptr(),
            as_[1],
            as_[0],
            b.as_ptr(),
            bs[1],
            bs[0],
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

pub fn matmul<T: Element>(a: &[T], b: &[T], s: MatmulShape) -> Vec<T> {
    let (sa, sb, sc) = (s.m * s.k, s.k * s.n, s.m * s.n);
    assert_eq!(a.len(), s.batch * sa, "matmul: a has the wrong length");
    assert_eq!(b.len(), s.batch * sb, "matmul: b has the wrong length");
    let mut out = vec![T::zero(); s.batch * sc];
    if sc == 0 {
        return out;
    }
    // Products in parallel, and the rows of each in parallel too (rayon nests the two).
    out.par_chunks_mut(sc)
        .enumerate()
        .for_each(|(i, c)| gemm(&a[i * sa..][..sa], &b[i * sb..][..sb], c, &s));
    out
}

/// Rows of C per parallel task in [`par_gemm`]: fixed, so the split (and the result) does not
/// depend on the number of threads; large enough that re-packing B per block stays cheap.
const ROW_BLOCK: usize = 64;

/// `c = a @ b` (overwriting `c`), with the rows of `c` split into fixed blocks computed in
/// parallel. The blocks are the same for any number of threads, so the result is too.
pub fn par_gemm<T: Element>(a: ArrayView2<T>, b: ArrayView2<T>, mut c: ArrayViewMut2<T>) {
    use ndarray::Axis;
    if c.nrows() <= ROW_BLOCK {
        gemm_views(a, b, c, false);
        return;
    }
    let blocks: Vec<_> = c
        .axis_chunks_iter_mut(Axis(0), ROW_BLOCK)
        .zip(a.axis_chunks_iter(Axis(0), ROW_BLOCK))
        .collect();
    blocks
        .into_par_iter()
        .for_each(|(c, a)| gemm_views(a, b, c, false));
}
