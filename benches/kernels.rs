//! Kernel throughput at CIFAR shapes: matmul and conv2d forward + both gradients, printed as
//! GFLOP/s per kernel and device.
//!
//! `cargo bench --bench kernels -- --batch 32 --iters 3` (defaults: batch 128, 5 iterations).
use clap::Parser;
use senet::tensor::testing::random_tensor;
use senet::tensor::{Conv2dOptions, DType};
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
    /// Only rows whose name contains this.
    #[arg(long, default_value = "")]
    filter: String,
    /// Cargo passes --bench to bench targets; accepted and ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn f32_tensor(shape: &[usize], seed: u64) -> Tensor {
    random_tensor(shape, seed)
        .to_dtype(DType::F32)
        .expect("f64 to f32")
}

/// Median seconds of `iters` runs of `f`, after one warm-up run.
fn time(iters: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn row(name: &str, flops: f64, secs: f64) {
    println!(
        "{name:<50} {:>8} {:>10.2} {:>10.1}",
        "cpu",
        secs * 1e3,
        flops / secs / 1e9
    );
}

fn main() -> Result<()> {
    let args = Args::parse();
    let b = args.batch;
    println!("batch {b}, {} iterations, median time", args.iters);
    println!(
        "{:<50} {:>8} {:>10} {:>10}",
        "kernel", "device", "ms", "GFLOP/s"
    );
    let wanted = |name: &str| name.contains(&args.filter);

    for n in [256usize, 512, 1024] {
        let name = format!("matmul {n}x{n}x{n}");
        if wanted(&name) {
            let (x, y) = (f32_tensor(&[n, n], 1), f32_tensor(&[n, n], 2));
            let secs = time(args.iters, || x.matmul(&y).map(drop))?;
            row(&name, 2.0 * (n * n * n) as f64, secs);
        }
    }

    // (channels, pixels, groups): the four ResNet stages on 32x32 CIFAR images, plus the
    // grouped 3x3 conv of ResNeXt 32x4d (128 channels in 32 groups at stage 1).
    let convs = [
        (64, 32, 1),
        (128, 16, 1),
        (256, 8, 1),
        (512, 4, 1),
        (128, 32, 32),
        (256, 16, 32),
    ];
    for (c, px, groups) in convs {
        let x = f32_tensor(&[b, c, px, px], 3);
        let w = f32_tensor(&[c, c / groups, 3, 3], 4).requires_grad();
        let opts = Conv2dOptions::new(1, 1).groups(groups);
        let macs = (b * c * px * px * (c / groups) * 9) as f64;
        let label = format!(
            "conv3x3 {c}ch {px}x{px}{}",
            if groups > 1 {
                format!(" g{groups}")
            } else {
                String::new()
            }
        );
        if wanted(&format!("{label} forward")) {
            row(
                &format!("{label} forward"),
                2.0 * macs,
                time(args.iters, || x.conv2d(&w, None, opts).map(drop))?,
            );
        }
        if wanted(&format!("{label} backward")) {
            // Input and weight gradients: twice the forward's work.
            let xg = x.requires_grad();
            let y = xg.conv2d(&w, None, opts)?;
            let seed = y.ones_like();
            row(
                &format!("{label} backward (input + weight)"),
                4.0 * macs,
                time(args.iters, || y.backward_with(&seed).map(drop))?,
            );
        }
    }
    Ok(())
}
