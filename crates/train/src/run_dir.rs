//! The run folder (`--out`): `config.json`, `metrics.csv`, `curves.png`, `last.safetensors` +
//! `last.optim.safetensors` (the optimizer state) and `best.safetensors`, each written through
//! a temporary file and a rename; and reading them back to resume.
use crate::metrics::{self, EpochMetrics};
use crate::options::TrainOptions;
use crate::plot;
use crate::save_set::SaveSet;
use anyhow::{anyhow, bail, Context, Result};
use senet_models::{Model, ModelConfig};
use senet_nn::checkpoint::{self, Metadata};
use senet_nn::optim::Optimizer;
use senet_tensor::Device;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Where a run was, saved in the checkpoint metadata so a resume continues exactly.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunState {
    /// Completed epochs.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// Running sums of the current (partial) epoch.
    pub loss_sum: f64,
    pub correct: u64,
    pub seen: u64,
    pub seconds: f64,
    pub best_top1: f64,
}

impl RunState {
    pub fn write(&self, m: &mut Metadata) {
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

    pub fn read(m: &Metadata, path: &Path) -> Result<Self> {
        let get = |k: &str| {
            m.get(k).ok_or_else(|| {
                anyhow!(
                    "{}: metadata {k} is missing: not a training checkpoint of this program",
                    path.display()
                )
            })
        };
        Ok(RunState {
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

/// What `config.json` records: the model's options (as `model.*`) and every run setting.
pub fn config_json(
    o: &TrainOptions,
    model: &ModelConfig,
    device: &str,
    ds_classes: usize,
) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in model.entries() {
        m.insert(format!("model.{k}"), Value::String(v));
    }
    let s = |v: String| Value::String(v);
    let fields: Vec<(&str, Value)> = vec![
        ("dataset", s(o.data.describe())),
        ("data", s(o.data.dir.display().to_string())),
        ("data_url", o.data.url.clone().map_or(Value::Null, s)),
        ("dataset_classes", ds_classes.into()),
        ("epochs", o.epochs.into()),
        ("max_steps", o.max_steps.map_or(Value::Null, |v| v.into())),
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
                .map_or(Value::Null, |p| s(p.display().to_string())),
        ),
    ];
    for (k, v) in fields {
        m.insert(k.to_string(), v);
    }
    Value::Object(m)
}

/// A run folder's text file: a regular file of at most `cap` bytes, UTF-8.
fn read_text(path: &Path, cap: u64) -> Result<String> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if !meta.is_file() || meta.len() > cap {
        bail!(
            "{} is not a regular file of at most {cap} bytes: not one this program wrote",
            path.display()
        );
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    checkpoint::write_atomically(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// The files of one run folder.
pub struct RunDir {
    out: PathBuf,
}

impl RunDir {
    /// The folder `out`, created when missing; a save that a kill interrupted is finished or
    /// undone first ([`crate::save_set::recover`]).
    pub fn create(out: &Path) -> Result<Self> {
        std::fs::create_dir_all(out)
            .with_context(|| format!("creating --out {}", out.display()))?;
        if crate::save_set::recover(out)? {
            eprintln!("finished a save that was interrupted in {}", out.display());
        }
        Ok(RunDir {
            out: out.to_path_buf(),
        })
    }

    /// `last.safetensors`: where the run resumes from (named in messages).
    pub fn last(&self) -> PathBuf {
        self.out.join("last.safetensors")
    }

    /// Refuses to resume with settings (`json`, as [`config_json`] makes them) that differ
    /// from the run's `config.json` in a key that must not change; names each difference.
    pub fn check_resume_config(&self, json: &Value) -> Result<()> {
        let config_path = self.out.join("config.json");
        let old: Value = serde_json::from_str(
            &read_text(&config_path, 1 << 20)
                .with_context(|| format!("--resume needs {}", config_path.display()))?,
        )
        .with_context(|| format!("{} is not valid JSON", config_path.display()))?;
        let mut diffs = Vec::new();
        for key in RESUME_KEYS.iter().copied().chain(
            json.as_object()
                .expect("config_json makes an object")
                .keys()
                .map(String::as_str)
                .filter(|k| k.starts_with("model.")),
        ) {
            if old.get(key) != json.get(key) {
                diffs.push(format!(
                    "{key}: {} (run) vs {} (now)",
                    old.get(key).unwrap_or(&Value::Null),
                    json.get(key).unwrap_or(&Value::Null)
                ));
            }
        }
        if !diffs.is_empty() {
            bail!(
                "--resume with different settings than the run in {}:\n  {}",
                self.out.display(),
                diffs.join("\n  ")
            );
        }
        Ok(())
    }

    /// Loads `last.safetensors` into `model` and `last.optim.safetensors` into `opt`; returns
    /// where the run was. Refuses an optimizer state that is not the weights' own: saved at
    /// another step, or for other parameters or shapes.
    pub fn load_last(
        &self,
        model: &mut Model,
        opt: &mut Optimizer,
        device: Device,
    ) -> Result<RunState> {
        let last = self.last();
        let meta = checkpoint::load(model, &last)
            .with_context(|| format!("--resume from {}", last.display()))?;
        let state = RunState::read(&meta, &last)?;
        let optim_path = self.out.join("last.optim.safetensors");
        let (tensors, optim) = checkpoint::load_tensors(&optim_path, device)
            .with_context(|| format!("--resume from {}", optim_path.display()))?;
        let number = |key: &str| -> Result<u64> {
            optim
                .get(key)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow!("{}: metadata {key} is missing", optim_path.display()))
        };
        // Files from before `run_step` was written: the optimizer's own step count is the run's.
        let run_step = number("run_step").or_else(|_| number("steps"))?;
        if run_step != state.step {
            bail!(
                "{} holds the optimizer state of step {run_step}, {} the weights of step {}: \
                 they are not one save",
                optim_path.display(),
                last.display(),
                state.step
            );
        }
        opt.load_state(tensors, number("steps")?)?;
        opt.check_state(model)
            .with_context(|| format!("{} does not fit the model", optim_path.display()))?;
        Ok(state)
    }

    /// The rows of `metrics.csv` up to epoch `epochs` (a run stopped mid-epoch may have
    /// written later ones before it was resumed from an earlier checkpoint); none without it.
    pub fn read_metrics(&self, epochs: usize) -> Result<Vec<EpochMetrics>> {
        let path = self.out.join("metrics.csv");
        if !path.exists() {
            return Ok(Vec::new());
        }
        let mut rows = metrics::parse_csv(&read_text(&path, 64 << 20)?)?;
        rows.retain(|r| r.epoch <= epochs);
        Ok(rows)
    }

    pub fn write_config(&self, json: &Value) -> Result<()> {
        write_text(
            &self.out.join("config.json"),
            &serde_json::to_string_pretty(json)?,
        )
    }

    /// Saves `last.safetensors` and `last.optim.safetensors` as one set (see [`SaveSet`]),
    /// with `best.safetensors` when `best`, and `metrics.csv` and `curves.png` when `rows`.
    pub fn save(
        &self,
        model: &mut Model,
        opt: &Optimizer,
        meta: &Metadata,
        best: bool,
        rows: Option<&[EpochMetrics]>,
    ) -> Result<()> {
        let mut set = SaveSet::new(&self.out);
        let weights = checkpoint::to_bytes(model, meta)?;
        set.stage("last.safetensors", &weights)?;
        let mut state = Metadata::new();
        state.insert("steps".into(), opt.steps.to_string());
        // The run's step, as in the weights' metadata: resume checks that the two match.
        state.insert(
            "run_step".into(),
            meta.get("step").cloned().unwrap_or_default(),
        );
        let optim = checkpoint::tensors_to_bytes(&opt.state_tensors(), &state)?;
        set.stage("last.optim.safetensors", &optim)?;
        if best {
            set.stage("best.safetensors", &weights)?;
        }
        if let Some(rows) = rows {
            set.stage("metrics.csv", metrics::csv_text(rows).as_bytes())?;
            set.stage("curves.png", &plot::curves_png(rows)?)?;
        }
        set.commit()
    }
}
