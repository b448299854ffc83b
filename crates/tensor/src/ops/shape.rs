//! Shape ops. `permute`, `transpose`, `narrow` and `broadcast_as` are views (no copy);
//! `reshape` is a view when the layout allows and a copy otherwise; `concat` copies; and
//! `contiguous` gathers any view into row-major order, which is how every kernel input that
//! is not already row-major gets there.
use super::check_same;
use crate::kernel::{run, CpuIn, CpuOut, GpuIn, GpuOut, Kernel};
use crate::layout::Layout;
use crate::{CpuElement, Error, Op, Result, Tensor};

/// `[t0, t1, ...] -> out`: each contiguous input written into its slab of a new row-major
/// buffer of `numel` elements (`slabs[i]` is where input `i` lands, a strided view).
struct Concat {
    numel: usize,
    slabs: Vec<Layout>,
}

impl Kernel for Concat {
    const NAME: &'static str = "concat";
    fn cpu<T: CpuElement>(&self, x: &CpuIn<T>) -> CpuOut<T> {
        let mut out = vec![T::zero(); self.numel];
        for (i, dst) in self.slabs.iter().enumerate() {
            let (strides, offset) = (dst.strides(), dst.offset());
            senet_cpu::elementwise::scatter_strided(
                x.get(i),
                &mut out,
                strides,
                offset,
                dst.shape(),
            );
        }
        CpuOut::one(out)
    }
    fn gpu(&self, x: &GpuIn) -> senet_gpu::Result<GpuOut> {
        let out = x.get(0).gpu().alloc(self.numel)?;
        for (i, dst) in self.slabs.iter().enumerate() {
            let (strides, offset) = (dst.strides(), dst.offset());
            senet_gpu::elementwise::scatter_strided(x.get(i), &out, strides, offset, dst.shape())?;
        }
        Ok(GpuOut::one(out))
    }
}

impl Tensor {
    /// A contiguous copy when the layout is not (values only, no graph). On the GPU the
    /// result also starts at offset 0, since kernels take whole buffers.
    pub(crate) fn contiguous_detached(&self) -> Result<Tensor> {
        if self.storage().kernel_ready(self.layout()) {
            return Ok(self.clone());
        }
        Ok(run(&CopyStrided, &[self])?.tensor(self.shape(), None))
    }

