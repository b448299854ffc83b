//! End to end: the real `senet` binary on files these tests write (checkpoints, PNG/JPEG
//! images, a tiny CIFAR-10 binary folder), its output format, and its errors.
//!
//! Expected numbers come from the same model run in this process, so the tests check what the
//! command adds: reading the checkpoint and its metadata, decoding and normalizing images,
//! the softmax and ranking, the dataset, and the printing.
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use senet::models::{build, Model, ModelConfig};
use senet::nn::checkpoint::{self, Metadata};
use senet::nn::Module;
use senet::Tensor;
use std::path::{Path, PathBuf};

#[path = "fixtures/support.rs"]
mod support;
use support::*;

/// resnet-18, preset cifar, width 4: small enough to run in milliseconds.
fn config(classes: usize) -> ModelConfig {
    let mut c = ModelConfig::new(
        "resnet".parse().unwrap(),
        Some(18),
        "cifar".parse().unwrap(),
        classes,
    );
    c.width = 4;
    c
}

/// The `--model ...` flags of [`config`].
fn model_flags(classes: usize) -> Vec<String> {
    let classes = classes.to_string();
    [
        "--model",
        "resnet",
        "--depth",
        "18",
        "--preset",
        "cifar",
        "--width",
        "4",
        "--classes",
        &classes,
    ]
    .map(String::from)
    .to_vec()
}

/// Class names of the predict checkpoint: not CIFAR-10's (so the metadata must be read), one
/// with a space.
const NAMES: [&str; 7] = [
    "alpha",
    "beta",
    "gamma",
    "red panda",
    "epsilon",
    "zeta",
    "eta",
];
/// Normalization of the predict checkpoint: not CIFAR-10's, so the metadata must be used.
const MEAN: [f32; 3] = [0.5, 0.4, 0.3];
const STD: [f32; 3] = [0.2, 0.25, 0.3];

/// A model with non-default batch-norm statistics (a few training-mode passes on random data),
/// so evaluation mode differs from training mode.
fn model(classes: usize) -> Model {
    let mut m = build(&config(classes), 1).unwrap();
    let mut rng = StdRng::seed_from_u64(2);
    for _ in 0..2 {
        let x = Tensor::randn(&[4, 3, 32, 32], &mut rng);
        senet::no_grad(|| m.forward(&x, true).unwrap());
    }
    m
}

/// MODELS.md's metadata keys, as `senet train` writes them.
fn metadata(c: &ModelConfig, names: &[&str], mean: [f32; 3], std: [f32; 3]) -> Metadata {
    let mut m: Metadata = c
        .entries()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    m.insert("class_names".into(), serde_json::to_string(names).unwrap());
    m.insert("mean".into(), serde_json::to_string(&mean).unwrap());
    m.insert("std".into(), serde_json::to_string(&std).unwrap());
    m.insert("input_size".into(), "32".into());
    m
}

/// A 32x32 (or `w` x `h`) image of gradients plus noise.
fn picture(w: u32, h: u32, seed: u64) -> image::RgbImage {
    let mut rng = StdRng::seed_from_u64(seed);
    image::RgbImage::from_fn(w, h, |x, y| {
        let mut n = |base: u32| (base as i32 + rng.random_range(-30..=30)).clamp(0, 255) as u8;
        image::Rgb([n(x * 7), n(y * 7), n((x + y) * 3 + 40)])
    })
}

