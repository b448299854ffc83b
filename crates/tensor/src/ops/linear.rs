//! Dense layers. `grouped_linear` runs k independent dense layers over k groups of features
//! as one op (the SaE module's aggregated dense layer); `linear` is its k = 1 case.
use super::{check_rank, check_same, check_shape};
use crate::storage::with_dtype;
use crate::{Device, Error, Op, Result, Tensor};
use senet_cpu::grouped_linear as kernel;
use senet_gpu::grouped_linear as gpu;
use senet_spec::grouped_linear::GroupedLinearShape;

impl Tensor {
    /// `self [B, in] @ weight[out, in]^T + bias [out]`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        check_rank("linear", "input", self, 2)?;
        check_rank("linear", "weight", weight, 2)?;
        let (out_f, in_f) = (weight.shape()[0], weight.shape()[1]);
        if self.shape()[1] != in_f {
            return Err(Error::shape(
                "linear",
                format!(
                    "input {:?} has {} features, weight {:?} expects {in_f}",
                    self.shape(),
                    self.shape()[1],
                    weight.shape()
                ),
            ));
        }
        if let Some(b) = bias {
            check_shape("linear", "bias", b, &[out_f])?;
        }
        let shape = GroupedLinearShape {
            batch: self.shape()[0],
            groups: 1,
            in_features: in_f,
            out_features: out_f,
            shared_input: true,
        };
        self.grouped_linear_impl(weight, bias, shape)
    }

    /// k dense layers in one op: `weight [k, out, in]`, `bias [k, out]`; the input is either
    /// `[B, k*in]` (group g reads features `g*in..(g+1)*in`) or `[B, in]` shared by every group.
    /// The output is `[B, k*out]`, group g in features `g*out..(g+1)*out`.
    pub fn grouped_linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        const OP: &str = "grouped_linear";
        check_rank(OP, "input", self, 2)?;
        check_rank(OP, "weight", weight, 3)?;
        let (k, out_f, in_f) = (weight.shape()[0], weight.shape()[1], weight.shape()[2]);
        let shared_input = match self.shape()[1] {
            f if f == k * in_f => false,
            f if f == in_f => true,
            f => {
                return Err(Error::shape(OP, format!("input {:?} has {f} features; weight {:?} needs {} (k*in) or {in_f} (shared)", self.shape(), weight.shape(), k * in_f)));
            }
        };
        if let Some(b) = bias {
            check_shape(OP, "bias", b, &[k, out_f])?;
        }
        let shape = GroupedLinearShape {
            batch: self.shape()[0],
            groups: k,
            in_features: in_f,
            out_features: out_f,
            shared_input,
        };
        self.grouped_linear_impl(weight, bias, shape)
    }

    fn grouped_linear_impl(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        s: GroupedLinearShape,
    ) -> Result<Tensor> {
        check_same("linear", self, weight)?;
        if let Some(b) = bias {
            check_same("linear", self, b)?;
        }
        let (x, w) = (self.contiguous_detached()?, weight.contiguous_detached()?);
        let b = bias.map(|b| b.contiguous_detached()).transpose()?;
        let record = Op::GroupedLinear {
            input: self.clone(),
            weight: weight.clone(),
            bias: bias.cloned(),
            shape: s,
        };
        let out_shape = [s.batch, s.groups * s.out_features];
        if self.device() != Device::Cpu {
            let bb = b.as_ref().map(|b| b.gpu_buf()).transpose()?;
            let y = gpu::forward(s, x.gpu_buf()?, w.gpu_buf()?, bb)?;
            return Ok(Tensor::from_gpu(y, &out_shape, Some(record)));
        }
        with_dtype!(self.dtype(), T => {
            let bs = b.as_ref().map(|b| b.cpu_slice::<T>()).transpose()?;
            let y = kernel::forward(s, x.cpu_slice::<T>()?, w.cpu_slice::<T>()?, bs);
            Ok(Tensor::from_cpu(y, &[s.batch, s.groups * s.out_features], Some(record)))
        })
    }
}

/// Gradients of grouped_linear: (input, weight, bias if `bias_shape` is given), each shaped
/// like the tensor it belongs to.
pub(crate) fn grouped_linear_backward(
    input: &Tensor,
    weight: &Tensor,
    bias_shape: Option<&[usize]>,
    s: GroupedLinearShape,
    grad: &Tensor,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let (x, w, dy) = (
        input.contiguous_detached()?,
        weight.contiguous_detached()?,
        grad.contiguous_detached()?,
    );
    if input.device() != Device::Cpu {
        let (dx, dw, db) = gpu::backward(
            s,
            x.gpu_buf()?,
            w.gpu_buf()?,
            dy.gpu_buf()?,
            bias_shape.is_some(),
        )?;
        let db = bias_shape.map(|shape| Tensor::from_gpu(db, shape, None));
        return Ok((
            Tensor::from_gpu(dx, input.shape(), None),
            Tensor::from_gpu(dw, weight.shape(), None),
            db,
        ));
    }
    with_dtype!(input.dtype(), T => {
        let (dx, dw, db) = kernel::backward(s, x.cpu_slice::<T>()?, w.cpu_slice::<T>()?, dy.cpu_slice::<T>()?, bias_shape.is_some());
        let db = bias_shape.map(|shape| Tensor::from_cpu(db, shape, None));
        Ok((Tensor::from_cpu(dx, input.shape(), None), Tensor::from_cpu(dw, weight.shape(), None), db))
    })
}
