//! The command-line flags of `senet train` (and the model and data flags other commands share),
//! as clap structs the program flattens, each with the one method that turns it into the
//! options of [`crate::options`]. The doc comments are the `--help` text.
use crate::options::{DataOptions, DatasetSpec, OptimizerChoice, TrainOptions};
use anyhow::{anyhow, Context, Result};
use clap::{Args, ValueEnum};
use senet_models::{ModelConfig, Preset};
use senet_nn::schedule::ScheduleKind;
use std::path::PathBuf;

/// A clap value parser for a whole-number flag in `LO..=HI`. Every size a flag gives is
/// bounded here, before it sizes anything; the range is also in the flag's `--help`.
pub fn count_in<const LO: u64, const HI: u64>(s: &str) -> Result<usize, String> {
    let v = steps_in::<LO, HI>(s)?;
    usize::try_from(v).map_err(|_| format!("{v} does not fit this machine's sizes"))
}

/// [`count_in`] for a count that may pass `usize` on 32-bit machines (optimizer steps).
pub fn steps_in<const LO: u64, const HI: u64>(s: &str) -> Result<u64, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a whole number from {LO} to {HI}"))?;
    if (LO..=HI).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is out of range: {LO} to {HI}"))
    }
}

/// The largest image side any command takes (`--image-size`, `--input-size`).
pub const MAX_IMAGE_SIZE: u64 = 4096;
/// The most images in one batch (`--batch`).
pub const MAX_BATCH: u64 = 1 << 16;

/// Which network (see ../shared/MODELS.md).
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// Family: resnet, se-resnet, senetv2, resnext, se-resnext, senextv2 or mobilenet
    /// (required, unless --config or the checkpoint gives it).
    #[arg(long)]
    pub model: Option<String>,
    /// Depth: 9, 18, 26, 34, 50 or 101 (resnext families: 9, 26, 50, 101; none for mobilenet).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Preset: `paper` (the paper's network: an ImageNet stem, a 7x7 stride-2 convolution and a
    /// max pool, that shrinks 32x32 images to 8x8) or `cifar` (a 3x3 stride-1 stem that keeps
    /// 32x32: the usual choice for CIFAR, slower and more accurate).
    #[arg(long, default_value = "paper")]
    pub preset: String,
    /// Base width w: stage s has w*2^s channels (64 is the published network); 1 to 1024.
    #[arg(long, default_value_t = 64, value_parser = count_in::<1, 1024>)]
    pub width: usize,
    /// Number of classes (default: the dataset's, or the checkpoint's); 1 to 100000.
    #[arg(long, value_parser = count_in::<1, 100_000>)]
    pub classes: Option<usize>,
    /// Any other model option as NAME=VALUE (stem, reduction, cardinality, combine, conv_bias,
    /// fc_bias, bn_eps, bn_momentum, init); repeat for several.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

impl ModelArgs {
    /// The config these flags describe; `classes` falls back to `default_classes`.
    pub fn config(&self, default_classes: usize) -> Result<ModelConfig> {
        let family = self.model.as_deref().ok_or_else(|| anyhow!("--model is required (resnet, se-resnet, senetv2, resnext, se-resnext, senextv2, mobilenet)"))?;
        let preset: Preset = self
            .preset
            .parse()
            .with_context(|| format!("--preset {}", self.preset))?;
        let mut c = ModelConfig::new(
            family
                .parse()
                .with_context(|| format!("--model {family}"))?,
            self.depth,
            preset,
            self.classes.unwrap_or(default_classes),
        );
        c.width = self.width;
        for kv in &self.set {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| anyhow!("--set {kv}: expected NAME=VALUE"))?;
            c.set(k, v).with_context(|| format!("--set {kv}"))?;
        }
        c.validate()?;
        Ok(c)
    }

    /// The config when `--model` is given (eval and predict prefer the checkpoint's own
    /// description, so an error here matters only for a checkpoint without one).
    pub fn config_if_given(&self) -> Option<Result<ModelConfig>> {
        self.model
            .as_ref()
            .map(|_| self.config(self.classes.unwrap_or(10)))
    }
}

/// The values of `--dataset` (see [`DataArgs::dataset`]).
#[derive(Clone, Copy, Debug, ValueEnum)]
#[allow(
    missing_docs,
    reason = "clap prints variant doc comments in --help; the flag's doc describes the values"
)]
pub enum DatasetKind {
    Cifar10,
    Cifar100,
    Imagefolder,
}

