//! Training from a program: write a tiny CIFAR-10-format dataset, fill in `TrainOptions`, call
//! `senet::train::train`, and read the metrics it returns. The run folder gets what
//! `senet train` writes (config.json, metrics.csv, curves.png, checkpoints). Run it with
//! `cargo run --example train_tiny`; it takes seconds.
use senet::models::{Family, ModelConfig, Preset};
use senet::train::{train, DataOptions, DatasetSpec, StopHandle, TrainOptions};
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("senet-train-tiny-{}", std::process::id()));
    write_cifar10(&dir, 12)?;

    // A ResNet-18 with the CIFAR preset at width 4 (the published network is width 64).
    let mut model = ModelConfig::new(Family::ResNet, Some(18), Preset::Cifar, 10);
    model.width = 4;
    // The default recipe (`TrainOptions::new`, what `senet train` does) with a few changes
    // for a tiny dataset: short, small batches, a gentler rate.
    let data = DataOptions::new(DatasetSpec::Cifar10, &dir);
    let options = TrainOptions {
        epochs: 5,
        batch: 20,
        lr: 0.05,
        warmup: 0.5,
        workers: 1,
        ..TrainOptions::new(model, data, dir.join("run"))
    };
    // Nobody stops this run; a clone of the handle given to another thread (or a Ctrl-C
    // handler, as `senet train` does) could, and the run would save a checkpoint first.
    let stop = StopHandle::new();
    let (rows, outcome) = train(&options, &stop)?;

    println!("epoch  train loss  train top-1  test loss  test top-1");
    for r in &rows {
        println!(
            "{:>5}  {:>10.4}  {:>10.2}%  {:>9.4}  {:>9.2}%",
            r.epoch, r.train_loss, r.train_top1, r.test_loss, r.test_top1
        );
    }
    println!("{outcome:?}; the run folder held:");
    let mut files: Vec<String> = std::fs::read_dir(&options.out)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    files.sort();
    // `.senet-lock` is the lock a run holds on its folder while it runs: not one of its results.
    files.retain(|f| !f.starts_with('.'));
    println!("  {}", files.join(", "));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Writes `dir/cifar-10-batches-bin/` in the official binary format (a label byte, then 32x32
/// red, green and blue planes, per image): `per_class` training and `per_class / 2` test images
/// per class. Class c is a flat colour picked by c plus a little noise, so even a few steps
/// learn something.
fn write_cifar10(dir: &Path, per_class: usize) -> std::io::Result<()> {
    let bin = dir.join("cifar-10-batches-bin");
    std::fs::create_dir_all(&bin)?;
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut image = |label: usize| {
        let mut record = vec![label as u8];
        for channel in 0..3 {
            let base = (label * 73 + channel * 101) % 200;
            for _ in 0..32 * 32 {
                // xorshift: a few lines of noise without a dependency.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                record.push((base + (state % 48) as usize) as u8);
            }
        }
        record
    };
    let mut train: Vec<u8> = (0..per_class * 10).flat_map(|i| image(i % 10)).collect();
    let test: Vec<u8> = (0..per_class / 2 * 10)
        .flat_map(|i| image(i % 10))
        .collect();
    // The reader wants all five training files; the images are split evenly over them.
    let per_file = train.len() / 5;
    for k in 1..=5 {
        let rest = train.split_off(per_file.min(train.len()));
        std::fs::write(bin.join(format!("data_batch_{k}.bin")), &train)?;
        train = rest;
    }
    std::fs::write(bin.join("test_batch.bin"), test)?;
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    std::fs::write(bin.join("batches.meta.txt"), names)
}
