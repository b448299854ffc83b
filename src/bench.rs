//! `senet bench`: training and inference throughput on random data, the memory a training step
//! holds, and with `--profile` where each step's time goes, op by op.
use crate::data::{BatchLoader, LoaderOptions, Split};
use crate::models::{build, Model, ModelConfig};
use crate::nn::optim::Optimizer;
use crate::nn::Module;
use crate::tensor::profile::{self, Phase};
use crate::tensor::{Device, NoGradGuard, Tensor};
use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

/// What to measure.
pub struct BenchOptions {
    pub batch: usize,
    pub steps: usize,
    pub device: String,
    pub input_size: usize,
    /// Also run `steps` profiled training steps and inference passes and print per-op tables.
    pub profile: bool,
}

/// Waits for the device (a readback on the GPU).
fn sync(t: &Tensor) -> Result<()> {
    t.sum_all()?.item()?;
    Ok(())
}

/// This process's resident memory now and at its peak, in bytes, from `/proc/self/status`
/// (Linux); `None` elsewhere.
pub fn resident_bytes() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The threads and SIMD level the CPU kernels use.
pub fn cpu_line() -> String {
    format!(
        "cpu kernels: {} threads, SIMD {} (detected {}; SENET_SIMD caps it)",
        crate::cpu::threads(),
        crate::cpu::simd::level().name(),
        crate::cpu::simd::detected().name()
    )
}

