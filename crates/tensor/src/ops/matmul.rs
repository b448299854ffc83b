//! Batched matrix product with broadcasting over the leading (batch) axes.
use super::check_same;
use crate::kernel::{run, CpuIn, CpuOut, GpuIn, GpuOut, Kernel};
use crate::layout::broadcast_shapes;
use crate::{CpuElement, Error, Op, Result, Tensor};
use senet_spec::matmul::MatmulShape;

/// `[a, b] -> a @ b`, batched, both contiguous.
struct Matmul(MatmulShape);

impl Kernel for Matmul {
    const NAME: &'static str = "matmul";
    fn profile(&self) -> (String, Option<f64>) {
        let s = self.0;
        let label = format!("matmul {}x{}x{} x{}", s.m, s.k, s.n, s.batch);
        (label, Some(2.0 * (s.batch * s.m * s.k * s.n) as f64))
    }
    fn cpu<T: CpuElement>(&self, x: &CpuIn<T>) -> CpuOut<T> {
        CpuOut::one(senet_cpu::matmul::matmul(x.get(0), x.get(1), self.0))
    }
    fn gpu(&self, x: &GpuIn) -> senet_gpu::Result<GpuOut> {
        Ok(GpuOut::one(senet_gpu::matmul::matmul(
            x.get(0),
            x.get(1),
            self.0,
        )?))
    }
}

impl Tensor {
    /// Matrix product over the last two axes: `[..., m, k] @ [..., k, n] -> [..., m, n]`.
    /// Both operands need at least 2 axes, the inner sizes `k` must agree, and the leading
    /// `...` (batch) axes broadcast as in [`add`](Self::add), so one matrix can multiply a
    /// whole batch.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let a = Tensor::ones(&[2, 3]);
    /// assert_eq!(a.matmul(&Tensor::ones(&[3, 4]))?.shape(), &[2, 4]);
    /// // Batched: [5, 2, 3] @ [3, 4] -> [5, 2, 4].
    /// assert_eq!(Tensor::ones(&[5, 2, 3]).matmul(&Tensor::ones(&[3, 4]))?.shape(), &[5, 2, 4]);
    /// // Inner sizes 3 and 2 differ.
    /// let err = a.matmul(&Tensor::ones(&[2, 4])).unwrap_err();
    /// assert!(err.to_string().contains("inner dimensions differ"));
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        check_same("matmul", self, rhs)?;
        if self.rank() < 2 || rhs.rank() < 2 {
            return Err(Error::shape(
                "matmul",
                format!(
                    "both operands need at least 2 dimensions, got {:?} and {:?}",
                    self.shape(),
                    rhs.shape()
                ),
            ));
        }
        let (ra, rb) = (self.rank(), rhs.rank());
        let (m, k, k2, n) = (
            self.shape()[ra - 2],
            self.shape()[ra - 1],
            rhs.shape()[rb - 2],
            rhs.shape()[rb - 1],
        );
        if k != k2 {
            return Err(Error::shape(
                "matmul",
                format!(
                    "inner dimensions differ: {:?} @ {:?} ({k} vs {k2})",
                    self.shape(),
                    rhs.shape()
                ),
            ));
        }
        let batch_shape =
            broadcast_shapes("matmul", &self.shape()[..ra - 2], &rhs.shape()[..rb - 2])?;
        let batch: usize = batch_shape.iter().product();
        let full = |t: &Tensor, r, c| -> Result<Tensor> {
            let shape: Vec<usize> = batch_shape.iter().copied().chain([r, c]).collect();
            Tensor::from_storage(t.storage_arc(), t.layout().broadcast_as(&shape)?, None)
                .contiguous_detached()
        };
        let (a, b) = (full(self, m, k)?, full(rhs, k, n)?);
        let out_shape: Vec<usize> = batch_shape.iter().copied().chain([m, n]).collect();
        let s = MatmulShape { batch, m, k, n };
        let record = Some(Op::Matmul(self.clone(), rhs.clone()));
        Ok(run(&Matmul(s), &[&a, &b])?.tensor(&out_shape, record))
    }
}