/// The values of `--labels`: CIFAR-100's 100 fine classes or its 20 coarse superclasses.
#[derive(Clone, Copy, Debug, ValueEnum)]
#[allow(
    missing_docs,
    reason = "clap prints variant doc comments in --help; the flag's doc describes the values"
)]
pub enum LabelKind {
    Fine,
    Coarse,
}

/// Where the images come from.
#[derive(Args, Clone, Debug)]
pub struct DataArgs {
    /// cifar10 / cifar100 (official binary files, downloaded when missing) or imagefolder.
    #[arg(long, value_enum, default_value = "cifar10")]
    pub dataset: DatasetKind,
    /// CIFAR-100 labels: fine (100 classes) or coarse (20).
    #[arg(long, value_enum, default_value = "fine")]
    pub labels: LabelKind,
    /// Where the dataset is. cifar10: the folder holding cifar-10-batches-bin/ (the official
    /// archive is downloaded there when missing, md5-checked); cifar100: likewise with
    /// cifar-100-binary/; imagefolder: a folder or .tar.gz with train/ and test/, one folder per
    /// class. Default: $SENET_DATA, else ./data.
    #[arg(long, env = "SENET_DATA", default_value = "data")]
    pub data: PathBuf,
    /// Download the CIFAR archive from this URL instead of the official one.
    #[arg(long)]
    pub data_url: Option<String>,
    /// Expected md5 of the archive at --data-url.
    #[arg(long)]
    pub data_md5: Option<String>,
    /// Image size of an image folder (other sizes are an error unless --resize); 1 to 4096.
    #[arg(long, default_value_t = 32, value_parser = count_in::<1, MAX_IMAGE_SIZE>)]
    pub image_size: usize,
    /// Resize image-folder images of another size to --image-size.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub resize: bool,
}

impl DataArgs {
    /// The [`DataOptions`] these flags describe, with the dataset's own normalization
    /// ([`TrainArgs::options`] applies `--mean` and `--std`).
    pub fn options(&self) -> DataOptions {
        let spec = match self.dataset {
            DatasetKind::Cifar10 => DatasetSpec::Cifar10,
            DatasetKind::Cifar100 => DatasetSpec::Cifar100 {
                coarse: matches!(self.labels, LabelKind::Coarse),
            },
            DatasetKind::Imagefolder => DatasetSpec::ImageFolder {
                image_size: self.image_size,
                resize: self.resize,
            },
        };
        DataOptions {
            spec,
            dir: self.data.clone(),
            url: self.data_url.clone(),
            md5: self.data_md5.clone(),
            mean: None,
            std: None,
        }
    }
}

/// The values of `--schedule`; [`ScheduleArg::kind`] gives the schedule each one names.
#[derive(Clone, Copy, Debug, ValueEnum)]
#[allow(
    missing_docs,
    reason = "clap prints variant doc comments in --help; the flag's doc describes the values"
)]
pub enum ScheduleArg {
    Constant,
    Step,
    Cosine,
    Onecycle,
}

impl ScheduleArg {
    /// The learning-rate schedule this value names (`step` multiplies by 0.1 at 50% and 75% of
    /// the steps after the warm-up).
    pub fn kind(self) -> ScheduleKind {
        match self {
            ScheduleArg::Constant => ScheduleKind::Constant,
            ScheduleArg::Step => ScheduleKind::Step { gamma: 0.1 },
            ScheduleArg::Cosine => ScheduleKind::Cosine,
            ScheduleArg::Onecycle => ScheduleKind::OneCycle,
        }
    }
}

