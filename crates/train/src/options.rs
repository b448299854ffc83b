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
    /// CIFAR-10: 50,000 training and 10,000 test images of 32x32 in 10 classes.
    Cifar10,
    /// CIFAR-100: the same sizes in 100 classes.
    Cifar100 {
        /// Use the 20 coarse superclasses as labels instead of the 100 fine classes.
        coarse: bool,
    },
    /// A folder (or `.tar.gz`) with `train/` and `test/`, each holding one folder per class.
    ImageFolder {
        /// The side every image has (or is resized to).
        image_size: usize,
        /// Resize images of another size instead of refusing them.
        resize: bool,
    },
}

/// Where the data comes from (shared by train and eval).
#[derive(Clone, Debug)]
pub struct DataOptions {
    /// Which dataset, and how to read it.
    pub spec: DatasetSpec,
    /// Its folder (or an image folder's archive); CIFAR is downloaded here when missing.
    pub dir: PathBuf,
    /// Download CIFAR from this URL instead of the official one.
    pub url: Option<String>,
    /// The expected md5 of the archive at `url`.
    pub md5: Option<String>,
    /// Per-channel mean and std to normalize with, replacing the dataset's own (CIFAR's
    /// published values, or an image folder's computed from its training split).
    pub mean: Option<[f32; 3]>,
    /// Per-channel std to normalize with, likewise.
    pub std: Option<[f32; 3]>,
}

impl DataOptions {
    /// `spec` read from `dir`, the official download URL, the dataset's own normalization.
    pub fn new(spec: DatasetSpec, dir: impl Into<PathBuf>) -> Self {
        DataOptions {
            spec,
            dir: dir.into(),
            url: None,
            md5: None,
            mean: None,
            std: None,
        }
    }

    /// Loads (downloading CIFAR when needed) the dataset, with `mean` and `std` applied.
    pub fn load(&self) -> Result<Dataset> {
        let mut ds = self.load_files()?;
        if let Some(mean) = self.mean {
            ds.mean = mean;
        }
        if let Some(std) = self.std {
            ds.std = std;
        }
        Ok(ds)
    }

    fn load_files(&self) -> Result<Dataset> {
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

/// The flag `--schedule` takes for `kind`.
pub fn schedule_flag(kind: ScheduleKind) -> &'static str {
    match kind {
        ScheduleKind::Constant => "constant",
        ScheduleKind::Step { .. } => "step",
        ScheduleKind::Cosine => "cosine",
        ScheduleKind::OneCycle => "onecycle",
    }
}

/// The optimizer of a run (`--optimizer`).
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
#[allow(
    missing_docs,
    reason = "clap prints variant doc comments in --help; `--optimizer`'s doc describes them"
)]
pub enum OptimizerChoice {
    Sgd,
    #[value(name = "adamw")]
    AdamW,
}

/// Every setting of a run (what `config.json` records).
#[derive(Clone, Debug)]
pub struct TrainOptions {
    /// The network; its `classes` becomes the dataset's ([`TrainOptions::model_for`]).
    pub model: ModelConfig,
    /// `--classes` as given (the dataset decides otherwise).
    pub classes: Option<usize>,
    /// The dataset to train and test on.
    pub data: DataOptions,
    /// Passes over the training split.
    pub epochs: usize,
    /// Stop after this many optimizer steps in total, even mid-epoch (a checkpoint is saved).
    pub max_steps: Option<u64>,
    /// Also save `last.*` every this many steps within an epoch (`None`: at epoch ends only).
    pub save_every: Option<u64>,
    /// Images per optimizer step; an epoch takes full batches only.
    pub batch: usize,
    /// Peak learning rate, reached at the end of the warm-up.
    pub lr: f64,
    /// SGD momentum (0: plain SGD).
    pub momentum: f64,
    /// Nesterov momentum for SGD.
    pub nesterov: bool,
    /// L2 weight decay (SGD) or decoupled weight decay (AdamW).
    pub weight_decay: f64,
    /// SGD or AdamW.
    pub optimizer: OptimizerChoice,
    /// The learning-rate curve after the warm-up.
    pub schedule: ScheduleKind,
    /// Epochs of linear warm-up up to `lr` (fractions allowed; one-cycle has its own).
    pub warmup: f64,
    /// Label smoothing of the training cross-entropy (0: none).
    pub label_smoothing: f64,
    /// Random crop and horizontal flip of the training images.
    pub augment: bool,
    /// A new seeded order of the training split every epoch (else the file order).
    pub shuffle: bool,
    /// Seeds the weights, the data order and the augmentation.
    pub seed: u64,
    /// `cpu`, `gpu`, `auto` or an adapter name.
    pub device: String,
    /// Start from this checkpoint's tensors (with a fresh optimizer) instead of random weights.
    pub init: Option<PathBuf>,
    /// The run folder.
    pub out: PathBuf,
    /// Continue the run in `out` from its `last.*` checkpoint.
    pub resume: bool,
    /// Remove the files of a run already in `out` before starting (never other files).
    pub overwrite: bool,
    /// Background threads preparing (loading and augmenting) batches.
    pub workers: usize,
    /// Write a row of `steps.csv` (and TensorBoard scalars) every this many steps.
    pub log_every: u64,
    /// Also write TensorBoard event files under `out/tensorboard`.
    pub tensorboard: bool,
    /// Show a progress bar (off in tests).
    pub progress: bool,
}

