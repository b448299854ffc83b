//! Ops defined outside this crate. A `CustomOp` computes its forward however it likes (on the
//! CPU values, or with other tensor ops) and states its gradient rule; `Tensor::apply_custom`
//! puts it in the graph like a built-in op.
use crate::{no_grad, Error, Op, Result, Tensor};
use std::sync::Arc;

pub trait CustomOp: Send + Sync {
    /// Shown in errors and in `Op::name`.
    fn name(&self) -> &str;
    /// The output, from the input values (called with recording off).
    fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor>;
    /// The gradient for each input (`None` where it has none), given the inputs, the output
    /// and the gradient flowing into the output. Called with recording off.
    fn backward(
        &self,
        inputs: &[&Tensor],
        output: &Tensor,
        grad: &Tensor,
    ) -> Result<Vec<Option<Tensor>>>;
}

impl Tensor {
    /// Runs `op` on `inputs` and records it so `backward` calls `op.backward`.
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
