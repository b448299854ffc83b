//! Where a tensor's numbers live. `Storage` is a closed enum over devices; every op matches on
//! it once and calls that device's kernel (`senet_cpu` or `senet_gpu`).
use crate::{Error, Result};
use senet_gpu::{DeviceRequest, Gpu, GpuBuffer};
use senet_spec::Element;
use std::fmt;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
}

/// Where a tensor lives: the CPU, or the GPU adapter with this index in
/// `senet_gpu::adapters()` (opened once per process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    Cpu,
    Gpu(usize),
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Gpu(i) => write!(f, "gpu:{i}"),
        }
    }
}

impl Device {
    /// Parses a `--device` value: `cpu`; `auto` (a hardware GPU if there is one, else the CPU,
    /// which beats a software adapter); `gpu` (the best adapter of any kind, lavapipe included);
    /// or a substring of an adapter's name. Opens the GPU it names.
    pub fn parse(spec: &str) -> Result<Device> {
        let request = match spec {
            "cpu" => return Ok(Device::Cpu),
            "auto" => DeviceRequest::Auto,
            "gpu" => DeviceRequest::Gpu,
            name => DeviceRequest::Name(name.to_string()),
        };
        Ok(match Gpu::open(&request)? {
            Some(gpu) => Device::Gpu(gpu.id),
            None => Device::Cpu,
        })
    }

    /// The opened GPU behind `Device::Gpu`.
    pub fn gpu(&self) -> Result<Arc<Gpu>> {
        match self {
            Device::Cpu => Err(Error::invalid("gpu", "the CPU device has no GPU")),
            Device::Gpu(i) => Ok(Gpu::open_index(*i)?),
        }
    }

    /// A one-line description: `cpu`, or `gpu:0 (llvmpipe (LLVM 15.0.6, 256 bits), Vulkan, Cpu)`.
    pub fn describe(&self) -> String {
        match self.gpu() {
            Ok(g) => format!("{self} ({})", g.summary),
            Err(_) => self.to_string(),
        }
    }
}

/// A CPU buffer: f32 for training, f64 for gradient checking.
#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// A buffer on a GPU; always f32.
#[derive(Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    Gpu(GpuBuffer),
}

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The element types a CPU tensor can hold, with the glue between `Vec<T>` and `CpuStorage`.
pub trait CpuElement: Element {
    const DTYPE: DType;
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    fn wrap(v: Vec<Self>) -> CpuStorage;
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
}

/// Runs `$body` with the type alias `$T` bound to the Rust type of `$dtype`, so one generic
/// piece of code serves both dtypes.
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
