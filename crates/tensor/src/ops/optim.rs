//! Optimizer updates of one parameter tensor (the math is in `senet_cpu::optim` and
//! `shaders/optim.wgsl`). On the GPU the parameter and its state are updated in place — every
//! handle to them sees the new values, as with PyTorch's in-place `step()`; on the CPU new
//! tensors are returned (the caller stores them in place of the old ones).
use crate::storage::with_dtype;
use crate::{Device, Error, Result, Tensor};

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
        if self.device() != Device::Cpu {
            let v = velocity
                .as_ref()
                .map(|v| v.contiguous_detached())
                .transpose()?;
            // Without momentum the kernel does not touch the velocity: bind the parameter.
            let vb = v.as_ref().map_or(p.gpu_buf(), |v| v.gpu_buf())?;
            senet_gpu::optim::sgd_step(
                p.gpu_buf()?,
                g.gpu_buf()?,
                vb,
                p.numel(),
                h.lr,
                h.momentum,
                h.weight_decay,
                h.nesterov,
                first,
            )?;
            return Ok((p.detach(), v));
        }
        with_dtype!(self.dtype(), T => {
            let mut pv = p.cpu_slice::<T>()?.to_vec();
            let mut vv = match &velocity {
                Some(v) => v.contiguous_detached()?.cpu_slice::<T>()?.to_vec(),
                None => Vec::new(),
            };
            senet_cpu::optim::sgd_step(&mut pv, g.cpu_slice::<T>()?, &mut vv, h.lr, h.momentum, h.weight_decay, h.nesterov, first);
            let v = velocity.map(|_| Tensor::from_cpu(vv, self.shape(), None));
            Ok((Tensor::from_cpu(pv, self.shape(), None), v))
        })
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
        if self.device() != Device::Cpu {
            senet_gpu::optim::adamw_step(
                p.gpu_buf()?,
                g.gpu_buf()?,
                m.gpu_buf()?,
                v.gpu_buf()?,
                p.numel(),
                h.lr,
                h.beta1,
                h.beta2,
                h.eps,
                h.weight_decay,
                h.step,
            )?;
            return Ok((p.detach(), m, v));
        }
        with_dtype!(self.dtype(), T => {
            let (mut pv, mut mv, mut vv) = (p.cpu_slice::<T>()?.to_vec(), m.cpu_slice::<T>()?.to_vec(), v.cpu_slice::<T>()?.to_vec());
            senet_cpu::optim::adamw_step(&mut pv, g.cpu_slice::<T>()?, &mut mv, &mut vv, h.lr, h.beta1, h.beta2, h.eps, h.weight_decay, h.step);
            let t = |x| Tensor::from_cpu(x, self.shape(), None);
            Ok((t(pv), t(mv), t(vv)))
        })
    }
}
