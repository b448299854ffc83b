//! Does a long run hold memory flat? Trains senetv2-9 at width 8, batch 32, for `--steps`
//! steps (default 2,000) on random data, and prints resident memory (CPU) or the bytes of
//! every GPU buffer created and those pooled (GPU) at step 100 and at the end, with their
//! ratio. A leak shows as a ratio above 1.
//!
//! `cargo bench --bench memory` (CPU), `cargo bench --bench memory -- --device gpu --steps 300`.
use anyhow::Result;
use clap::Parser;
use rand::{Rng, SeedableRng};
use senet::models::{build, ModelConfig};
use senet::nn::optim::Optimizer;
use senet::nn::Module;
use senet::tensor::Device;
use senet::Tensor;

#[derive(Parser)]
#[command(about = "Resident memory (CPU) or GPU buffer bytes over a long training run")]
struct Args {
    /// Training steps.
    #[arg(long, default_value_t = 2000)]
    steps: usize,
    /// cpu, gpu or an adapter name.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Ignored (cargo bench passes it).
    #[arg(long)]
    bench: bool,
}

/// What the device holds, in bytes: resident memory on the CPU; on a GPU, every buffer
/// created (in use or pooled) and the pooled part.
fn held(device: Device) -> Result<(u64, u64)> {
    Ok(match device {
        Device::Cpu => (senet::bench::resident_bytes().map_or(0, |(now, _)| now), 0),
        _ => device.gpu()?.buffer_bytes(),
    })
}

fn main() -> Result<()> {
    senet::keep_freed_memory();
    let args = Args::parse();
    let device = Device::parse(&args.device)?;
    let mut config = ModelConfig::new("senetv2".parse()?, Some(9), "paper".parse()?, 10);
    config.width = 8;
    let mut model = build(&config, 0)?;
    model.to_device(device)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let x = Tensor::randn(&[32, 3, 32, 32], &mut rng).to_device(device)?;
    let labels: Vec<u32> = (0..32).map(|_| rng.random_range(0..10)).collect();
    let mut opt = Optimizer::sgd(0.9, true, 5e-4);
    println!(
        "{} (width 8), batch 32, {} steps on {}",
        config.name(),
        args.steps,
        device.describe()
    );
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut at_100 = None;
    for step in 1..=args.steps {
        let (grads, loss) = {
            let loss = model.forward(&x, true)?.cross_entropy(&labels, 0.0)?;
            (loss.backward()?, loss.detach())
        };
        opt.step(&mut model, &grads, 0.01)?;
        loss.item()?;
        if step == 100.min(args.steps) || step == args.steps {
            let (held_bytes, pooled) = held(device)?;
            let what = if device == Device::Cpu {
                format!("resident {:.1} MiB", mib(held_bytes))
            } else {
                format!(
                    "GPU buffers {:.1} MiB ({:.1} MiB of them pooled)",
                    mib(held_bytes),
                    mib(pooled)
                )
            };
            println!("step {step}: {what}");
            if step == 100.min(args.steps) && at_100.is_none() {
                at_100 = Some(held_bytes);
            } else if let Some(first) = at_100 {
                println!(
                    "end / step 100: {:.3} ({:+.1}%)",
                    held_bytes as f64 / first as f64,
                    100.0 * (held_bytes as f64 / first as f64 - 1.0)
                );
            }
        }
    }
    Ok(())
}