/// Softmax probabilities of `model` for the image at `path` (decoded as `senet predict` does:
/// the `image` crate, RGB8) normalized with `mean`/`std`.
fn probabilities(model: &mut Model, path: &Path, mean: [f32; 3], std: [f32; 3]) -> Vec<f64> {
    let img = image::open(path).unwrap().to_rgb8();
    let mut x = vec![0f32; 3 * 32 * 32];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            x[c * 1024 + i] = (p[c] as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    let x = Tensor::from_vec(x, &[1, 3, 32, 32]).unwrap();
    let logits: Vec<f32> = senet::no_grad(|| model.forward(&x, false).unwrap().to_vec().unwrap());
    softmax(&logits)
}

fn softmax(logits: &[f32]) -> Vec<f64> {
    let m = logits.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
    let e: Vec<f64> = logits.iter().map(|&v| (v as f64 - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// Checks one image's predictions: 5 rows, descending, summing to at most 1, and equal (to the
/// printed 4 digits) to `expected`'s five largest under `names`.
fn check_predictions(rows: &[(String, f64)], expected: &[f64], names: &[&str]) {
    assert_eq!(rows.len(), 5, "{rows:?}");
    for w in rows.windows(2) {
        assert!(w[0].1 >= w[1].1, "not most likely first: {rows:?}");
    }
    // Each printed value is off by at most half a unit of the 4th digit.
    let sum: f64 = rows.iter().map(|r| r.1).sum();
    assert!(
        sum <= 1.0 + 5.0 * 0.5e-4,
        "probabilities sum to {sum}: {rows:?}"
    );
    let mut order: Vec<usize> = (0..expected.len()).collect();
    order.sort_by(|&a, &b| expected[b].total_cmp(&expected[a]));
    for ((name, p), &k) in rows.iter().zip(&order) {
        assert_eq!(name, names[k], "{rows:?} vs {expected:?}");
        // Rounding to 4 digits, plus f32 differences between two runs of the same model.
        assert!(
            (p - expected[k]).abs() <= 0.5e-4 + 1e-5,
            "{name}: printed {p}, expected {:.6}",
            expected[k]
        );
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// The predict checkpoint: 7 classes, NAMES, MEAN/STD in its metadata.
fn predict_checkpoint(dir: &Path) -> (Model, PathBuf) {
    let mut m = model(NAMES.len());
    let path = dir.join("model.safetensors");
    checkpoint::save(
        &mut m,
        &metadata(&config(NAMES.len()), &NAMES, MEAN, STD),
        &path,
    )
    .unwrap();
    (m, path)
}

#[test]
fn summary_prints_the_papers_parameters_and_flops() {
    let out = success(&senet([
        "summary",
        "--model",
        "senetv2",
        "--depth",
        "9",
        "--preset",
        "paper",
        "--classes",
        "10",
    ]));
    assert!(out.contains("9,443,050"), "{out}");
    assert!(out.contains("62.7"), "{out}");
}

#[test]
fn predict_png_and_jpeg_with_the_checkpoints_description() {
    let dir = scratch("cli-predict");
    let (mut model, ckpt) = predict_checkpoint(&dir);
    let png = dir.join("one.png");
    let jpg = dir.join("two.jpg");
    picture(32, 32, 1).save(&png).unwrap();
    picture(32, 32, 2).save(&jpg).unwrap();

    let mut args = strings(&["predict", "--device", "cpu", "--checkpoint"]);
    args.extend([path_str(&ckpt), path_str(&png), path_str(&jpg)]);
    let out = success(&senet(&args));
    let preds = parse_predictions(&out);
    assert_eq!(preds.len(), 2, "{out}");
    for ((path_line, rows), image) in preds.iter().zip([&png, &jpg]) {
        assert_eq!(path_line, &path_str(image));
        // The JPEG is compared through the same decoder, so lossy compression does not matter.
        check_predictions(rows, &probabilities(&mut model, image, MEAN, STD), &NAMES);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

const CIFAR10_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
const CIFAR10_STD: [f32; 3] = [0.2470, 0.2435, 0.2616];

/// A 10-class checkpoint without metadata (as PyTorch exports), an image and a class-name file.
fn bare_checkpoint(dir: &Path) -> (Model, PathBuf, PathBuf, PathBuf) {
    let mut model = model(10);
    let ckpt = dir.join("bare.safetensors");
    checkpoint::save(&mut model, &Metadata::new(), &ckpt).unwrap();
    let png = dir.join("image.png");
    picture(32, 32, 3).save(&png).unwrap();
    let names_file = dir.join("names.txt");
    std::fs::write(&names_file, THINGS.join("\n") + "\n").unwrap();
    (model, ckpt, png, names_file)
}

const THINGS: [&str; 10] = [
    "thing0", "thing1", "thing2", "thing3", "thing4", "thing5", "thing6", "thing7", "thing8",
    "thing9",
];

#[test]
fn predict_without_metadata_takes_model_flags_and_class_names() {
    let dir = scratch("cli-predict-flags");
    let (mut model, ckpt, png, names_file) = bare_checkpoint(&dir);
    // CIFAR-10's statistics are the default for a file without them.
    let expected = probabilities(&mut model, &png, CIFAR10_MEAN, CIFAR10_STD);

    let mut args = strings(&["predict", "--device", "cpu", "--checkpoint"]);
    args.push(path_str(&ckpt));
    args.extend(model_flags(10));
    args.push("--class-names".into());
    args.extend([path_str(&names_file), path_str(&png)]);
    let out = success(&senet(&args));
    let preds = parse_predictions(&out);
    assert_eq!(preds.len(), 1, "{out}");
    check_predictions(&preds[0].1, &expected, &THINGS);

    // Without --class-names: CIFAR-10's names.
    let mut args = strings(&["predict", "--device", "cpu", "--checkpoint"]);
    args.push(path_str(&ckpt));
    args.extend(model_flags(10));
    args.push(path_str(&png));
    let out = success(&senet(&args));
    check_predictions(&parse_predictions(&out)[0].1, &expected, &CIFAR10_CLASSES);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn predict_mean_and_std_flags() {
    let dir = scratch("cli-predict-stats");
    let (mut bare, bare_ckpt, png, _) = bare_checkpoint(&dir);
    let (mut described, described_ckpt) = predict_checkpoint(&dir);
    let stats = strings(&["--mean", "0.6,0.5,0.4", "--std", "0.3,0.2,0.25"]);
    let (mean, std) = ([0.6, 0.5, 0.4], [0.3, 0.2, 0.25]);

    // A file without statistics.
    let mut args = strings(&["predict", "--device", "cpu", "--checkpoint"]);
    args.push(path_str(&bare_ckpt));
    args.extend(model_flags(10));
    args.extend(stats.clone());
    args.push(path_str(&png));
    let out = success(&senet(&args));
    let expected = probabilities(&mut bare, &png, mean, std);
    check_predictions(&parse_predictions(&out)[0].1, &expected, &CIFAR10_CLASSES);

    // A described checkpoint is normalized with its own statistics (metadata, else the
    // flags, else CIFAR-10's): flags that differ from them are an error, never ignored...
    let mut args = strings(&["predict", "--device", "cpu", "--checkpoint"]);
    args.push(path_str(&described_ckpt));
    args.extend(stats);
    args.push(path_str(&png));
    let err = failure(&senet(&args));
    assert!(
        err.contains("--mean") && err.contains("stored in the checkpoint"),
        "{err}"
    );
    // ... and flags equal to them are accepted.
    let mut args = strings(&["predict", "--device", "cpu", "--checkpoint"]);
    args.push(path_str(&described_ckpt));
    args.extend(strings(&["--mean", "0.5,0.4,0.3", "--std", "0.2,0.25,0.3"]));
    args.push(path_str(&png));
    let out = success(&senet(&args));
    let expected = probabilities(&mut described, &png, MEAN, STD);
    check_predictions(&parse_predictions(&out)[0].1, &expected, &NAMES);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn predict_refuses_nonsense_normalization() {
    let dir = scratch("cli-predict-bad-stats");
    let (_, bare_ckpt, png, _) = bare_checkpoint(&dir);
    for (flag, value, message) in [
        ("--mean", "NaN,0.5,0.5", "--mean must be finite"),
        ("--mean", "0.5,inf,0.5", "--mean must be finite"),
        ("--std", "0.2,0,0.2", "--std must be positive"),
        ("--std", "0.2,-1,0.2", "--std must be positive"),
        ("--std", "0.2,0.2", "--std takes 3 numbers"),
    ] {
        let mut args = strings(&["predict", "--device", "cpu", "--checkpoint"]);
        args.push(path_str(&bare_ckpt));
        args.extend(model_flags(10));
        args.push(format!("{flag}={value}"));
        args.push(path_str(&png));
        let err = failure(&senet(&args));
        assert!(err.contains(message), "{flag} {value}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sets every value of the final dense layer's weight and bias to `value`: NaN gives NaN
/// logits, 0 gives the same logit for every class.
fn set_fc(m: &mut Model, value: f32) {
    m.visit("", &mut |name, slot| {
        if let senet::nn::Slot::Param(t) = slot {
            if name.starts_with("fc.") {
                *t = Tensor::from_vec(vec![value; t.numel()], t.shape()).unwrap();
            }
        }
    });
}

#[test]
fn predict_refuses_a_checkpoint_whose_outputs_are_not_finite() {
    let dir = scratch("cli-predict-nan");
    let mut m = model(NAMES.len());
    set_fc(&mut m, f32::NAN);
    let ckpt = dir.join("nan.safetensors");
    checkpoint::save(
        &mut m,
        &metadata(&config(NAMES.len()), &NAMES, MEAN, STD),
        &ckpt,
    )
    .unwrap();
    let png = dir.join("one.png");
    picture(32, 32, 1).save(&png).unwrap();
    let mut args = strings(&["predict", "--device", "cpu", "--checkpoint"]);
    args.extend([path_str(&ckpt), path_str(&png)]);
    let err = failure(&senet(&args));
    assert!(
        err.contains(&path_str(&ckpt)) && err.contains("NaN"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn predict_refuses_a_wrong_size_image_unless_resize() {
    let dir = scratch("cli-predict-size");
    let (_, ckpt) = predict_checkpoint(&dir);
    let good = dir.join("good.png");
    let big = dir.join("wide.png");
    picture(32, 32, 4).save(&good).unwrap();
    picture(40, 24, 5).save(&big).unwrap();

    let mut args = strings(&["predict", "--device", "cpu", "--checkpoint"]);
    args.extend([path_str(&ckpt), path_str(&good), path_str(&big)]);
    let err = failure(&senet(&args));
    for part in [path_str(&big).as_str(), "40x24", "32x32", "--resize"] {
        assert!(err.contains(part), "{part:?} not in {err}");
    }

    args.push("--resize".into());
    let out = success(&senet(&args));
    let preds = parse_predictions(&out);
    assert_eq!(preds.len(), 2, "{out}");
    assert_eq!(preds[1].0, path_str(&big));
    for (_, rows) in &preds {
        assert_eq!(rows.len(), 5);
        assert!(rows.windows(2).all(|w| w[0].1 >= w[1].1), "{out}");
        assert!(
            rows.iter().map(|r| r.1).sum::<f64>() <= 1.0 + 2.5e-4,
            "{out}"
        );
        assert!(rows.iter().all(|r| NAMES.contains(&r.0.as_str())), "{out}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn predict_names_an_unreadable_image() {
    let dir = scratch("cli-predict-unreadable");
    let (_, ckpt) = predict_checkpoint(&dir);
    let broken = dir.join("broken.png");
    std::fs::write(&broken, b"this is not a PNG file").unwrap();
    let missing = dir.join("missing.jpg");
    for image in [&broken, &missing] {
        let mut args = strings(&["predict", "--device", "cpu", "--checkpoint"]);
        args.extend([path_str(&ckpt), path_str(image)]);
        let err = failure(&senet(&args));
        assert!(err.contains(&path_str(image)), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn eval_on_a_tiny_cifar10_folder() {
    let dir = scratch("cli-eval");
    let mut model = model(10);
    let ckpt = dir.join("model.safetensors");
    let (cifar_mean, cifar_std) = (CIFAR10_MEAN, CIFAR10_STD);
    checkpoint::save(
        &mut model,
        &metadata(&config(10), &CIFAR10_CLASSES, cifar_mean, cifar_std),
        &ckpt,
    )
    .unwrap();

    // 12 test images with labels 0..9, 0, 1 (classes 0 and 1 twice); 2 training images.
    let mut rng = StdRng::seed_from_u64(9);
    let mut pixels = |n: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| (0..3072).map(|_| rng.random()).collect())
            .collect()
    };
    let test_pixels = pixels(12);
    let labels: Vec<u8> = (0..12).map(|i| (i % 10) as u8).collect();
    let test: Vec<Vec<u8>> = test_pixels
        .iter()
        .zip(&labels)
        .map(|(p, &l)| record(l, p))
        .collect();
    let train: Vec<Vec<u8>> = pixels(2).iter().map(|p| record(3, p)).collect();
    write_cifar10(&dir, &train, &test);

    // Expected, from the same model in this process (CIFAR-10 normalization).
    let mut x = Vec::with_capacity(12 * 3072);
    for p in &test_pixels {
        for (i, &v) in p.iter().enumerate() {
            let c = i / 1024;
            x.push((v as f32 / 255.0 - cifar_mean[c]) / cifar_std[c]);
        }
    }
    let x = Tensor::from_vec(x, &[12, 3, 32, 32]).unwrap();
    let logits: Vec<f32> = senet::no_grad(|| model.forward(&x, false).unwrap().to_vec().unwrap());
    let (mut loss, mut top1, mut top5) = (0.0, 0, 0);
    let mut per_class = [(0, 0); 10];
    for (row, &l) in logits.chunks(10).zip(&labels) {
        let p = softmax(row);
        loss -= p[l as usize].ln();
        let higher = row.iter().filter(|&&v| v > row[l as usize]).count();
        top1 += (higher == 0) as usize;
        top5 += (higher < 5) as usize;
        per_class[l as usize].0 += (higher == 0) as usize;
        per_class[l as usize].1 += 1;
    }
    loss /= 12.0;

    let mut args = strings(&[
        "eval",
        "--device",
        "cpu",
        "--batch",
        "5",
        "--dataset",
        "cifar10",
        "--checkpoint",
    ]);
    let pictures = dir.join("eval");
    args.extend([path_str(&ckpt), "--data".into(), path_str(&dir)]);
    args.extend(["--out".into(), path_str(&pictures)]);
    let out = success(&senet(&args));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3 + 1 + 10, "{out}");
    let printed: f64 = lines[0]
        .strip_prefix("loss: ")
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    assert_eq!(lines[0], format!("loss: {printed:.4}"), "4 digits");
    assert!(
        (printed - loss).abs() <= 0.5e-4 + 1e-5,
        "loss {printed} vs {loss:.6}"
    );
    assert_eq!(
        lines[1],
        format!("top-1: {:.2}%", 100.0 * top1 as f64 / 12.0)
    );
    assert_eq!(
        lines[2],
        format!("top-5: {:.2}%", 100.0 * top5 as f64 / 12.0)
    );
    assert_eq!(
        lines[3].split_whitespace().collect::<Vec<_>>(),
        ["class", "correct", "images", "accuracy"]
    );
    for ((line, name), (correct, total)) in lines[4..].iter().zip(CIFAR10_CLASSES).zip(per_class) {
        let accuracy = format!("{:.2}%", 100.0 * correct as f64 / total as f64);
        assert_eq!(
            line.split_whitespace().collect::<Vec<_>>(),
            [
                name.to_string(),
                correct.to_string(),
                total.to_string(),
                accuracy
            ],
            "{out}"
        );
    }
    check_confusion_and_json(&args, &pictures, &logits, &labels, (loss, top1, top5));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `confusion.csv` (true class per row, predicted per column, a tie going against the label
/// as in top-1), `confusion.png`, and `--json` with `--misclassified` of the same evaluation.
fn check_confusion_and_json(
    args: &[String],
    pictures: &Path,
    logits: &[f32],
    labels: &[u8],
    (loss, top1, top5): (f64, usize, usize),
) {
    let mut counts = [[0u64; 10]; 10];
    let mut wrong = 0;
    for (row, &l) in logits.chunks(10).zip(labels) {
        let max = row.iter().copied().fold(f32::MIN, f32::max);
        let ties: Vec<usize> = (0..10).filter(|&k| row[k] == max).collect();
        let predicted = *ties.iter().find(|&&k| k != l as usize).unwrap_or(&ties[0]);
        counts[l as usize][predicted] += 1;
        wrong += usize::from(predicted != l as usize);
    }
    let csv = std::fs::read_to_string(pictures.join("confusion.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("true \\ predicted,{}", CIFAR10_CLASSES.join(","))
    );
    for (name, row) in CIFAR10_CLASSES.iter().zip(counts) {
        let cells: Vec<String> = row.iter().map(u64::to_string).collect();
        assert_eq!(lines.next().unwrap(), format!("{name},{}", cells.join(",")));
    }
    assert_eq!(lines.next(), None);
    let png = image::open(pictures.join("confusion.png")).unwrap();
    assert!(png.width() >= 200 && png.height() >= 200);

    // The same figures as one JSON document, and the mistakes' picture.
    let mut json_args = args.to_vec();
    json_args.extend(strings(&["--json", "--misclassified", "3"]));
    let doc: serde_json::Value = serde_json::from_str(&success(&senet(&json_args))).unwrap();
    assert!((doc["loss"].as_f64().unwrap() - loss).abs() < 1e-5, "{doc}");
    assert_eq!(doc["top1"].as_f64().unwrap(), 100.0 * top1 as f64 / 12.0);
    assert_eq!(doc["top5"].as_f64().unwrap(), 100.0 * top5 as f64 / 12.0);
    assert_eq!(doc["images"], 12);
    assert_eq!(doc["dataset"], "cifar10");
    assert!(doc["checkpoint"]
        .as_str()
        .unwrap()
        .ends_with("model.safetensors"));
    let per_class = doc["per_class"].as_array().unwrap();
    assert_eq!(per_class.len(), 10);
    for (entry, (name, row)) in per_class.iter().zip(CIFAR10_CLASSES.iter().zip(counts)) {
        let images: u64 = row.iter().sum();
        assert_eq!(entry["class"], *name);
        assert_eq!(entry["images"], images);
    }
    let grid = image::open(pictures.join("misclassified.png")).unwrap();
    assert!(wrong >= 3, "the random model gets at least 3 of 12 wrong");
    assert!(grid.width() >= 3 * 64, "three tiles: {}", grid.width());
}

/// A tiny CIFAR-10 binary folder (4 random test images, labels 0-3; 2 training images) and
/// the `senet eval` arguments for `ckpt` on it.
fn tiny_eval(dir: &Path, ckpt: &Path) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(5);
    let mut image = || -> Vec<u8> { (0..3072).map(|_| rng.random()).collect() };
    let test: Vec<Vec<u8>> = (0..4).map(|l| record(l, &image())).collect();
    let train: Vec<Vec<u8>> = (0..2).map(|_| record(3, &image())).collect();
    write_cifar10(dir, &train, &test);
    let mut args = strings(&[
        "eval",
        "--device",
        "cpu",
        "--dataset",
        "cifar10",
        "--checkpoint",
    ]);
    args.extend([path_str(ckpt), "--data".into(), path_str(dir)]);
    args.extend(["--out".into(), path_str(&dir.join("eval"))]);
    args
}

#[test]
fn eval_cannot_be_fooled_by_broken_outputs_or_other_classes() {
    let dir = scratch("cli-eval-fooled");
    let ckpt = dir.join("model.safetensors");
    let save = |m: &mut Model, names: &[&str]| {
        checkpoint::save(
            m,
            &metadata(&config(10), names, CIFAR10_MEAN, CIFAR10_STD),
            &ckpt,
        )
        .unwrap()
    };
    let args = tiny_eval(&dir, &ckpt);

    // NaN outputs: an error naming the checkpoint, not a perfect top-1.
    let mut m = model(10);
    set_fc(&mut m, f32::NAN);
    save(&mut m, &CIFAR10_CLASSES);
    let err = failure(&senet(&args));
    assert!(
        err.contains(&path_str(&ckpt)) && err.contains("NaN"),
        "{err}"
    );

    // The same output for every class: ties never count for the label, so top-1 is 0.
    set_fc(&mut m, 0.0);
    save(&mut m, &CIFAR10_CLASSES);
    let out = success(&senet(&args));
    assert!(
        out.contains("top-1: 0.00%") && out.contains("top-5: 0.00%"),
        "{out}"
    );

    // Ten classes, but not the dataset's.
    save(&mut model(10), &THINGS);
    let err = failure(&senet(&args));
    assert!(err.contains("thing0") && err.contains("airplane"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sizes_from_flags_and_checkpoints_are_bounded() {
    let dir = scratch("cli-bounds");
    let png = dir.join("image.png");
    picture(32, 32, 6).save(&png).unwrap();
    // A small model's tensors under metadata that claims width 1000000: refused before the
    // claimed model is built.
    let huge = dir.join("huge.safetensors");
    let mut meta = metadata(&config(10), &CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD);
    meta.insert("width".into(), "1000000".into());
    checkpoint::save(&mut model(10), &meta, &huge).unwrap();
    // Each within its cap, together a model of tens of GB: refused before it is built.
    let giant = dir.join("giant.safetensors");
    let mut meta = metadata(&config(10), &CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD);
    for (k, v) in [("depth", "101"), ("width", "1024"), ("classes", "100000")] {
        meta.insert(k.into(), v.into());
    }
    checkpoint::save(&mut model(10), &meta, &giant).unwrap();
    // And one whose metadata claims 4294967296 x 4294967296 inputs.
    let wide = dir.join("wide.safetensors");
    let mut meta = metadata(&config(10), &CIFAR10_CLASSES, CIFAR10_MEAN, CIFAR10_STD);
    meta.insert("input_size".into(), "4294967296".into());
    checkpoint::save(&mut model(10), &meta, &wide).unwrap();
    // A good checkpoint, and a FIFO named like an image (it would block a reader forever).
    let (_, good) = predict_checkpoint(&dir);
    let fifo = dir.join("pipe.png");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            [
                strings(&["predict", "--device", "cpu", "--checkpoint"]),
                vec![path_str(&giant), path_str(&png)],
            ]
            .concat(),
            strings(&["million parameters", "not a checkpoint of that model"]),
        ),
        (
            [
                strings(&["predict", "--device", "cpu", "--checkpoint"]),
                vec![path_str(&wide), path_str(&png)],
            ]
            .concat(),
            strings(&["input_size=4294967296", "1 to 4096"]),
        ),
        (
            [
                strings(&["predict", "--device", "cpu", "--checkpoint"]),
                vec![path_str(&good), path_str(&fifo)],
            ]
            .concat(),
            strings(&["pipe.png", "not a regular file"]),
        ),
        (
            strings(&[
                "summary",
                "--model",
                "senetv2",
                "--depth",
                "9",
                "--input-size",
                "4294967296",
            ]),
            strings(&["--input-size", "1 to 4096"]),
        ),
        (
            strings(&[
                "summary", "--model", "senetv2", "--depth", "9", "--width", "1000000",
            ]),
            strings(&["--width", "1 to 1024"]),
        ),
        (
            strings(&[
                "bench",
                "--model",
                "senetv2",
                "--depth",
                "9",
                "--batch",
                "65536",
                "--input-size",
                "4096",
            ]),
            strings(&["--batch 65536", "cap"]),
        ),
        (
            [
                strings(&["predict", "--device", "cpu", "--checkpoint"]),
                vec![path_str(&huge), path_str(&png)],
            ]
            .concat(),
            strings(&["width must be 1 to 1024", "1000000"]),
        ),
    ];
    for (args, parts) in cases {
        fails_naming(&args, &parts);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn gpu_kernels_are_chosen_by_flag_or_variable_and_a_typo_is_refused() {
    let run = |flag: Option<&str>, var: Option<&str>| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_senet"));
        if let Some(k) = flag {
            c.args(["--gpu-kernels", k]);
        }
        c.arg("devices").env_remove("SENET_GPU_KERNELS");
        if let Some(v) = var {
            c.env("SENET_GPU_KERNELS", v);
        }
        c.output().unwrap()
    };
    let text = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).to_string();
    let default = run(None, None);
    if !text(&default).contains(" runs ") {
        assert!(
            !std::env::var("CI").is_ok_and(|v| v == "true"),
            "CI has lavapipe: {}",
            text(&default)
        );
        eprintln!("skipped: no GPU adapter");
        return;
    }
    assert!(
        text(&default).contains("runs the tuned kernels"),
        "{}",
        text(&default)
    );
    let plain = run(Some("plain"), None);
    assert!(
        text(&plain).contains("runs the plain kernels"),
        "{}",
        text(&plain)
    );
    let plain = run(None, Some("plain"));
    assert!(
        text(&plain).contains("runs the plain kernels"),
        "{}",
        text(&plain)
    );
    // The flag wins over the variable.
    let tuned = run(Some("tuned"), Some("plain"));
    assert!(
        text(&tuned).contains("runs the tuned kernels"),
        "{}",
        text(&tuned)
    );
    let typo = run(None, Some("Plain"));
    assert!(!typo.status.success());
    let err = String::from_utf8_lossy(&typo.stderr);
    assert!(err.contains("SENET_GPU_KERNELS must be"), "{err}");
    let typo = run(Some("fast"), None);
    assert!(!typo.status.success());
    assert!(String::from_utf8_lossy(&typo.stderr).contains("possible values"));
}

#[test]
fn no_runtime_folder_outlives_the_program() {
    let tmp = scratch("cli-runtime");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_senet"))
            .args(args)
            .env_remove("XDG_RUNTIME_DIR")
            .env("TMPDIR", &tmp)
            .output()
            .unwrap()
    };
    // One that a killed run left (pid 0 is never a user process's) is removed at the next start.
    std::fs::create_dir_all(tmp.join("senet-runtime-0")).unwrap();
    assert!(run(&["summary", "--model", "resnet", "--depth", "18"])
        .status
        .success());
    assert!(!run(&["summary", "--model", "nope", "--depth", "18"])
        .status
        .success());
    assert!(!run(&["summary", "--bogus"]).status.success());
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn bad_flags_and_files_are_clear_errors() {
    let dir = scratch("cli-errors");
    let mut bare = model(10);
    let bare_path = dir.join("bare.safetensors");
    checkpoint::save(&mut bare, &Metadata::new(), &bare_path).unwrap();
    let (_, seven) = predict_checkpoint(&dir);
    let png = dir.join("image.png");
    picture(32, 32, 6).save(&png).unwrap();
    let missing = dir.join("nope.safetensors");
    write_cifar10(&dir, &[record(0, &[0; 3072])], &[record(0, &[0; 3072])]);
    let data = path_str(&dir);

    // (arguments, parts the message must contain)
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        (
            strings(&["summary", "--model", "resnext", "--depth", "18"]),
            strings(&["resnext", "bottleneck", "18"]),
        ),
        (
            strings(&["summary", "--model", "senetv3", "--depth", "9"]),
            strings(&["senetv3", "senetv2"]),
        ),
        (
            strings(&["summary", "--model", "resnet", "--depth", "19"]),
            strings(&["19", "18, 26"]),
        ),
        (
            strings(&["summary", "--model", "resnet"]),
            strings(&["depth"]),
        ),
        (
            strings(&[
                "summary", "--model", "senetv2", "--depth", "9", "--preset", "keras",
            ]),
            strings(&["--preset", "keras", "paper"]),
        ),
        (strings(&["summary", "--depth", "9"]), strings(&["--model"])),
        (
            strings(&["summary", "--model", "resnet", "--depth", "18", "--bogus"]),
            strings(&["--bogus"]),
        ),
        (
            [
                strings(&["predict", "--device", "cpu", "--checkpoint"]),
                vec![path_str(&missing), path_str(&png)],
            ]
            .concat(),
            vec![path_str(&missing)],
        ),
        (
            [
                strings(&["eval", "--device", "cpu", "--out", "/tmp", "--data"]),
                vec![data.clone(), "--checkpoint".into(), path_str(&missing)],
            ]
            .concat(),
            vec![path_str(&missing)],
        ),
        (
            [
                strings(&["predict", "--device", "cpu", "--checkpoint"]),
                vec![path_str(&bare_path), path_str(&png)],
            ]
            .concat(),
            vec![path_str(&bare_path), "--model".into()],
        ),
        (
            [
                strings(&["eval", "--device", "cpu", "--out", "/tmp", "--data"]),
                vec![data.clone(), "--checkpoint".into(), path_str(&bare_path)],
            ]
            .concat(),
            vec![path_str(&bare_path), "--model".into()],
        ),
        // The flags describe another model than the file holds: name the file and a tensor.
        (
            [
                strings(&["predict", "--device", "cpu", "--checkpoint"]),
                vec![path_str(&bare_path)],
                strings(&[
                    "--model", "resnet", "--depth", "18", "--preset", "cifar", "--width", "8",
                ]),
                vec![path_str(&png)],
            ]
            .concat(),
            vec![path_str(&bare_path), "conv1.weight".into()],
        ),
        // A 7-class model on CIFAR-10.
        (
            [
                strings(&["eval", "--device", "cpu", "--out", "/tmp", "--data"]),
                vec![data.clone(), "--checkpoint".into(), path_str(&seven)],
            ]
            .concat(),
            strings(&["7 classes", "10"]),
        ),
        (
            [
                strings(&[
                    "predict",
                    "--device",
                    "cpu",
                    "--mean",
                    "0.5,0.5",
                    "--checkpoint",
                ]),
                vec![path_str(&seven), path_str(&png)],
            ]
            .concat(),
            strings(&["--mean"]),
        ),
    ];
    for (args, parts) in cases {
        fails_naming(&args, &parts);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn train_stops_at_max_steps_and_resumes_to_the_end() {
    let dir = scratch("cli-train");
    // 4 training images per batch file (20 in all), 10 test images.
    let mut rng = StdRng::seed_from_u64(11);
    let mut image =
        |label: u8| record(label, &(0..3072).map(|_| rng.random()).collect::<Vec<u8>>());
    let train: Vec<Vec<u8>> = (0..4).map(|i| image(i as u8)).collect();
    let test: Vec<Vec<u8>> = (0..10).map(|i| image(i as u8)).collect();
    write_cifar10(&dir, &train, &test);
    let out = dir.join("run");
    let mut args = strings(&["train", "--device", "cpu", "--batch", "5"]);
    args.extend(model_flags(10));
    args.extend([
        "--data".into(),
        path_str(&dir),
        "--out".into(),
        path_str(&out),
    ]);

    let o = senet(
        [
            args.clone(),
            strings(&["--epochs", "1", "--max-steps", "2"]),
        ]
        .concat(),
    );
    success(&o);
    let err = stderr(&o);
    assert!(err.contains("--max-steps reached at step 2"), "{err}");
    assert!(out.join("last.safetensors").exists() && !out.join("metrics.csv").exists());

    let o = senet([args.clone(), strings(&["--epochs", "1", "--resume"])].concat());
    success(&o);
    let err = stderr(&o);
    assert!(
        err.contains("resuming") && err.contains("Finished after epoch 1"),
        "{err}"
    );
    for f in [
        "config.json",
        "metrics.csv",
        "curves.png",
        "best.safetensors",
    ] {
        assert!(out.join(f).exists(), "{f} missing: {err}");
    }

    let err = failure(&senet([args, strings(&["--epochs", "0"])].concat()));
    assert!(
        err.contains("--epochs") && err.contains("1 to 100000"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The `senet graph` flags of a tiny senetv2-9 (width 4, batch 2), writing to `out`.
fn graph_args(out: &Path) -> Vec<String> {
    let mut args = strings(&[
        "graph", "--model", "senetv2", "--depth", "9", "--width", "4", "--batch", "2",
    ]);
    args.extend(["--out".into(), path_str(out)]);
    args
}

/// `senet graph` with PATH set to `path` (to hide or show Graphviz's `dot`).
fn senet_with_path(args: &[String], path: &std::ffi::OsStr) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_senet"))
        .args(args)
        .env("RAYON_NUM_THREADS", "1")
        .env("PATH", path)
        .output()
        .unwrap()
}

#[test]
fn graph_writes_the_dot_file_of_a_training_step() {
    let dir = scratch("cli-graph");
    let dot_file = dir.join("step.dot");
    let out = success(&senet(graph_args(&dot_file)));
    let dot = std::fs::read_to_string(&dot_file).unwrap();

    // The form of a DOT digraph: a header, node statements, edge statements between them.
    assert!(dot.starts_with("digraph autograd {\n"), "{dot}");
    assert!(dot.ends_with("}\n"), "{dot}");
    let nodes: Vec<&str> = dot.lines().filter(|l| l.contains(" [label=\"")).collect();
    let edges: Vec<(usize, usize)> = dot
        .lines()
        .filter_map(|l| l.trim().strip_suffix(';')?.split_once(" -> "))
        .map(|(a, b)| {
            let id = |s: &str| s.trim_start_matches('n').parse::<usize>().unwrap();
            (id(a), id(b))
        })
        .collect();
    assert!(!edges.is_empty());
    // Every edge runs between declared nodes, from an earlier node to a later one.
    assert!(
        edges.iter().all(|&(a, b)| a < b && b < nodes.len()),
        "{edges:?}"
    );

    // The ops of the network and its loss, the parameters by name, what ops save.
    for part in [
        "label=\"conv2d\\n",
        "label=\"batch_norm2d\\n",
        "label=\"relu\\n",
        "label=\"grouped_linear\\n",
        "label=\"max_pool2d\\n",
        "loss\\ncross_entropy\\n[]",
        "images\\nconstant\\n[2, 3, 32, 32]",
        "conv1.weight\\nparameter\\n[4, 3, 7, 7]",
        "layer1.0.bn1.weight\\nparameter",
        "saves input [2, 3, 32, 32]: 24.0 KiB",
        "saves argmax",
        "saves probs [2, 10]: 80 B",
    ] {
        assert!(dot.contains(part), "{part} missing:\n{dot}");
    }
    // The saved-bytes total is in the graph's title and printed, with the node count.
    let total: String = out
        .split("saved for backward: ")
        .nth(1)
        .unwrap_or_else(|| panic!("{out}"))
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(total.parse::<usize>().unwrap() > 24 * 1024, "{out}");
    assert!(
        dot.contains(&format!("saved for backward: {total} bytes")),
        "{out}\n{dot}"
    );
    assert!(out.contains(&format!("{} nodes", nodes.len())), "{out}");
    // Written through a temporary name: nothing else is left in the folder.
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1, "{files:?}");

    // The same seed gives the same file; the batch changes the bytes, not the ops.
    success(&senet(graph_args(&dir.join("again.dot"))));
    assert_eq!(std::fs::read_to_string(dir.join("again.dot")).unwrap(), dot);
    let mut four = graph_args(&dir.join("four.dot"));
    four[8] = "4".into();
    success(&senet(four));
    let four = std::fs::read_to_string(dir.join("four.dot")).unwrap();
    assert_eq!(four.lines().count(), dot.lines().count());
    assert_ne!(four, dot);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn graph_svg_needs_graphviz_and_bad_input_is_named() {
    let dir = scratch("cli-graph-svg");
    let dot_file = dir.join("step.dot");
    let svg_file = dir.join("step.svg");
    let mut args = graph_args(&dot_file);
    args.push("--svg".into());

    // No `dot` on PATH: a clear error before anything is written.
    let empty = dir.join("empty-bin");
    std::fs::create_dir_all(&empty).unwrap();
    let err = failure(&senet_with_path(&args, empty.as_os_str()));
    assert!(
        err.contains("`dot`") && err.contains("graphviz") && err.contains("PATH"),
        "{err}"
    );
    assert!(!dot_file.exists() && !svg_file.exists());

    // With Graphviz installed, the picture is drawn next to the DOT file.
    let has_dot = std::process::Command::new("dot")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if has_dot {
        let out = success(&senet(&args));
        assert!(out.contains("step.svg"), "{out}");
        let svg = std::fs::read_to_string(&svg_file).unwrap();
        assert!(svg.contains("<svg") && svg.contains("conv2d"), "{svg}");
    } else {
        eprintln!("graphviz's dot is not installed: the SVG drawing is not tested");
    }

    // Bad input: the message names what is wrong.
    let out = path_str(&dir.join("bad.dot"));
    let cases: [(&[&str], &[&str]); 6] = [
        (&["--model", "nope", "--depth", "9"], &["--model nope"]),
        (&["--depth", "9"], &["--model is required"]),
        (&["--model", "senetv2", "--depth", "7"], &["depth 7"]),
        (
            &["--model", "senetv2", "--depth", "9", "--batch", "0"],
            &["--batch", "1 to 65536"],
        ),
        (
            &["--model", "senetv2", "--depth", "9", "--image-size", "0"],
            &["--image-size", "1 to 4096"],
        ),
        (
            &[
                "--model",
                "senetv2",
                "--depth",
                "9",
                "--batch",
                "65536",
                "--image-size",
                "4096",
            ],
            &["--batch 65536", "lower --batch or --image-size"],
        ),
    ];
    for (flags, parts) in cases {
        fails_naming(
            &[strings(&["graph", "--out", &out]), strings(flags)].concat(),
            parts,
        );
    }
    let err = failure(&senet([
        "graph",
        "--model",
        "resnet",
        "--depth",
        "18",
        "--svg",
        "--out",
        &path_str(&svg_file),
    ]));
    assert!(err.contains("name it FILE.dot"), "{err}");
    assert!(!dir.join("bad.dot").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
