//! Softmax, log-softmax and the cross-entropy loss on logits. `senet_spec::softmax` says what
//! the kernels compute; `senet_cpu::softmax` and `shaders/softmax_xent.wgsl` compute it.
use crate::kernel::{run, run_with, CpuIn, CpuOut, GpuIn, GpuOut, Kernel};
use crate::{CpuElement, Error, Indices, Op, Result, Tensor};
use senet_cpu::softmax as cpu;
use senet_gpu::softmax as gpu;

/// Softmax (or log-softmax) along the middle axis of `[outer, len, inner]`.
#[derive(Clone, Copy)]
struct Axis {
    outer: usize,
    len: usize,
    inner: usize,
    log: bool,
}

/// Softmax kernels, reading contiguous arguments in the order listed.
enum Softmax<'a> {
    /// `[x] -> y`
    Forward(Axis),
    /// `[y, dy] -> dx`
    Backward(Axis),
    /// `[logits [batch, classes]] -> probabilities, mean loss`, and the labels as indices.
    CrossEntropy {
        labels: &'a [u32],
        classes: usize,
        smoothing: f64,
    },
    /// `[probabilities, dloss]` and the labels `-> dlogits`.
    CrossEntropyBackward { classes: usize, smoothing: f64 },
}

impl Kernel for Softmax<'_> {
    const NAME: &'static str = "softmax";
    fn cpu<T: CpuElement>(&self, x: &CpuIn<T>) -> CpuOut<T> {
        match *self {
            Softmax::Forward(a) => {
                CpuOut::one(cpu::softmax(x.get(0), a.outer, a.len, a.inner, a.log))
            }
            Softmax::Backward(a) => CpuOut::one(cpu::softmax_backward(
                x.get(0),
                x.get(1),
                a.len,
                a.inner,
                a.log,
            )),
            Softmax::CrossEntropy {
                labels,
                classes,
                smoothing,
            } => {
                let (loss, probs) =
                    cpu::cross_entropy(x.get(0), labels.len(), classes, labels, smoothing);
                CpuOut::many(vec![probs, vec![loss]]).with_index(labels.to_vec())
            }
            Softmax::CrossEntropyBackward { classes, smoothing } => {
                let (probs, labels) = (x.get(0), x.index(0));
                let dloss = x.get(1)[0];
                CpuOut::one(cpu::cross_entropy_backward(
                    probs,
                    labels.len(),
                    classes,
                    labels,
                    smoothing,
                    dloss,
                ))
            }
        }
    }
    fn gpu(&self, x: &GpuIn) -> senet_gpu::Result<GpuOut> {
        Ok(match *self {
            Softmax::Forward(a) => {
                GpuOut::one(gpu::softmax(x.get(0), a.outer, a.len, a.inner, a.log)?)
            }
            Softmax::Backward(a) => GpuOut::one(gpu::softmax_backward(
                x.get(0),
                x.get(1),
                a.outer,
                a.len,
                a.inner,
                a.log,
            )?),
            Softmax::CrossEntropy {
                labels,
                classes,
                smoothing,
            } => {
                let logits = x.get(0);
                let labels_gpu = logits.gpu().upload(labels)?;
                let (loss, probs) =
                    gpu::cross_entropy(logits, labels.len(), classes, &labels_gpu, smoothing)?;
                GpuOut::many(vec![probs, loss]).with_index(labels_gpu)
            }
            // The incoming gradient stays on the GPU: no readback in the middle of backward.
            Softmax::CrossEntropyBackward { classes, smoothing } => {
                let batch = x.view(0).1.shape()[0];
                GpuOut::one(gpu::cross_entropy_backward(
                    x.get(0),
                    x.index(0),
                    batch,
                    classes,
                    smoothing,
                    x.get(1),
                )?)
            }
        })
    }
}

