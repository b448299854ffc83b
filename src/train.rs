//! `senet train`: the training loop, its checkpoints and metrics, and resume.
//!
//! One epoch: a seeded permutation of the training split in batches (augmented on background
//! threads), forward in training mode, cross-entropy, `backward`, one optimizer step with the
//! scheduled learning rate; then an evaluation on the test split. After every epoch the run
//! writes `metrics.csv`, `curves.png`, `last.safetensors` (+ `last.optim.safetensors`, the
//! optimizer state) and, when the test top-1 improved, `best.safetensors` — each through a
//! temporary file and a rename. `--resume` continues from `last.*`: since the data order and the
//! augmentation depend only on (seed, epoch, batch) and the CPU kernels are deterministic, a run
//! killed and resumed ends with the same bits as one that never stopped.
use crate::data::{self, Batch, BatchLoader, Dataset, LoaderOptions};
use crate::models::{build, Model, ModelConfig};
use crate::nn::checkpoint::{self, Metadata};
use crate::nn::optim::Optimizer;
use crate::nn::schedule::{Schedule, ScheduleKind};
use crate::nn::Module;
use crate::tensor::{Device, Tensor};
use anyhow::{anyhow, bail, Context, Result};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Which dataset `--data` holds.
#[derive(Clone, Debug, PartialEq)]
pub enum DatasetSpec {
    Cifar10,
    Cifar100 { coarse: bool },
    ImageFolder { image_size: usize, resize: bool },
}

/// Where the data comes from (shared by train and eval).
#[derive(Clone, Debug)]
pub struct DataOptions {
    pub spec: DatasetSpec,
    pub dir: PathBuf,
    pub url: Option<String>,
    pub md5: Option<String>,
}

impl DataOptions {
    /// Loads (downloading CIFAR when needed) the dataset.
    pub fn load(&self) -> Result<Dataset> {
        let download = data::DownloadOptions {
            url: self.url.clone(),
            md5: self.md5.clone(),
            offline: false,
        };
        let ds = match &self.spec {
            DatasetSpec::Cifar10 => data::load_cifar10(&self.dir, &download)?,
            DatasetSpec::Cifar100 { coarse } => {
                let labels = if *coarse {
                    data::Labels::Coarse
                } else {
                    data::Labels::Fine
                };
                data::load_cifar100(&self.dir, labels, &download)?
            }
            DatasetSpec::ImageFolder { image_size, resize } => data::load_image_folder(
                &self.dir,
                &data::ImageFolderOptions {
                    image_size: *image_size,
                    resize: *resize,
                },
            )?,
        };
        Ok(ds)
    }

    fn describe(&self) -> String {
        match &self.spec {
            DatasetSpec::Cifar10 => "cifar10".into(),
            DatasetSpec::Cifar100 { coarse } => format!(
                "cifar100 ({} labels)",
                if *coarse { "coarse" } else { "fine" }
            ),
            DatasetSpec::ImageFolder { image_size, resize } => format!(
                "imagefolder ({image_size}x{image_size}{})",
                if *resize { ", resized" } else { "" }
            ),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimizerChoice {
    Sgd,
    AdamW,
}

/// Every setting of a run (what `config.json` records).
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub model: ModelConfig,
    /// `--classes` as given (the dataset decides otherwise).
    pub classes: Option<usize>,
    pub data: DataOptions,
    pub epochs: usize,
    pub max_steps: Option<u64>,
    pub batch: usize,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub optimizer: OptimizerChoice,
    pub schedule: ScheduleKind,
    pub warmup: f64,
    pub label_smoothing: f64,
    pub augment: bool,
    pub shuffle: bool,
    pub seed: u64,
    pub device: String,
    pub init: Option<PathBuf>,
    pub out: PathBuf,
    pub resume: bool,
    pub workers: usize,
    /// Show a progress bar (off in tests).
    pub progress: bool,
}

/// One row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub steps: u64,
    pub train_loss: f64,
    pub train_top1: f64,
    pub test_loss: f64,
    pub test_top1: f64,
    pub test_top5: f64,
    pub lr: f64,
    pub images_per_s: f64,
    pub seconds: f64,
}

const CSV_HEADER: &str =
    "epoch,steps,train_loss,train_top1,test_loss,test_top1,test_top5,lr,images_per_s,seconds";

impl EpochMetrics {
    fn csv(&self) -> String {
        format!(
            "{},{},{:.6},{:.4},{:.6},{:.4},{:.4},{:.8},{:.1},{:.1}",
            self.epoch,
            self.steps,
            self.train_loss,
            self.train_top1,
            self.test_loss,
            self.test_top1,
            self.test_top5,
            self.lr,
            self.images_per_s,
            self.seconds
        )
    }
    fn parse(line: &str) -> Result<Self> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 10 {
            bail!(
                "metrics.csv row {line:?} has {} fields, expected 10",
                f.len()
            );
        }
        let n = |i: usize| {
            f[i].parse::<f64>()
                .map_err(|_| anyhow!("metrics.csv row {line:?}: field {} is not a number", i + 1))
        };
        Ok(EpochMetrics {
            epoch: f[0].parse()?,
            steps: f[1].parse()?,
            train_loss: n(2)?,
            train_top1: n(3)?,
            test_loss: n(4)?,
            test_top1: n(5)?,
            test_top5: n(6)?,
            lr: n(7)?,
            images_per_s: n(8)?,
            seconds: n(9)?,
        })
    }
}

