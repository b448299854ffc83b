//! Sum, mean and max over chosen axes, and `sum_to` (the adjoint of broadcasting).
use crate::kernel::{run, CpuIn, CpuOut, GpuIn, GpuOut, Kernel};
use crate::{CpuElement, Error, Op, Result, Tensor};
use senet_spec::reduce::ReduceOp;

/// `[x] -> y`: sum or max over the middle axis of a contiguous `[outer, reduced, inner]`.
#[derive(Clone, Copy)]
struct Reduce {
    op: ReduceOp,
    outer: usize,
    reduced: usize,
    inner: usize,
}

impl Kernel for Reduce {
    const NAME: &'static str = "reduce";
    fn profile(&self) -> (String, Option<f64>) {
        (
            format!(
                "{} [{}, {}, {}]",
                self.op.name(),
                self.outer,
                self.reduced,
                self.inner
            ),
            None,
        )
    }
    fn cpu<T: CpuElement>(&self, x: &CpuIn<T>) -> CpuOut<T> {
        let Reduce {
            op,
            outer,
            reduced,
            inner,
        } = *self;
        CpuOut::one(senet_cpu::reduce::reduce(
            x.get(0),
            outer,
            reduced,
            inner,
            op,
        ))
    }
    fn gpu(&self, x: &GpuIn) -> senet_gpu::Result<GpuOut> {
        let Reduce {
            op,
            outer,
            reduced,
            inner,
        } = *self;
        let y = senet_gpu::reduce::reduce(x.get(0), outer, reduced, inner, op)?;
        Ok(GpuOut::one(y))
    }
}

/// Sorted, checked axes.
fn check_axes(op: &'static str, shape: &[usize], axes: &[usize]) -> Result<Vec<usize>> {
    let mut sorted = axes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted.len() != axes.len() || sorted.last().is_some_and(|&a| a >= shape.len()) {
        return Err(Error::shape(
            op,
            format!("axes {axes:?} are not distinct axes of shape {shape:?}"),
        ));
    }
    Ok(sorted)
}

impl Tensor {
    /// The reduction with the reduced axes kept (size 1); the public methods reshape after.
    fn reduce_keepdim(&self, axes: &[usize], op: ReduceOp, name: &'static str) -> Result<Tensor> {
        let axes = check_axes(name, self.shape(), axes)?;
        let shape = self.shape();
        let mut out_shape = shape.to_vec();
        for &a in &axes {
            out_shape[a] = 1;
        }
        if op == ReduceOp::Max && axes.iter().any(|&a| shape[a] == 0) {
            return Err(Error::shape(
                name,
                format!("cannot take the max over an empty axis of shape {shape:?}"),
            ));
        }
        // View the input as [outer, reduced, inner]: directly when the reduced axes are
        // adjacent, else after moving them last.
        let adjacent = axes.windows(2).all(|w| w[1] == w[0] + 1);
        let (x, outer, reduced, inner) = if axes.is_empty() {
            (self.contiguous_detached()?, self.numel(), 1, 1)
        } else if adjacent {
            let (first, last) = (axes[0], axes[axes.len() - 1]);
            let p = |r: &[usize]| r.iter().product::<usize>();
            (
                self.contiguous_detached()?,
                p(&shape[..first]),
                p(&shape[first..=last]),
                p(&shape[last + 1..]),
            )
        } else {
            let kept: Vec<usize> = (0..shape.len()).filter(|a| !axes.contains(a)).collect();
            let perm: Vec<usize> = kept.iter().chain(&axes).copied().collect();
            let moved =
                Tensor::from_storage(self.storage_arc(), self.layout().permute(&perm)?, None);
            let reduced = axes.iter().map(|&a| shape[a]).product();
            (
                moved.contiguous_detached()?,
                kept.iter().map(|&a| shape[a]).product(),
                reduced,
                1,
            )
        };
        let record = match op {
            ReduceOp::Sum => Op::Sum {
                input: self.clone(),
                axes,
            },
            ReduceOp::Max => Op::Max {
                input: self.clone(),
                axes,
            },
        };
        let kernel = Reduce {
            op,
            outer,
            reduced,
            inner,
        };
        Ok(run(&kernel, &[&x])?.tensor(&out_shape, Some(record)))
    }

    fn drop_axes(t: Tensor, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        if keepdim {
            return Ok(t);
        }
        let shape: Vec<usize> = t
            .shape()
            .iter()
            .enumerate()
            .filter(|(a, _)| !axes.contains(a))
            .map(|(_, &d)| d)
            .collect();
        t.reshape(&shape)
    }