/// `shape` seen as `[outer, len, inner]` around `axis`.
fn split(shape: &[usize], axis: usize, log: bool) -> Axis {
    Axis {
        outer: shape[..axis].iter().product(),
        len: shape[axis],
        inner: shape[axis + 1..].iter().product(),
        log,
    }
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
        let x = self.contiguous_detached()?;
        let record = Some(Op::Softmax {
            input: self.clone(),
            axis,
            log,
        });
        let kernel = Softmax::Forward(split(self.shape(), axis, log));
        Ok(run(&kernel, &[&x])?.tensor(self.shape(), record))
    }

    /// `exp(x) / sum(exp(x))` along `axis`: turns scores into probabilities that sum to 1
    /// along that axis. The output has the input's shape; `axis` must exist.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let p = Tensor::zeros(&[2, 4]).softmax(1)?;
    /// assert_eq!(p.shape(), &[2, 4]);
    /// assert_eq!(p.to_vec_f32()?, [0.25; 8]);
    /// assert!(Tensor::zeros(&[2, 4]).softmax(2).is_err());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn softmax(&self, axis: usize) -> Result<Tensor> {
        self.softmax_impl(axis, false)
    }
    /// `x - log(sum(exp(x)))` along `axis`, computed stably (the log of
    /// [`softmax`](Self::softmax) without overflow for large scores). Same shape as the input.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let l = Tensor::zeros(&[3, 2]).log_softmax(0)?;
    /// assert_eq!(l.shape(), &[3, 2]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn log_softmax(&self, axis: usize) -> Result<Tensor> {
        self.softmax_impl(axis, true)
    }

    /// Mean cross-entropy of logits `[batch, classes]` against class indices, with label
    /// smoothing (0 for none; PyTorch's definition). Returns a tensor of shape `[]`.
    ///
    /// Needs one label per row of `self`, each below the number of classes, and a smoothing
    /// in `[0, 1]`.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let logits = Tensor::zeros(&[2, 10]); // batch 2, 10 classes
    /// let loss = logits.cross_entropy(&[3, 7], 0.0)?;
    /// assert_eq!(loss.shape(), &[] as &[usize]);
    /// assert!((loss.item()? - 10f64.ln()).abs() < 1e-5); // uniform guess: ln 10
    /// assert!(logits.cross_entropy(&[3], 0.0).is_err()); // 1 label for a batch of 2
    /// assert!(logits.cross_entropy(&[3, 10], 0.0).is_err()); // class 10 of 0..10
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
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
        let kernel = Softmax::CrossEntropy {
            labels,
            classes,
            smoothing,
        };
        let mut out = run(&kernel, &[&x])?;
        let record = Op::CrossEntropy {
            logits: self.clone(),
            labels: out.indices(),
            smoothing,
            probs: out.tensor(self.shape(), None),
        };
        Ok(out.tensor(&[], Some(record)))
    }
}

/// Gradient of softmax/log-softmax from its output and the incoming gradient.
pub(crate) fn softmax_backward(
    output: &Tensor,
    grad: &Tensor,
    axis: usize,
    log: bool,
) -> Result<Tensor> {
    let (y, g) = (output.contiguous_detached()?, grad.contiguous_detached()?);
    let kernel = Softmax::Backward(split(output.shape(), axis, log));
    Ok(run(&kernel, &[&y, &g])?.tensor(output.shape(), None))
}

/// Gradient of cross-entropy w.r.t. the logits, scaled by the (scalar) incoming gradient.
pub(crate) fn cross_entropy_backward(
    probs: &Tensor,
    labels: &Indices,
    smoothing: f64,
    grad: &Tensor,
) -> Result<Tensor> {
    let g = grad.contiguous_detached()?;
    let kernel = Softmax::CrossEntropyBackward {
        classes: probs.shape()[1],
        smoothing,
    };
    Ok(run_with(&kernel, &[Some(probs), Some(&g)], &[labels])?.tensor(probs.shape(), None))
}
