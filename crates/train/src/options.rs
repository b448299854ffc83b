//! What a run is told: the dataset to read, the model, and the recipe — plain values that
//! tests and examples fill in directly (the command line's flags convert to them in `args`).
use anyhow::{bail, Result};
use senet_data::{self as data, Dataset};
use senet_models::ModelConfig;
use senet_nn::optim::Optimizer;
use senet_nn::schedule::ScheduleKind;
use std::path::PathBuf;

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
            ..Default::default()
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

    /// The dataset in words (the `dataset` of `config.json`).
    pub fn describe(&self) -> String {
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

/// The optimizer of a run (`--optimizer`).
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum OptimizerChoice {
    Sgd,
    #[value(name = "adamw")]
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
    /// Also save `last.*` every this many steps within an epoch (`None`: at epoch ends only).
    pub save_every: Option<u64>,
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

impl TrainOptions {
    /// The checks that need no data: run before anything is read or written.
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 {
            bail!("--batch must be at least 1");
        }
        if self.epochs == 0 {
            bail!("--epochs must be at least 1");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            bail!(
                "--label-smoothing must be in [0, 1), got {}",
                self.label_smoothing
            );
        }
        if self.lr <= 0.0 || !self.lr.is_finite() {
            bail!("--lr must be a positive number, got {}", self.lr);
        }
        if !(0.0..1.0).contains(&self.momentum) {
            bail!("--momentum must be in [0, 1), got {}", self.momentum);
        }
        if !(0.0..=1.0).contains(&self.weight_decay) {
            bail!(
                "--weight-decay must be in [0, 1], got {}",
                self.weight_decay
            );
        }
        if !(0.0..=self.epochs as f64).contains(&self.warmup) {
            bail!(
                "--warmup must be in [0, --epochs = {}], got {}",
                self.epochs,
                self.warmup
            );
        }
        if self.max_steps == Some(0) {
            bail!("--max-steps must be at least 1");
        }
        if self.save_every == Some(0) {
            bail!("--save-every must be at least 1");
        }
        Ok(())
    }

    /// The model trained on `ds`: `--classes` must agree with the dataset when given.
    pub fn model_for(&self, ds: &Dataset) -> Result<ModelConfig> {
        let mut config = self.model.clone();
        config.classes = match self.classes {
            Some(c) if c != ds.classes.len() => bail!(
                "--classes {c} but the dataset has {} classes",
                ds.classes.len()
            ),
            _ => ds.classes.len(),
        };
        Ok(config)
    }

    /// Optimizer steps in one epoch: full batches only.
    pub fn steps_per_epoch(&self, ds: &Dataset) -> Result<usize> {
        senet_data::files::check_batch(self.batch, ds.image_size, "--batch")?;
        if self.batch > ds.train.len {
            bail!(
                "--batch {} is larger than the {} training images",
                self.batch,
                ds.train.len
            )
        }
        Ok(ds.train.len / self.batch)
    }

    /// A fresh optimizer of the chosen kind.
    pub fn optimizer(&self) -> Optimizer {
        match self.optimizer {
            OptimizerChoice::Sgd => Optimizer::sgd(self.momentum, self.nesterov, self.weight_decay),
            OptimizerChoice::AdamW => Optimizer::adamw(0.9, 0.999, 1e-8, self.weight_decay),
        }
    }
}
