//! The `senet` command-line program: train, evaluate, predict, summarize and benchmark the
//! SENetV2 family, and check the framework's ops on any device.
use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use senet::models::{ModelConfig, Preset};
use senet::nn::schedule::ScheduleKind;
use senet::tensor::Device;
use senet::train::{DataOptions, DatasetSpec, OptimizerChoice, TrainOptions};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "senet",
    version,
    about = "SENetV2 classifiers on a from-scratch Rust deep-learning framework"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which network (see ../shared/MODELS.md).
#[derive(Args, Clone, Debug)]
struct ModelArgs {
    /// Family: resnet, se-resnet, senetv2, resnext, se-resnext, senextv2 or mobilenet.
    #[arg(long)]
    model: Option<String>,
    /// Depth: 9, 18, 26, 34, 50 or 101 (resnext families: 9, 26, 50, 101; none for mobilenet).
    #[arg(long)]
    depth: Option<usize>,
    /// Preset: `paper` (the paper's ImageNet-style network) or `cifar` (a CIFAR-style one).
    #[arg(long, default_value = "paper")]
    preset: String,
    /// Base width w: stage s has w*2^s channels (64 is the published network).
    #[arg(long, default_value_t = 64)]
    width: usize,
    /// Number of classes (default: the dataset's, or the checkpoint's).
    #[arg(long)]
    classes: Option<usize>,
    /// Any other model option as NAME=VALUE (stem, reduction, cardinality, combine, conv_bias,
    /// fc_bias, bn_eps, bn_momentum, init); repeat for several.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    set: Vec<String>,
}