/// Loss and accuracy over a split, with per-class accuracy.
#[derive(Clone, Debug)]
pub struct Evaluation {
    pub loss: f64,
    pub top1: f64,
    pub top5: f64,
    /// `(correct, total)` per class.
    pub per_class: Vec<(usize, usize)>,
}

/// Counts of correct top-1 and top-5 predictions in a batch of logits `[n, classes]`.
fn topk(
    logits: &[f32],
    classes: usize,
    labels: &[u32],
    per_class: Option<&mut [(usize, usize)]>,
) -> (usize, usize) {
    let (mut top1, mut top5) = (0, 0);
    let mut pc = per_class;
    for (row, &label) in logits.chunks_exact(classes).zip(labels) {
        let target = row[label as usize];
        // Rank of the label: how many classes score higher (ties count for the label).
        let higher = row.iter().filter(|&&v| v > target).count();
        top1 += (higher == 0) as usize;
        top5 += (higher < 5) as usize;
        if let Some(pc) = pc.as_deref_mut() {
            pc[label as usize].0 += (higher == 0) as usize;
            pc[label as usize].1 += 1;
        }
    }
    (top1, top5)
}

/// The loss value and the logits of a step in one readback: on a GPU each read waits for the
/// device, so reading the two separately would stall it twice per step.
fn read_back(loss: &Tensor, logits: &Tensor) -> Result<(f64, Vec<f32>)> {
    let _guard = crate::tensor::NoGradGuard::new();
    let both = Tensor::concat(
        &[&loss.reshape(&[1])?, &logits.reshape(&[logits.numel()])?],
        0,
    )?;
    let mut values = both.to_vec::<f32>()?;
    let loss = values.remove(0) as f64;
    Ok((loss, values))
}

/// Evaluates `model` on `split` in evaluation mode without recording a graph.
pub fn evaluate(
    model: &mut Model,
    split: &Arc<data::Split>,
    ds: &Dataset,
    batch: usize,
    device: Device,
) -> Result<Evaluation> {
    let classes = model.config().classes;
    let loader = BatchLoader::new(
        split,
        LoaderOptions {
            workers: 1,
            ..LoaderOptions::test(ds, batch)
        },
    )?;
    let (mut loss, mut top1, mut top5, mut seen) = (0.0, 0, 0, 0);
    let mut per_class = vec![(0, 0); classes];
    for b in loader {
        let _guard = crate::tensor::NoGradGuard::new();
        let x = batch_tensor(&b, ds.image_size, device)?;
        let logits = model.forward(&x, false)?;
        let (batch_loss, logits) = read_back(&logits.cross_entropy(&b.labels, 0.0)?, &logits)?;
        loss += batch_loss * b.len as f64;
        let (t1, t5) = topk(&logits, classes, &b.labels, Some(&mut per_class));
        top1 += t1;
        top5 += t5;
        seen += b.len;
    }
    if seen == 0 {
        bail!("the test split is empty");
    }
    Ok(Evaluation {
        loss: loss / seen as f64,
        top1: 100.0 * top1 as f64 / seen as f64,
        top5: 100.0 * top5 as f64 / seen as f64,
        per_class,
    })
}

fn batch_tensor(b: &Batch, size: usize, device: Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(b.images.clone(), &[b.len, 3, size, size])?.to_device(device)?)
}

