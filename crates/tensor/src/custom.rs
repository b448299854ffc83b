//! Ops defined outside this crate. A `CustomOp` computes its forward however it likes (on the
//! CPU values, or with other tensor ops) and states its gradient rule; `Tensor::apply_custom`
//! (in `ops/custom.rs`) puts it in the graph like a built-in op.
use crate::{Result, Tensor};

/// An op written outside this crate: its forward and its gradient rule. Run it with
/// [`Tensor::apply_custom`], which records it so `backward` calls [`CustomOp::backward`]
/// ([`Tensor::apply_custom`] has a complete example).
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
