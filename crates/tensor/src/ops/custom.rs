//! `apply_custom`: an op defined outside this crate (a [`CustomOp`]) run and recorded like a
//! built-in one, so `backward` calls its own gradient rule.
use crate::{no_grad, CustomOp, Error, Op, Result, Tensor};
use std::sync::Arc;

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
