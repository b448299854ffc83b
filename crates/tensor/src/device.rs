//! What a tensor holds and where: its element type ([`DType`]) and its [`Device`], the CPU
//! or one GPU adapter.
use senet_gpu::{DeviceRequest, Gpu, GpuError};
use std::fmt;
use std::sync::Arc;

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: what training uses, and the only type GPU tensors hold.
    F32,
    /// 64-bit float, CPU only: for gradient checks, where f32 rounding would hide errors.
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

/// Where a tensor lives: the CPU, or the GPU adapter with this index in
/// `senet_gpu::adapters()` (opened once per process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Device {
    /// Main memory, computed by the `senet-cpu` kernels.
    Cpu,
    /// A GPU adapter, by its index; computed by the WGSL kernels of `senet-gpu`.
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
    pub fn parse(spec: &str) -> senet_gpu::Result<Device> {
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
    pub fn gpu(&self) -> senet_gpu::Result<Arc<Gpu>> {
        match self {
            Device::Cpu => Err(GpuError::NoAdapter(
                "the tensor is on the CPU device, which has no GPU".into(),
            )),
            Device::Gpu(i) => Gpu::open_index(*i),
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
