//! Batch normalization over NCHW, per channel. Training normalizes with the batch statistics
//! and updates the running ones the way PyTorch does (the running variance takes the
//! *unbiased* batch variance); evaluation normalizes with the running statistics.
use super::{check_rank, check_same, check_shape, opt_cpu, opt_gpu};
use crate::storage::with_dtype;
use crate::{no_grad, Device, Error, Op, Result, Tensor};
use senet_cpu::batchnorm as kernel;
use senet_gpu::batchnorm as gpu;
use senet_spec::batchnorm::BnShape;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormOptions {
    /// Batch statistics (and a running-statistics update) when true; running statistics when false.
    pub training: bool,
    /// Weight of the new batch statistic in the running average (PyTorch's convention, 0.1).
    pub momentum: f64,
    pub eps: f64,
}

impl Default for BatchNormOptions {
    fn default() -> Self {
        BatchNormOptions {
            training: true,
            momentum: 0.1,
            eps: 1e-5,
        }
    }
}

/// Running mean and variance of a batch-norm layer, shape `[C]` each. `batch_norm2d` replaces
/// the tensors (never mutates a buffer another tensor may share).
#[derive(Clone, Debug)]
pub struct RunningStats {
    pub mean: Tensor,
    pub var: Tensor,
}

impl RunningStats {
    /// Mean 0 and variance 1 (PyTorch's initial values), f32.
    pub fn new(channels: usize) -> Self {
        RunningStats {
            mean: Tensor::zeros(&[channels]),
            var: Tensor::ones(&[channels]),
        }
    }
}

impl Tensor {
    /// Batch normalization of `self` `[N, C, H, W]` with optional affine `weight`/`bias` `[C]`.
    /// In training `running` (if given) is updated; in evaluation it is required.
    pub fn batch_norm2d(
        &self,
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        running: Option<&mut RunningStats>,
        opts: BatchNormOptions,
    ) -> Result<Tensor> {
        const OP: &str = "batch_norm2d";
        check_rank(OP, "input", self, 4)?;
        let s = self.shape();
        let shape = BnShape {
            n: s[0],
            c: s[1],
            hw: s[2] * s[3],
        };
        for (what, t) in [("weight", weight), ("bias", bias)] {
            if let Some(t) = t {
                check_same(OP, self, t)?;
                check_shape(OP, what, t, &[shape.c])?;
            }
        }
        if let Some(r) = running.as_deref() {
            for (what, t) in [("running mean", &r.mean), ("running variance", &r.var)] {
                check_same(OP, self, t)?;
                check_shape(OP, what, t, &[shape.c])?;
            }
        }
        if opts.eps.is_nan() || opts.eps <= 0.0 {
            return Err(Error::invalid(
                OP,
                format!("eps must be positive, got {}", opts.eps),
            ));
        }
        let count = shape.n * shape.hw;
        if opts.training && count < 2 {
            return Err(Error::shape(
                OP,
                format!("training needs more than one value per channel, input shape {s:?}"),
            ));
        }
        let x = self.contiguous_detached()?;
        let w = weight.map(|t| t.contiguous_detached()).transpose()?;
        let b = bias.map(|t| t.contiguous_detached()).transpose()?;
        let on_gpu = self.device() != Device::Cpu;
        let (y, mean, invstd) = if opts.training {
            let (y, mean, var, invstd) = if on_gpu {
                let out =
                    gpu::forward_train(shape, x.gpu_buf()?, opt_gpu(&w)?, opt_gpu(&b)?, opts.eps)?;
                let c = |buf| Tensor::from_gpu(buf, &[shape.c], None);
                (
                    Tensor::from_gpu(out.y, s, None),
                    c(out.mean),
                    c(out.var),
                    c(out.invstd),
                )
            } else {
                with_dtype!(self.dtype(), T => {
                    let out = kernel::forward_train(shape, x.cpu_slice::<T>()?, opt_cpu::<T>(&w)?, opt_cpu::<T>(&b)?, opts.eps);
                    let c = |v| Tensor::from_cpu(v, &[shape.c], None);
                    (Tensor::from_cpu(out.y, s, None), c(out.mean), c(out.var), c(out.invstd))
                })
            };
            if let Some(r) = running {
                // PyTorch: running = (1 - m) * running + m * batch, the variance unbiased.
                let m = opts.momentum;
                let unbias = count as f64 / (count - 1) as f64;
                no_grad(|| -> Result<()> {
                    r.mean = r.mean.mul_scalar(1.0 - m)?.add(&mean.mul_scalar(m)?)?;
                    r.var = r
                        .var
                        .mul_scalar(1.0 - m)?
                        .add(&var.mul_scalar(m * unbias)?)?;
                    Ok(())
                })?;
            }
            (y, mean, invstd)
        } else {
            let r = running.ok_or_else(|| {
                Error::invalid(OP, "evaluation mode needs the running statistics")
            })?;
            let (mean, var) = (r.mean.contiguous_detached()?, r.var.contiguous_detached()?);
            let invstd = no_grad(|| var.add_scalar(opts.eps)?.powf(-0.5))?;
            let y = if on_gpu {
                Tensor::from_gpu(
                    gpu::forward_eval(
                        shape,
                        x.gpu_buf()?,
                        opt_gpu(&w)?,
                        opt_gpu(&b)?,
                        mean.gpu_buf()?,
                        var.gpu_buf()?,
                        opts.eps,
                    )?,
                    s,
                    None,
                )
            } else {
                with_dtype!(self.dtype(), T => {
                    let y = kernel::forward_eval(shape, x.cpu_slice::<T>()?, opt_cpu::<T>(&w)?, opt_cpu::<T>(&b)?, mean.cpu_slice::<T>()?, var.cpu_slice::<T>()?, opts.eps);
                    Tensor::from_cpu(y, s, None)
                })
            };
            (y, mean.detach(), invstd)
        };
        let record = Op::BatchNorm2d {
            input: self.clone(),
            weight: weight.cloned(),
            bias: bias.cloned(),
            mean,
            invstd,
            training: opts.training,
        };
        Ok(Tensor::from_storage(
            y.storage_arc(),
            y.layout().clone(),
            Some(record),
        ))
    }
}

