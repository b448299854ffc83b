//! `senet eval`, `senet predict` and `senet bench`: thin commands over the crates (eval's
//! logic is the train crate's [`evaluate_checkpoint`]).
use crate::models::ModelConfig;
use crate::nn::checkpoint;
use crate::nn::Module;
use crate::tensor::{Device, NoGradGuard, Tensor};
use crate::train::{evaluate_checkpoint, load_model, DataOptions};
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// CIFAR-10's class names and statistics: the defaults for a checkpoint without a description.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];
pub const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
pub const CIFAR10_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

/// Where `senet eval` writes its pictures and what it prints.
pub struct EvalOutput {
    /// The folder of confusion.csv, confusion.png and misclassified.png.
    pub dir: PathBuf,
    /// How many of the most confident mistakes misclassified.png shows (0: no picture).
    pub misclassified: usize,
    /// Print JSON rather than text.
    pub json: bool,
}

/// `senet eval`: prints the loss, top-1, top-5 and the per-class table (or one JSON
/// document), and writes the confusion matrix and the mistakes' picture.
pub fn eval(
    path: &Path,
    flags: &Option<Result<ModelConfig>>,
    data: &DataOptions,
    output: &EvalOutput,
    device: &str,
    batch: usize,
) -> Result<ExitCode> {
    let report = evaluate_checkpoint(path, flags, data, device, batch, output.misclassified)?;
    if output.json {
        let written = report.write_files(&output.dir)?;
        let mut doc = report.to_json();
        doc["files"] = written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .into();
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        // The figures first: a folder that cannot be written to costs the pictures only.
        print!("{}", report.evaluation.report(&report.classes));
        for p in report.write_files(&output.dir)? {
            eprintln!("wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A JSON list of 3 numbers from checkpoint metadata.
fn stats(meta: &checkpoint::Metadata, key: &str) -> Result<Option<[f32; 3]>> {
    let Some(v) = meta.get(key) else {
        return Ok(None);
    };
    let v: Vec<f32> =
        serde_json::from_str(v).with_context(|| format!("checkpoint metadata {key}={v:?}"))?;
    v.try_into().map(Some).map_err(|v: Vec<f32>| {
        anyhow!(
            "checkpoint metadata {key} has {} numbers, expected 3",
            v.len()
        )
    })
}

/// The per-channel mean or std to normalize with: the checkpoint's stored values (the ones
/// it was trained with), else the flag, else CIFAR-10's. A flag that differs from a stored
/// value is an error, not silently ignored; every value must be finite, and a std positive.
fn normalization(
    meta: &checkpoint::Metadata,
    key: &str,
    flag: Option<Vec<f32>>,
    default: [f32; 3],
) -> Result<[f32; 3]> {
    let name = format!("--{key}");
    let flag: Option<[f32; 3]> = flag
        .map(|v| {
            v.try_into()
                .map_err(|v: Vec<f32>| anyhow!("{name} takes 3 numbers, got {}", v.len()))
        })
        .transpose()?;
    let stored = stats(meta, key)?;
    let values = match (stored, flag) {
        (Some(s), Some(f)) if s != f => bail!(
            "{name} {f:?} differs from the {key} {s:?} stored in the checkpoint, which its \
             weights were trained with: drop {name} (a described checkpoint always uses its own)"
        ),
        (Some(v), _) | (None, Some(v)) => v,
        (None, None) => default,
    };
    let source = if stored.is_some() {
        format!("checkpoint metadata {key}")
    } else {
        name
    };
    if values.iter().any(|v| !v.is_finite()) {
        bail!("{source} must be finite numbers, got {values:?}");
    }
    if key == "std" && values.iter().any(|&v| v <= 0.0) {
        bail!("{source} must be positive, got {values:?}");
    }
    Ok(values)
}

/// The options of `senet predict` besides the checkpoint, the images and the device.
#[derive(Clone, Debug, Default)]
pub struct PredictOptions {
    /// A file of class names, one per line.
    pub class_names: Option<PathBuf>,
    pub mean: Option<Vec<f32>>,
    pub std: Option<Vec<f32>>,
    /// Resize images of another size to the model's.
    pub resize: bool,
    /// Print JSON Lines.
    pub json: bool,
}

/// The most images one folder given to `predict` may hold.
const MAX_FOLDER_IMAGES: usize = 1_000_000;

/// The images `predict` reads: each file as given, and the PNG/JPEG files directly inside each
/// folder, in name order (subfolders are not entered).
fn expand_images(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if !p.is_dir() {
            out.push(p.clone());
            continue;
        }
        let mut found = Vec::new();
        for entry in std::fs::read_dir(p).with_context(|| format!("reading {}", p.display()))? {
            let entry = entry.with_context(|| format!("reading {}", p.display()))?;
            let path = entry.path();
            let image = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().as_str()));
            // A link to an image counts (as a file named on the command line does).
            if image && path.is_file() {
                found.push(path);
                if found.len() > MAX_FOLDER_IMAGES {
                    bail!("{} holds more than {MAX_FOLDER_IMAGES} images", p.display());
                }
            }
        }
        if found.is_empty() {
            bail!("{} holds no PNG or JPEG image", p.display());
        }
        found.sort();
        out.extend(found);
    }
    Ok(out)
}

pub fn predict(
    path: &Path,
    images: &[PathBuf],
    flags: &Option<Result<ModelConfig>>,
    options: &PredictOptions,
    device: &str,
) -> Result<ExitCode> {
    let PredictOptions {
        class_names,
        mean,
        std,
        resize,
        json,
    } = options.clone();
    let images = expand_images(images)?;
    let device = Device::parse(device).with_context(|| format!("--device {device}"))?;
    let (mut model, meta) = load_model(path, flags, device)?;
    let names: Vec<String> = match (class_names.as_deref(), meta.get("class_names")) {
        (Some(file), _) => String::from_utf8(crate::data::files::read_regular(
            file,
            1 << 20,
            "a class-name file",
        )?)
        .with_context(|| format!("--class-names {}: not UTF-8 text", file.display()))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect(),
        (None, Some(json)) => {
            serde_json::from_str(json).context("checkpoint metadata class_names")?
        }
        (None, None) => CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
    };
    let classes = model.config().classes;
    if names.len() != classes {
        bail!(
            "{} class names for a model with {classes} classes",
            names.len()
        );
    }
    let mean = normalization(&meta, "mean", mean, CIFAR10_MEAN)?;
    let std = normalization(&meta, "std", std, CIFAR10_STD)?;
    let size: usize = match meta.get("input_size") {
        Some(s) => s
            .parse()
            .with_context(|| format!("checkpoint metadata input_size={s:?}"))?,
        None => 32,
    };
    // A size from the file sizes the input buffer: bounded like --input-size.
    if !(1..=4096).contains(&size) {
        bail!("checkpoint metadata input_size={size} is out of range: 1 to 4096");
    }
    for image_path in &images {
        // A regular file under the cap, decoded under limits on its claimed size: a FIFO would
        // block, and a header claiming 100000 x 100000 pixels would allocate 30 GB.
        let shown = image_path.display().to_string();
        let bytes = crate::data::files::read_regular(
            image_path,
            crate::data::files::MAX_IMAGE_FILE_BYTES,
            "an image",
        )
        .with_context(|| format!("cannot read image {shown}"))?;
        let img = crate::data::files::decode_image(&bytes, &shown)
            .with_context(|| format!("cannot read image {shown}"))?
            .to_rgb8();
        let img = if img.width() as usize != size || img.height() as usize != size {
            if !resize {
                bail!(
                    "{} is {}x{}, the model takes {size}x{size} images (add --resize to scale it)",
                    image_path.display(),
                    img.width(),
                    img.height()
                );
            }
            image::imageops::resize(
                &img,
                size as u32,
                size as u32,
                image::imageops::FilterType::Triangle,
            )
        } else {
            img
        };
        let mut x = vec![0f32; 3 * size * size];
        for (i, p) in img.pixels().enumerate() {
            for c in 0..3 {
                x[c * size * size + i] = (p[c] as f32 / 255.0 - mean[c]) / std[c];
            }
        }
        let _guard = NoGradGuard::new();
        let input = Tensor::from_vec(x, &[1, 3, size, size])?.to_device(device)?;
        let logits = model.forward(&input, false)?.to_vec::<f32>()?;
        if let Some(bad) = logits.iter().find(|v| !v.is_finite()) {
            bail!(
                "{}: the model's output for {} is {bad}: the checkpoint's weights are broken \
                 (a diverged run or a damaged file), so there is nothing to rank",
                path.display(),
                image_path.display()
            );
        }
        let probs = Tensor::from_vec(logits, &[1, classes])?
            .softmax(1)?
            .to_vec::<f32>()?;
        let mut order: Vec<usize> = (0..classes).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
        let top = order.iter().take(5);
        if json {
            let top: Vec<serde_json::Value> = top
                .map(|&k| serde_json::json!({ "class": names[k], "probability": probs[k] }))
                .collect();
            let line = serde_json::json!({ "path": image_path.display().to_string(), "top": top });
            println!("{line}");
        } else {
            println!("{}", image_path.display());
            for &k in top {
                println!("{} {:.4}", names[k], probs[k]);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
