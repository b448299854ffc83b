//! Batch normalization over NCHW, per channel. Training normalizes with the batch statistics
//! and updates the running ones the way PyTorch does (the running variance takes the
//! *unbiased* batch variance); evaluation normalizes with the running statistics.
use super::{check_rank, check_same, check_shape};
use crate::kernel::{run_with, CpuIn, CpuOut, GpuIn, GpuOut, Kernel};
use crate::{no_grad, CpuElement, Error, Op, Result, Tensor};
use senet_cpu::batchnorm as cpu;
use senet_gpu::batchnorm as gpu;
use senet_spec::batchnorm::BnShape;

/// The batch-norm kernels (`senet_spec::batchnorm` says what they compute), each reading
/// contiguous arguments in the order listed.
enum BatchNorm {
    /// `[x, weight?, bias?] -> y, mean, biased var, invstd`
    ForwardTrain { shape: BnShape, eps: f64 },
    /// `[x, weight?, bias?, running mean, running var] -> y`
    ForwardEval { shape: BnShape, eps: f64 },
    /// `[x, dy, weight?, mean, invstd] -> dx, dweight, dbias`
    Backward { shape: BnShape, training: bool },
}

impl Kernel for BatchNorm {
    const NAME: &'static str = "batch_norm2d";
    fn profile(&self) -> (String, Option<f64>) {
        let (what, s) = match self {
            BatchNorm::ForwardTrain { shape, .. } => ("batch_norm2d", shape),
            BatchNorm::ForwardEval { shape, .. } => ("batch_norm2d eval", shape),
            BatchNorm::Backward { shape, .. } => ("batch_norm2d dx", shape),
        };
        (format!("{what} {}ch x{}", s.c, s.hw), None)
    }
    fn cpu<T: CpuElement>(&self, x: &CpuIn<T>) -> CpuOut<T> {
        match *self {
            BatchNorm::ForwardTrain { shape: s, eps } => {
                let o = cpu::forward_train(s, x.get(0), x.opt(1), x.opt(2), eps);
                CpuOut::many(vec![o.y, o.mean, o.var, o.invstd])
            }
            BatchNorm::ForwardEval { shape: s, eps } => CpuOut::one(cpu::forward_eval(
                s,
                x.get(0),
                x.opt(1),
                x.opt(2),
                x.get(3),
                x.get(4),
                eps,
            )),
            BatchNorm::Backward { shape: s, training } => {
                let backward = if training {
                    cpu::backward_train
                } else {
                    cpu::backward_eval
                };
                let (dx, dw, db) = backward(s, x.get(0), x.get(1), x.opt(2), x.get(3), x.get(4));
                CpuOut::many(vec![dx, dw, db])
            }
        }
    }
    fn gpu(&self, x: &GpuIn) -> senet_gpu::Result<GpuOut> {
        Ok(match *self {
            BatchNorm::ForwardTrain { shape: s, eps } => {
                let o = gpu::forward_train(s, x.get(0), x.opt(1), x.opt(2), eps)?;
                GpuOut::many(vec![o.y, o.mean, o.var, o.invstd])
            }
            BatchNorm::ForwardEval { shape: s, eps } => GpuOut::one(gpu::forward_eval(
                s,
                x.get(0),
                x.opt(1),
                x.opt(2),
                x.get(3),
                x.get(4),
                eps,
            )?),
            BatchNorm::Backward { shape: s, training } => {
                let backward = if training {
                    gpu::backward_train
                } else {
                    gpu::backward_eval
                };
                let (dx, dw, db) = backward(s, x.get(0), x.get(1), x.opt(2), x.get(3), x.get(4))?;
                GpuOut::many(vec![dx, dw, db])
            }
        })
    }
}

/// Mode and constants of [`Tensor::batch_norm2d`]; the default is training mode with
/// PyTorch's momentum 0.1 and eps 1e-5.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormOptions {
    /// Batch statistics (and a running-statistics update) when true; running statistics when false.
    pub training: bool,
    /// Weight of the new batch statistic in the running average (PyTorch's convention, 0.1).
    pub momentum: f64,
    /// Added to the variance before the square root, so a constant channel does not divide
    /// by zero. Must be positive.
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
    /// Running average of the per-channel batch means.
    pub mean: Tensor,
    /// Running average of the per-channel (unbiased) batch variances.
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
    ///
    /// Each channel is normalized to `(x - mean) / sqrt(var + eps)`, then scaled by `weight`
    /// and shifted by `bias`. The output has the input's shape; `weight`, `bias` and the
    /// running statistics are `[C]`. Training needs more than one value per channel
    /// (`N * H * W > 1`), or the batch variance would be meaningless.
    ///
    /// ```
    /// # use senet_tensor::{BatchNormOptions, RunningStats, Tensor};
    /// let x = Tensor::from_vec((0..300).map(|i| (i % 7) as f32).collect(), &[4, 3, 5, 5])?;
    /// let (w, b) = (Tensor::ones(&[3]), Tensor::zeros(&[3]));
    /// let mut running = RunningStats::new(3);
    /// let train = BatchNormOptions::default();
    /// let y = x.batch_norm2d(Some(&w), Some(&b), Some(&mut running), train)?;
    /// assert_eq!(y.shape(), &[4, 3, 5, 5]);
    /// // Evaluation normalizes with the running statistics the training call updated.
    /// let eval = BatchNormOptions { training: false, ..train };
    /// let y = x.batch_norm2d(Some(&w), Some(&b), Some(&mut running), eval)?;
    /// assert_eq!(y.shape(), &[4, 3, 5, 5]);
    /// // A weight for 4 channels does not fit 3.
    /// assert!(x.batch_norm2d(Some(&Tensor::ones(&[4])), None, None, train).is_err());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
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
        let (y, mean, invstd) = if opts.training {
            let kernel = BatchNorm::ForwardTrain {
                shape,
                eps: opts.eps,
            };
            let mut out = run_with(&kernel, &[Some(&x), w.as_ref(), b.as_ref()], &[])?;
            let y = out.tensor(s, None);
            let (mean, var, invstd) = (
                out.tensor(&[shape.c], None),
                out.tensor(&[shape.c], None),
                out.tensor(&[shape.c], None),
            );
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
            let kernel = BatchNorm::ForwardEval {
                shape,
                eps: opts.eps,
            };
            let args = [Some(&x), w.as_ref(), b.as_ref(), Some(&mean), Some(&var)];
            let y = run_with(&kernel, &args, &[])?.tensor(s, None);
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
    let kernel = BatchNorm::Backward { shape, training };
    let args = [Some(&x), Some(&dy), w.as_ref(), Some(mean), Some(invstd)];
    let mut out = run_with(&kernel, &args, &[])?;
    let dx = out.tensor(s, None);
    Ok((
        dx,
        out.tensor(&[shape.c], None),
        out.tensor(&[shape.c], None),
    ))
}