/// Gradients of batch_norm2d: (input, weight, bias), from the statistics saved in the forward.
pub(crate) fn batch_norm2d_backward(
    input: &Tensor,
    weight: Option<&Tensor>,
    mean: &Tensor,
    invstd: &Tensor,
    training: bool,
    grad: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    let s = input.shape();
    let shape = BnShape {
        n: s[0],
        c: s[1],
        hw: s[2] * s[3],
    };
    let (x, dy) = (input.contiguous_detached()?, grad.contiguous_detached()?);
    let w = weight.map(|t| t.contiguous_detached()).transpose()?;
    if input.device() != Device::Cpu {
        let wb = w.as_ref().map(|t| t.gpu_buf()).transpose()?;
        let args = (
            shape,
            x.gpu_buf()?,
            dy.gpu_buf()?,
            wb,
            mean.gpu_buf()?,
            invstd.gpu_buf()?,
        );
        let (dx, dw, db) = if training {
            gpu::backward_train(args.0, args.1, args.2, args.3, args.4, args.5)?
        } else {
            gpu::backward_eval(args.0, args.1, args.2, args.3, args.4, args.5)?
        };
        let c = |buf| Tensor::from_gpu(buf, &[shape.c], None);
        return Ok((Tensor::from_gpu(dx, s, None), c(dw), c(db)));
    }
    with_dtype!(input.dtype(), T => {
        let ws = w.as_ref().map(|t| t.cpu_slice::<T>()).transpose()?;
        let args = (shape, x.cpu_slice::<T>()?, dy.cpu_slice::<T>()?, ws, mean.cpu_slice::<T>()?, invstd.cpu_slice::<T>()?);
        let (dx, dw, db) = if training {
            kernel::backward_train(args.0, args.1, args.2, args.3, args.4, args.5)
        } else {
            kernel::backward_eval(args.0, args.1, args.2, args.3, args.4, args.5)
        };
        Ok((Tensor::from_cpu(dx, s, None), Tensor::from_cpu(dw, &[shape.c], None), Tensor::from_cpu(db, &[shape.c], None)))
    })
}
