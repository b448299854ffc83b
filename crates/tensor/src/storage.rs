//! Where a tensor's numbers live. [`Storage`] is a closed enum over devices: a CPU buffer of
//! f32 or f64, or a GPU buffer (always f32). This module and `kernel.rs` are the only places
//! that look inside it: here, creating buffers and moving values between devices and dtypes;
//! there, choosing the kernel an op runs.
use crate::{DType, Device, Error, Layout, Result};
use senet_gpu::GpuBuffer;
use senet_spec::Element;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A CPU buffer: f32 for training, f64 for gradient checking.
#[derive(Clone, Debug)]
pub enum CpuStorage {
    /// f32 values.
    F32(Vec<f32>),
    /// f64 values.
    F64(Vec<f64>),
}

/// A tensor's buffer on its device.
#[derive(Debug)]
pub enum Storage {
    /// Values in main memory.
    Cpu(CpuStorage),
    /// An f32 buffer in a GPU's memory.
    Gpu(GpuBuffer),
}

/// Bytes held by all live storages (every tensor's buffer: parameters, gradients, optimizer
/// state, activations kept for backward, temporaries) and the most held at once since
/// [`reset_peak_tensor_bytes`], for `senet bench`'s memory line. Buffers are counted when made
/// through [`Storage::cpu`] / [`Storage::gpu`], the only constructors used, and when dropped.
static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

/// Bytes held by the buffers of all live tensors, on every device.
pub fn live_tensor_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

/// The most [`live_tensor_bytes`] reached since the last [`reset_peak_tensor_bytes`].
pub fn peak_tensor_bytes() -> usize {
    PEAK_BYTES.load(Ordering::Relaxed)
}

/// Starts a new peak from what is live now.
pub fn reset_peak_tensor_bytes() {
    PEAK_BYTES.store(live_tensor_bytes(), Ordering::Relaxed);
}

impl Drop for Storage {
    fn drop(&mut self) {
        LIVE_BYTES.fetch_sub(self.bytes(), Ordering::Relaxed);
    }
}

/// The element types a CPU tensor can hold, with the glue between `Vec<T>` and `CpuStorage`.
pub trait CpuElement: Element {
    /// The [`DType`] of this Rust type.
    const DTYPE: DType;
    /// The values of `s` when it holds this type, else `None`.
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    /// `v` as a CPU buffer.
    fn wrap(v: Vec<Self>) -> CpuStorage;
    /// The values of `s`, writable, when it holds this type, else `None`.
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
}

impl CpuElement for f32 {
    const DTYPE: DType = DType::F32;
    fn slice(s: &CpuStorage) -> Option<&[f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<f32>) -> CpuStorage {
        CpuStorage::F32(v)
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [f32]> {
        match s {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
}

impl CpuElement for f64 {
    const DTYPE: DType = DType::F64;
    fn slice(s: &CpuStorage) -> Option<&[f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
    fn wrap(v: Vec<f64>) -> CpuStorage {
        CpuStorage::F64(v)
    }
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [f64]> {
        match s {
            CpuStorage::F64(v) => Some(v),
            _ => None,
        }
    }
}

/// Runs `$body` with the type alias `$T` bound to the Rust type of `$dtype`, so one generic
/// piece of code serves both dtypes. Used here and in `kernel.rs` only.
macro_rules! with_dtype {
    ($dtype:expr, $T:ident => $body:expr) => {
        match $dtype {
            $crate::DType::F32 => {
                type $T = f32;
                $body
            }
            $crate::DType::F64 => {
                type $T = f64;
                $body
            }
        }
    };
}
pub(crate) use with_dtype;

impl Storage {
    /// A CPU buffer, counted in [`live_tensor_bytes`].
    pub(crate) fn cpu(c: CpuStorage) -> Storage {
        Storage::counted(Storage::Cpu(c))
    }

    /// A GPU buffer, counted in [`live_tensor_bytes`].
    pub(crate) fn gpu(b: GpuBuffer) -> Storage {
        Storage::counted(Storage::Gpu(b))
    }

    fn counted(s: Storage) -> Storage {
        let live = LIVE_BYTES.fetch_add(s.bytes(), Ordering::Relaxed) + s.bytes();
        PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
        s
    }

    fn bytes(&self) -> usize {
        self.len() * self.dtype().size()
    }

    /// Elements in the buffer.
    pub(crate) fn len(&self) -> usize {
        match self {
            Storage::Cpu(CpuStorage::F32(v)) => v.len(),
            Storage::Cpu(CpuStorage::F64(v)) => v.len(),
            Storage::Gpu(b) => b.len(),
        }
    }

    pub(crate) fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(CpuStorage::F32(_)) | Storage::Gpu(_) => DType::F32,
            Storage::Cpu(CpuStorage::F64(_)) => DType::F64,
        }
    }

    pub(crate) fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Gpu(b) => Device::Gpu(b.gpu().id),
        }
    }