impl ModelArgs {
    /// The config these flags describe; `classes` falls back to `default_classes`.
    fn config(&self, default_classes: usize) -> Result<ModelConfig> {
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
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum DatasetKind {
    Cifar10,
    Cifar100,
    Imagefolder,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LabelKind {
    Fine,
    Coarse,
}

/// Where the images come from.
#[derive(Args, Clone, Debug)]
struct DataArgs {
    /// cifar10 / cifar100 (official binary files, downloaded when missing) or imagefolder.
    #[arg(long, value_enum, default_value = "cifar10")]
    dataset: DatasetKind,
    /// CIFAR-100 labels: fine (100 classes) or coarse (20).
    #[arg(long, value_enum, default_value = "fine")]
    labels: LabelKind,
    /// cifar10: the folder holding cifar-10-batches-bin/; cifar100: holding cifar-100-binary/;
    /// imagefolder: a folder or .tar.gz with train/ and test/, one folder per class.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Download the CIFAR archive from this URL instead of the official one.
    #[arg(long)]
    data_url: Option<String>,
    /// Expected md5 of the archive at --data-url.
    #[arg(long)]
    data_md5: Option<String>,
    /// Image size of an image folder (other sizes are an error unless --resize).
    #[arg(long, default_value_t = 32)]
    image_size: usize,
    /// Resize image-folder images of another size to --image-size.
    #[arg(long)]
    resize: bool,
}

impl DataArgs {
    fn options(&self) -> DataOptions {
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
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum OptimizerArg {
    Sgd,
    Adamw,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ScheduleArg {
    Constant,
    Step,
    Cosine,
    Onecycle,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model. Default recipe: SGD, Nesterov momentum 0.9, lr 0.1 at batch 128, weight
    /// decay 5e-4, one epoch of linear warm-up then cosine to zero, random crop + flip.
    Train {
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        data: DataArgs,
        /// Epochs to train.
        #[arg(long, default_value_t = 15)]
        epochs: usize,
        /// Stop after this many optimizer steps in total (may stop mid-epoch; writes last.safetensors).
        #[arg(long)]
        max_steps: Option<u64>,
        /// Images per step.
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Peak learning rate.
        #[arg(long, default_value_t = 0.1)]
        lr: f64,
        /// SGD momentum (0: plain SGD).
        #[arg(long, default_value_t = 0.9)]
        momentum: f64,
        /// Nesterov momentum for SGD (`--nesterov false` turns it off).
        #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
        nesterov: bool,
        /// L2 weight decay (SGD) or decoupled weight decay (AdamW).
        #[arg(long, default_value_t = 5e-4)]
        weight_decay: f64,
        /// SGD (with --momentum / --nesterov) or AdamW (betas 0.9, 0.999, eps 1e-8).
        #[arg(long, value_enum, default_value = "sgd")]
        optimizer: OptimizerArg,
        /// Learning-rate schedule after the warm-up (step: x0.1 at 50% and 75%).
        #[arg(long, value_enum, default_value = "cosine")]
        schedule: ScheduleArg,
        /// Epochs of linear warm-up (fractions allowed).
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Label smoothing of the cross-entropy (0 = none).
        #[arg(long, default_value_t = 0.0)]
        label_smoothing: f64,
        /// Turn off random crop and flip (normalization stays).
        #[arg(long)]
        no_augment: bool,
        /// Keep the file order instead of shuffling every epoch.
        #[arg(long)]
        no_shuffle: bool,
        /// Seed of the weights, the data order and the augmentation.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// cpu, gpu, auto (a hardware GPU, else the CPU) or an adapter name.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Start from every tensor of this checkpoint (BN statistics included) with a fresh optimizer.
        #[arg(long)]
        init: Option<PathBuf>,
        /// Output folder (config.json, metrics.csv, curves.png, last/best checkpoints).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in --out from last.safetensors.
        #[arg(long)]
        resume: bool,
        /// Background threads preparing batches.
        #[arg(long, default_value_t = 2)]
        workers: usize,
    },
    /// Evaluate a checkpoint on the test split: loss, top-1, top-5 and per-class accuracy.
    Eval {
        /// A safetensors checkpoint (ours, or PyTorch's with --model ... flags).
        #[arg(long)]
        checkpoint: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        data: DataArgs,
        /// cpu, gpu, auto (a hardware GPU, else the CPU) or an adapter name.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Images per evaluation batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// Classify PNG/JPEG images: five most likely classes per image.
    Predict {
        /// A safetensors checkpoint (ours, or PyTorch's with --model ... flags).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Images to classify.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        /// Class names, one per line (default: the checkpoint's, else CIFAR-10's).
        #[arg(long)]
        class_names: Option<PathBuf>,
        /// Per-channel mean (default: the checkpoint's, else CIFAR-10's).
        #[arg(long, value_delimiter = ',')]
        mean: Option<Vec<f32>>,
        /// Per-channel std (default: the checkpoint's, else CIFAR-10's).
        #[arg(long, value_delimiter = ',')]
        std: Option<Vec<f32>>,
        /// Resize images whose size differs from the model's input size.
        #[arg(long)]
        resize: bool,
        /// cpu, gpu, auto (a hardware GPU, else the CPU) or an adapter name.
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Per-layer table, parameter counts and forward MFLOPs of a model.
    Summary {
        #[command(flatten)]
        model: ModelArgs,
        /// Input image size.
        #[arg(long, default_value_t = 32)]
        input_size: usize,
    },
    /// Training and inference throughput (images/s) on random data.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Images per step.
        #[arg(long, default_value_t = 128)]
        batch: usize,
        /// Timed steps (after 2 warm-up steps).
        #[arg(long, default_value_t = 10)]
        steps: usize,
        /// cpu, gpu, auto (a hardware GPU, else the CPU) or an adapter name.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Input image size.
        #[arg(long, default_value_t = 32)]
        input_size: usize,
    },
    /// Check every op: on the CPU, forward against naive loops and gradients against central
    /// differences; on a GPU, forward and gradients against the CPU.
    Selftest {
        /// `cpu`, `gpu` (best adapter of any kind, lavapipe included), `auto` (a hardware GPU,
        /// else the CPU) or a substring of an adapter name (see `senet devices`).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Random cases per op.
        #[arg(long, default_value_t = 4)]
        cases: usize,
        /// Seed of the random shapes and values (the same seed gives the same table).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// List the GPU adapters wgpu sees, and which one `--device auto` and `--device gpu` pick.
    Devices,
}

fn main() -> ExitCode {
    quiet_mesa();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train {
            model,
            data,
            epochs,
            max_steps,
            batch,
            lr,
            momentum,
            nesterov,
            weight_decay,
            optimizer,
            schedule,
            warmup,
            label_smoothing,
            no_augment,
            no_shuffle,
            seed,
            device,
            init,
            out,
            resume,
            workers,
        } => (|| {
            let config = model.config(model.classes.unwrap_or(10))?;
            let out = out.unwrap_or_else(|| PathBuf::from("runs").join(config.name()));
            let o = TrainOptions {
                model: config,
                classes: model.classes,
                data: data.options(),
                epochs,
                max_steps,
                batch,
                lr,
                momentum,
                nesterov,
                weight_decay,
                optimizer: match optimizer {
                    OptimizerArg::Sgd => OptimizerChoice::Sgd,
                    OptimizerArg::Adamw => OptimizerChoice::AdamW,
                },
                schedule: match schedule {
                    ScheduleArg::Constant => ScheduleKind::Constant,
                    ScheduleArg::Step => ScheduleKind::Step { gamma: 0.1 },
                    ScheduleArg::Cosine => ScheduleKind::Cosine,
                    ScheduleArg::Onecycle => ScheduleKind::OneCycle,
                },
                warmup,
                label_smoothing,
                augment: !no_augment,
                shuffle: !no_shuffle,
                seed,
                device,
                init,
                out,
                resume,
                workers,
                progress: true,
            };
            // Ctrl-C: finish the current step, save a checkpoint, exit cleanly.
            ctrlc::set_handler(|| {
                eprintln!("\nCtrl-C: saving a checkpoint after this step (press again to kill)");
                if senet::train::STOP.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    std::process::exit(130);
                }
            })
            .context("installing the Ctrl-C handler")?;
            let (rows, outcome) = senet::train::train(&o)?;
            if let Some(r) = rows.last() {
                eprintln!(
                    "{outcome:?} after epoch {}: test top-1 {:.2}%; results in {}",
                    r.epoch,
                    r.test_top1,
                    o.out.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        })(),
        Command::Eval {
            checkpoint,
            model,
            data,
            device,
            batch,
        } => senet::commands::eval(
            &checkpoint,
            &model_opt(&model),
            &data.options(),
            &device,
            batch,
        ),
        Command::Predict {
            checkpoint,
            images,
            model,
            class_names,
            mean,
            std,
            resize,
            device,
        } => senet::commands::predict(
            &checkpoint,
            &images,
            &model_opt(&model),
            class_names.as_deref(),
            mean,
            std,
            resize,
            &device,
        ),
        Command::Summary { model, input_size } => (|| {
            let mut m = senet::models::build(&model.config(model.classes.unwrap_or(10))?, 0)?;
            println!("{}", senet::models::summary(&mut m, input_size)?);
            Ok(ExitCode::SUCCESS)
        })(),
        Command::Bench {
            model,
            batch,
            steps,
            device,
            input_size,
        } => (|| {
            senet::commands::bench(
                &model.config(model.classes.unwrap_or(10))?,
                batch,
                steps,
                &device,
                input_size,
            )
        })(),
        Command::Selftest {
            device,
            cases,
            seed,
        } => selftest(&device, cases, seed),
        Command::Devices => Ok(devices()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Mesa's Vulkan drivers print "XDG_RUNTIME_DIR is invalid or not set" on every device
/// enumeration when it is unset (headless machines, CI); point it at a private folder instead,
/// before any thread starts.
fn quiet_mesa() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        let dir = std::env::temp_dir().join(format!("senet-runtime-{}", std::process::id()));
        if std::fs::create_dir_all(&dir).is_ok() {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    }
}

/// The model flags as an optional config (eval and predict use the checkpoint's description
/// when it has one).
fn model_opt(m: &ModelArgs) -> Option<Result<ModelConfig>> {
    m.model.as_ref().map(|_| m.config(m.classes.unwrap_or(10)))
}

fn selftest(device: &str, cases: usize, seed: u64) -> Result<ExitCode> {
    if cases == 0 {
        bail!("--cases must be at least 1");
    }
    let device = Device::parse(device).with_context(|| format!("--device {device}"))?;
    println!("device: {}", device.describe());
    let rows = senet::selftest::run(cases, seed, device);
    print!("{}", senet::selftest::format_table(&rows, device));
    let failed = rows.iter().filter(|r| !r.passed()).count();
    if failed > 0 {
        println!("{failed} of {} ops FAILED", rows.len());
        Ok(ExitCode::FAILURE)
    } else {
        println!("all {} ops passed", rows.len());
        Ok(ExitCode::SUCCESS)
    }
}

fn devices() -> ExitCode {
    use senet::gpu::{adapters, DeviceRequest};
    let all = adapters();
    if all.is_empty() {
        println!("no GPU adapters (Vulkan, Metal or DX12); on Linux, Mesa's lavapipe gives a software one: apt-get install mesa-vulkan-drivers");
    }
    for a in &all {
        println!(
            "{}: {} | backend {} | type {} | driver {} | max buffer {} MiB, max storage binding {} MiB, {} storage buffers per stage, {} KiB workgroup memory, {} invocations per workgroup",
            a.index,
            a.name,
            a.backend,
            a.device_type,
            if a.driver.is_empty() { "?" } else { &a.driver },
            a.max_buffer_size >> 20,
            a.max_storage_buffer_binding_size >> 20,
            a.max_storage_buffers_per_shader_stage,
            a.max_compute_workgroup_storage_size >> 10,
            a.max_compute_invocations_per_workgroup
        );
    }
    let pick = |r: DeviceRequest| match r.choose() {
        Ok(Some(a)) => format!("adapter {} ({a})", a.index),
        Ok(None) => {
            "the CPU backend (no hardware GPU; a software adapter is slower than the CPU backend)"
                .to_string()
        }
        Err(e) => format!("nothing: {e}"),
    };
    println!("--device auto picks {}", pick(DeviceRequest::Auto));
    println!("--device gpu picks {}", pick(DeviceRequest::Gpu));
    ExitCode::SUCCESS
}
