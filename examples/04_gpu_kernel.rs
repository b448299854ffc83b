//! Running work on the GPU: first a WGSL kernel of our own through the launcher API of
//! `senet::gpu` (what every kernel of the framework goes through), then ordinary tensor ops on
//! the GPU device, compared with the CPU. Run it with
//! `cargo run --release --example 04_gpu_kernel`. Any Vulkan, Metal or DX12 adapter will do;
//! without a GPU, Mesa's lavapipe (a software Vulkan driver: `apt-get install
//! mesa-vulkan-drivers`) runs the same shaders on the CPU cores. (Mesa prints
//! `XDG_RUNTIME_DIR is invalid or not set` on stderr when that variable is unset: harmless.)
use senet::gpu::{DeviceRequest, Gpu, Shader};
use senet::tensor::Device;
use senet::{no_grad, Tensor};
use std::sync::Arc;

/// `y = alpha * x + y`, one thread per element. The framework's own kernels live in `shaders/`,
/// one file per family (`shaders/elementwise.wgsl` is the closest to this one); their launchers
/// in crates/gpu/src (`elementwise.rs`) do what `main` does below.
const AXPY: Shader = Shader {
    // Compiled pipelines are cached under this name (and the entry point), so it must be unique.
    name: "example_axpy",
    source: r#"
// The per-dispatch scalars arrive in a uniform at binding 0: the launcher writes their bytes.
struct Params {
    len: u32,
    alpha: f32,
};
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

// 64 threads per workgroup; the launcher asks for enough workgroups to cover `len`, so the
// last workgroup has threads past the end, which must do nothing.
@compute @workgroup_size(64)
fn axpy(@builtin(global_invocation_id) id: vec3<u32>) {
    let i = id.x;
    if (i >= p.len) { return; }
    y[i] = p.alpha * x[i] + y[i];
}
"#,
};

fn main() {
    // Open the best adapter of any kind (hardware first, lavapipe last). No adapter is an error
    // value: say so and stop, as a program would fall back to the CPU.
    let gpu = match Gpu::open(&DeviceRequest::Gpu) {
        Ok(Some(gpu)) => gpu,
        // Only `DeviceRequest::Auto` answers `None` ("use the CPU"); `Gpu` takes any adapter.
        Ok(None) => return no_gpu("no adapter chosen"),
        Err(e) => return no_gpu(&e.to_string()),
    };
    println!("adapter: {}", gpu.summary);
    if let Err(e) = run(&gpu) {
        eprintln!("GPU error: {e}");
        std::process::exit(1);
    }
}

fn run(gpu: &Arc<Gpu>) -> Result<(), Box<dyn std::error::Error>> {
    // ---- 1. A kernel of our own, launched by hand ----------------------------------------
    let n: usize = 1000;
    let x: Vec<f32> = (0..n).map(|i| i as f32 / 100.0).collect();
    let y: Vec<f32> = (0..n).map(|i| (i % 7) as f32).collect();
    let alpha = 0.5f32;

    // GPU memory is flat arrays of 4-byte elements; `upload` copies a slice into one (from a
    // pool of freed buffers when one of the right size is there).
    let x_buf = gpu.upload(&x)?;
    let y_buf = gpu.upload(&y)?;
    // The uniform's bytes, laid out as WGSL lays out `Params`: u32 at offset 0, f32 at 4,
    // padded to 16 bytes (a uniform's size is a multiple of 16). The framework declares each
    // such struct once in Rust with `wgsl_params!` (crates/gpu/src/params.rs) and a test parses
    // the shaders to check the two agree.
    let params: Vec<u8> = [
        (n as u32).to_ne_bytes(),
        alpha.to_ne_bytes(),
        [0; 4],
        [0; 4],
    ]
    .concat();
    // One dispatch: compile (first time only) and cache the pipeline, bind params to binding 0
    // and our buffers to 1 and 2, and record `ceil(n / 64)` workgroups into the open command
    // encoder. `grid_1d` folds a workgroup count over the per-dimension limit (65,535) into two
    // dimensions; ours is far below it, which is why the shader may use `id.x` alone.
    // The `&[]` is for pipeline-overridable constants: the framework's elementwise shader picks
    // its op with one (`OP`), so each op gets a specialized pipeline.
    gpu.dispatch(
        &AXPY,
        "axpy",
        &[],
        &params,
        &[(1, &x_buf), (2, &y_buf)],
        gpu.grid_1d(n.div_ceil(64)),
    )?;
    // Nothing has run yet: dispatches are recorded and submitted in batches. `read` submits
    // what is recorded, waits for the GPU and copies the array back; it is the only call that
    // waits.
    let on_gpu: Vec<f32> = gpu.read(&y_buf)?;
    let on_cpu: Vec<f32> = x.iter().zip(&y).map(|(x, y)| alpha * x + y).collect();
    println!(
        "axpy on {n} elements: y[..4] = {:?}, max |gpu - cpu| = {:.1e}",
        &on_gpu[..4],
        max_diff(&on_gpu, &on_cpu)
    );

    // ---- 2. Tensor ops on the GPU device ----------------------------------------------------
    // A `Tensor` op never launches anything itself: it describes its computation as a `Kernel`
    // with a `cpu` and a `gpu` method, and crates/tensor/src/kernel.rs calls the one for the
    // device its inputs live on. `tanh` on a GPU tensor, for example, ends in
    // `senet_gpu::elementwise::unary`, which packs `len` into its uniform and dispatches the
    // `unary` entry point of shaders/elementwise.wgsl, exactly as above.
    let device = Device::Gpu(gpu.id);
    let a = Tensor::from_vec(
        (0..64 * 32)
            .map(|i| ((i % 13) as f32 - 6.0) / 8.0)
            .collect(),
        &[64, 32],
    )?;
    let b = Tensor::from_vec(
        (0..32 * 16).map(|i| ((i % 7) as f32 - 3.0) / 5.0).collect(),
        &[32, 16],
    )?;
    let f = |a: &Tensor, b: &Tensor| a.matmul(b)?.tanh()?.sum(&[1], false);
    let before = gpu.stats();
    // Inference only, so no graph is recorded (see 02_autograd).
    let gpu_out = no_grad(|| f(&a.to_device(device)?, &b.to_device(device)?))?;
    println!(
        "tanh(a @ b).sum(1) on {}: {:?}",
        gpu_out.device(),
        gpu_out.shape()
    );
    let gpu_values = gpu_out.to_vec::<f32>()?; // the readback: waits for the GPU
    let used = gpu.stats() - before;
    let cpu_values = no_grad(|| f(&a, &b))?.to_vec::<f32>()?;
    println!("first values: gpu {:?}", &gpu_values[..3]);
    println!("              cpu {:?}", &cpu_values[..3]);
    println!(
        "max |gpu - cpu| = {:.1e} (f32, summed in another order: close, not always equal)",
        max_diff(&gpu_values, &cpu_values)
    );
    println!(
        "the GPU ran {} dispatches in {} submission(s) with {} readback(s)",
        used.dispatches, used.submissions, used.readbacks
    );
    Ok(())
}

fn no_gpu(why: &str) {
    println!("This example needs a GPU adapter, and none was found:");
    println!("  {why}");
    println!("(The other examples run on the CPU.)");
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
