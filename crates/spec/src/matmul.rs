//! The batched matrix product `c[b] = a[b] @ b[b]`.

/// Sizes of a batched product: `a` is `[batch, m, k]`, `b` is `[batch, k, n]`, the result
/// `[batch, m, n]`, all contiguous and row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    /// Number of independent products.
    pub batch: usize,
    /// Rows of `a` and of the result.
    pub m: usize,
    /// Columns of `a` = rows of `b`: the summed dimension.
    pub k: usize,
    /// Columns of `b` and of the result.
    pub n: usize,
}

/// `c[b,i,j] = sum_k a[b,i,k] * b[b,k,j]`, all contiguous.
pub fn matmul(a: &[f64], b: &[f64], batch: usize, m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; batch * m * n];
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    s += a[bi * m * k + i * k + p] * b[bi * k * n + p * n + j];
                }
                c[bi * m * n + i * n + j] = s;
            }
        }
    }
    c
}