impl TrainOptions {
    /// The default recipe (what `senet train` does with no recipe flags) for `model` on
    /// `data`, written to `out`: 15 epochs of batch 128, SGD with Nesterov momentum 0.9, lr 0.1,
    /// weight decay 5e-4, one warm-up epoch then cosine, random crop and flip, seed 0, on the
    /// CPU, without a progress display.
    pub fn new(model: ModelConfig, data: DataOptions, out: impl Into<PathBuf>) -> Self {
        TrainOptions {
            model,
            classes: None,
            data,
            epochs: 15,
            max_steps: None,
            save_every: None,
            batch: 128,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            optimizer: OptimizerChoice::Sgd,
            schedule: ScheduleKind::Cosine,
            warmup: 1.0,
            label_smoothing: 0.0,
            augment: true,
            shuffle: true,
            seed: 0,
            device: "cpu".into(),
            init: None,
            out: out.into(),
            resume: false,
            overwrite: false,
            workers: 2,
            log_every: 50,
            tensorboard: false,
            progress: false,
        }
    }

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
        if self.log_every == 0 {
            bail!("--log-every must be at least 1");
        }
        if self.resume && self.overwrite {
            bail!("--resume continues the run in --out and --overwrite replaces it: give one");
        }
        for (name, values) in [("--mean", self.data.mean), ("--std", self.data.std)] {
            let Some(v) = values else { continue };
            if v.iter().any(|x| !x.is_finite()) || (name == "--std" && v.iter().any(|&x| x <= 0.0))
            {
                bail!(
                    "{name} must be 3 finite numbers{}, got {v:?}",
                    if name == "--std" {
                        ", each positive"
                    } else {
                        ""
                    }
                );
            }
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

    /// The title of `curves.png`: the model, the dataset and the recipe.
    pub fn title(&self, model: &ModelConfig, ds: &Dataset) -> String {
        let width = if model.width == 64 {
            String::new()
        } else {
            format!(", width {}", model.width)
        };
        let optimizer = match self.optimizer {
            OptimizerChoice::Sgd if self.nesterov && self.momentum > 0.0 => "SGD Nesterov",
            OptimizerChoice::Sgd => "SGD",
            OptimizerChoice::AdamW => "AdamW",
        };
        format!(
            "{} ({} preset{width}) on {} ({} classes) | {optimizer} lr {} wd {}, batch {}, {} epochs, {} schedule",
            model.name(),
            model.preset,
            self.data.describe(),
            ds.classes.len(),
            self.lr,
            self.weight_decay,
            self.batch,
            self.epochs,
            schedule_flag(self.schedule)
        )
    }

    /// A fresh optimizer of the chosen kind.
    pub fn optimizer(&self) -> Optimizer {
        match self.optimizer {
            OptimizerChoice::Sgd => Optimizer::sgd(self.momentum, self.nesterov, self.weight_decay),
            OptimizerChoice::AdamW => Optimizer::adamw(0.9, 0.999, 1e-8, self.weight_decay),
        }
    }
}