/// The flags of `senet train`.
#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// Take every option from this TOML or JSON file, keys named as the flags without their
    /// dashes (`lr = 0.05`, `no-augment = true`, `set = ["stem=cifar"]`); a flag on the command
    /// line overrides the file. A run's config.json is such a file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    // (clap ignores doc comments on flattened fields: they stay out of --help.)
    /// The model flags: `--model`, `--depth`, `--preset`, `--width`, `--classes`, `--set`.
    #[command(flatten)]
    pub model: ModelArgs,
    /// The data flags: `--dataset`, `--labels`, `--data`, `--image-size`, ...
    #[command(flatten)]
    pub data: DataArgs,
    /// Per-channel mean to normalize with, 3 numbers (default: the dataset's own: CIFAR's
    /// published values, an image folder's computed from its training split).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub mean: Option<Vec<f32>>,
    /// Per-channel std to normalize with, 3 positive numbers (default: the dataset's own).
    #[arg(long, value_delimiter = ',', num_args = 1)]
    pub std: Option<Vec<f32>>,
    /// Epochs to train; 1 to 100000.
    #[arg(long, default_value_t = 15, value_parser = count_in::<1, 100_000>)]
    pub epochs: usize,
    /// Stop after this many optimizer steps in total (may stop mid-epoch; writes
    /// last.safetensors); at least 1.
    #[arg(long, value_parser = steps_in::<1, { u64::MAX }>)]
    pub max_steps: Option<u64>,
    /// Also save last.safetensors (with its optimizer state) every this many steps within an
    /// epoch, so a kill loses at most that many; at least 1 (default: at epoch ends only).
    #[arg(long, value_parser = steps_in::<1, { u64::MAX }>)]
    pub save_every: Option<u64>,
    /// Images per step; 1 to 65536.
    #[arg(long, default_value_t = 128, value_parser = count_in::<1, MAX_BATCH>)]
    pub batch: usize,
    /// Peak learning rate: a positive number.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    /// SGD momentum (0: plain SGD); 0 to below 1.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Nesterov momentum for SGD (`--nesterov false` turns it off).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub nesterov: bool,
    /// L2 weight decay (SGD) or decoupled weight decay (AdamW); 0 to 1.
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// SGD (with --momentum / --nesterov) or AdamW (betas 0.9, 0.999, eps 1e-8).
    #[arg(long, value_enum, default_value = "sgd")]
    pub optimizer: OptimizerChoice,
    /// Learning-rate schedule after the warm-up (step: x0.1 at 50% and 75%).
    #[arg(long, value_enum, default_value = "cosine")]
    pub schedule: ScheduleArg,
    /// Epochs of linear warm-up (fractions allowed); 0 to --epochs.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Label smoothing of the cross-entropy (0 = none); 0 to below 1.
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Turn off random crop and flip (normalization stays).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub no_augment: bool,
    /// Keep the file order instead of shuffling every epoch.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub no_shuffle: bool,
    /// Seed of the weights, the data order and the augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu, gpu, auto (a hardware GPU, else the CPU) or an adapter name.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Start from every tensor of this checkpoint (BN statistics included) with a fresh optimizer.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Output folder (config.json, metrics.csv, steps.csv, curves.png, last/best
    /// checkpoints); default runs/MODEL-DEPTH. A folder that holds a run is refused unless
    /// --resume or --overwrite.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from last.safetensors.
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Replace the run in --out: its files (checkpoints, metrics, curves, TensorBoard events)
    /// are removed before the new run starts; refused if --out holds any other file.
    #[arg(long)]
    pub overwrite: bool,
    /// Background threads preparing batches; 0 to 64.
    #[arg(long, default_value_t = 2, value_parser = count_in::<0, 64>)]
    pub workers: usize,
    /// Write the mean training loss, top-1 and learning rate of every N steps to steps.csv
    /// (and print a progress line when stderr is not a terminal); 1 to 1000000.
    #[arg(long, default_value_t = 50, value_parser = steps_in::<1, 1_000_000>)]
    pub log_every: u64,
    /// Also write TensorBoard event files to --out/tensorboard (`tensorboard --logdir runs`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub tensorboard: bool,
}

/// `--mean` / `--std` as 3 numbers.
fn three(name: &str, v: &Option<Vec<f32>>) -> Result<Option<[f32; 3]>> {
    v.clone()
        .map(|v| {
            v.try_into()
                .map_err(|v: Vec<f32>| anyhow!("{name} takes 3 numbers (R,G,B), got {}", v.len()))
        })
        .transpose()
}

