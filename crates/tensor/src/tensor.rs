//! The `Tensor` handle: creation, inspection, and the plumbing every op uses.
use crate::layout::Layout;
use crate::op::Op;
use crate::storage::{CpuElement, CpuStorage, Storage};
use crate::{is_grad_enabled, Error, Result};
use crate::{DType, Device};
use rand::Rng;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Identifies one node of the graph; gradients are keyed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// An n-dimensional array of f32 (or f64) numbers on a device, possibly part of a graph.
/// Cloning is cheap: it clones an `Arc`.
#[derive(Clone)]
pub struct Tensor(Arc<Inner>);

struct Inner {
    id: TensorId,
    storage: Arc<Storage>,
    layout: Layout,
    /// The op that made this tensor, kept only while recording and when an input needs a gradient.
    op: Option<Op>,
    /// A leaf the user asked gradients for (`requires_grad`).
    variable: bool,
}

impl Tensor {
    // ---- plumbing used by ops ----------------------------------------------------------

    /// Wraps a new buffer; `op` is kept only when recording is on and some input needs a gradient.
    pub(crate) fn from_storage(storage: Arc<Storage>, layout: Layout, op: Option<Op>) -> Tensor {
        let op = op.filter(|op| is_grad_enabled() && op.inputs().iter().any(|t| t.tracks_grad()));
        Tensor(Arc::new(Inner {
            id: TensorId::new(),
            storage,
            layout,
            op,
            variable: false,
        }))
    }

    pub(crate) fn from_cpu<T: CpuElement>(data: Vec<T>, shape: &[usize], op: Option<Op>) -> Tensor {
        debug_assert_eq!(data.len(), shape.iter().product::<usize>());
        Tensor::from_storage(
            Arc::new(Storage::cpu(T::wrap(data))),
            Layout::contiguous(shape),
            op,
        )
    }

    /// Runs `f` on this tensor's CPU buffer in place and returns the tensor, when that is safe:
    /// this is the only handle on a buffer it covers exactly (contiguous, from offset 0), and no
    /// gradient is being recorded through it, so no one can see the old values. Otherwise hands
    /// the tensor back untouched. What in-place ops (`into_relu`) are built on.
    pub(crate) fn try_in_place(
        self,
        f: impl FnOnce(&mut CpuStorage),
    ) -> std::result::Result<Tensor, Tensor> {
        if is_grad_enabled() && self.tracks_grad() {
            return Err(self);
        }
        let mut inner = match Arc::try_unwrap(self.0) {
            Ok(inner) => inner,
            Err(shared) => return Err(Tensor(shared)),
        };
        let whole = covers_whole(&inner.storage, &inner.layout);
        match Arc::get_mut(&mut inner.storage) {
            Some(Storage::Cpu(c)) if whole => {
                f(c);
                // New values: a new identity, as for any op's output.
                inner.id = TensorId::new();
                inner.op = None;
                Ok(Tensor(Arc::new(inner)))
            }
            _ => Err(Tensor(Arc::new(inner))),
        }
    }

    /// This tensor's buffer and layout, letting go of the tensor itself: when it was the only
    /// handle, the buffer's `Arc` is then unique and can be changed in place (what the
    /// optimizer steps do).
    pub(crate) fn into_storage(self) -> (Arc<Storage>, Layout) {
        (self.0.storage.clone(), self.0.layout.clone())
    }

    /// A view sharing this tensor's buffer with another layout.
    pub(crate) fn view(&self, layout: Layout, op: Op) -> Tensor {
        Tensor::from_storage(self.0.storage.clone(), layout, Some(op))
    }

    pub(crate) fn storage(&self) -> &Storage {
        &self.0.storage
    }

    pub(crate) fn storage_arc(&self) -> Arc<Storage> {
        self.0.storage.clone()
    }