    /// Sum over `axes` (all distinct); `keepdim` keeps them with size 1.
    ///
    /// Shape rule (shared by `mean` and `max`): the listed axes disappear from the shape, or
    /// become 1 with `keepdim` (handy for broadcasting the result back against the input).
    /// An empty `axes` sums nothing and keeps the shape.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::ones(&[2, 3, 4]);
    /// assert_eq!(x.sum(&[1], false)?.shape(), &[2, 4]);
    /// assert_eq!(x.sum(&[0, 2], true)?.shape(), &[1, 3, 1]);
    /// assert_eq!(x.sum(&[0, 2], false)?.to_vec_f32()?, [8.0; 3]);
    /// assert!(x.sum(&[3], false).is_err()); // no axis 3
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn sum(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        Tensor::drop_axes(
            self.reduce_keepdim(axes, ReduceOp::Sum, "sum")?,
            axes,
            keepdim,
        )
    }
    /// Sum of every element, as a tensor of shape `[]`.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let s = Tensor::ones(&[2, 3]).sum_all()?;
    /// assert_eq!(s.shape(), &[] as &[usize]);
    /// assert_eq!(s.item()?, 6.0);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn sum_all(&self) -> Result<Tensor> {
        self.sum(&(0..self.rank()).collect::<Vec<_>>(), false)
    }
    /// Mean over `axes`; shapes as in [`sum`](Self::sum).
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2])?;
    /// let m = x.mean(&[1], true)?;
    /// assert_eq!(m.shape(), &[2, 1]);
    /// assert_eq!(m.to_vec_f32()?, [1.5, 3.5]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn mean(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let count: usize = axes
            .iter()
            .map(|&a| self.shape().get(a).copied().unwrap_or(1))
            .product();
        self.sum(axes, keepdim)?
            .mul_scalar(1.0 / count.max(1) as f64)
    }
    /// Mean of every element, as a tensor of shape `[]`: the usual way to turn per-element
    /// losses into one number to call `backward` on.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let m = Tensor::full(&[4, 5], 2.0).mean_all()?;
    /// assert_eq!(m.shape(), &[] as &[usize]);
    /// assert_eq!(m.item()?, 2.0);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn mean_all(&self) -> Result<Tensor> {
        self.mean(&(0..self.rank()).collect::<Vec<_>>(), false)
    }
    /// Maximum over `axes`; shapes as in [`sum`](Self::sum). An empty axis has no maximum
    /// and is an error. Its gradient is shared equally among tied maxima.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 5.0, 3.0, 2.0, 0.0, 4.0], &[2, 3])?;
    /// let m = x.max(&[1], false)?;
    /// assert_eq!(m.shape(), &[2]);
    /// assert_eq!(m.to_vec_f32()?, [5.0, 4.0]);
    /// assert!(Tensor::zeros(&[2, 0]).max(&[1], false).is_err());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn max(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        Tensor::drop_axes(
            self.reduce_keepdim(axes, ReduceOp::Max, "max")?,
            axes,
            keepdim,
        )
    }

    /// Sums this tensor down to `shape`, the reverse of broadcasting `shape` up to ours:
    /// the gradient of a broadcast operand. `shape` must broadcast to `self.shape()`; the
    /// extra leading axes and the axes where `shape` has 1 are summed.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let g = Tensor::ones(&[5, 2, 3]);
    /// let s = g.sum_to(&[2, 1])?;
    /// assert_eq!(s.shape(), &[2, 1]);
    /// assert_eq!(s.to_vec_f32()?, [15.0, 15.0]);
    /// assert!(g.sum_to(&[4, 3]).is_err()); // [4, 3] does not broadcast to [5, 2, 3]
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let err = || {
            Error::shape(
                "sum_to",
                format!("shape {:?} does not broadcast to {:?}", shape, self.shape()),
            )
        };
        if shape.len() > self.rank() {
            return Err(err());
        }
        let lead = self.rank() - shape.len();
        let mut axes: Vec<usize> = (0..lead).collect();
        for (i, &d) in shape.iter().enumerate() {
            let s = self.shape()[lead + i];
            if d == 1 && s != 1 {
                axes.push(lead + i);
            } else if d != s {
                return Err(err());
            }
        }
        self.sum(&axes, true)?.reshape(shape)
    }
}
