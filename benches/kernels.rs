//! Kernel throughput at CIFAR shapes: matmul and conv2d forward + both gradients, printed as
//! GFLOP/s per kernel and device.
//!
//! `cargo bench --bench kernels -- --batch 32 --iters 3` runs every kernel on the CPU and, when
//! wgpu sees an adapter, on the GPU (`--device cpu`, `gpu`, `auto` or an adapter name picks
//! one). Defaults: batch 128, 5 iterations, median time. With both devices it ends with each
//! matmul's GPU throughput as a share of the CPU's, timed in alternation.
use clap::Parser;
use senet::tensor::testing::random_tensor;
use senet::tensor::{Conv2dOptions, DType, Device, Pool2dOptions};
use senet::{Result, Tensor};
use std::time::Instant;

#[derive(Parser)]
#[command(about = "GFLOP/s of matmul and conv2d kernels at CIFAR shapes")]
struct Args {
    /// Images per batch.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Timed iterations per kernel (after one warm-up).
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// `both` (the CPU, then the best GPU adapter if any), `cpu`, `gpu`, `auto` or an adapter name.
    #[arg(long, default_value = "both")]
    device: String,
    /// Sizes n of the n x n x n matmuls, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "256,512,1024")]
    sizes: Vec<usize>,
    /// Models whose convolutions get rows of their own, timed inside a profiled training step
    /// (forward, input gradient `dx`, weight gradient `dw` of every distinct geometry):
    /// `senetv2-9` (paper preset), `senetv2-18-cifar` (paper preset, cifar stem), or `none`.
    #[arg(long, value_delimiter = ',', default_value = "senetv2-9,senetv2-18-cifar",
          value_parser = ["senetv2-9", "senetv2-18-cifar", "none"])]
    models: Vec<String>,
    /// Only rows whose name contains this.
    #[arg(long, default_value = "")]
    filter: String,
    /// Cargo passes --bench to bench targets; accepted and ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn tensor(shape: &[usize], seed: u64, device: Device) -> Result<Tensor> {
    random_tensor(shape, seed)
        .to_dtype(DType::F32)?
        .to_device(device)
}

