//! Weights exported by PyTorch load into our models and give PyTorch's logits.
//!
//! The fixtures in `tests/fixtures/pytorch/` were written once by
//! `tests/fixtures/make_pytorch_fixture.py` from the reference implementation
//! (`shared/tools/reference/models_torch.py`; see `tests/fixtures/README.md`), so CI needs no
//! PyTorch: each model's `state_dict` as `safetensors.torch.save_file` writes it (no metadata),
//! and an `.io.safetensors` file with the inputs and PyTorch's eval-mode logits.
use senet::models::{build, Model, ModelConfig};
use senet::nn::checkpoint::{self, Metadata};
use senet::nn::{Module, Slot};
use senet::tensor::testing::{assert_close, Tol};
use senet::tensor::Device;
use senet::Tensor;
use std::path::{Path, PathBuf};

#[path = "fixtures/support.rs"]
mod support;
use support::*;

/// A fixture model: file stem and the flags that describe it.
struct Fixture {
    name: &'static str,
    family: &'static str,
    depth: usize,
    preset: &'static str,
    width: usize,
    classes: usize,
}

const SENETV2: Fixture = Fixture {
    name: "senetv2-9-paper-w8",
    family: "senetv2",
    depth: 9,
    preset: "paper",
    width: 8,
    classes: 10,
};

const SE_RESNET: Fixture = Fixture {
    name: "se-resnet-18-cifar-w4",
    family: "se-resnet",
    depth: 18,
    preset: "cifar",
    width: 4,
    classes: 10,
};

const ALL: [Fixture; 2] = [SENETV2, SE_RESNET];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pytorch")
}

impl Fixture {
    fn weights(&self) -> PathBuf {
        fixtures().join(format!("{}.safetensors", self.name))
    }

    fn config(&self) -> ModelConfig {
        let mut c = ModelConfig::new(
            self.family.parse().unwrap(),
            Some(self.depth),
            self.preset.parse().unwrap(),
            self.classes,
        );
        c.width = self.width;
        c
    }

    /// The `--model ...` flags of this model, for a checkpoint without metadata.
    fn flags(&self) -> Vec<String> {
        [
            ("--model", self.family.to_string()),
            ("--depth", self.depth.to_string()),
            ("--preset", self.preset.to_string()),
            ("--width", self.width.to_string()),
            ("--classes", self.classes.to_string()),
        ]
        .into_iter()
        .flat_map(|(k, v)| [k.to_string(), v])
        .collect()
    }

    /// `(input [N,3,32,32], PyTorch's f32 logits, the f64 forward pass's logits)`.
    fn io(&self) -> (Tensor, Vec<f32>, Vec<f32>) {
        let path = fixtures().join(format!("{}.io.safetensors", self.name));
        let (mut t, _) = checkpoint::load_tensors(&path, Device::Cpu).unwrap();
        let x = t.remove("input").unwrap();
        let logits = t.remove("logits").unwrap();
        assert_eq!(logits.shape(), [x.shape()[0], self.classes]);
        let logits64 = t.remove("logits_f64").unwrap();
        (x, logits.to_vec().unwrap(), logits64.to_vec().unwrap())
    }

    /// Our model with PyTorch's weights. The build seed differs from anything PyTorch used, so
    /// a tensor the loader skipped would show in the logits.
    fn load(&self) -> Model {
        let mut model = build(&self.config(), 0).unwrap();
        let meta = checkpoint::load(&mut model, &self.weights()).unwrap();
        assert!(meta.is_empty(), "PyTorch's save_file writes no metadata");
        model
    }
}

fn logits(model: &mut Model, x: &Tensor) -> Vec<f32> {
    senet::no_grad(|| model.forward(x, false).unwrap().to_vec().unwrap())
}

/// Every value (f32 bits, counters) of a model by name.
fn state(model: &mut Model) -> Vec<(String, Vec<u32>, i64)> {
    let mut out = Vec::new();
    model.visit("", &mut |name, slot| match slot {
        Slot::Param(t) | Slot::Buffer(t) => out.push((
            name.to_string(),
            t.to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect(),
            0,
        )),
        Slot::Counter(c) => out.push((name.to_string(), vec![], *c)),
    });
    out
}