    /// The range of the buffer a contiguous tensor occupies.
    fn range(&self) -> std::ops::Range<usize> {
        debug_assert!(self.is_contiguous());
        let start = self.layout().offset();
        start..start + self.numel()
    }

    // ---- inspection ----------------------------------------------------------------------

    /// This tensor's node in the graph: unique per tensor, the key of [`crate::Gradients`].
    pub fn id(&self) -> TensorId {
        self.0.id
    }
    /// How the buffer is read as this tensor: shape, strides and offset.
    pub fn layout(&self) -> &Layout {
        &self.0.layout
    }
    /// The size of each axis, outermost first (`[]` for a scalar).
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::zeros(&[2, 3]);
    /// assert_eq!(x.shape(), &[2, 3]);
    /// assert_eq!((x.rank(), x.numel()), (2, 6));
    /// ```
    pub fn shape(&self) -> &[usize] {
        self.0.layout.shape()
    }
    /// Number of axes, `shape().len()`.
    pub fn rank(&self) -> usize {
        self.shape().len()
    }
    /// Number of elements, the product of the shape (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.0.layout.numel()
    }
    /// The element type (f32, or f64 for gradient checks).
    pub fn dtype(&self) -> DType {
        self.storage().dtype()
    }
    /// Where the buffer lives: the CPU or a GPU.
    pub fn device(&self) -> Device {
        self.storage().device()
    }
    /// Whether the elements are stored in row-major order with no gaps, so kernels can read
    /// them directly (views such as `permute` usually are not).
    pub fn is_contiguous(&self) -> bool {
        self.0.layout.is_contiguous()
    }
    /// The op that produced this tensor, if it was recorded.
    pub fn op(&self) -> Option<&Op> {
        self.0.op.as_ref()
    }
    /// Whether `backward` will reach this tensor: a `requires_grad` leaf or a recorded result.
    pub fn tracks_grad(&self) -> bool {
        self.0.variable || self.0.op.is_some()
    }
    /// Whether this is a leaf made by [`requires_grad`](Self::requires_grad), whose gradient
    /// `backward` returns.
    pub fn is_variable(&self) -> bool {
        self.0.variable
    }

    /// A leaf that gradients are computed for (a parameter, or an input under test).
    /// Returns a new handle on the same buffer; use it in place of `self`.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let w = Tensor::ones(&[3]).requires_grad();
    /// assert!(w.is_variable() && w.tracks_grad());
    /// let y = w.mul_scalar(2.0)?; // recorded: y knows it came from w
    /// assert_eq!(y.op().unwrap().inputs()[0].id(), w.id());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn requires_grad(&self) -> Tensor {
        Tensor(Arc::new(Inner {
            id: TensorId::new(),
            storage: self.0.storage.clone(),
            layout: self.0.layout.clone(),
            op: None,
            variable: true,
        }))
    }

    /// The same values cut off from the graph: no gradient flows through the result, and it
    /// does not keep the graph behind `self` alive. Shares the buffer; same shape.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let y = Tensor::ones(&[2]).requires_grad().exp()?;
    /// let d = y.detach();
    /// assert_eq!(d.shape(), &[2]);
    /// assert!(y.tracks_grad() && !d.tracks_grad());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn detach(&self) -> Tensor {
        Tensor(Arc::new(Inner {
            id: TensorId::new(),
            storage: self.0.storage.clone(),
            layout: self.0.layout.clone(),
            op: None,
            variable: false,
        }))
    }

    // ---- creation ------------------------------------------------------------------------

    /// A tensor from data in row-major order and a shape; errors when the sizes disagree.
    /// The dtype follows `T` (`f32` or `f64`).
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
    /// assert_eq!(x.shape(), &[2, 3]);
    /// // 5 values cannot fill 2 x 3.
    /// assert!(Tensor::from_vec(vec![0.0f32; 5], &[2, 3]).is_err());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn from_vec<T: CpuElement>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        let numel: usize = shape.iter().product();
        if data.len() != numel {
            return Err(Error::shape(
                "from_vec",
                format!(
                    "{} values cannot fill shape {shape:?} ({numel} elements)",
                    data.len()
                ),
            ));
        }
        Ok(Tensor::from_cpu(data, shape, None))
    }

    /// An f32 tensor of shape `[]` (no axes, one element) holding `v`.
    pub fn scalar(v: f32) -> Tensor {
        Tensor::from_cpu(vec![v], &[], None)
    }

    /// A tensor of `shape` filled with `value`, of the given dtype, on the CPU.
    pub fn full_dtype(shape: &[usize], value: f64, dtype: DType) -> Tensor {
        Tensor::full_on(shape, value, dtype, Device::Cpu).expect("CPU buffers of any dtype")
    }
    /// An f32 tensor of `shape` filled with `value`, on the CPU.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// let x = Tensor::full(&[2, 2], 0.5);
    /// assert_eq!(x.to_vec_f32()?, [0.5; 4]);
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        Tensor::full_dtype(shape, value as f64, DType::F32)
    }
    /// An f32 tensor of zeros on the CPU.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }
    /// An f32 tensor of ones on the CPU.
    pub fn ones(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 1.0)
    }
    /// A tensor of `shape` filled with `value`, of `dtype`, on `device`.
    pub fn full_on(shape: &[usize], value: f64, dtype: DType, device: Device) -> Result<Tensor> {
        let storage = Storage::full(shape.iter().product(), value, dtype, device)?;
        Ok(Tensor::from_storage(
            Arc::new(storage),
            Layout::contiguous(shape),
            None,
        ))
    }
    /// Same shape, dtype and device as `self`, filled with `value`.
    pub fn full_like(&self, value: f64) -> Result<Tensor> {
        Tensor::full_on(self.shape(), value, self.dtype(), self.device())
    }
    /// Zeros with the shape, dtype and device of `self`.
    pub fn zeros_like(&self) -> Result<Tensor> {
        self.full_like(0.0)
    }
    /// Ones with the shape, dtype and device of `self`.
    pub fn ones_like(&self) -> Result<Tensor> {
        self.full_like(1.0)
    }

    /// Uniform samples in `[low, high)` (f32), drawn from `rng` so runs are repeatable.
    pub fn uniform(shape: &[usize], low: f32, high: f32, rng: &mut impl Rng) -> Tensor {
        let n = shape.iter().product();
        let data = (0..n)
            .map(|_| low + (high - low) * rng.random::<f32>())
            .collect();
        Tensor::from_cpu::<f32>(data, shape, None)
    }
    /// Uniform samples in `[0, 1)`.
    pub fn rand(shape: &[usize], rng: &mut impl Rng) -> Tensor {
        Tensor::uniform(shape, 0.0, 1.0, rng)
    }
    /// Standard normal samples (Box–Muller on the rng's uniforms).
    pub fn randn(shape: &[usize], rng: &mut impl Rng) -> Tensor {
        let n = shape.iter().product();
        let data = normal_samples(n, rng)
            .into_iter()
            .map(|v| v as f32)
            .collect();
        Tensor::from_cpu::<f32>(data, shape, None)
    }

    // ---- reading values ------------------------------------------------------------------

    /// The elements in row-major order, converted to `T`.
    pub fn to_vec<T: CpuElement>(&self) -> Result<Vec<T>> {
        let c = self.contiguous_detached()?;
        c.storage().to_vec(c.range())
    }
    /// [`to_vec`](Self::to_vec) as f32, without naming the type.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        self.to_vec()
    }
    /// [`to_vec`](Self::to_vec) as f64, without naming the type.
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        self.to_vec()
    }
    /// The single value of a one-element tensor (any shape with one element: `[]`, `[1, 1]`...),
    /// as f64.
    ///
    /// ```
    /// # use senet_tensor::Tensor;
    /// assert_eq!(Tensor::full(&[1, 1], 2.5).item()?, 2.5);
    /// assert!(Tensor::zeros(&[2]).item().is_err());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn item(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "item",
                format!(
                    "needs exactly one element, the tensor has shape {:?}",
                    self.shape()
                ),
            ));
        }
        Ok(self.to_vec::<f64>()?[0])
    }

    /// The values converted to another dtype (recorded: the gradient is converted back). Same
    /// shape; a copy unless the dtype already matches.
    ///
    /// ```
    /// # use senet_tensor::{DType, Tensor};
    /// let x = Tensor::ones(&[2, 3]).to_dtype(DType::F64)?;
    /// assert_eq!((x.shape(), x.dtype()), (&[2, 3][..], DType::F64));
    /// // Ops never mix dtypes silently.
    /// assert!(x.add(&Tensor::ones(&[2, 3])).is_err());
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        let c = self.contiguous_detached()?;
        let storage = c.storage().to_dtype(c.range(), dtype)?;
        Ok(Tensor::from_storage(
            Arc::new(storage),
            Layout::contiguous(self.shape()),
            Some(Op::ToDType(self.clone())),
        ))
    }

    /// A copy on `device` (recorded: the gradient is moved back). GPU tensors are f32, so an
    /// f64 tensor is converted on the way. Same shape, contiguous.
    ///
    /// ```
    /// # use senet_tensor::{Device, Tensor};
    /// // With no GPU at hand: moving to where the tensor already is returns it as it is.
    /// let x = Tensor::ones(&[2, 3]).to_device(Device::Cpu)?;
    /// assert_eq!((x.shape(), x.device()), (&[2, 3][..], Device::Cpu));
    /// # Ok::<(), senet_tensor::Error>(())
    /// ```
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        let c = self.contiguous_detached()?;
        let storage = c.storage().to_device(c.range(), device)?;
        Ok(Tensor::from_storage(
            Arc::new(storage),
            Layout::contiguous(self.shape()),
            Some(Op::ToDevice(self.clone())),
        ))
    }

    /// A copy on the CPU (itself when already there).
    pub fn to_cpu(&self) -> Result<Tensor> {
        self.to_device(Device::Cpu)
    }
}

