//! Batched matrix product on top of [`crate::gemm`]: `c[b] = a[b] @ b[b]`. The batches run one
//! after another, each product parallel inside `gemm`, so every result is the same whatever
//! the thread count.
use crate::gemm::{gemm, Mat, MatMut};
use senet_spec::matmul::MatmulShape;
use senet_spec::Element;

pub fn matmul<T: Element>(a: &[T], b: &[T], s: MatmulShape) -> Vec<T> {
    let (sa, sb, sc) = (s.m * s.k, s.k * s.n, s.m * s.n);
    assert_eq!(a.len(), s.batch * sa, "matmul: a has the wrong length");
    assert_eq!(b.len(), s.batch * sb, "matmul: b has the wrong length");
    let mut out = vec![T::zero(); s.batch * sc];
    if sc == 0 {
        return out;
    }
    for (i, c) in out.chunks_mut(sc).enumerate() {
        gemm(
            Mat::new(&a[i * sa..][..sa], s.m, s.k),
            Mat::new(&b[i * sb..][..sb], s.k, s.n),
            MatMut::new(c, s.m, s.n),
        );
    }
    out
}