/// The metadata that describes a model in a checkpoint (MODELS.md's keys).
pub fn model_metadata(model: &ModelConfig, ds: &Dataset) -> Metadata {
    let mut m = Metadata::new();
    for (k, v) in model.entries() {
        m.insert(k.to_string(), v);
    }
    m.insert(
        "class_names".into(),
        serde_json::to_string(&ds.classes).expect("strings serialize"),
    );
    m.insert(
        "mean".into(),
        serde_json::to_string(&ds.mean).expect("floats serialize"),
    );
    m.insert(
        "std".into(),
        serde_json::to_string(&ds.std).expect("floats serialize"),
    );
    m.insert("input_size".into(), ds.image_size.to_string());
    m
}

/// A model config read back from checkpoint metadata (`None` when the file has no description).
pub fn config_from_metadata(meta: &Metadata) -> Result<Option<ModelConfig>> {
    let Some(family) = meta.get("family") else {
        return Ok(None);
    };
    let mut config = ModelConfig::new(family.parse()?, None, "paper".parse()?, 10);
    for name in ModelConfig::OPTIONS {
        if let Some(v) = meta.get(name) {
            config
                .set(name, v)
                .with_context(|| format!("checkpoint metadata {name}={v:?}"))?;
        }
    }
    Ok(Some(config))
}

/// Progress of a run, saved in the checkpoint metadata so a resume continues exactly.
#[derive(Clone, Debug, Default, PartialEq)]
struct Progress {
    /// Completed epochs.
    epoch: usize,
    /// Optimizer steps taken.
    step: u64,
    /// Running sums of the current (partial) epoch.
    loss_sum: f64,
    correct: u64,
    seen: u64,
    seconds: f64,
    best_top1: f64,
}

impl Progress {
    fn write(&self, m: &mut Metadata) {
        m.insert("epoch".into(), self.epoch.to_string());
        m.insert("step".into(), self.step.to_string());
        // f64 written with to_bits so a resumed run continues with identical sums.
        m.insert(
            "train_loss_sum_bits".into(),
            self.loss_sum.to_bits().to_string(),
        );
        m.insert("train_correct".into(), self.correct.to_string());
        m.insert("train_seen".into(), self.seen.to_string());
        m.insert("epoch_seconds".into(), self.seconds.to_string());
        m.insert("best_top1".into(), self.best_top1.to_string());
    }
    fn read(m: &Metadata, path: &Path) -> Result<Self> {
        let get = |k: &str| {
            m.get(k).ok_or_else(|| {
                anyhow!(
                    "{}: metadata {k} is missing: not a training checkpoint of this program",
                    path.display()
                )
            })
        };
        Ok(Progress {
            epoch: get("epoch")?.parse()?,
            step: get("step")?.parse()?,
            loss_sum: f64::from_bits(get("train_loss_sum_bits")?.parse()?),
            correct: get("train_correct")?.parse()?,
            seen: get("train_seen")?.parse()?,
            seconds: get("epoch_seconds")?.parse()?,
            best_top1: get("best_top1")?.parse()?,
        })
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// All epochs done.
    Finished,
    /// `--max-steps` reached (a checkpoint was written).
    MaxSteps,
    /// Ctrl-C (a checkpoint was written).
    Interrupted,
}

/// Set by Ctrl-C; the loop saves and stops at the end of the current step.
pub static STOP: AtomicBool = AtomicBool::new(false);

fn config_json(
    o: &TrainOptions,
    model: &ModelConfig,
    device: &str,
    ds_classes: usize,
) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in model.entries() {
        m.insert(format!("model.{k}"), serde_json::Value::String(v));
    }
    let s = |v: String| serde_json::Value::String(v);
    let fields: Vec<(&str, serde_json::Value)> = vec![
        ("dataset", s(o.data.describe())),
        ("data", s(o.data.dir.display().to_string())),
        (
            "data_url",
            o.data.url.clone().map_or(serde_json::Value::Null, s),
        ),
        ("dataset_classes", ds_classes.into()),
        ("epochs", o.epochs.into()),
        (
            "max_steps",
            o.max_steps.map_or(serde_json::Value::Null, |v| v.into()),
        ),
        ("batch", o.batch.into()),
        ("lr", o.lr.into()),
        ("momentum", o.momentum.into()),
        ("nesterov", o.nesterov.into()),
        ("weight_decay", o.weight_decay.into()),
        ("optimizer", s(format!("{:?}", o.optimizer).to_lowercase())),
        ("schedule", s(format!("{:?}", o.schedule).to_lowercase())),
        ("warmup_epochs", o.warmup.into()),
        ("label_smoothing", o.label_smoothing.into()),
        ("augment", o.augment.into()),
        ("shuffle", o.shuffle.into()),
        ("seed", o.seed.into()),
        ("device", s(device.to_string())),
        (
            "init",
            o.init
                .as_ref()
                .map_or(serde_json::Value::Null, |p| s(p.display().to_string())),
        ),
    ];
    for (k, v) in fields {
        m.insert(k.to_string(), v);
    }
    serde_json::Value::Object(m)
}

