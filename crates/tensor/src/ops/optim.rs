//! Optimizer updates of one parameter tensor (the math is in `senet_cpu::optim` and
//! `shaders/optim.wgsl`). On the GPU the parameter and its state are updated in place — every
//! handle to them sees the new values, as with PyTorch's in-place `step()`. On the CPU the
//! update returns tensors that the caller stores in place of the old ones: a buffer no other
//! tensor holds is reused (updated in place), a shared one is copied first, so no other handle
//! ever sees its values change.
use crate::kernel::{run_update, Update};
use crate::layout::Layout;
use crate::{CpuElement, Error, Result, Tensor};
use senet_gpu::GpuBuffer;

/// Hyperparameters of one SGD step (PyTorch's `torch.optim.SGD`).
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    /// Learning rate: how far to move against the gradient.
    pub lr: f64,
    /// How much of the previous step's velocity carries over (0 for plain SGD).
    pub momentum: f64,
    /// L2 penalty: `weight_decay * param` is added to the gradient.
    pub weight_decay: f64,
    /// Step with the look-ahead gradient `grad + momentum * velocity` instead of the velocity.
    pub nesterov: bool,
}

/// Hyperparameters of one AdamW step (PyTorch's `torch.optim.AdamW`); `step` counts from 1.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f64,
    /// Decay rate of the running mean of gradients (usually 0.9).
    pub beta1: f64,
    /// Decay rate of the running mean of squared gradients (usually 0.999).
    pub beta2: f64,
    /// Added to the denominator so a zero second moment does not divide by zero.
    pub eps: f64,
    /// Decoupled weight decay: the parameter shrinks by `lr * weight_decay` of itself.
    pub weight_decay: f64,
    /// Which step this is, from 1: sets the bias corrections of the moments.
    pub step: u64,
}

/// One SGD step of `numel` elements: state `[param, velocity]` (just `[param]` without
/// momentum), input `[grad]`.
struct Sgd {
    h: SgdStep,
    /// The velocity starts as the first gradient (PyTorch's rule).
    first: bool,
    numel: usize,
}

impl Update for Sgd {
    const NAME: &'static str = "sgd_update";
    fn cpu<T: CpuElement>(&self, state: &mut [&mut [T]], grad: &[&[T]]) {
        let Sgd { h, first, .. } = *self;
        let (param, velocity) = match state {
            [p, v] => (&mut **p, &mut **v),
            // Without momentum there is no velocity, and the kernel does not touch it.
            [p] => (&mut **p, &mut [][..]),
            _ => unreachable!("sgd_update passes [param] or [param, velocity]"),
        };
        let (lr, mu, wd) = (h.lr, h.momentum, h.weight_decay);
        senet_cpu::optim::sgd_step(param, grad[0], velocity, lr, mu, wd, h.nesterov, first);
    }
    fn gpu(&self, state: &[&GpuBuffer], grad: &[&GpuBuffer]) -> senet_gpu::Result<()> {
        let Sgd { h, first, numel } = *self;
        // Without momentum the kernel does not touch the velocity: bind the parameter.
        let (p, v) = (state[0], state.get(1).unwrap_or(&state[0]));
        let (lr, mu, wd) = (h.lr, h.momentum, h.weight_decay);
        senet_gpu::optim::sgd_step(p, grad[0], v, numel, lr, mu, wd, h.nesterov, first)
    }
}

/// One AdamW step of `numel` elements: state `[param, m, v]`, input `[grad]`.
struct AdamW {
    h: AdamWStep,
    numel: usize,
}

impl Update for AdamW {
    const NAME: &'static str = "adamw_update";
    fn cpu<T: CpuElement>(&self, state: &mut [&mut [T]], grad: &[&[T]]) {
        let h = self.h;
        let [p, m, v] = state else {
            unreachable!("adamw_update passes [param, m, v]")
        };
        let (b1, b2, wd) = (h.beta1, h.beta2, h.weight_decay);
        senet_cpu::optim::adamw_step(p, grad[0], m, v, h.lr, b1, b2, h.eps, wd, h.step);
    }
    fn gpu(&self, s: &[&GpuBuffer], grad: &[&GpuBuffer]) -> senet_gpu::Result<()> {
        let (h, n) = (self.h, self.numel);
        let (b1, b2, wd) = (h.beta1, h.beta2, h.weight_decay);
        senet_gpu::optim::adamw_step(
            s[0], grad[0], s[1], s[2], n, h.lr, b1, b2, h.eps, wd, h.step,
        )
    }
}

