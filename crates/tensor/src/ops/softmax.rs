//! Softmax, log-softmax and the cross-entropy loss on logits.
use crate::op::Indices;
use crate::storage::with_dtype;
use crate::{Device, Error, Op, Result, Tensor};
use senet_cpu::softmax as kernel;
use senet_gpu::softmax as gpu;
use senet_spec::Element;
use std::sync::Arc;

/// `(outer, axis, inner)` sizes of `shape` around `axis`.
fn split(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

impl Tensor {
    fn softmax_impl(&self, axis: usize, log: bool) -> Result<Tensor> {
        let name = if log { "log_softmax" } else { "softmax" };
        if axis >= self.rank() {
            return Err(Error::shape(
                name,
                format!("axis {axis} is out of range for shape {:?}", self.shape()),
            ));
        }
        let (outer, len, inner) = split(self.shape(), axis);
        let x = self.contiguous_detached()?;
        let record = Some(Op::Softmax {
            input: self.clone(),
            axis,
            log,
        });
        if self.device() != Device::Cpu {
            let out = gpu::softmax(x.gpu_buf()?, outer, len, inner, log)?;
            return Ok(Tensor::from_gpu(out, self.shape(), record));
        }
        with_dtype!(self.dtype(), T => {
            let out = kernel::softmax(x.cpu_slice::<T>()?, outer, len, inner, log);
            Ok(Tensor::from_cpu(out, self.shape(), record))
        })
    }

    /// `exp(x) / sum(exp(x))` along `axis`.
    pub fn softmax(&self, axis: usize) -> Result<Tensor> {
        self.softmax_impl(axis, false)
    }
    /// `x - log(sum(exp(x)))` along `axis`, computed stably.
    pub fn log_softmax(&self, axis: usize) -> Result<Tensor> {
        self.softmax_impl(axis, true)
    }

    /// Mean cross-entropy of logits `[batch, classes]` against class indices, with label
    /// smoothing (0 for none; PyTorch's definition). Returns a tensor of shape `[]`.
    pub fn cross_entropy(&self, labels: &[u32], smoothing: f64) -> Result<Tensor> {
        super::check_rank("cross_entropy", "logits", self, 2)?;
        let (batch, classes) = (self.shape()[0], self.shape()[1]);
        if labels.len() != batch {
            return Err(Error::shape(
                "cross_entropy",
                format!(
                    "{} labels for logits of shape {:?} (batch {batch})",
                    labels.len(),
                    self.shape()
                ),
            ));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            return Err(Error::invalid(
                "cross_entropy",
                format!("label {l} at position {i} is out of range for {classes} classes"),
            ));
        }
        if !(0.0..=1.0).contains(&smoothing) {
            return Err(Error::invalid(
                "cross_entropy",
                format!("label smoothing must be in [0, 1], got {smoothing}"),
            ));
        }
        if batch == 0 {
            return Err(Error::shape("cross_entropy", "the batch is empty"));
        }
        let x = self.contiguous_detached()?;
        if self.device() != Device::Cpu {
            let xb = x.gpu_buf()?;
            let labels_gpu = xb.gpu().upload(labels)?;
            let (loss, probs) = gpu::cross_entropy(xb, batch, classes, &labels_gpu, smoothing)?;
            let probs = Tensor::from_gpu(probs, self.shape(), None);
            let record = Op::CrossEntropy {
                logits: self.clone(),
                labels: Indices::Gpu(Arc::new(labels_gpu)),
                smoothing,
                probs,
            };
            return Ok(Tensor::from_gpu(loss, &[], Some(record)));
        }
        with_dtype!(self.dtype(), T => {
            let (loss, probs) = kernel::cross_entropy(x.cpu_slice::<T>()?, batch, classes, labels, smoothing);
            let probs = Tensor::from_cpu(probs, self.shape(), None);
            let record = Op::CrossEntropy { logits: self.clone(), labels: Indices::Cpu(Arc::from(labels)), smoothing, probs };
            Ok(Tensor::from_cpu(vec![loss], &[], Some(record)))
        })
    }
}

/// Gradient of softmax/log-softmax from its output and the incoming gradient.
pub(crate) fn softmax_backward(
    output: &Tensor,
    grad: &Tensor,
    axis: usize,
    log: bool,
) -> Result<Tensor> {
    let (_, len, inner) = split(output.shape(), axis);
    let (y, g) = (output.contiguous_detached()?, grad.contiguous_detached()?);
    if output.device() != Device::Cpu {
        let (outer, _, _) = split(output.shape(), axis);
        let dx = gpu::softmax_backward(y.gpu_buf()?, g.gpu_buf()?, outer, len, inner, log)?;
        return Ok(Tensor::from_gpu(dx, output.shape(), None));
    }
    with_dtype!(output.dtype(), T => {
        let dx = kernel::softmax_backward(y.cpu_slice::<T>()?, g.cpu_slice::<T>()?, len, inner, log);
        Ok(Tensor::from_cpu(dx, output.shape(), None))
    })
}

/// Gradient of cross-entropy w.r.t. the logits, scaled by the (scalar) incoming gradient.
pub(crate) fn cross_entropy_backward(
    probs: &Tensor,
    labels: &Indices,
    smoothing: f64,
    grad: &Tensor,
) -> Result<Tensor> {
    let (batch, classes) = (probs.shape()[0], probs.shape()[1]);
    let labels = match labels {
        Indices::Gpu(labels) => {
            // The incoming gradient stays on the GPU: no readback in the middle of backward.
            let (p, g) = (probs.gpu_buf()?, grad.contiguous_detached()?);
            let dx =
                gpu::cross_entropy_backward(p, labels, batch, classes, smoothing, g.gpu_buf()?)?;
            return Ok(Tensor::from_gpu(dx, probs.shape(), None));
        }
        Indices::Cpu(labels) => labels,
    };
    let g = grad.item()?;
    with_dtype!(probs.dtype(), T => {
        let dx = kernel::cross_entropy_backward(probs.cpu_slice::<T>()?, batch, classes, labels, smoothing, T::from_f64(g));
        Ok(Tensor::from_cpu(dx, probs.shape(), None))
    })
}