    /// Whether kernels can read the view `layout` of this buffer as it is: row-major, and on a
    /// GPU (whose kernels read whole buffers) also exactly the whole buffer.
    pub(crate) fn kernel_ready(&self, layout: &Layout) -> bool {
        let whole = match self {
            Storage::Cpu(_) => true,
            Storage::Gpu(b) => layout.offset() == 0 && b.len() == layout.numel(),
        };
        layout.is_contiguous() && whole
    }

    /// `n` copies of `value` as `dtype` on `device`.
    pub(crate) fn full(n: usize, value: f64, dtype: DType, device: Device) -> Result<Storage> {
        match device {
            Device::Cpu => {
                Ok(with_dtype!(dtype, T => Storage::cpu(T::wrap(vec![T::from_f64(value); n]))))
            }
            Device::Gpu(_) => {
                check_gpu_dtype("full", dtype)?;
                let buf = senet_gpu::elementwise::fill(&device.gpu()?, n, value as f32)?;
                Ok(Storage::gpu(buf))
            }
        }
    }

    /// The elements `range` converted to `T` (a GPU buffer is read back).
    pub(crate) fn to_vec<T: CpuElement>(&self, range: Range<usize>) -> Result<Vec<T>> {
        let convert = |v: &[_]| v.iter().map(|&x: &f32| T::from_f64(x as f64)).collect();
        Ok(match self {
            Storage::Gpu(buf) => convert(&buf.gpu().read::<f32>(buf)?[range]),
            Storage::Cpu(CpuStorage::F32(v)) => convert(&v[range]),
            Storage::Cpu(CpuStorage::F64(v)) => v[range].iter().map(|&x| T::from_f64(x)).collect(),
        })
    }

    /// The elements `range` as `dtype`, in a new buffer on the same device.
    pub(crate) fn to_dtype(&self, range: Range<usize>, dtype: DType) -> Result<Storage> {
        match self {
            Storage::Cpu(_) => {
                Ok(with_dtype!(dtype, T => Storage::cpu(T::wrap(self.to_vec::<T>(range)?))))
            }
            // GPU buffers hold f32 only, and `Tensor::to_dtype` returns early when the dtype
            // already matches: what reaches here asks for a dtype the GPU does not hold.
            Storage::Gpu(_) => {
                check_gpu_dtype("to_dtype", dtype)?;
                self.to_device(range, self.device())
            }
        }
    }

    /// The elements `range` in a new buffer on `device`; GPU buffers hold f32, so an f64
    /// buffer is converted on the way, and GPU to GPU goes through the host.
    pub(crate) fn to_device(&self, range: Range<usize>, device: Device) -> Result<Storage> {
        match (device, self) {
            (Device::Cpu, _) => Ok(Storage::cpu(CpuStorage::F32(self.to_vec::<f32>(range)?))),
            (Device::Gpu(_), Storage::Cpu(CpuStorage::F32(v))) => {
                Ok(Storage::gpu(device.gpu()?.upload(&v[range])?))
            }
            (Device::Gpu(_), _) => {
                let values = self.to_vec::<f32>(range)?;
                Ok(Storage::gpu(device.gpu()?.upload(&values)?))
            }
        }
    }
}

/// GPU tensors hold f32 only.
pub(crate) fn check_gpu_dtype(op: &'static str, dtype: DType) -> Result<()> {
    if dtype != DType::F32 {
        return Err(Error::invalid(
            op,
            format!("{dtype:?} tensors live on the CPU only; GPU tensors are F32"),
        ));
    }
    Ok(())
}

/// Integer indices an op keeps for its backward (max pooling's argmax, cross-entropy's
/// labels), on the device of the op, so the backward never uploads them again. Opaque outside
/// this crate: like a tensor's values, where they live is the storage's business.
#[derive(Clone, Debug)]
pub struct Indices(pub(crate) Arc<IndexStorage>);

#[derive(Debug)]
pub(crate) enum IndexStorage {
    Cpu(Vec<u32>),
    Gpu(GpuBuffer),
}