fn check(param: &Tensor, others: &[&Tensor]) -> Result<()> {
    for t in others {
        super::check_same("optimizer step", param, t)?;
        if t.shape() != param.shape() {
            return Err(Error::shape(
                "optimizer step",
                format!(
                    "state of shape {:?} for a parameter of shape {:?}",
                    t.shape(),
                    param.shape()
                ),
            ));
        }
    }
    Ok(())
}

impl Tensor {
    /// One SGD step of this parameter given its gradient and velocity (`None` before the
    /// first step). Returns the new parameter and velocity (`None` without momentum).
    ///
    /// Takes the parameter and velocity by value: on the CPU, a buffer that no other tensor
    /// holds is then updated in place instead of copied (drop other handles first to get
    /// that). On an error they are dropped.
    ///
    /// The gradient and the velocity must have the parameter's shape, and so do the results.
    ///
    /// ```
    /// # use senet_tensor::{SgdStep, Tensor};
    /// let h = SgdStep { lr: 0.1, momentum: 0.9, weight_decay: 0.0, nesterov: false };
    /// let (p, g) = (Tensor::ones(&[2, 3]), Tensor::ones(&[2, 3]));
    /// let (p, v) = p.sgd_update(&g, None, h)?;
    /// assert_eq!(p.shape(), &[2, 3]);
    /// assert_eq!(v.unwrap().shape(), &[2, 3]);
    /// // A gradient of another shape is refused.
    /// assert!(p.sgd_update(&Tensor::ones(&[3, 2]), None, h).is_err());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn sgd_update(
        self,
        grad: &Tensor,
        velocity: Option<Tensor>,
        h: SgdStep,
    ) -> Result<(Tensor, Option<Tensor>)> {
        check(&self, &[grad])?;
        let first = velocity.is_none();
        let velocity = match (velocity, h.momentum != 0.0) {
            (_, false) => None,
            (Some(v), true) => Some(v),
            (None, true) => Some(self.zeros_like()?),
        };
        if let Some(v) = &velocity {
            check(&self, &[v])?;
        }
        let (shape, numel) = (self.shape().to_vec(), self.numel());
        let g = grad.contiguous_detached()?;
        let with_velocity = velocity.is_some();
        let mut state = vec![into_detached(self)?];
        if let Some(v) = velocity {
            state.push(into_detached(v)?);
        }
        let mut new = run_update(&Sgd { h, first, numel }, state, &[&g])?.into_iter();
        let mut next = || updated(&shape, new.next());
        Ok((next(), with_velocity.then(next)))
    }

    /// One AdamW step of this parameter given its gradient and moments (zeros before the
    /// first step). Returns the new parameter, first and second moments. Takes them by value,
    /// as [`Tensor::sgd_update`] does. All of them, and the results, have the parameter's shape.
    ///
    /// ```
    /// # use senet_tensor::{AdamWStep, Tensor};
    /// let h = AdamWStep { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, step: 1 };
    /// let p = Tensor::ones(&[4]);
    /// let (m, v) = (p.zeros_like()?, p.zeros_like()?);
    /// let (p, m, v) = p.adamw_update(&Tensor::ones(&[4]), m, v, h)?;
    /// assert_eq!((p.shape(), m.shape(), v.shape()), (&[4][..], &[4][..], &[4][..]));
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn adamw_update(
        self,
        grad: &Tensor,
        m: Tensor,
        v: Tensor,
        h: AdamWStep,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        check(&self, &[grad, &m, &v])?;
        if h.step == 0 {
            return Err(Error::invalid("adamw_update", "step counts from 1"));
        }
        let (shape, numel) = (self.shape().to_vec(), self.numel());
        let g = grad.contiguous_detached()?;
        let state = vec![into_detached(self)?, into_detached(m)?, into_detached(v)?];
        let mut new = run_update(&AdamW { h, numel }, state, &[&g])?.into_iter();
        let mut next = || updated(&shape, new.next());
        Ok((next(), next(), next()))
    }
}

