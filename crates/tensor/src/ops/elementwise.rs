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

    /// `self + rhs` elementwise, with numpy broadcasting.
    ///
    /// Shape rule (shared by every binary op): align the shapes on the right; each pair of
    /// sizes must be equal or one of them 1, and the output takes the larger. A missing
    /// leading axis counts as 1, so `[2, 3] + [3]` is `[2, 3]` and `[4, 1] + [3]` is `[4, 3]`.
    /// Broadcasting reads the smaller operand with stride 0; it never copies it.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::ones(&[4, 1]);
    /// let y = x.add(&Tensor::ones(&[3]))?;
    /// assert_eq!(y.shape(), &[4, 3]);
    /// // 3 and 2 are neither equal nor 1.
    /// let err = Tensor::ones(&[2, 3]).add(&Tensor::ones(&[2])).unwrap_err();
    /// assert!(err.to_string().contains("cannot be broadcast"));
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Add, "add", true)
    }
    /// `self - rhs` elementwise; shapes broadcast as in [`add`](Self::add).
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::ones(&[2, 3]).sub(&Tensor::ones(&[2, 1]))?;
    /// assert_eq!(y.shape(), &[2, 3]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Sub, "sub", true)
    }
    /// `self * rhs` elementwise; shapes broadcast as in [`add`](Self::add). Scaling each
    /// channel of an `[N, C, H, W]` map by `[N, C, 1, 1]` weights (squeeze-and-excitation)
    /// is this op.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::ones(&[2, 8, 4, 4]).mul(&Tensor::ones(&[2, 8, 1, 1]))?;
    /// assert_eq!(y.shape(), &[2, 8, 4, 4]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Mul, "mul", true)
    }
    /// `self / rhs` elementwise; shapes broadcast as in [`add`](Self::add).
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::ones(&[3]).div(&Tensor::full(&[2, 1], 2.0))?;
    /// assert_eq!(y.shape(), &[2, 3]);
    /// assert_eq!(y.to_vec_f32()?, [0.5; 6]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Div, "div", true)
    }
    /// 1 where `self == rhs`, else 0; shapes broadcast as in [`add`](Self::add). Has no
    /// gradient (it is piecewise constant); used to count correct predictions and to route
    /// `max`'s gradient.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], &[3])?;
    /// let m = a.eq_mask(&Tensor::full(&[1], 2.0))?;
    /// assert_eq!(m.shape(), &[3]);
    /// assert_eq!(m.to_vec_f32()?, [0.0, 1.0, 0.0]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn eq_mask(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Eq, "eq_mask", false)
    }
    /// The larger of `self` and `rhs` elementwise; shapes broadcast as in [`add`](Self::add).
    /// Has no gradient.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![-1.0f32, 2.0], &[2])?;
    /// let y = a.maximum(&Tensor::zeros(&[3, 1]))?;
    /// assert_eq!(y.shape(), &[3, 2]);
    /// assert_eq!(y.to_vec_f32()?[..2], [0.0, 2.0]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Maximum, "maximum", false)
    }
    /// `self` (a gradient) where `x > 0`, else 0: relu's backward in one pass, instead of
    /// `self * step(x)` (two passes and a temporary). No gradient of its own. Shapes
    /// broadcast as in [`add`](Self::add); normally both are the same.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::from_vec(vec![-1.0f32, 0.0, 2.0], &[3])?;
    /// let dx = Tensor::full(&[3], 5.0).relu_grad(&x)?;
    /// assert_eq!(dx.shape(), &[3]);
    /// assert_eq!(dx.to_vec_f32()?, [0.0, 0.0, 5.0]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn relu_grad(&self, x: &Tensor) -> Result<Tensor> {
        self.binary(x, BinaryOp::ReluGrad, "relu_grad", false)
    }

    /// [`Tensor::unary`] that may reuse this tensor's buffer: when nothing else holds it and no
    /// gradient is recorded (inference's `y = y.relu()`), `op` overwrites the values in place,
    /// saving an allocation and a pass over memory. Otherwise the same as `unary`. The output
    /// has the input's shape.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// use senet_tensor::spec::elementwise::UnaryOp;
    /// let y = Tensor::full(&[2, 3], 4.0).into_unary(UnaryOp::Sqrt)?;
    /// assert_eq!(y.shape(), &[2, 3]);
    /// assert_eq!(y.to_vec_f32()?, [2.0; 6]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
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
    /// [`Tensor::relu`], in place when it can be (see [`Tensor::into_unary`]). The output has
    /// the input's shape.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::from_vec(vec![-1.0f32, 3.0], &[1, 2])?;
    /// let y = x.into_relu()?; // `x` is moved: its buffer may be reused
    /// assert_eq!(y.shape(), &[1, 2]);
    /// assert_eq!(y.to_vec_f32()?, [0.0, 3.0]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn into_relu(self) -> Result<Tensor> {
        self.into_unary(UnaryOp::Relu)
    }

    /// `op` applied to every element. The named methods below (`relu`, `exp`, ...) are this
    /// with their op; tests walk `UnaryOp::ALL` through it.
    ///
    /// Shape rule (shared by every unary op): the output has the input's shape. A
    /// non-contiguous input (a `permute`d view) is read in row-major order first, so the
    /// output is always contiguous.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// use senet_tensor::spec::elementwise::UnaryOp;
    /// let x = Tensor::ones(&[2, 3]).t()?; // a [3, 2] view
    /// let y = x.unary(UnaryOp::Scale(3.0))?;
    /// assert_eq!(y.shape(), &[3, 2]);
    /// assert!(y.is_contiguous());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn unary(&self, op: UnaryOp) -> Result<Tensor> {
        let x = self.contiguous_detached()?;
        let record = Some(Op::Unary(op, self.clone()));
        Ok(run(&Unary(op), &[&x])?.tensor(self.shape(), record))
    }

    /// `-self` elementwise; same shape.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::ones(&[2]).neg()?;
    /// assert_eq!(y.shape(), &[2]);
    /// assert_eq!(y.to_vec_f32()?, [-1.0, -1.0]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn neg(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Neg)
    }
    /// `e^self` elementwise; same shape.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::zeros(&[2, 2]).exp()?;
    /// assert_eq!(y.shape(), &[2, 2]);
    /// assert_eq!(y.to_vec_f32()?, [1.0; 4]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn exp(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Exp)
    }
    /// Natural logarithm elementwise; same shape. NaN below 0, minus infinity at 0.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::ones(&[3]).log()?;
    /// assert_eq!(y.shape(), &[3]);
    /// assert_eq!(y.to_vec_f32()?, [0.0; 3]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn log(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Log)
    }
    /// Square root elementwise; same shape. NaN below 0.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::full(&[1, 2], 9.0).sqrt()?;
    /// assert_eq!(y.shape(), &[1, 2]);
    /// assert_eq!(y.to_vec_f32()?, [3.0, 3.0]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn sqrt(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sqrt)
    }
    /// `self ^ p` elementwise for a constant exponent `p`; same shape.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::full(&[2], 3.0).powf(2.0)?;
    /// assert_eq!(y.shape(), &[2]);
    /// assert_eq!(y.to_vec_f32()?, [9.0, 9.0]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn powf(&self, p: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Powf(p))
    }
    /// `max(self, 0)` elementwise, the usual activation; same shape. Its gradient passes
    /// where the input is positive (see [`relu_grad`](Self::relu_grad)).
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::from_vec(vec![-2.0f32, 0.5], &[2, 1])?;
    /// let y = x.relu()?;
    /// assert_eq!(y.shape(), &[2, 1]);
    /// assert_eq!(y.to_vec_f32()?, [0.0, 0.5]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn relu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Relu)
    }
    /// `1 / (1 + e^-self)` elementwise, squashing to (0, 1); same shape. The gate of
    /// squeeze-and-excitation.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::zeros(&[2, 3]).sigmoid()?;
    /// assert_eq!(y.shape(), &[2, 3]);
    /// assert_eq!(y.to_vec_f32()?, [0.5; 6]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn sigmoid(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Sigmoid)
    }
    /// Hyperbolic tangent elementwise, squashing to (-1, 1); same shape.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::zeros(&[4]).tanh()?;
    /// assert_eq!(y.shape(), &[4]);
    /// assert_eq!(y.to_vec_f32()?, [0.0; 4]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn tanh(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Tanh)
    }
    /// `self * c` for a constant `c`; same shape.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::ones(&[2, 2]).mul_scalar(0.5)?;
    /// assert_eq!(y.shape(), &[2, 2]);
    /// assert_eq!(y.to_vec_f32()?, [0.5; 4]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn mul_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary(UnaryOp::Scale(c))
    }
    /// `self + c` for a constant `c`; same shape.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::ones(&[3]).add_scalar(1.0)?;
    /// assert_eq!(y.shape(), &[3]);
    /// assert_eq!(y.to_vec_f32()?, [2.0; 3]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn add_scalar(&self, c: f64) -> Result<Tensor> {
        self.unary(UnaryOp::AddScalar(c))
    }
    /// `self * sigmoid(self)` (SiLU, or swish) elementwise; same shape.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::zeros(&[2, 1]).silu()?;
    /// assert_eq!(y.shape(), &[2, 1]);
    /// assert_eq!(y.to_vec_f32()?, [0.0; 2]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn silu(&self) -> Result<Tensor> {
        self.unary(UnaryOp::Silu)
    }
}