/// Asserts `ours` is within `tol * max(1, max |reference|)` of `reference` everywhere, and
/// prints the largest difference (the figure quoted where the tolerance is justified).
fn assert_matches_pytorch(what: &str, ours: &[f32], reference: &[f32], tol: f32) {
    let scale = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
    let worst = ours
        .iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("{what}: max |ours - PyTorch| = {worst:e} (scale {scale})");
    let abs = (tol * scale) as f64;
    assert_close(what, ours, reference, Tol { abs, rel: 0.0 });
}

/// Tolerance on the logits, relative to their largest magnitude (about 1 here). Both sides
/// compute in f32 through ~15 layers (convs and dense layers summing up to a few hundred
/// products, batch norm, SE/SaE, mean pooling) in different summation orders. On these fixtures
/// PyTorch's own f32 and f64 passes differ by at most 2.3e-6, and ours differs from either by at
/// most 3.8e-6, so 1e-4 leaves a 25x margin for other summation orders (other CPUs, thread
/// counts), while a real mistake moves them by far more: batch statistics instead of running
/// ones by 0.57 and 1.5, the other SE combine by 1.1 and 27, a BN eps of 1e-3 by 5e-3 and 0.08.
const LOGIT_TOL: f32 = 1e-4;

#[test]
fn pytorch_state_dicts_give_pytorchs_logits() {
    for f in ALL {
        let mut model = f.load();
        // The loaded running statistics are PyTorch's, not the defaults.
        let counters: Vec<i64> = state(&mut model)
            .into_iter()
            .filter(|(n, _, _)| n.ends_with("num_batches_tracked"))
            .map(|(_, _, c)| c)
            .collect();
        assert!(!counters.is_empty() && counters.iter().all(|&c| c == 4));
        let (x, torch32, torch64) = f.io();
        let ours = logits(&mut model, &x);
        assert_matches_pytorch(&format!("{} vs f32", f.name), &ours, &torch32, LOGIT_TOL);
        assert_matches_pytorch(&format!("{} vs f64", f.name), &ours, &torch64, LOGIT_TOL);
    }
}

#[test]
fn our_checkpoint_of_pytorch_weights_reloads_bit_for_bit() {
    let dir = scratch("pytorch-roundtrip");
    for f in ALL {
        let mut model = f.load();
        let (x, _, _) = f.io();
        let before = logits(&mut model, &x);
        let path = dir.join(format!("{}.safetensors", f.name));
        let mut meta = Metadata::new();
        for (k, v) in f.config().entries() {
            meta.insert(k.into(), v);
        }
        checkpoint::save(&mut model, &meta, &path).unwrap();

        // Another seed, so nothing matches unless the file supplies it.
        let mut again = build(&f.config(), 99).unwrap();
        assert_eq!(checkpoint::load(&mut again, &path).unwrap(), meta);
        assert_eq!(state(&mut again), state(&mut model), "{}", f.name);
        let after = logits(&mut again, &x);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&after), bits(&before), "{}", f.name);

        // Our file holds exactly PyTorch's tensors: same names, same bytes.
        let mut torch = build(&f.config(), 7).unwrap();
        checkpoint::load(&mut torch, &f.weights()).unwrap();
        assert_eq!(state(&mut torch), state(&mut again), "{}", f.name);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cli_predict_reads_a_pytorch_file_with_model_flags() {
    // image.png is input 0 of the fixture (CIFAR-10 normalization), so `senet predict` must
    // print PyTorch's softmax of logits row 0 to 4 digits.
    let f = SENETV2;
    let image = fixtures().join("image.png");
    let mut args: Vec<String> = vec![
        "predict".into(),
        "--device".into(),
        "cpu".into(),
        "--checkpoint".into(),
        f.weights().display().to_string(),
    ];
    args.extend(f.flags());
    args.push(image.display().to_string());
    let out = success(&senet(&args));
    let preds = parse_predictions(&out);
    assert_eq!(preds.len(), 1);
    assert_eq!(preds[0].0, image.display().to_string());

    let (_, torch, _) = f.io();
    let row = &torch[..f.classes];
    let max = row.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
    let exp: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    let mut expected: Vec<(usize, f64)> = exp.iter().map(|e| e / sum).enumerate().collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1));
    for ((name, p), (k, q)) in preds[0].1.iter().zip(&expected) {
        // No flag or metadata gives class names: CIFAR-10's are the default.
        assert_eq!(name, CIFAR10_CLASSES[*k], "{out}");
        // Half a unit of the 4th digit for rounding, plus the logits' tolerance.
        assert!(
            (p - q).abs() <= 0.5e-4 + 1e-5,
            "{name}: printed {p}, PyTorch {q:.6}"
        );
    }
}

