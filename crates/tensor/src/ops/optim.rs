//! Optimizer updates of one parameter tensor (the math is in `senet_cpu::optim` and
//! `shaders/optim.wgsl`). On the GPU the parameter and its state are updated in place — every
//! handle to them sees the new values, as with PyTorch's in-place `step()`; on the CPU new
//! tensors are returned (the caller stores them in place of the old ones).
use crate::kernel::{run_update, Update};
use crate::layout::Layout;
use crate::{CpuElement, Error, Result, Tensor};
use senet_gpu::GpuBuffer;

/// Hyperparameters of one SGD step (PyTorch's `torch.optim.SGD`).
#[derive(Clone, Copy, Debug)]
pub struct SgdStep {
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

/// Hyperparameters of one AdamW step (PyTorch's `torch.optim.AdamW`); `step` counts from 1.
#[derive(Clone, Copy, Debug)]
pub struct AdamWStep {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
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
    fn cpu<T: CpuElement>(&self, state: &mut [Vec<T>], grad: &[&[T]]) {
        let Sgd { h, first, .. } = *self;
        let (param, velocity) = match state {
            [p, v] => (p, &mut v[..]),
            // Without momentum there is no velocity, and the kernel does not touch it.
            [p] => (p, &mut [][..]),
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
    fn cpu<T: CpuElement>(&self, state: &mut [Vec<T>], grad: &[&[T]]) {
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
    pub fn sgd_update(
        &self,
        grad: &Tensor,
        velocity: Option<&Tensor>,
        h: SgdStep,
    ) -> Result<(Tensor, Option<Tensor>)> {
        check(self, &[grad])?;
        let first = velocity.is_none();
        let velocity = match (velocity, h.momentum != 0.0) {
            (_, false) => None,
            (Some(v), true) => Some(v.clone()),
            (None, true) => Some(self.zeros_like()?),
        };
        if let Some(v) = &velocity {
            check(self, &[v])?;
        }
        let (p, g) = (self.contiguous_detached()?, grad.contiguous_detached()?);
        let v = velocity
            .as_ref()
            .map(|v| v.contiguous_detached())
            .transpose()?;
        let state: Vec<&Tensor> = std::iter::once(&p).chain(&v).collect();
        let mut new = run_update(
            &Sgd {
                h,
                first,
                numel: p.numel(),
            },
            &state,
            &[&g],
        )?
        .into_iter();
        let mut next = || self.updated(new.next());
        Ok((next(), v.map(|_| next())))
    }

    /// One AdamW step of this parameter given its gradient and moments (zeros before the
    /// first step). Returns the new parameter, first and second moments.
    pub fn adamw_update(
        &self,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        h: AdamWStep,
    ) -> Result<(Tensor, Tensor, Tensor)> {
        check(self, &[grad, m, v])?;
        if h.step == 0 {
            return Err(Error::invalid("adamw_update", "step counts from 1"));
        }
        let (p, g, m, v) = (
            self.contiguous_detached()?,
            grad.contiguous_detached()?,
            m.contiguous_detached()?,
            v.contiguous_detached()?,
        );
        let mut new = run_update(
            &AdamW {
                h,
                numel: p.numel(),
            },
            &[&p, &m, &v],
            &[&g],
        )?
        .into_iter();
        let mut next = || self.updated(new.next());
        Ok((next(), next(), next()))
    }

    /// A new tensor of this parameter's shape over an updated buffer.
    fn updated(&self, storage: Option<std::sync::Arc<crate::Storage>>) -> Tensor {
        let storage = storage.expect("run_update returns one buffer per state tensor");
        Tensor::from_storage(storage, Layout::contiguous(self.shape()), None)
    }
}