pub fn bench(config: &ModelConfig, o: &BenchOptions) -> Result<ExitCode> {
    let (batch, steps, size) = (o.batch, o.steps, o.input_size);
    if batch == 0 || steps == 0 {
        bail!("--batch and --steps must be at least 1");
    }
    if size == 0 || size > 4096 {
        bail!("--input-size must be between 1 and 4096, got {size}");
    }
    // Each flag is bounded; their product sizes the input batch, so it is bounded too.
    const MAX_INPUT_VALUES: usize = 1 << 28;
    if batch.saturating_mul(3 * size * size) > MAX_INPUT_VALUES {
        bail!(
            "--batch {batch} of {size}x{size} images is {} values, over the bench's cap of \
             {MAX_INPUT_VALUES} (1 GiB): lower --batch or --input-size",
            batch.saturating_mul(3 * size * size)
        );
    }
    let at_start = resident_bytes().map(|(now, _)| now);
    let device = Device::parse(&o.device).with_context(|| format!("--device {}", o.device))?;
    let mut model = build(config, 0)?;
    model.to_device(device)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let x = Tensor::randn(&[batch, 3, size, size], &mut rng).to_device(device)?;
    let labels: Vec<u32> = (0..batch)
        .map(|_| rng.random_range(0..config.classes as u32))
        .collect();
    let mut opt = Optimizer::sgd(0.9, true, 5e-4);
    let mut train_step = |model: &mut Model| -> Result<()> {
        // The graph goes at the end of the block: its saved activations are freed before the
        // update, and each parameter is left with one handle, which the update then changes
        // in place rather than copying.
        let (grads, loss) = {
            let loss = model.forward(&x, true)?.cross_entropy(&labels, 0.0)?;
            (loss.backward()?, loss.detach())
        };
        opt.step(model, &grads, 0.05)?;
        sync(&loss)
    };
    println!(
        "{} on {}, batch {batch}, {size}x{size} images, {steps} timed steps after 2 warm-up steps",
        config.name(),
        device.describe()
    );
    if device == Device::Cpu {
        println!("{}", cpu_line());
    }
    profile::reset_peak_tensor_bytes();
    for _ in 0..2 {
        train_step(&mut model)?;
    }
    let gpu = gpu_of(device)?;
    let stats = || gpu.as_ref().map(|g| g.stats());
    let before = stats();
    let t = Instant::now();
    for _ in 0..steps {
        train_step(&mut model)?;
    }
    let train_secs = t.elapsed().as_secs_f64();
    let train_stats = stats().zip(before).map(|(a, b)| a - b);
    let peak_tensors = profile::peak_tensor_bytes() as u64;
    let peak_rss = resident_bytes().map(|(_, peak)| peak);
    infer_passes(&mut model, &x, 2)?;
    let before = stats();
    let infer_secs = infer_passes(&mut model, &x, steps)?;
    let infer_stats = stats().zip(before).map(|(a, b)| a - b);
    let per_sec = |secs: f64| (batch * steps) as f64 / secs;
    println!("train: {:.1} images/s", per_sec(train_secs));
    println!("inference: {:.1} images/s", per_sec(infer_secs));
    for (what, s) in [("train", train_stats), ("inference", infer_stats)] {
        if let Some(s) = s {
            println!("{what}: {}", gpu_stats_line(&s, steps));
        }
    }
    println!(
        "memory: tensors at their peak {:.1} MiB (parameters, gradients, optimizer state, saved activations)",
        mib(peak_tensors)
    );
    if let Some(g) = &gpu {
        // Pooled buffers are never freed, so what the device holds is every buffer created.
        let (held, idle) = g.buffer_bytes();
        println!(
            "memory: gpu buffers {:.1} MiB ({:.1} MiB of them idle in the pool now) = {:.2}x the tensors at their peak",
            mib(held),
            mib(idle),
            held as f64 / peak_tensors.max(1) as f64
        );
    }
    if let (Some(start), Some(peak)) = (at_start, peak_rss) {
        let bound = 1.5 * peak_tensors as f64 + start as f64;
        println!(
            "memory: peak resident {:.1} MiB during training = {:.2}x (tensors x 1.5 + {:.1} MiB at start)",
            mib(peak),
            peak as f64 / bound,
            mib(start)
        );
    }
    if o.profile {
        profile_steps(&mut train_step, &mut model, &x, o)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Seconds for `passes` inference forward passes over `x`, each waited for.
fn infer_passes(model: &mut Model, x: &Tensor, passes: usize) -> Result<f64> {
    let _guard = NoGradGuard::new();
    let t = Instant::now();
    for _ in 0..passes {
        sync(&model.forward(x, false)?)?;
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Runs `steps` more training steps and inference passes with every kernel timed, and prints
/// the tables; then times preparing `steps` batches (crop, flip, normalize) on one thread.
fn profile_steps(
    train_step: &mut impl FnMut(&mut Model) -> Result<()>,
    model: &mut Model,
    x: &Tensor,
    o: &BenchOptions,
) -> Result<()> {
    profile::enable(true);
    let t = Instant::now();
    for _ in 0..o.steps {
        train_step(model)?;
    }
    let train_secs = t.elapsed().as_secs_f64();
    let data_secs = {
        let _phase = profile::phase(Phase::Data);
        time_data(o.batch, o.steps, o.input_size, x.device())?
    };
    let train_rows = profile::rows();
    let timestamps = profile::gpu_timestamps();
    profile::enable(true);
    let infer_secs = infer_passes(model, x, o.steps)?;
    let infer_rows = profile::rows();
    profile::enable(false);
    println!(
        "\nprofile of {} training steps (ms per step; GFLOP/s where FLOPs are defined; \
         data is timed apart, {:.1} ms per batch, and not in the step):",
        o.steps,
        data_secs / o.steps as f64 * 1e3
    );
    if x.device() != Device::Cpu {
        if timestamps {
            println!(
                "(GPU kernel times are the device's, from timestamp queries around each \
                 dispatch, with no wait between kernels; buffer copies are not timed; \
                 `other` is the rest of the step's wall time)"
            );
        } else {
            println!(
                "(this GPU has no timestamp queries: each kernel's time is wall time with a \
                 wait for the device after it, so the sum exceeds the unprofiled step)"
            );
        }
    }
    print!(
        "{}",
        profile::format_table(&train_rows, o.steps, Some(train_secs))
    );
    println!("\nprofile of {} inference passes:", o.steps);
    print!(
        "{}",
        profile::format_table(&infer_rows, o.steps, Some(infer_secs))
    );
    Ok(())
}

/// The opened GPU of `device`, if it is one.
fn gpu_of(device: Device) -> Result<Option<Arc<crate::gpu::Gpu>>> {
    Ok(match device {
        Device::Gpu(i) => Some(crate::gpu::Gpu::open_index(i)?),
        Device::Cpu => None,
    })
}

/// One line of what the device was asked per step of the timed (unprofiled) loop: dispatches,
/// submissions, readbacks, bytes each way, and buffers created (arrays the pool lacked, and
/// one-command buffers). With `--profile` each timed kernel is waited for, which would count a
/// submission per kernel, so these figures come from the loop before it.
fn gpu_stats_line(s: &crate::gpu::GpuStats, steps: usize) -> String {
    let n = steps.max(1) as f64;
    let per = |v: u64| v as f64 / n;
    format!(
        "gpu per step: {:.0} dispatches, {:.1} submissions, {:.1} readbacks, {:.2} MiB uploaded, \
         {:.3} MiB read back, {:.1} new array buffers ({:.2} MiB), {:.0} one-command buffers \
         (parameters, staging)",
        per(s.dispatches),
        per(s.submissions),
        per(s.readbacks),
        per(s.bytes_uploaded) / 1048576.0,
        per(s.bytes_read) / 1048576.0,
        per(s.buffers_created),
        per(s.bytes_created) / 1048576.0,
        per(s.transient_buffers)
    )
}

/// Seconds to prepare `steps` training batches from random images the way the trainer does
/// (random crop, flip, normalize) on this thread, and upload them to `device`. The images are
/// one batch's worth, drawn anew each step (a new epoch of the same split), so memory stays at
/// one batch of bytes.
fn time_data(batch: usize, steps: usize, size: usize, device: Device) -> Result<f64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let split = Arc::new(Split {
        images: (0..batch * 3 * size * size).map(|_| rng.random()).collect(),
        labels: (0..batch).map(|i| (i % 10) as u32).collect(),
        len: batch,
        image_size: size,
    });
    let t = Instant::now();
    for step in 0..steps {
        let opts = LoaderOptions {
            batch,
            workers: 0,
            epoch: step as u64,
            mean: [0.5; 3],
            std: [0.25; 3],
            ..LoaderOptions::default()
        };
        let mut loader = BatchLoader::new(&split, opts)?;
        let images = profile::timed(
            || ("augment + normalize (1 thread) + upload".into(), None),
            || -> Result<Tensor> {
                let b = loader.next().context("an epoch of one batch")?;
                Ok(Tensor::from_vec(b.images, &[b.len, 3, size, size])?.to_device(device)?)
            },
        )?;
        if device != Device::Cpu {
            sync(&images)?; // the upload is queued until waited for
        }
    }
    Ok(t.elapsed().as_secs_f64())
}