#[test]
fn cli_eval_reads_a_pytorch_file_with_model_flags() {
    // A test split of image.png twice: once labelled with PyTorch's top class, once with its
    // least likely class. Loss and accuracy then follow from PyTorch's logits alone.
    let f = SENETV2;
    let img = image::open(fixtures().join("image.png")).unwrap().to_rgb8();
    let (_, torch, _) = f.io();
    let row = &torch[..f.classes];
    let argmax = (0..f.classes)
        .max_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap();
    let argmin = (0..f.classes)
        .min_by(|&a, &b| row[a].total_cmp(&row[b]))
        .unwrap();
    let lse = {
        let m = row[argmax] as f64;
        m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
    };
    let loss = ((lse - row[argmax] as f64) + (lse - row[argmin] as f64)) / 2.0;

    let dir = scratch("pytorch-eval");
    let pixels = chw(&img);
    write_cifar10(
        &dir,
        &[record(0, &pixels)],
        &[record(argmax as u8, &pixels), record(argmin as u8, &pixels)],
    );
    let mut args: Vec<String> = vec![
        "eval".into(),
        "--device".into(),
        "cpu".into(),
        "--checkpoint".into(),
        f.weights().display().to_string(),
        "--dataset".into(),
        "cifar10".into(),
        "--data".into(),
        dir.display().to_string(),
        "--out".into(),
        dir.join("eval").display().to_string(),
    ];
    args.extend(f.flags());
    let out = success(&senet(&args));
    let lines: Vec<&str> = out.lines().collect();
    let printed: f64 = lines[0]
        .strip_prefix("loss: ")
        .unwrap_or_else(|| panic!("{out}"))
        .parse()
        .unwrap();
    assert!(
        (printed - loss).abs() <= 0.5e-4 + 1e-5,
        "loss {printed} vs PyTorch {loss:.6}"
    );
    assert_eq!(lines[1], "top-1: 50.00%", "{out}");
    assert_eq!(lines[2], "top-5: 50.00%", "{out}");
    // The per-class table: the top class's image is right, the least likely one's wrong.
    let row_of = |k: usize| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(CIFAR10_CLASSES[k]))
            .unwrap_or_else(|| panic!("no row for {}:\n{out}", CIFAR10_CLASSES[k]))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(row_of(argmax), "1 1 100.00%");
    assert_eq!(row_of(argmin), "0 1 0.00%");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cli_without_model_flags_explains_what_a_pytorch_file_needs() {
    let image = fixtures().join("image.png");
    let weights = SENETV2.weights();
    let err = failure(&senet([
        "predict".as_ref(),
        "--device".as_ref(),
        "cpu".as_ref(),
        "--checkpoint".as_ref(),
        weights.as_os_str(),
        image.as_os_str(),
    ]));
    assert!(
        err.contains(&weights.display().to_string()) && err.contains("--model"),
        "{err}"
    );
    // The wrong model for the file: the message names the file and a tensor that differs.
    let mut args: Vec<String> = vec![
        "predict".into(),
        "--device".into(),
        "cpu".into(),
        "--checkpoint".into(),
        weights.display().to_string(),
    ];
    args.extend(SE_RESNET.flags());
    args.push(image.display().to_string());
    let err = failure(&senet(&args));
    assert!(
        err.contains(&weights.display().to_string()) && err.contains("se-resnet-18"),
        "{err}"
    );
}
