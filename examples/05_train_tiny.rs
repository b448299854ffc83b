//! Training from a program: put a few hundred CIFAR-10 images in an image folder, fill in
//! `TrainOptions`, call `senet::train::train`, and read the metrics it returns. The run folder
//! gets what `senet train` writes (config.json, metrics.csv, curves.png, checkpoints). Run it
//! with `cargo run --release --example 05_train_tiny`; it takes well under a minute on 2 cores.
//!
//! The images are real: a subset of `../shared/data/cifar10-jpeg.tar.gz` (next to the
//! repository; another path to that archive may be given as the first argument). Without that
//! file the example trains on generated images instead, and says so.
use flate2::read::GzDecoder;
use senet::models::{Family, ModelConfig, Preset};
use senet::train::{train, DataOptions, DatasetSpec, StopHandle, TrainOptions};
// The class names, in label order: the folder names inside the archive.
use senet::commands::CIFAR10_CLASSES as CLASSES;
use std::path::{Path, PathBuf};

/// The real CIFAR-10 images as JPEG files, relative to the repository (see
/// ../shared/data/README.md).
const ARCHIVE: &str = "../shared/data/cifar10-jpeg.tar.gz";
/// Images per class: 40 x 10 classes to train on, 20 x 10 to test on.
const TRAIN_PER_CLASS: usize = 40;
const TEST_PER_CLASS: usize = 20;

fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("senet-train-tiny-{}", std::process::id()));
    // An image folder: `train/<class>/<image>` and `test/<class>/<image>`, the layout
    // `senet train --dataset imagefolder` reads (labels are the class folders, sorted).
    let images = dir.join("images");
    // The archive's place relative to the repository, or the path given as first argument.
    let (archive, shown) = match std::env::args_os().nth(1) {
        Some(path) => (PathBuf::from(&path), path.to_string_lossy().into_owned()),
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join(ARCHIVE),
            ARCHIVE.to_string(),
        ),
    };
    if archive.is_file() {
        let n = extract_subset(&archive, &images)?;
        println!("data: {n} real CIFAR-10 images from {shown}");
    } else {
        println!("data: {shown} is missing, so this run uses GENERATED images");
        println!("      (a flat colour per class plus noise), NOT CIFAR-10");
        write_generated(&images)?;
    }
    println!(
        "      {} per class to train on, {} per class to test on",
        TRAIN_PER_CLASS, TEST_PER_CLASS
    );

    // A SENetV2 (bottleneck blocks [1, 1, 1, 1], the paper's CIFAR-10 depth) with the CIFAR
    // preset at width 8; the published network is width 64, with about 64 times the
    // multiply-adds.
    let mut model = ModelConfig::new(Family::SeNetV2, Some(9), Preset::Cifar, 10);
    model.width = 8;
    let data = DataOptions::new(
        DatasetSpec::ImageFolder {
            image_size: 32,
            resize: false,
        },
        &images,
    );
    // The default recipe (`TrainOptions::new`, what `senet train` does: SGD with Nesterov
    // momentum, cosine schedule, random crop and flip, seed 0, on the CPU) with a few changes for
    // 400 images: few epochs, small batches (more steps), a short warm-up.
    let options = TrainOptions {
        epochs: 8,
        batch: 25,
        lr: 0.05,
        warmup: 0.5,
        workers: 1,
        ..TrainOptions::new(model, data, dir.join("run"))
    };
    // Nobody stops this run; a clone of the handle given to another thread (or a Ctrl-C
    // handler, as `senet train` does) could, and the run would save a checkpoint first.
    let stop = StopHandle::new();
    // The trainer logs each epoch on stderr as it goes; it returns the same metrics as values.
    let (rows, outcome) = train(&options, &stop)?;

    // On 200 test images one image is half a point of accuracy, and chance is 10%: expect a
    // model better than chance, not a good one (the full training set is 125 times larger).
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

/// Copies images `0000.jpg`.. of every class out of the archive into `out/{train,test}/<class>/`
/// (the first `TRAIN_PER_CLASS` and `TEST_PER_CLASS` by number, so always the same ones).
/// The archive is read as a stream, never unpacked whole: the folder it sits in is read-only.
fn extract_subset(archive: &Path, out: &Path) -> anyhow::Result<usize> {
    let mut tar = tar::Archive::new(GzDecoder::new(std::fs::File::open(archive)?));
    let wanted = (TRAIN_PER_CLASS + TEST_PER_CLASS) * CLASSES.len();
    let mut copied = 0;
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        // `cifar10-jpeg/<split>/<class>/NNNN.jpg`: keep the last three parts.
        let parts: Vec<&str> = path.iter().filter_map(|p| p.to_str()).collect();
        let [.., split, class, file] = parts[..] else {
            continue;
        };
        let limit = match split {
            "train" => TRAIN_PER_CLASS,
            "test" => TEST_PER_CLASS,
            _ => continue,
        };
        let number = file
            .strip_suffix(".jpg")
            .and_then(|n| n.parse::<usize>().ok());
        if number.is_some_and(|n| n < limit) {
            let target: PathBuf = out.join(split).join(class).join(file);
            std::fs::create_dir_all(target.parent().expect("a file in a folder"))?;
            entry.unpack(&target)?;
            copied += 1;
            if copied == wanted {
                break; // the rest of the archive holds nothing we want
            }
        }
    }
    anyhow::ensure!(
        copied == wanted,
        "{} held {copied} of the {wanted} images expected",
        archive.display()
    );
    Ok(copied)
}

/// Writes PNG images where class c is a flat colour picked by c plus a little noise, so even a
/// few steps learn something.
fn write_generated(out: &Path) -> anyhow::Result<()> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for (split, per_class) in [("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)] {
        for (label, class) in CLASSES.iter().enumerate() {
            let folder = out.join(split).join(class);
            std::fs::create_dir_all(&folder)?;
            for i in 0..per_class {
                let image = image::RgbImage::from_fn(32, 32, |_, _| {
                    image::Rgb(std::array::from_fn(|channel| {
                        // xorshift: a few lines of noise without a dependency.
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        ((label * 73 + channel * 101) % 200 + (state % 48) as usize) as u8
                    }))
                });
                image.save(folder.join(format!("{i:04}.png")))?;
            }
        }
    }
    Ok(())
}