impl TrainArgs {
    /// The options these flags describe; `--out` defaults to `runs/<model name>`, and the
    /// program shows progress.
    pub fn options(&self) -> Result<TrainOptions> {
        let model = self.model.config(self.model.classes.unwrap_or(10))?;
        let out = self
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("runs").join(model.name()));
        let data = DataOptions {
            mean: three("--mean", &self.mean)?,
            std: three("--std", &self.std)?,
            ..self.data.options()
        };
        Ok(TrainOptions {
            model,
            classes: self.model.classes,
            data,
            epochs: self.epochs,
            max_steps: self.max_steps,
            save_every: self.save_every,
            batch: self.batch,
            lr: self.lr,
            momentum: self.momentum,
            nesterov: self.nesterov,
            weight_decay: self.weight_decay,
            optimizer: self.optimizer,
            schedule: self.schedule.kind(),
            warmup: self.warmup,
            label_smoothing: self.label_smoothing,
            augment: !self.no_augment,
            shuffle: !self.no_shuffle,
            seed: self.seed,
            device: self.device.clone(),
            init: self.init.clone(),
            out,
            resume: self.resume,
            overwrite: self.overwrite,
            workers: self.workers,
            log_every: self.log_every,
            tensorboard: self.tensorboard,
            progress: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        train: TrainArgs,
    }

    #[test]
    fn the_default_flags_give_the_default_recipe() {
        let cli = Cli::try_parse_from(["senet", "--model", "senetv2", "--depth", "9"]).unwrap();
        let o = cli.train.options().unwrap();
        assert_eq!(o.model.name(), "senetv2-9");
        assert_eq!(o.classes, None);
        assert_eq!(o.data.spec, DatasetSpec::Cifar10);
        assert_eq!((o.epochs, o.batch, o.lr, o.momentum), (15, 128, 0.1, 0.9));
        assert!(o.nesterov && o.augment && o.shuffle && o.progress && !o.resume);
        assert_eq!(o.optimizer, OptimizerChoice::Sgd);
        assert_eq!(o.schedule, ScheduleKind::Cosine);
        assert_eq!(o.out, PathBuf::from("runs/senetv2-9"));
    }

    #[test]
    fn sizes_outside_their_range_are_refused_with_the_range() {
        for (flag, value, range) in [
            ("--batch", "0", "1 to 65536"),
            ("--batch", "65537", "1 to 65536"),
            ("--width", "1000000", "1 to 1024"),
            ("--classes", "0", "1 to 100000"),
            ("--epochs", "0", "1 to 100000"),
            ("--max-steps", "0", "1 to"),
            ("--image-size", "4294967296", "1 to 4096"),
            ("--workers", "65", "0 to 64"),
            ("--batch", "-3", "not a whole number"),
            ("--batch", "18446744073709551616", "not a whole number"),
        ] {
            let arg = format!("{flag}={value}");
            let err = Cli::try_parse_from(["senet", "--model", "senetv2", &arg])
                .err()
                .unwrap_or_else(|| panic!("{flag} {value} was accepted"))
                .to_string();
            assert!(
                err.contains(flag) && err.contains(range),
                "{flag} {value}: {err}"
            );
        }
        // The ends of each range are accepted.
        let cli = Cli::try_parse_from([
            "senet",
            "--model",
            "senetv2",
            "--depth",
            "9",
            "--batch",
            "65536",
            "--width",
            "1024",
            "--workers",
            "0",
            "--max-steps",
            "1",
        ])
        .unwrap();
        assert_eq!((cli.train.batch, cli.train.model.width), (65536, 1024));
    }

    #[test]
    fn nonsense_numbers_are_refused_before_anything_runs() {
        for (flag, value, message) in [
            ("--lr", "NaN", "--lr must be a positive number"),
            ("--lr", "inf", "--lr must be a positive number"),
            ("--lr", "0", "--lr must be a positive number"),
            ("--momentum", "1", "--momentum must be in [0, 1)"),
            ("--momentum", "-0.1", "--momentum must be in [0, 1)"),
            ("--weight-decay", "NaN", "--weight-decay must be in [0, 1]"),
            ("--warmup", "16", "--warmup must be in [0, --epochs = 15]"),
            ("--warmup", "NaN", "--warmup must be in"),
            (
                "--label-smoothing",
                "1",
                "--label-smoothing must be in [0, 1)",
            ),
        ] {
            let arg = format!("{flag}={value}");
            let cli =
                Cli::try_parse_from(["senet", "--model", "senetv2", "--depth", "9", &arg]).unwrap();
            let err = cli
                .train
                .options()
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(message), "{flag} {value}: {err}");
        }
    }

    #[test]
    fn flags_map_onto_options() {
        let cli = Cli::try_parse_from([
            "senet",
            "--model",
            "resnet",
            "--depth",
            "18",
            "--nesterov",
            "false",
            "--optimizer",
            "adamw",
            "--schedule",
            "step",
            "--no-augment",
            "--dataset",
            "cifar100",
            "--labels",
            "coarse",
            "--out",
            "somewhere",
        ])
        .unwrap();
        let o = cli.train.options().unwrap();
        assert!(!o.nesterov && !o.augment && o.shuffle);
        assert_eq!(o.optimizer, OptimizerChoice::AdamW);
        assert_eq!(o.schedule, ScheduleKind::Step { gamma: 0.1 });
        assert_eq!(o.data.spec, DatasetSpec::Cifar100 { coarse: true });
        assert_eq!(o.out, PathBuf::from("somewhere"));
        let cli = Cli::try_parse_from(["senet", "--depth", "9"]).unwrap();
        assert!(cli
            .train
            .options()
            .unwrap_err()
            .to_string()
            .contains("--model"));
    }
}