/// `n` standard normal samples in f64.
pub(crate) fn normal_samples(n: usize, rng: &mut impl Rng) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        // Box–Muller: two uniforms give two independent normals. 1 - u keeps ln away from 0.
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        out.push(r * t.cos());
        out.push(r * t.sin());
    }
    out.truncate(n);
    out
}

/// Dropping the last handle to a long chain of ops would recurse once per op (each `Op`
/// holds its inputs) and can overflow the stack; instead, unlink the chain iteratively.
impl Drop for Inner {
    fn drop(&mut self) {
        let Some(op) = self.op.take() else { return };
        let mut pending = op.into_inputs();
        while let Some(t) = pending.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(t.0) {
                if let Some(op) = inner.op.take() {
                    pending.extend(op.into_inputs());
                }
            }
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor(shape={:?}, dtype={:?}, device={}",
            self.shape(),
            self.dtype(),
            self.device()
        )?;
        if let Ok(v) = self.to_vec::<f64>() {
            let shown: Vec<String> = v.iter().take(8).map(|x| format!("{x:.4}")).collect();
            write!(
                f,
                ", values=[{}{}]",
                shown.join(", "),
                if v.len() > 8 { ", ..." } else { "" }
            )?;
        }
        if let Some(op) = self.op() {
            write!(f, ", op={}", op.name())?;
        }
        write!(f, ")")
    }
}

/// True when `layout` covers all of `storage` in order (contiguous, from offset 0, every
/// element): a buffer that may then be changed in place as the tensor's own.
pub(crate) fn covers_whole(storage: &Storage, layout: &Layout) -> bool {
    layout.is_contiguous() && layout.offset() == 0 && storage.len() == layout.numel()
}