    /// This tensor with a row-major layout: itself when it already is, else a copy (recorded,
    /// so gradients flow through it). The shape is unchanged; only the order of the values in
    /// memory is.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let v = Tensor::zeros(&[2, 3]).t()?; // a transposed view
    /// assert!(!v.is_contiguous());
    /// let c = v.contiguous()?;
    /// assert_eq!(c.shape(), &[3, 2]);
    /// assert!(c.is_contiguous());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn contiguous(&self) -> Result<Tensor> {
        if self.is_contiguous() {
            return Ok(self.clone());
        }
        let c = self.contiguous_detached()?;
        Ok(Tensor::from_storage(
            c.storage_arc(),
            c.layout().clone(),
            Some(Op::Reshape(self.clone())),
        ))
    }

    /// The same elements in row-major order with another shape of equal size: the product of
    /// `shape` must equal [`numel`](Self::numel). A view when the input is contiguous, else a
    /// copy.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::zeros(&[2, 3, 4]);
    /// assert_eq!(x.reshape(&[6, 4])?.shape(), &[6, 4]);
    /// // 24 elements cannot make 5 x 5.
    /// let err = x.reshape(&[5, 5]).unwrap_err();
    /// assert!(err.to_string().contains("cannot reshape"));
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
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
    /// `start` may equal the rank, which appends an axis of size 1.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::zeros(&[2, 3, 4, 5]);
    /// assert_eq!(x.flatten_from(1)?.shape(), &[2, 60]);
    /// assert_eq!(x.flatten_from(0)?.shape(), &[120]);
    /// assert!(x.flatten_from(5).is_err());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
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

    /// Reorders the axes: output axis `i` is input axis `axes[i]`, so the output shape is
    /// `axes.map(|a| shape[a])`. `axes` must name every axis once. A view: only the strides
    /// move, no value is copied.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::zeros(&[2, 3, 4]); // e.g. [N, C, L]
    /// assert_eq!(x.permute(&[0, 2, 1])?.shape(), &[2, 4, 3]);
    /// assert!(x.permute(&[0, 0, 1]).is_err()); // axis 0 twice
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
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

    /// Swaps axes `a` and `b` (a view); the output shape is the input's with those two sizes
    /// exchanged.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::zeros(&[2, 3, 4]);
    /// assert_eq!(x.transpose(0, 2)?.shape(), &[4, 3, 2]);
    /// assert!(x.transpose(0, 3).is_err());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
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

    /// The transpose of a matrix (rank 2): `[m, n] -> [n, m]`, a view.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// assert_eq!(Tensor::zeros(&[2, 5]).t()?.shape(), &[5, 2]);
    /// assert!(Tensor::zeros(&[2, 5, 1]).t().is_err()); // not a matrix
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn t(&self) -> Result<Tensor> {
        super::check_rank("t", "the input", self, 2)?;
        self.transpose(0, 1)
    }

    /// `len` elements from `start` along `axis` (a view): the output shape is the input's with
    /// `axis` set to `len`, and `start + len` must not pass the end of the axis.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::zeros(&[4, 10]);
    /// assert_eq!(x.narrow(1, 2, 5)?.shape(), &[4, 5]);
    /// assert!(x.narrow(1, 8, 5).is_err()); // 8 + 5 > 10
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
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

    /// A stride-0 view stretching size-1 axes (and adding leading ones) to `shape`; the
    /// rules are those of [`add`](Self::add), with the output shape fixed to `shape`.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let b = Tensor::ones(&[3, 1]);
    /// assert_eq!(b.broadcast_as(&[2, 3, 4])?.shape(), &[2, 3, 4]);
    /// assert!(b.broadcast_as(&[2, 4]).is_err()); // 3 cannot become 2
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn broadcast_as(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let layout = self.layout().broadcast_as(shape)?;
        Ok(self.view(layout, Op::Broadcast(self.clone())))
    }

    /// Joins tensors along `axis`; all other sizes must agree, and the output's `axis` is the
    /// sum of theirs. Copies the values into a new buffer.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let (a, b) = (Tensor::zeros(&[2, 3]), Tensor::ones(&[2, 5]));
    /// assert_eq!(Tensor::concat(&[&a, &b], 1)?.shape(), &[2, 8]);
    /// // Along axis 0 the other axis (3 vs 5) would have to agree.
    /// assert!(Tensor::concat(&[&a, &b], 0).is_err());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
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
        let mut slabs = Vec::with_capacity(tensors.len());
        let mut start = 0;
        for t in tensors {
            slabs.push(out_layout.narrow(axis, start, t.shape()[axis])?);
            start += t.shape()[axis];
        }
        let inputs = tensors
            .iter()
            .map(|t| t.contiguous_detached())
            .collect::<Result<Vec<_>>>()?;
        let kernel = Concat {
            numel: out_layout.numel(),
            slabs,
        };
        let record = Op::Concat {
            inputs: tensors.iter().map(|&t| t.clone()).collect(),
            axis,
        };
        let args: Vec<&Tensor> = inputs.iter().collect();
        Ok(run(&kernel, &args)?.tensor(&shape, Some(record)))
    }
}

/// The strided gather behind `contiguous()`: any view, read through its layout, into a new
/// row-major buffer.
struct CopyStrided;

impl Kernel for CopyStrided {
    const NAME: &'static str = "contiguous";
    fn cpu<T: CpuElement>(&self, x: &CpuIn<T>) -> CpuOut<T> {
        let (data, l) = x.view(0);
        let src = senet_cpu::elementwise::Strided {
            data,
            strides: l.strides(),
            offset: l.offset(),
        };
        CpuOut::one(senet_cpu::elementwise::copy_strided(src, l.shape()))
    }
    fn gpu(&self, x: &GpuIn) -> senet_gpu::Result<GpuOut> {
        let (buf, l) = x.view(0);
        let src = senet_gpu::elementwise::StridedBuf {
            buf,
            strides: l.strides(),
            offset: l.offset(),
        };
        Ok(GpuOut::one(senet_gpu::elementwise::copy_strided(
            src,
            l.shape(),
        )?))
    }
}
