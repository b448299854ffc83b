//! The `Module` trait and the helpers built on its visitor.
use crate::Result;
use senet_tensor::{Device, Tensor};

/// One named value of a module, as `visit` hands it out.
pub enum Slot<'a> {
    /// A trainable tensor (weight or bias): optimizers update it, `backward` reaches it.
    Param(&'a mut Tensor),
    /// A tensor that is state but not trained (batch norm's running mean and variance).
    Buffer(&'a mut Tensor),
    /// An integer (batch norm's `num_batches_tracked`, an int64 scalar in checkpoints).
    Counter(&'a mut i64),
}

/// `prefix.name`, or `name` at the top level.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A piece of network: a layer, a block, a whole model. It maps an input tensor to an output
/// and names its state; everything else (parameter lists, counting, moving to a device,
/// checkpoints) is derived from [`visit`](Module::visit).
///
/// ```
/// use senet_nn::layers::{Activation, Linear, Sequential};
/// use senet_nn::Module;
/// use senet_tensor::Tensor;
///
/// let mut mlp = Sequential::new()
///     .push(Linear::new(Tensor::zeros(&[16, 8]), Some(Tensor::zeros(&[16]))))
///     .push(Activation::Relu)
///     .push(Linear::new(Tensor::zeros(&[4, 16]), None));
/// let y = mlp.forward(&Tensor::ones(&[2, 8]), true)?;
/// assert_eq!(y.shape(), &[2, 4]);
/// let names: Vec<String> = mlp.parameters().into_iter().map(|(n, _)| n).collect();
/// assert_eq!(names, ["0.weight", "0.bias", "2.weight"]);
/// assert_eq!(mlp.count_parameters(), (16 * 8 + 16 + 4 * 16, 16 * 8 + 16 + 4 * 16));
/// # Ok::<(), senet_nn::Error>(())
/// ```
pub trait Module {
    /// The output for input `x`: in training mode (`train`) batch norm uses and updates batch
    /// statistics; in evaluation mode it uses the running ones.
    fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor>;

    /// Calls `f` with the full name and slot of every parameter, buffer and counter, in a
    /// stable order (the order of PyTorch's `state_dict`).
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>));

    /// `(name, tensor)` of every trainable parameter.
    fn parameters(&mut self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.visit("", &mut |name, slot| {
            if let Slot::Param(t) = slot {
                out.push((name.to_string(), t.clone()));
            }
        });
        out
    }

    /// Trainable parameters (PyTorch's `sum(p.numel())`) and, Keras-style, parameters plus batch
    /// norm's running mean and variance.
    fn count_parameters(&mut self) -> (usize, usize) {
        let (mut trainable, mut buffers) = (0, 0);
        self.visit("", &mut |_, slot| match slot {
            Slot::Param(t) => trainable += t.numel(),
            Slot::Buffer(t) => buffers += t.numel(),
            Slot::Counter(_) => {}
        });
        (trainable, trainable + buffers)
    }

    /// Moves every tensor to `device` (parameters stay trainable leaves).
    fn to_device(&mut self, device: Device) -> Result<()> {
        let mut result = Ok(());
        self.visit("", &mut |_, slot| {
            if result.is_err() {
                return;
            }
            let moved = match slot {
                Slot::Param(t) => t.to_device(device).map(|m| *t = m.detach().requires_grad()),
                Slot::Buffer(t) => t.to_device(device).map(|m| *t = m.detach()),
                Slot::Counter(_) => Ok(()),
            };
            result = moved;
        });
        Ok(result?)
    }
}

impl<M: Module + ?Sized> Module for Box<M> {
    fn forward(&mut self, x: &Tensor, train: bool) -> Result<Tensor> {
        (**self).forward(x, train)
    }
    fn visit(&mut self, prefix: &str, f: &mut dyn FnMut(&str, Slot<'_>)) {
        (**self).visit(prefix, f)
    }
}