/// `t` ready for a kernel, without keeping `t` itself: a tensor that already is stays the
/// only handle on its buffer (when it was), so the update can take the buffer over.
fn into_detached(t: Tensor) -> Result<Tensor> {
    let d = t.contiguous_detached()?;
    drop(t);
    Ok(d)
}

/// A new tensor of the parameter's shape over an updated buffer.
fn updated(shape: &[usize], storage: Option<std::sync::Arc<crate::Storage>>) -> Tensor {
    let storage = storage.expect("run_update returns one buffer per state tensor");
    Tensor::from_storage(storage, Layout::contiguous(shape), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: SgdStep = SgdStep {
        lr: 0.5,
        momentum: 0.5,
        weight_decay: 0.0,
        nesterov: false,
    };

    /// Where a tensor's buffer lives (the handle made here is dropped at once).
    fn buffer_at(t: &Tensor) -> *const crate::Storage {
        std::sync::Arc::as_ptr(&t.storage_arc())
    }

    #[test]
    fn a_buffer_only_the_update_holds_is_updated_in_place() {
        let p = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap();
        let g = Tensor::from_vec(vec![0.5f32, -1.0], &[2]).unwrap();
        let at = buffer_at(&p);
        // Step 1: v = g; p -= 0.5 v.
        let (p, v) = p.sgd_update(&g, None, H).unwrap();
        assert_eq!(buffer_at(&p), at, "the parameter's buffer was copied");
        assert_eq!(p.to_vec::<f32>().unwrap(), [0.75, 2.5]);
        let v = v.unwrap();
        let v_at = buffer_at(&v);
        // Step 2: v = 0.5 v + g = 1.5 g; p -= 0.5 v.
        let (p, v) = p.sgd_update(&g, Some(v), H).unwrap();
        let v = v.unwrap();
        assert_eq!((buffer_at(&p), buffer_at(&v)), (at, v_at));
        assert_eq!(p.to_vec::<f32>().unwrap(), [0.375, 3.25]);
        assert_eq!(v.to_vec::<f32>().unwrap(), [0.75, -1.5]);
    }

    #[test]
    fn a_shared_buffer_is_copied_and_its_other_handles_keep_their_values() {
        let p = Tensor::from_vec(vec![1.0f32, 2.0], &[2]).unwrap();
        let g = Tensor::from_vec(vec![0.5f32, -1.0], &[2]).unwrap();
        let (kept_p, view) = (p.clone(), p.reshape(&[1, 2]).unwrap());
        let (p, v) = p.sgd_update(&g, None, H).unwrap();
        assert_ne!(buffer_at(&p), buffer_at(&kept_p));
        assert_eq!(p.to_vec::<f32>().unwrap(), [0.75, 2.5]);
        let v = v.unwrap();
        let kept_v = v.clone();
        let (p, _) = p.sgd_update(&g, Some(v), H).unwrap();
        assert_eq!(p.to_vec::<f32>().unwrap(), [0.375, 3.25]);
        for old in [&kept_p, &view] {
            assert_eq!(old.to_vec::<f32>().unwrap(), [1.0, 2.0]);
        }
        assert_eq!(kept_v.to_vec::<f32>().unwrap(), [0.5, -1.0]);
        // AdamW takes the same path for its three buffers.
        let (m, v2) = (p.zeros_like().unwrap(), p.zeros_like().unwrap());
        let kept_m = m.clone();
        let h = AdamWStep {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            step: 1,
        };
        let (_, m, _) = p.adamw_update(&g, m, v2, h).unwrap();
        assert_eq!(kept_m.to_vec::<f32>().unwrap(), [0.0, 0.0]);
        assert_ne!(m.to_vec::<f32>().unwrap(), [0.0, 0.0]);
    }
}
