//! Elementwise ops: arithmetic with numpy broadcasting, and unary functions. What each function
//! computes is `senet_spec::elementwise`; the kernels are `senet_cpu::elementwise` and
//! `shaders/elementwise.wgsl`.
use super::check_same;
use crate::kernel::{run, CpuIn, CpuOut, GpuIn, GpuOut, Kernel};
use crate::layout::{broadcast_shapes, Layout};
use crate::{profile, CpuElement, CpuStorage, Op, Result, Tensor};
use senet_cpu::elementwise::{self as cpu, Strided};
use senet_gpu::elementwise::{self as gpu, StridedBuf};
use senet_spec::elementwise::{BinaryOp, UnaryOp};

/// `op(a, b)` over `shape`, both operands read in place through layouts already broadcast to
/// `shape` (a stride of 0 repeats a value), so broadcasting never copies.
struct Binary {
    op: BinaryOp,
    shape: Vec<usize>,
    a: Layout,
    b: Layout,
}

impl Kernel for Binary {
    const NAME: &'static str = "binary op";
    fn profile(&self) -> (String, Option<f64>) {
        // Broadcast operands are worth telling apart from same-shape ones: they are strided.
        let broadcast = self.a.strides().contains(&0) || self.b.strides().contains(&0);
        let dense = self.a.is_contiguous() && self.b.is_contiguous();
        let how = match (broadcast, dense) {
            (true, _) => " (broadcast)",
            (false, false) => " (strided)",
            (false, true) => "",
        };
        (format!("{}{how}", self.op.name()), None)
    }
    fn cpu<T: CpuElement>(&self, x: &CpuIn<T>) -> CpuOut<T> {
        let a = Strided {
            data: x.view(0).0,
            strides: self.a.strides(),
            offset: self.a.offset(),
        };
        let b = Strided {
            data: x.view(1).0,
            strides: self.b.strides(),
            offset: self.b.offset(),
        };
        CpuOut::one(cpu::binary(a, b, &self.shape, self.op))
    }
    fn gpu(&self, x: &GpuIn) -> senet_gpu::Result<GpuOut> {
        let a = StridedBuf {
            buf: x.view(0).0,
            strides: self.a.strides(),
            offset: self.a.offset(),
        };
        let b = StridedBuf {
            buf: x.view(1).0,
            strides: self.b.strides(),
            offset: self.b.offset(),
        };
        Ok(GpuOut::one(gpu::binary(a, b, &self.shape, self.op)?))
    }
}

/// `op` applied to each element of a contiguous input.
struct Unary(UnaryOp);

impl Kernel for Unary {
    const NAME: &'static str = "unary op";
    fn profile(&self) -> (String, Option<f64>) {
        (self.0.name().to_string(), None)
    }
    fn cpu<T: CpuElement>(&self, x: &CpuIn<T>) -> CpuOut<T> {
        CpuOut::one(cpu::unary(x.get(0), self.0))
    }
    fn gpu(&self, x: &GpuIn) -> senet_gpu::Result<GpuOut> {
        let input = x.get(0);
        let len = x.view(0).1.numel();
        Ok(GpuOut::one(gpu::unary(input, len, self.0)?))
    }
}

impl Tensor {
    fn binary(
        &self,
        rhs: &Tensor,
        op: BinaryOp,
        name: &'static str,
        record: bool,
    ) -> Result<Tensor> {
        check_same(name, self, rhs)?;
        let shape = broadcast_shapes(name, self.shape(), rhs.shape())?;
        let kernel = Binary {
            op,
            a: self.layout().broadcast_as(&shape)?,
            b: rhs.layout().broadcast_as(&shape)?,
            shape,
        };
        let record = record.then(|| Op::Binary(op, self.clone(), rhs.clone()));
        Ok(run(&kernel, &[self, rhs])?.tensor(&kernel.shape, record))
    }

    /// `self + rhs`, broadcasting.
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Add, "add", true)
    }
    /// `self - rhs`, broadcasting.
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Sub, "sub", true)
    }
    /// `self * rhs`, broadcasting.
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Mul, "mul", true)
    }
    /// `self / rhs`, broadcasting.
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Div, "div", true)
    }
    /// 1 where `self == rhs`, else 0 (no gradient).
    pub fn eq_mask(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Eq, "eq_mask", false)
    }
    /// Elementwise maximum (no gradient).
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Maximum, "maximum", false)
    }
    /// `self` (a gradient) where `x > 0`, else 0: relu's backward in one pass, instead of
    /// `self * step(x)` (two passes and a temporary). No gradient of its own.
    pub fn relu_grad(&self, x: &Tensor) -> Result<Tensor> {
        self.binary(x, BinaryOp::ReluGrad, "relu_grad", false)
    }

    /// [`Tensor::unary`] that may reuse this tensor's buffer: when nothing else holds it and no
    /// gradient is recorded (inference's `y = y.relu()`), `op` overwrites the values in place,
    /// saving an allocation and a pass over memory. Otherwise the same as `unary`.
    pub fn into_unary(self, op: UnaryOp) -> Result<Tensor> {
        let in_place = self.try_in_place(|s| {
            let label = || (format!("{} (in place)", op.name()), None);
            profile::timed(label, || match s {
                CpuStorage::F32(v) => cpu::unary_in_place(v, op),
                CpuStorage::F64(v) => cpu::unary_in_place(v, op),
            })
        });
        match in_place {
            Ok(t) => Ok(t),
            Err(t) => t.unary(op),
        }
    }
    /// [`Tensor::relu`], in place when it can be (see [`Tensor::into_unary`]).
    pub fn into_relu(self) -> Result<Tensor> {
        self.into_unary(UnaryOp::Relu)
    }

    /// `op` applied to every element. The named methods below (`relu`, `exp`, ...) are this
    /// with their op; tests walk `UnaryOp::ALL` through it.
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        let x = self.contiguous_detached()?;
        let record = Some(Op::Unary(op, self.clone()));
        Ok(run(&Unary(op), &[&x])?.tensor(self.shape(), record))
    }

    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg)
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }
    /// `self ^ p` elementwise.
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Powf(p))
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sigmoid)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Tanh)
    }
    /// `self * c` for a constant `c`.
    pub fn mul_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Scale(c))
    }
    /// `self + c` for a constant `c`.
    pub fn add_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary(UnaryOp::AddScalar(c))
    }
    /// `self * sigmoid(self)` (SiLU, or swish).
    pub fn silu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Silu)
    }
}