/// The settings that must not change between a run and its resume.
const RESUME_KEYS: &[&str] = &[
    "dataset",
    "data",
    "epochs",
    "batch",
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "optimizer",
    "schedule",
    "warmup_epochs",
    "label_smoothing",
    "augment",
    "shuffle",
    "seed",
];

fn write_text(path: &Path, text: &str) -> Result<()> {
    checkpoint::write_atomically(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Saves `last.safetensors` and `last.optim.safetensors`.
fn save_last(out: &Path, model: &mut Model, opt: &Optimizer, meta: &Metadata) -> Result<()> {
    checkpoint::save(model, meta, &out.join("last.safetensors"))?;
    let mut state = Metadata::new();
    state.insert("steps".into(), opt.steps.to_string());
    checkpoint::save_tensors(
        &opt.state_tensors(),
        &state,
        &out.join("last.optim.safetensors"),
    )?;
    Ok(())
}

/// Runs (or resumes) a training run. Returns the per-epoch metrics and how it ended.
pub fn train(o: &TrainOptions) -> Result<(Vec<EpochMetrics>, Outcome)> {
    if o.batch == 0 {
        bail!("--batch must be at least 1");
    }
    if o.epochs == 0 {
        bail!("--epochs must be at least 1");
    }
    if !(0.0..1.0).contains(&o.label_smoothing) {
        bail!(
            "--label-smoothing must be in [0, 1), got {}",
            o.label_smoothing
        );
    }
    if o.lr <= 0.0 || !o.lr.is_finite() {
        bail!("--lr must be a positive number, got {}", o.lr);
    }
    std::fs::create_dir_all(&o.out)
        .with_context(|| format!("creating --out {}", o.out.display()))?;
    let device = Device::parse(&o.device).with_context(|| format!("--device {}", o.device))?;

    eprintln!(
        "loading {} from {}",
        o.data.describe(),
        o.data.dir.display()
    );
    let t = Instant::now();
    let ds = o
        .data
        .load()
        .with_context(|| format!("loading --data {}", o.data.dir.display()))?;
    eprintln!(
        "{} training and {} test images, {} classes ({:.1} s)",
        ds.train.len,
        ds.test.len,
        ds.classes.len(),
        t.elapsed().as_secs_f64()
    );
    let mut config = o.model.clone();
    config.classes = match o.classes {
        Some(c) if c != ds.classes.len() => bail!(
            "--classes {c} but the dataset has {} classes",
            ds.classes.len()
        ),
        _ => ds.classes.len(),
    };
    let steps_per_epoch = if o.batch <= ds.train.len {
        ds.train.len / o.batch
    } else {
        bail!(
            "--batch {} is larger than the {} training images",
            o.batch,
            ds.train.len
        )
    };
    let total_steps = (steps_per_epoch * o.epochs) as u64;

    let mut model = build(&config, o.seed)?;
    if let Some(init) = &o.init {
        // Every tensor, BN statistics and num_batches_tracked included; the optimizer starts fresh.
        checkpoint::load(&mut model, init).with_context(|| format!("--init {}", init.display()))?;
    }
    model.to_device(device)?;
    let mut opt = match o.optimizer {
        OptimizerChoice::Sgd => Optimizer::sgd(o.momentum, o.nesterov, o.weight_decay),
        OptimizerChoice::AdamW => Optimizer::adamw(0.9, 0.999, 1e-8, o.weight_decay),
    };
    let schedule = Schedule {
        kind: o.schedule,
        peak: o.lr,
        warmup_epochs: o.warmup,
        steps_per_epoch,
        total_steps: total_steps as usize,
    };

    let json = config_json(o, &config, &device.describe(), ds.classes.len());
    let mut progress = Progress::default();
    let mut rows: Vec<EpochMetrics> = Vec::new();
    let (config_path, metrics_path) = (o.out.join("config.json"), o.out.join("metrics.csv"));
    if o.resume {
        let old: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&config_path)
                .with_context(|| format!("--resume needs {}", config_path.display()))?,
        )
        .with_context(|| format!("{} is not valid JSON", config_path.display()))?;
        let mut diffs = Vec::new();
        for key in RESUME_KEYS.iter().copied().chain(
            json.as_object()
                .expect("an object")
                .keys()
                .map(String::as_str)
                .filter(|k| k.starts_with("model.")),
        ) {
            if old.get(key) != json.get(key) {
                diffs.push(format!(
                    "{key}: {} (run) vs {} (now)",
                    old.get(key).unwrap_or(&serde_json::Value::Null),
                    json.get(key).unwrap_or(&serde_json::Value::Null)
                ));
            }
        }
        if !diffs.is_empty() {
            bail!(
                "--resume with different settings than the run in {}:\n  {}",
                o.out.display(),
                diffs.join("\n  ")
            );
        }
        let last = o.out.join("last.safetensors");
        let meta = checkpoint::load(&mut model, &last)
            .with_context(|| format!("--resume from {}", last.display()))?;
        progress = Progress::read(&meta, &last)?;
        let (tensors, state) =
            checkpoint::load_tensors(&o.out.join("last.optim.safetensors"), device)?;
        let steps = state
            .get("steps")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("last.optim.safetensors has no step count"))?;
        opt.load_state(tensors, steps)?;
        if metrics_path.exists() {
            let text = std::fs::read_to_string(&metrics_path)?;
            rows = text
                .lines()
                .skip(1)
                .filter(|l| !l.trim().is_empty())
                .map(EpochMetrics::parse)
                .collect::<Result<_>>()?;
            rows.retain(|r| r.epoch <= progress.epoch);
        }
        eprintln!(
            "resuming {} at epoch {} step {}",
            o.out.display(),
            progress.epoch + 1,
            progress.step
        );
    }
    write_text(&config_path, &serde_json::to_string_pretty(&json)?)?;
    let base_meta = model_metadata(&config, &ds);

    let mut outcome = Outcome::Finished;
    'epochs: while progress.epoch < o.epochs {
        let epoch = progress.epoch;
        let skip = (progress.step - (epoch * steps_per_epoch) as u64) as usize;
        let loader = BatchLoader::new(
            &ds.train,
            LoaderOptions {
                shuffle: o.shuffle,
                augment: o.augment,
                skip,
                workers: o.workers,
                ..LoaderOptions::train(&ds, o.batch, o.seed, epoch as u64)
            },
        )?;
        let bar = (o.progress && std::io::stderr().is_terminal())
            .then(|| progress_bar(steps_per_epoch as u64, skip as u64, epoch + 1, o.epochs));
        let started = Instant::now();
        let seconds_before = progress.seconds;
        let seen_before = progress.seen;
        // The rate of the last step taken (what the row reports if this epoch has none left).
        let mut lr = schedule.lr(progress.step.saturating_sub(1) as usize);
        for b in loader {
            lr = schedule.lr(progress.step as usize);
            let x = batch_tensor(&b, ds.image_size, device)?;
            let logits = model.forward(&x, true)?;
            let loss = logits.cross_entropy(&b.labels, o.label_smoothing)?;
            let grads = loss.backward()?;
            opt.step(&mut model, &grads, lr)?;
            // Checked after the step so the device is not stalled mid-step; the weights this
            // step spoiled are never saved, so the checkpoint on disk stays the last good one.
            let (loss_value, logits) = read_back(&loss, &logits)?;
            if !loss_value.is_finite() {
                bail!(
                    "the loss became {loss_value} at epoch {} step {}: stopping; the last good checkpoint is {} (try a lower --lr)",
                    epoch + 1,
                    progress.step + 1,
                    o.out.join("last.safetensors").display()
                );
            }
            let (top1, _) = topk(&logits, config.classes, &b.labels, None);
            progress.step += 1;
            progress.loss_sum += loss_value * b.len as f64;
            progress.correct += top1 as u64;
            progress.seen += b.len as u64;
            progress.seconds = seconds_before + started.elapsed().as_secs_f64();
            let in_epoch = progress.step - (epoch * steps_per_epoch) as u64;
            let rate =
                (progress.seen - seen_before) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let status = format!(
                "loss {:.4} acc {:.2}% lr {lr:.5} {rate:.0} img/s",
                progress.loss_sum / progress.seen as f64,
                100.0 * progress.correct as f64 / progress.seen as f64
            );
            if let Some(bar) = &bar {
                bar.set_position(in_epoch);
                bar.set_message(status);
            } else if o.progress && in_epoch.is_multiple_of(50) {
                // Not a terminal (a log file): a plain line now and then instead of a bar.
                eprintln!(
                    "epoch {}/{} step {in_epoch}/{steps_per_epoch} {status}",
                    epoch + 1,
                    o.epochs
                );
            }
            let stop = STOP.load(Ordering::SeqCst);
            if stop || o.max_steps.is_some_and(|m| progress.step >= m) {
                let mut meta = base_meta.clone();
                progress.write(&mut meta);
                save_last(&o.out, &mut model, &opt, &meta)?;
                if let Some(bar) = &bar {
                    bar.abandon();
                }
                eprintln!(
                    "{} at step {}: saved {}",
                    if stop {
                        "interrupted"
                    } else {
                        "--max-steps reached"
                    },
                    progress.step,
                    o.out.join("last.safetensors").display()
                );
                outcome = if stop {
                    Outcome::Interrupted
                } else {
                    Outcome::MaxSteps
                };
                break 'epochs;
            }
        }
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        let eval = evaluate(
            &mut model,
            &ds.test,
            &ds,
            500.min(ds.test.len.max(1)),
            device,
        )?;
        let row = EpochMetrics {
            epoch: epoch + 1,
            steps: progress.step,
            train_loss: progress.loss_sum / progress.seen.max(1) as f64,
            train_top1: 100.0 * progress.correct as f64 / progress.seen.max(1) as f64,
            test_loss: eval.loss,
            test_top1: eval.top1,
            test_top5: eval.top5,
            lr,
            images_per_s: progress.seen as f64 / progress.seconds.max(1e-9),
            seconds: progress.seconds,
        };
        eprintln!(
            "epoch {}/{}: train loss {:.4} top-1 {:.2}% | test loss {:.4} top-1 {:.2}% top-5 {:.2}% | {:.0} img/s, {:.0} s",
            row.epoch, o.epochs, row.train_loss, row.train_top1, row.test_loss, row.test_top1, row.test_top5, row.images_per_s, row.seconds
        );
        rows.push(row.clone());
        progress = Progress {
            epoch: epoch + 1,
            step: progress.step,
            best_top1: progress.best_top1.max(eval.top1),
            ..Progress::default()
        };
        let mut meta = base_meta.clone();
        progress.write(&mut meta);
        save_last(&o.out, &mut model, &opt, &meta)?;
        if eval.top1 >= progress.best_top1 {
            checkpoint::save(&mut model, &meta, &o.out.join("best.safetensors"))?;
        }
        let csv: String = std::iter::once(CSV_HEADER.to_string())
            .chain(rows.iter().map(EpochMetrics::csv))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n";
        write_text(&metrics_path, &csv)?;
        crate::plot::curves(&rows, &o.out.join("curves.png"))?;
        if STOP.load(Ordering::SeqCst) {
            outcome = Outcome::Interrupted;
            break;
        }
    }
    Ok((rows, outcome))
}

fn progress_bar(len: u64, pos: u64, epoch: usize, epochs: usize) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed} < {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar.set_position(pos);
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_counts() {
        // 3 classes; row 0: label 2 is the max; row 1: label 0 is second.
        let logits = [0.1, 0.2, 0.9, 0.5, 0.7, 0.1];
        let mut pc = vec![(0, 0); 3];
        assert_eq!(topk(&logits, 3, &[2, 0], Some(&mut pc)), (1, 2));
        assert_eq!(pc, vec![(0, 1), (0, 0), (1, 1)]);
    }

    #[test]
    fn metrics_rows_round_trip() {
        let r = EpochMetrics {
            epoch: 3,
            steps: 1170,
            train_loss: 1.25,
            train_top1: 55.5,
            test_loss: 1.1,
            test_top1: 60.25,
            test_top5: 95.5,
            lr: 0.0875,
            images_per_s: 812.3,
            seconds: 61.5,
        };
        assert_eq!(EpochMetrics::parse(&r.csv()).unwrap(), r);
        assert!(EpochMetrics::parse("1,2,3").is_err());
    }
}
