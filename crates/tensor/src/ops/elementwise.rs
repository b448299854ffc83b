//! Elementwise ops: arithmetic with numpy broadcasting, and unary functions.
use super::check_same;
use crate::layout::broadcast_shapes;
use crate::storage::with_dtype;
use crate::{Device, Op, Result, Tensor};
use senet_cpu::elementwise::{self as kernel, Strided};
use senet_gpu::elementwise::{self as gpu, StridedBuf};
use senet_spec::elementwise::{BinaryOp, UnaryOp};

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
        // Broadcasting is a stride-0 view; the kernel reads both inputs in place.
        let (la, lb) = (
            self.layout().broadcast_as(&shape)?,
            rhs.layout().broadcast_as(&shape)?,
        );
        let record = record.then(|| Op::Binary(op, self.clone(), rhs.clone()));
        if self.device() != Device::Cpu {
            let a = StridedBuf {
                buf: self.gpu_raw()?,
                strides: la.strides(),
                offset: la.offset(),
            };
            let b = StridedBuf {
                buf: rhs.gpu_raw()?,
                strides: lb.strides(),
                offset: lb.offset(),
            };
            return Ok(Tensor::from_gpu(
                gpu::binary(a, b, &shape, op)?,
                &shape,
                record,
            ));
        }
        with_dtype!(self.dtype(), T => {
            let a = Strided { data: self.cpu_buffer::<T>()?, strides: la.strides(), offset: la.offset() };
            let b = Strided { data: rhs.cpu_buffer::<T>()?, strides: lb.strides(), offset: lb.offset() };
            let out = kernel::binary(a, b, &shape, op);
            Ok(Tensor::from_cpu(out, &shape, record))
        })
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

    fn unary(&self, op: UnaryOp, record: bool) -> Result<Tensor> {
        let x = self.contiguous_detached()?;
        let record = record.then(|| Op::Unary(op, self.clone()));
        if self.device() != Device::Cpu {
            return Ok(Tensor::from_gpu(
                gpu::unary(x.gpu_buf()?, x.numel(), op)?,
                self.shape(),
                record,
            ));
        }
        with_dtype!(self.dtype(), T => {
            let out = kernel::unary(x.cpu_slice::<T>()?, op);
            Ok(Tensor::from_cpu(out, self.shape(), record))
        })
    }

    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg, true)
    }
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp, true)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log, true)
    }
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt, true)
    }
    /// `self ^ p` elementwise.
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Powf(p), true)
    }
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu, true)
    }
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sigmoid, true)
    }
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Tanh, true)
    }
    /// `self * c` for a constant `c`.
    pub fn mul_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Scale(c), true)
    }
    /// `self + c` for a constant `c`.
    pub fn add_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary(UnaryOp::AddScalar(c), true)
    }
    /// 1 where `self > 0`, else 0: the derivative of relu (no gradient of its own).
    pub(crate) fn step(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Step, false)
    }
}
