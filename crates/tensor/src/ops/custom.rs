//! `apply_custom`: an op defined outside this crate (a [`CustomOp`]) run and recorded like a
//! built-in one, so `backward` calls its own gradient rule.
use crate::{no_grad, CustomOp, Error, Op, Result, Tensor};
use std::sync::Arc;

impl Tensor {
    /// Runs `op` on `inputs` and records it so `backward` calls `op.backward`. The output
    /// shape is whatever `op.forward` returns; the output must be on the inputs' device.
    ///
    /// ```
    /// # use senet_tensor::{CustomOp, Result, Tensor};
    /// # use std::sync::Arc;
    /// /// `x -> 2x`, with its gradient rule.
    /// struct Double;
    /// impl CustomOp for Double {
    ///     fn name(&self) -> &str { "double" }
    ///     fn forward(&self, x: &[&Tensor]) -> Result<Tensor> { x[0].mul_scalar(2.0) }
    ///     fn backward(&self, _: &[&Tensor], _: &Tensor, g: &Tensor) -> Result<Vec<Option<Tensor>>> {
    ///         Ok(vec![Some(g.mul_scalar(2.0)?)])
    ///     }
    /// }
    /// let x = Tensor::ones(&[2, 3]).requires_grad();
    /// let y = Tensor::apply_custom(Arc::new(Double), &[&x])?;
    /// assert_eq!(y.shape(), &[2, 3]);
    /// let grads = y.sum_all()?.backward()?;
    /// assert_eq!(grads.get(&x).unwrap().to_vec_f32()?, [2.0; 6]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn apply_custom(op: Arc<dyn CustomOp>, inputs: &[&Tensor]) -> Result<Tensor> {
        let detached: Vec<Tensor> = inputs.iter().map(|t| t.detach()).collect();
        let refs: Vec<&Tensor> = detached.iter().collect();
        let out = no_grad(|| op.forward(&refs))?;
        if let Some(t) = inputs.iter().find(|t| t.device() != out.device()) {
            return Err(Error::Device {
                op: "apply_custom",
                lhs: t.device(),
                rhs: out.device(),
            });
        }
        let record = Op::Custom {
            op,
            inputs: inputs.iter().map(|&t| t.clone()).collect(),
        };
        Ok(Tensor::from_storage(
            out.storage_arc(),
            out.layout().clone(),
            Some(record),
        ))
    }
}
