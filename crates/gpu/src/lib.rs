//! The GPU backend: a `wgpu` runtime and one launcher per kernel family.
//!
//! [`Gpu`] owns a device and queue and everything that makes kernels cheap to run: a
//! size-bucketed buffer pool (a dropped [`GpuBuffer`] returns its memory to the pool), a cache
//! of compute pipelines keyed by shader, entry point and constants, and an open command encoder
//! that dispatches are appended to and that is submitted in batches. Only a readback
//! ([`Gpu::read`]) waits for the GPU. The WGSL sources live in the top-level `shaders/` folder,
//! one file per kernel family plus the shared code they include (the thread index, a workgroup
//! reduction, the tiled GEMM); each launcher module here checks sizes, packs the per-dispatch
//! parameters into a uniform and dispatches. This crate knows nothing of `Tensor`: buffers are
//! flat arrays of f32 (or u32 indices) and the caller passes the sizes.
//!
//! Where the adapter offers more (8-wide subgroups, a CPU adapter's preference for small
//! reduction workgroups), launchers pick kernels tuned for it at run time ([`Gpu::tuned_kernels`],
//! [`gemm_subgroup`]); the plain kernels stay, tested beside them.
//!
//! Every launcher has a test against the CPU kernel of `senet-cpu` on small random shapes; on a
//! machine without a GPU they run on Mesa's lavapipe (software Vulkan). Every uniform struct a
//! shader reads is declared once in Rust with `wgsl_params!`, and a test (in `params`) parses
//! the shaders with naga and checks each against its Rust twin, with no GPU needed.

#[macro_use]
mod params;
mod runtime;

/// A [`Shader`] named `$name` whose source is the listed files of `shaders/`, in order: WGSL has
/// no #include, so the shared files (invocation.wgsl first) are prepended to the kernel's own.
macro_rules! shader {
    ($name:literal, [$($file:literal),+ $(,)?]) => {
        $crate::Shader {
            name: $name,
            source: concat!($(include_str!(concat!("../../../shaders/", $file))),+),
        }
    };
}

pub use runtime::{
    adapters, kernels_choice, set_default_kernels, AdapterSummary, DeviceRequest, Gpu, GpuBuffer,
    GpuError, GpuStats, Result, Shader,
};

pub mod batchnorm;
pub mod conv2d;
pub mod elementwise;
pub mod gemm_subgroup;
pub mod grouped_linear;
pub mod matmul;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod softmax;
#[doc(hidden)]
pub mod testing;
