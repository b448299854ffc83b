//! Shape ops. `permute`, `transpose`, `narrow` and `broadcast_as` are views (no copy);
//! `reshape` is a view when the layout allows and a copy otherwise; `concat` copies.
use super::check_same;
use crate::layout::Layout;
use crate::storage::with_dtype;
use crate::{Device, Error, Op, Result, Tensor};
use senet_cpu::elementwise::{copy_strided, scatter_strided, Strided};

impl Tensor {
    /// The same elements in row-major order with another shape of equal size.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        if numel != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "cannot reshape {:?} ({} elements) to {shape:?} ({numel} elements)",
                    self.shape(),
                    self.numel()
                ),
            ));
        }
        let base = self.contiguous_detached()?;
        let mut layout = Layout::contiguous(shape);
        layout = Layout::with_offset(layout, base.layout().offset());
        Ok(Tensor::from_storage(
            base.storage_arc(),
            layout,
            Some(Op::Reshape(self.clone())),
        ))
    }

    /// Flattens every axis from `start` on into one: `[B, C, H, W].flatten_from(1)` is `[B, C*H*W]`.
    pub fn flatten_from(&self, start: usize) -> Result<Tensor> {
        if start > self.rank() {
            return Err(Error::shape(
                "flatten_from",
                format!(
                    "axis {start} is past the last axis of shape {:?}",
                    self.shape()
                ),
            ));
        }
        let mut shape = self.shape()[..start].to_vec();
        shape.push(self.shape()[start..].iter().product());
        self.reshape(&shape)
    }

    /// Reorders the axes: output axis `i` is input axis `axes[i]`.
    pub fn permute(&self, axes: &[usize]) -> Result<Tensor> {
        let layout = self.layout().permute(axes)?;
        Ok(self.view(
            layout,
            Op::Permute {
                input: self.clone(),
                axes: axes.to_vec(),
            },
        ))
    }

    /// Swaps two axes.
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor> {
        let rank = self.rank();
        if a >= rank || b >= rank {
            return Err(Error::shape(
                "transpose",
                format!("axes {a} and {b} for shape {:?}", self.shape()),
            ));
        }
        let mut axes: Vec<usize> = (0..rank).collect();
        axes.swap(a, b);
        self.permute(&axes)
    }

    /// The transpose of a matrix (rank 2).
    pub fn t(&self) -> Result<Tensor> {
        super::check_rank("t", "the input", self, 2)?;
        self.transpose(0, 1)
    }

    /// `len` elements from `start` along `axis` (a view).
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        let layout = self.layout().narrow(axis, start, len)?;
        Ok(self.view(
            layout,
            Op::Narrow {
                input: self.clone(),
                axis,
                start,
            },
        ))
    }

    /// A stride-0 view stretching size-1 axes (and adding leading ones) to `shape`.
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let layout = self.layout().broadcast_as(shape)?;
        Ok(self.view(layout, Op::Broadcast(self.clone())))
    }

    /// Joins tensors along `axis`; all other sizes must agree.
    pub fn concat(tensors: &[&Tensor], axis: usize) -> Result<Tensor> {
        let first = tensors
            .first()
            .ok_or_else(|| Error::shape("concat", "needs at least one tensor"))?;
        if axis >= first.rank() {
            return Err(Error::shape(
                "concat",
                format!("axis {axis} is out of range for shape {:?}", first.shape()),
            ));
        }
        let mut shape = first.shape().to_vec();
        shape[axis] = 0;
        for t in tensors {
            check_same("concat", first, t)?;
            let same = t.rank() == first.rank()
                && (0..t.rank()).all(|d| d == axis || t.shape()[d] == first.shape()[d]);
            if !same {
                return Err(Error::shape(
                    "concat",
                    format!(
                        "shapes {:?} and {:?} differ outside axis {axis}",
                        first.shape(),
                        t.shape()
                    ),
                ));
            }
            shape[axis] += t.shape()[axis];
        }
        let out_layout = Layout::contiguous(&shape);
        let record = Op::Concat {
            inputs: tensors.iter().map(|&t| t.clone()).collect(),
            axis,
        };
        if first.device() != Device::Cpu {
            let out = first.gpu_raw()?.gpu().alloc(out_layout.numel())?;
            let mut start = 0;
            for t in tensors {
                let src = t.contiguous_detached()?;
                let dst = out_layout.narrow(axis, start, t.shape()[axis])?;
                senet_gpu::elementwise::scatter_strided(
                    src.gpu_buf()?,
                    &out,
                    dst.strides(),
                    dst.offset(),
                    dst.shape(),
                )?;
                start += t.shape()[axis];
            }
            return Ok(Tensor::from_gpu(out, &shape, Some(record)));
        }
        with_dtype!(first.dtype(), T => {
            let mut out = vec![T::default(); out_layout.numel()];
            let mut start = 0;
            for t in tensors {
                // Each input is copied into its slab of the output, seen as a strided view.
                let src = copy_strided(Strided { data: t.cpu_buffer::<T>()?, strides: t.layout().strides(), offset: t.layout().offset() }, t.shape());
                let dst = out_layout.narrow(axis, start, t.shape()[axis])?;
                scatter_strided(&src, &mut out, dst.strides(), dst.offset(), dst.shape());
                start += t.shape()[axis];
            }
            Ok(Tensor::from_cpu(out, &shape, Some(record)))
        })
    }
}
