//! Dense layers. `grouped_linear` runs k independent dense layers over k groups of features
//! as one op (the SaE module's aggregated dense layer); `linear` is its k = 1 case.
use super::{check_rank, check_same, check_shape};
use crate::kernel::{run, run_with, CpuIn, CpuOut, GpuIn, GpuOut, Kernel};
use crate::{CpuElement, Error, Op, Result, Tensor};
use senet_cpu::grouped_linear as cpu;
use senet_gpu::grouped_linear as gpu;
use senet_spec::grouped_linear::GroupedLinearShape;

/// The grouped-linear kernels (`senet_spec::grouped_linear`), reading contiguous arguments.
enum GroupedLinear {
    /// `[x, weight, bias?] -> y`
    Forward(GroupedLinearShape),
    /// `[x, weight, dy] -> dx, dweight, dbias` (`dbias` only `with_bias`).
    Backward {
        shape: GroupedLinearShape,
        with_bias: bool,
    },
}

impl Kernel for GroupedLinear {
    const NAME: &'static str = "grouped_linear";
    fn profile(&self) -> (String, Option<f64>) {
        let (what, s) = match self {
            GroupedLinear::Forward(s) => ("grouped_linear", s),
            GroupedLinear::Backward { shape, .. } => ("grouped_linear dx dw", shape),
        };
        let macs = (s.batch * s.groups * s.in_features * s.out_features) as f64;
        let passes = if matches!(self, GroupedLinear::Forward(_)) {
            1.0
        } else {
            2.0
        };
        let label = format!(
            "{what} {}x({}->{})",
            s.groups, s.in_features, s.out_features
        );
        (label, Some(2.0 * passes * macs))
    }
    fn cpu<T: CpuElement>(&self, x: &CpuIn<T>) -> CpuOut<T> {
        match *self {
            GroupedLinear::Forward(s) => CpuOut::one(cpu::forward(s, x.get(0), x.get(1), x.opt(2))),
            GroupedLinear::Backward { shape, with_bias } => {
                let (dx, dw, db) = cpu::backward(shape, x.get(0), x.get(1), x.get(2), with_bias);
                CpuOut::many(vec![dx, dw, db])
            }
        }
    }
    fn gpu(&self, x: &GpuIn) -> senet_gpu::Result<GpuOut> {
        Ok(match *self {
            GroupedLinear::Forward(s) => {
                GpuOut::one(gpu::forward(s, x.get(0), x.get(1), x.opt(2))?)
            }
            GroupedLinear::Backward { shape, with_bias } => {
                let (dx, dw, db) = gpu::backward(shape, x.get(0), x.get(1), x.get(2), with_bias)?;
                GpuOut::many(vec![dx, dw, db])
            }
        })
    }
}

impl Tensor {
    /// A dense (fully connected) layer: `self [B, in] @ weight [out, in]^T + bias [out]`,
    /// giving `[B, out]`. The weight is stored `[out, in]`, PyTorch's layout.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::ones(&[8, 64]);
    /// let (w, b) = (Tensor::zeros(&[10, 64]), Tensor::zeros(&[10]));
    /// assert_eq!(x.linear(&w, Some(&b))?.shape(), &[8, 10]);
    /// // The weight expects 32 input features, the input has 64.
    /// let err = x.linear(&Tensor::zeros(&[10, 32]), None).unwrap_err();
    /// assert!(err.to_string().contains("expects 32"));
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
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
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let w = Tensor::zeros(&[4, 2, 8]); // k = 4 groups, 8 -> 2 features each
    /// let b = Tensor::zeros(&[4, 2]);
    /// // Each group reads its own 8 features of 32...
    /// assert_eq!(Tensor::ones(&[3, 32]).grouped_linear(&w, Some(&b))?.shape(), &[3, 8]);
    /// // ...or all groups read the same 8.
    /// assert_eq!(Tensor::ones(&[3, 8]).grouped_linear(&w, None)?.shape(), &[3, 8]);
    /// // 16 features are neither k*in (32) nor in (8).
    /// assert!(Tensor::ones(&[3, 16]).grouped_linear(&w, None).is_err());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
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
        let args = [Some(&x), Some(&w), b.as_ref()];
        Ok(run_with(&GroupedLinear::Forward(s), &args, &[])?.tensor(&out_shape, Some(record)))
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
    let kernel = GroupedLinear::Backward {
        shape: s,
        with_bias: bias_shape.is_some(),
    };
    let mut out = run(&kernel, &[&x, &w, &dy])?;
    let (dx, dw) = (
        out.tensor(input.shape(), None),
        out.tensor(weight.shape(), None),
    );
    let db = bias_shape.map(|shape| out.tensor(shape, None));
    Ok((dx, dw, db))
}