/// Median seconds of `iters` runs of `f` (each waited for on a GPU), after one warm-up run.
fn time(iters: usize, device: Device, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let sync = || -> Result<()> {
        if let Device::Gpu(_) = device {
            device.gpu()?.synchronize()?;
        }
        Ok(())
    };
    f()?;
    sync()?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f()?;
        sync()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// The GPU's matmul throughput as a share of the CPU's, the two timed in alternation (one CPU
/// run, then one GPU run, `iters` times; medians): on a host whose speed drifts (shared,
/// throttled) both medians move alike, where two separate blocks of runs would not.
fn matmul_ratios(args: &Args, gpu: Device) -> Result<()> {
    for &n in &args.sizes {
        let name = format!("matmul {n}x{n}x{n}");
        if !name.contains(&args.filter) {
            continue;
        }
        let (xc, yc) = (
            tensor(&[n, n], 1, Device::Cpu)?,
            tensor(&[n, n], 2, Device::Cpu)?,
        );
        let (xg, yg) = (xc.to_device(gpu)?, yc.to_device(gpu)?);
        let mut secs = [Vec::new(), Vec::new()];
        for round in 0..=args.iters {
            let t = Instant::now();
            drop(xc.matmul(&yc)?);
            let cpu = t.elapsed().as_secs_f64();
            let t = Instant::now();
            drop(xg.matmul(&yg)?);
            gpu.gpu()?.synchronize()?;
            // Round 0 warms up both.
            if round > 0 {
                secs[0].push(cpu);
                secs[1].push(t.elapsed().as_secs_f64());
            }
        }
        let gflops = |times: &mut Vec<f64>| {
            times.sort_by(f64::total_cmp);
            2.0 * (n * n * n) as f64 / times[times.len() / 2] / 1e9
        };
        let (cpu, on_gpu) = (gflops(&mut secs[0]), gflops(&mut secs[1]));
        println!(
            "{name}: {gpu} {on_gpu:.1} GFLOP/s = {:.1}% of the cpu's {cpu:.1} \
             (alternating runs, medians of {})",
            100.0 * on_gpu / cpu,
            args.iters
        );
    }
    Ok(())
}

fn run(args: &Args, device: Device, cpu_peak: f64) -> Result<()> {
    let b = args.batch;
    let wanted = |name: &str| name.contains(&args.filter);
    // `flops` 0 prints the time alone (pooling has no multiply-adds to count).
    let row = |name: &str, flops: f64, secs: f64| {
        let gflops = flops / secs / 1e9;
        let of_peak = if device == Device::Cpu && flops > 0.0 {
            format!("{:>6.1}%", 100.0 * gflops / cpu_peak)
        } else {
            String::new()
        };
        let gflops = if flops > 0.0 {
            format!("{gflops:>10.1}")
        } else {
            format!("{:>10}", "-")
        };
        println!(
            "{name:<50} {:>8} {:>10.2} {gflops} {of_peak}",
            device.to_string(),
            secs * 1e3,
        )
    };
    for &n in &args.sizes {
        let name = format!("matmul {n}x{n}x{n}");
        if wanted(&name) {
            let (x, y) = (tensor(&[n, n], 1, device)?, tensor(&[n, n], 2, device)?);
            row(
                &name,
                2.0 * (n * n * n) as f64,
                time(args.iters, device, || x.matmul(&y).map(drop))?,
            );
        }
    }
    // (channels, pixels, groups): the four ResNet stages on 32x32 CIFAR images, and the grouped
    // 3x3 convs of ResNeXt 32x4d (128 and 256 channels in 32 groups).
    let convs = [
        (64, 32, 1),
        (128, 16, 1),
        (256, 8, 1),
        (512, 4, 1),
        (128, 32, 32),
        (256, 16, 32),
    ];
    for (c, px, groups) in convs {
        let label = format!(
            "conv3x3 {c}ch {px}x{px}{}",
            if groups > 1 {
                format!(" g{groups}")
            } else {
                String::new()
            }
        );
        let (fwd, bwd) = (
            format!("{label} forward"),
            format!("{label} backward (input + weight)"),
        );
        if !wanted(&fwd) && !wanted(&bwd) {
            continue;
        }
        let x = tensor(&[b, c, px, px], 3, device)?.requires_grad();
        let w = tensor(&[c, c / groups, 3, 3], 4, device)?.requires_grad();
        let opts = Conv2dOptions::new(1, 1).groups(groups);
        let macs = (b * c * px * px * (c / groups) * 9) as f64;
        if wanted(&fwd) {
            row(
                &fwd,
                2.0 * macs,
                time(args.iters, device, || {
                    x.detach().conv2d(&w.detach(), None, opts).map(drop)
                })?,
            );
        }
        if wanted(&bwd) {
            // Input and weight gradients: twice the forward's work.
            let y = x.conv2d(&w, None, opts)?;
            let seed = y.ones_like()?;
            row(
                &bwd,
                4.0 * macs,
                time(args.iters, device, || y.backward_with(&seed).map(drop))?,
            );
        }
    }
    for name in &args.models {
        model_rows(args, device, name, &row).map_err(|e| senet::Error::Invalid {
            op: "kernels bench",
            msg: format!("{name}: {e:#}"),
        })?;
    }
    // The ResNet stem's max pool (3x3, stride 2, padding 1) on its 16x16 maps.
    let name = "max_pool2d 3x3/2 64ch 16x16 forward";
    if wanted(name) {
        let x = tensor(&[b, 64, 16, 16], 5, device)?;
        let opts = Pool2dOptions::new(3, 2, 1);
        row(
            name,
            0.0,
            time(args.iters, device, || x.max_pool2d(opts).map(drop))?,
        );
    }
    Ok(())
}

/// The convolutions of a whole model where a training step runs them: a warm-up step, then
/// `iters` profiled steps on 32x32 images, and a row per conv kernel label of the profile
/// (`conv2d 3x3/2 128->128 8x8` forward, `conv2d dx ...`, `conv2d dw ...`), per call.
fn model_rows(
    args: &Args,
    device: Device,
    name: &str,
    row: &impl Fn(&str, f64, f64),
) -> anyhow::Result<()> {
    use senet::models::{build, Family, ModelConfig, Preset, Stem};
    use senet::nn::Module;
    use senet::tensor::profile::{self, Phase};
    let mut config = match name {
        "none" => return Ok(()),
        "senetv2-9" | "senetv2-18-cifar" => {
            let depth = if name == "senetv2-9" { 9 } else { 18 };
            ModelConfig::new(Family::SeNetV2, Some(depth), Preset::Paper, 10)
        }
        _ => unreachable!("clap accepts only the names above"),
    };
    if name.ends_with("-cifar") {
        config.stem = Some(Stem::Cifar);
    }
    // A filter that names no row of this model skips building it.
    if !(args.filter.is_empty() || name.contains(&args.filter) || args.filter.starts_with(name)) {
        return Ok(());
    }
    let mut model = build(&config, 0)?;
    model.to_device(device)?;
    let x = tensor(&[args.batch, 3, 32, 32], 6, device)?;
    let labels: Vec<u32> = (0..args.batch).map(|i| (i % 10) as u32).collect();
    let mut step = || -> anyhow::Result<()> {
        let loss = model.forward(&x, true)?.cross_entropy(&labels, 0.0)?;
        loss.backward()?;
        Ok(loss.item().map(drop)?)
    };
    step()?;
    profile::enable(true);
    for _ in 0..args.iters {
        step()?;
    }
    let mut rows = profile::rows();
    profile::enable(false);
    // Each geometry's forward, dx and dw together.
    let geometry = |label: &str| label.replace("dx ", "").replace("dw ", "");
    rows.sort_by_key(|r| (geometry(&r.label), r.phase, r.label.clone()));
    for r in rows {
        let Some(flops) = r.flops.filter(|_| r.label.starts_with("conv2d")) else {
            continue;
        };
        let pass = if r.phase == Phase::Forward {
            " forward"
        } else {
            ""
        };
        let label = format!("{name} {}{pass}", r.label);
        if args.filter.is_empty() || label.contains(&args.filter) {
            let calls = r.calls as f64;
            row(&label, flops / calls, r.secs / calls);
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let devices = match args.device.as_str() {
        "both" => {
            let mut d = vec![Device::Cpu];
            match Device::parse("gpu") {
                Ok(gpu) => d.push(gpu),
                Err(e) => eprintln!("no GPU row: {e}"),
            }
            d
        }
        spec => vec![Device::parse(spec)?],
    };
    println!(
        "batch {}, {} iterations, median time",
        args.batch, args.iters
    );
    for d in &devices {
        println!("{}: {}", d, d.describe());
    }
    let cpu_peak = senet::cpu::simd::measure_peak_gflops(500);
    println!("{}", senet::bench::cpu_line());
    println!("cpu fp32 peak, measured with an FMA loop on every thread: {cpu_peak:.1} GFLOP/s");
    println!(
        "{:<50} {:>8} {:>10} {:>10} {:>7}",
        "kernel", "device", "ms", "GFLOP/s", "of peak"
    );
    for &d in &devices {
        run(&args, d, cpu_peak)?;
    }
    if let [Device::Cpu, gpu @ Device::Gpu(_)] = devices[..] {
        matmul_ratios(&args, gpu)?;
    }
    Ok(())
}
