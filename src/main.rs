//! The `senet` command-line program: train, evaluate, predict, summarize and benchmark the
//! SENetV2 family, draw the autograd graph of a training step, and check the framework's ops
//! on any device.
use anyhow::{anyhow, bail, Context, Result};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use senet::tensor::Device;
use senet::train::args::{count_in, MAX_BATCH, MAX_IMAGE_SIZE};
use senet::train::{config_file, DataArgs, ModelArgs, StopHandle, TrainArgs};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
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
    /// GPU kernels: `tuned` (the default: those made for what the adapter offers, such as the
    /// subgroup GEMM on a CPU adapter) or `plain` (written for any GPU). Overrides
    /// SENET_GPU_KERNELS.
    #[arg(long, global = true, value_name = "KIND", value_parser = ["tuned", "plain"])]
    gpu_kernels: Option<String>,
}

/// The studies of `senet reproduce`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum StudyName {
    Cifar10,
    Cifar100,
    Ablation,
}

/// The flags of `senet reproduce`.
#[derive(clap::Args)]
struct ReproduceArgs {
    /// `cifar10`: resnet, se-resnet and senetv2 at depth 9, paper preset (the paper's CIFAR-10
    /// networks); `cifar100`: the same at depth 50 (the paper's CIFAR-100 networks: use
    /// `--dataset cifar100 --labels coarse` for its 20 classes); `ablation`: the SaE of
    /// senetv2-9 at cardinality 1, 2, 4, 8 (reduction 32) and reduction 8, 16, 32, 64
    /// (cardinality 4).
    #[arg(long, value_enum)]
    study: StudyName,
    /// Seeds per model (runs use seeds 0 to N-1); 1 to 100.
    #[arg(long, default_value_t = 3, value_parser = count_in::<1, 100>)]
    seeds: usize,
    /// Epochs per run; 1 to 100000.
    #[arg(long, default_value_t = 15, value_parser = count_in::<1, 100_000>)]
    epochs: usize,
    /// Base width of every model (64: the published networks); 1 to 1024. The ablation refuses
    /// a width at which a cell's SaE would have a hidden size below 2.
    #[arg(long, default_value_t = 64, value_parser = count_in::<1, 1024>)]
    width: usize,
    /// Also train resnext, se-resnext and senextv2 (cifar10 and cifar100 studies).
    #[arg(long)]
    families: bool,
    /// Ablation: all 16 (cardinality, reduction) pairs instead of the 7-cell cross.
    #[arg(long)]
    grid: bool,
    #[command(flatten)]
    data: DataArgs,
    /// Images per step; 1 to 65536.
    #[arg(long, default_value_t = 128, value_parser = count_in::<1, MAX_BATCH>)]
    batch: usize,
    /// cpu, gpu, auto (a hardware GPU, else the CPU) or an adapter name.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The study's folder: a run folder per (model, seed), `<model>/seed-<n>`, and the report.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Train nothing: rebuild the report from the runs that have finished.
    #[arg(long)]
    report_only: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model. Default recipe: SGD, Nesterov momentum 0.9, lr 0.1 at batch 128, weight
    /// decay 5e-4, one epoch of linear warm-up then cosine to zero, random crop + flip.
    Train(TrainArgs),
    /// Answer one of the paper's research questions with several seeds: train every model of
    /// a study (each (model, seed) its own run folder under --out, made by the same trainer as
    /// `train` with its default recipe), then write report.md and report.json (mean and
    /// standard deviation over seeds, each pairwise difference with Welch's 95% interval and
    /// the paired per-seed interval, a verdict per pair). Finished runs are skipped and an
    /// interrupted one resumes, so the same command carries a stopped study on.
    Reproduce(ReproduceArgs),
    /// Evaluate a checkpoint on the test split: loss, top-1, top-5, per-class accuracy, and
    /// confusion.csv / confusion.png (and misclassified.png with --misclassified) written into
    /// the run folder with --run, else into --out.
    Eval {
        #[command(flatten)]
        source: Source,
        /// The folder for confusion.csv, confusion.png and misclassified.png (required without
        /// --run; eval writes nowhere else).
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present = "run",
            conflicts_with = "run"
        )]
        out: Option<PathBuf>,
        /// Also write misclassified.png: the N test images the model got wrong with the highest
        /// confidence, with their true and predicted classes; 0 to 64.
        #[arg(long, value_name = "N", default_value_t = 0, value_parser = count_in::<0, 64>)]
        misclassified: usize,
        /// Print one JSON document (every figure of the text report) instead of the text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        data: DataArgs,
        /// cpu, gpu, auto (a hardware GPU, else the CPU) or an adapter name.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Images per evaluation batch; 1 to 65536.
        #[arg(long, default_value_t = 500, value_parser = count_in::<1, MAX_BATCH>)]
        batch: usize,
    },
    /// Classify PNG/JPEG images (files, or folders whose images are read in name order): the
    /// five most likely classes of each.
    Predict {
        #[command(flatten)]
        source: Source,
        /// Images to classify, and folders of images.
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Print JSON Lines: one object per image (its path and the five classes with their
        /// probabilities).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        model: ModelArgs,
        /// Class names, one per line (default: the checkpoint's, else CIFAR-10's).
        #[arg(long)]
        class_names: Option<PathBuf>,
        /// Per-channel mean, 3 finite numbers, for a checkpoint that stores none (one that does
        /// is normalized with its own; a different value here is an error); default CIFAR-10's.
        #[arg(long, value_delimiter = ',')]
        mean: Option<Vec<f32>>,
        /// Per-channel std, 3 positive numbers, likewise.
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
        /// Input image size; 1 to 4096.
        #[arg(long, default_value_t = 32, value_parser = count_in::<1, MAX_IMAGE_SIZE>)]
        input_size: usize,
    },
    /// Write the autograd graph of one training step as a Graphviz DOT file (and draw it as
    /// an SVG with --svg).
    ///
    /// The step is the model's forward pass and cross-entropy loss on a random batch (seeded,
    /// 10 classes unless --classes), recorded as `senet train` records it. The file has one box
    /// per op (its output shape, and the tensors its gradient rule saves for backward with
    /// their bytes), one per parameter (its name), an arrow from each input to the op that
    /// reads it, and in its title the total bytes saved for backward.
    Graph(senet::graph::GraphArgs),
    /// Training and inference throughput (images/s) on random data.
    Bench {
        #[command(flatten)]
        model: ModelArgs,
        /// Images per step; 1 to 65536.
        #[arg(long, default_value_t = 128, value_parser = count_in::<1, MAX_BATCH>)]
        batch: usize,
        /// Timed steps (after 2 warm-up steps); 1 to 100000.
        #[arg(long, default_value_t = 10, value_parser = count_in::<1, 100_000>)]
        steps: usize,
        /// cpu, gpu, auto (a hardware GPU, else the CPU) or an adapter name.
        #[arg(long, default_value = "auto")]
        device: String,
        /// Input image size; 1 to 4096.
        #[arg(long, default_value_t = 32, value_parser = count_in::<1, MAX_IMAGE_SIZE>)]
        input_size: usize,
        /// Then run the steps again with every kernel timed and print where the time goes:
        /// one table for training (forward, backward, optimizer, data) and one for inference.
        #[arg(long)]
        profile: bool,
    },
    /// Check every op: on the CPU, forward against naive loops and gradients against central
    /// differences; on a GPU, forward and gradients against the CPU.
    Selftest {
        /// `cpu`, `gpu` (best adapter of any kind, lavapipe included), `auto` (a hardware GPU,
        /// else the CPU) or a substring of an adapter name (see `senet devices`).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Random cases per op; 1 to 10000.
        #[arg(long, default_value_t = 4, value_parser = count_in::<1, 10_000>)]
        cases: usize,
        /// Seed of the random shapes and values (the same seed gives the same table).
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// List the GPU adapters wgpu sees, and which one `--device auto` and `--device gpu` pick.
    Devices,
}

/// The checkpoint `eval` and `predict` read: a file, or a run folder's.
#[derive(clap::Args)]
struct Source {
    /// A safetensors checkpoint (ours, or PyTorch's with --model ... flags).
    #[arg(long, required_unless_present = "run", conflicts_with = "run")]
    checkpoint: Option<PathBuf>,
    /// A run folder of `senet train`: its best checkpoint (or --which last), whose metadata
    /// gives the model, classes and normalization; `eval` also takes the run's dataset from its
    /// config.json (data flags given here override it).
    #[arg(long, value_name = "DIR")]
    run: Option<PathBuf>,
    /// With --run: `best` (best.safetensors) or `last` (last.safetensors).
    #[arg(long, value_enum, default_value = "best", requires = "run")]
    which: Which,
}

impl Source {
    /// The checkpoint file: `--checkpoint`, or the run's, which must exist.
    fn path(&self) -> Result<PathBuf> {
        let Some(dir) = &self.run else {
            return Ok(self
                .checkpoint
                .clone()
                .expect("clap requires --checkpoint without --run"));
        };
        if !dir.join("config.json").is_file() {
            bail!(
                "--run {}: no config.json there, so not a run folder of `senet train`",
                dir.display()
            );
        }
        let path = self.which.path(dir);
        if !path.exists() {
            match self.which {
                Which::Best => bail!(
                    "--run {}: no best.safetensors yet (no epoch has finished): use --which last",
                    dir.display()
                ),
                Which::Last => bail!("--run {}: no last.safetensors yet", dir.display()),
            }
        }
        Ok(path)
    }
}

/// Which checkpoint of a run `--run` means.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Which {
    Best,
    Last,
}

impl Which {
    fn path(self, run: &Path) -> PathBuf {
        run.join(match self {
            Which::Best => "best.safetensors",
            Which::Last => "last.safetensors",
        })
    }
}

/// The command line, with the options of `train --config FILE` (and the data options of
/// `eval --run DIR`'s config.json) added for every flag the command line does not give.
fn parse_cli() -> Result<Cli> {
    let argv: Vec<OsString> = std::env::args_os().collect();
    let matches = Cli::command().get_matches_from(&argv);
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let (file, only): (PathBuf, Option<&[&str]>) = match &cli.command {
        Command::Train(TrainArgs {
            config: Some(file), ..
        }) => (file.clone(), None),
        Command::Eval {
            source: Source { run: Some(dir), .. },
            ..
        } => (dir.join("config.json"), Some(&RUN_DATA_KEYS)),
        _ => return Ok(cli),
    };
    let (name, given) = matches.subcommand().expect("a subcommand is required");
    let cmd = Cli::command();
    let sub = cmd.find_subcommand(name).expect("the parsed subcommand");
    let map = config_file::read(&file).with_context(|| match only {
        Some(_) => format!("--run needs the run's config.json ({})", file.display()),
        None => format!("--config {}", file.display()),
    })?;
    let extra = config_file::flag_args(sub, given, &map, only, &file)?;
    if extra.is_empty() {
        return Ok(cli);
    }
    let all: Vec<OsString> = argv.into_iter().chain(extra).collect();
    Cli::try_parse_from(&all).map_err(|e| {
        anyhow!(
            "the options taken from {}: {}",
            file.display(),
            e.render().to_string().trim_start_matches("error: ").trim()
        )
    })
}

/// The options of a run's config.json that `eval --run` uses: where the test images are.
const RUN_DATA_KEYS: [&str; 7] = [
    "dataset",
    "labels",
    "data",
    "data-url",
    "data-md5",
    "image-size",
    "resize",
];

fn main() -> ExitCode {
    senet::keep_freed_memory();
    // Parsed first: a flag error or --help exits inside `parse`, before any folder is made.
    let cli = match parse_cli() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    quiet_mesa();
    if let Some(kind) = &cli.gpu_kernels {
        senet::gpu::set_default_kernels(kind == "tuned");
    }
    let result = match cli.command {
        Command::Train(args) => train(&args),
        Command::Reproduce(args) => reproduce(&args),
        Command::Eval {
            source,
            out,
            misclassified,
            json,
            model,
            data,
            device,
            batch,
        } => (|| {
            let checkpoint = source.path()?;
            let out = match source.run {
                Some(dir) => dir,
                None => out.expect("clap requires --out without --run"),
            };
            senet::commands::eval(
                &checkpoint,
                &model.config_if_given(),
                &data.options(),
                &senet::commands::EvalOutput {
                    dir: out,
                    misclassified,
                    json,
                },
                &device,
                batch,
            )
        })(),
        Command::Predict {
            source,
            images,
            json,
            model,
            class_names,
            mean,
            std,
            resize,
            device,
        } => (|| {
            let checkpoint = source.path()?;
            senet::commands::predict(
                &checkpoint,
                &images,
                &model.config_if_given(),
                &senet::commands::PredictOptions {
                    class_names,
                    mean,
                    std,
                    resize,
                    json,
                },
                &device,
            )
        })(),
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
            profile,
        } => (|| {
            let options = senet::bench::BenchOptions {
                batch,
                steps,
                device,
                input_size,
                profile,
            };
            senet::bench::bench(&model.config(model.classes.unwrap_or(10))?, &options)
        })(),
        Command::Graph(args) => senet::graph::graph(&args),
        Command::Selftest {
            device,
            cases,
            seed,
        } => selftest(&device, cases, seed),
        Command::Devices => Ok(devices()),
    };
    remove_runtime_dir();
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
/// before any thread starts. The folder is removed when the program ends ([`remove_runtime_dir`]),
/// and one that a killed run left behind is removed at the next start.
fn quiet_mesa() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_some() {
        return;
    }
    remove_stale_runtime_dirs();
    let dir = std::env::temp_dir().join(format!("{RUNTIME_PREFIX}{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_ok() {
        std::env::set_var("XDG_RUNTIME_DIR", &dir);
        let _ = RUNTIME_DIR.set(dir);
    }
}

const RUNTIME_PREFIX: &str = "senet-runtime-";
static RUNTIME_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Removes this process's runtime folder, if it made one. Every way out of `main` calls it.
fn remove_runtime_dir() {
    if let Some(dir) = RUNTIME_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Runtime folders of processes that no longer run (killed before they could remove them).
fn remove_stale_runtime_dirs() {
    #[cfg(target_os = "linux")]
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix(RUNTIME_PREFIX))
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && !Path::new("/proc").join(pid).exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// `senet train`: runs the library's trainer, with Ctrl-C (SIGINT) and SIGTERM asking it to
/// stop: it finishes the step, saves a checkpoint and exits with 128 + the signal's number (130
/// or 143), as a shell reports a process the signal ended. A second signal ends it at once, and
/// so does the first before the first step (a download or the dataset's decoding: nothing to
/// save yet; a download's temporary file is removed at the next start).
/// A stop handle that Ctrl-C and SIGTERM trigger (a checkpoint is saved after the current
/// step; a second signal, or one before the first step, ends the process at once), and the
/// signal received (0 until one is).
fn stop_on_signals() -> Result<(StopHandle, std::sync::Arc<std::sync::atomic::AtomicI32>)> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::Arc;
    let stop = StopHandle::new();
    let received = Arc::new(AtomicI32::new(0));
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("installing the SIGINT and SIGTERM handlers")?;
    let (handler_stop, handler_received) = (stop.clone(), received.clone());
    std::thread::spawn(move || {
        for signal in signals.forever() {
            let name = if signal == SIGINT {
                "Ctrl-C"
            } else {
                "SIGTERM"
            };
            if !handler_stop.is_running() {
                eprintln!("\n{name}: stopping before the first step (nothing to save)");
                remove_runtime_dir();
                std::process::exit(128 + signal);
            }
            eprintln!("\n{name}: saving a checkpoint after this step (again to end at once)");
            handler_received.store(signal, Ordering::SeqCst);
            if handler_stop.stop() {
                remove_runtime_dir();
                std::process::exit(128 + signal);
            }
        }
    });
    Ok((stop, received))
}

fn train(args: &TrainArgs) -> Result<ExitCode> {
    use std::sync::atomic::Ordering;
    let o = args.options()?;
    let (stop, received) = stop_on_signals()?;
    let (rows, outcome) = senet::train::train(&o, &stop)?;
    if let Some(r) = rows.last() {
        senet::train::say(format!(
            "{outcome:?} after epoch {}: test top-1 {:.2}%; results in {}",
            r.epoch,
            r.test_top1,
            o.out.display()
        ));
    }
    let signal = received.load(Ordering::SeqCst);
    if outcome == senet::train::Outcome::Interrupted && signal > 0 {
        return Ok(ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)));
    }
    Ok(ExitCode::SUCCESS)
}

fn reproduce(a: &ReproduceArgs) -> Result<ExitCode> {
    use senet::train::args::{DatasetKind, LabelKind};
    use senet::train::study::{self, Study, StudyOptions};
    let (study_kind, name) = match a.study {
        StudyName::Cifar10 => (Study::Cifar10, "cifar10"),
        StudyName::Cifar100 => (Study::Cifar100, "cifar100"),
        StudyName::Ablation => (Study::Ablation, "ablation"),
    };
    // The dataset decides the classes a run trains; this is what the cells are described with.
    let classes = match (a.data.dataset, a.data.labels) {
        (DatasetKind::Cifar100, LabelKind::Coarse) => 20,
        (DatasetKind::Cifar100, LabelKind::Fine) => 100,
        _ => 10,
    };
    // The dataset is a flag of its own (default cifar10), so a cifar100 study on other data is
    // allowed but most likely a forgotten `--dataset cifar100`: say so before hours of training.
    let mismatch = match (study_kind, a.data.dataset) {
        (Study::Cifar10, DatasetKind::Cifar100) => Some(("cifar100", "cifar10")),
        (Study::Cifar100, DatasetKind::Cifar10) => Some(("cifar10", "cifar100 --labels coarse")),
        _ => None,
    };
    if let Some((data, flags)) = mismatch {
        senet::train::say(format!(
            "warning: study {name} on {data} data; the paper's {name} networks were trained with \
             --dataset {flags}"
        ));
    }
    let options = StudyOptions {
        study: study_kind,
        families: a.families,
        grid: a.grid,
        width: a.width,
        classes,
    };
    let cells = study::cells(&options)?;
    let runs = study::plan(&cells, a.seeds as u64, &a.out);
    let title = format!(
        "senet reproduce --study {name}: {} models x {} seeds, {} epochs, width {}, {} data {}",
        cells.len(),
        a.seeds,
        a.epochs,
        a.width,
        match a.data.dataset {
            DatasetKind::Cifar100 =>
                format!("cifar100 ({:?} labels)", a.data.labels).to_lowercase(),
            d => format!("{d:?}").to_lowercase(),
        },
        a.data.data.display()
    );
    if a.report_only && !a.out.is_dir() {
        bail!(
            "--report-only: {} is not a folder; nothing to report (run the study without \
             --report-only first)",
            a.out.display()
        );
    }
    let code = if a.report_only {
        ExitCode::SUCCESS
    } else {
        train_study(a, name, &cells, &runs)?
    };
    // What the runs trained decides what the report describes: an image folder has as many
    // classes as class folders, which only the trainer counts.
    let (options, cells) = match study::trained_classes(&runs)? {
        Some(trained) if trained != classes => {
            let options = StudyOptions {
                classes: trained,
                ..options
            };
            let cells = study::cells(&options)?;
            (options, cells)
        }
        _ => (options, cells),
    };
    let classes = options.classes;
    let note = match (study_kind, classes) {
        (Study::Cifar10, 10) | (Study::Cifar100, 20) | (Study::Ablation, _) => String::new(),
        (Study::Cifar100, n) => format!(
            "The paper's CIFAR-100 figures are for its 20 coarse labels (`--dataset cifar100 \
             --labels coarse`): with {n} classes they are not comparable and are left out."
        ),
        (Study::Cifar10, n) => format!(
            "The paper's CIFAR-10 figures are for its 10 classes: with {n} classes they are \
             not comparable and are left out."
        ),
    };
    let facts = study::facts(&options, &cells, a.data.image_size)?;
    study::write_report(&a.out, &title, &note, &cells, &facts, &runs, a.epochs)?;
    senet::train::say(format!(
        "report: {} and {}",
        a.out.join("report.md").display(),
        a.out.join("report.json").display()
    ));
    Ok(code)
}

/// Trains every unfinished run of a study, with a progress line across the whole study; a
/// signal stops it cleanly (the same command carries it on), and the exit code says which.
fn train_study(
    a: &ReproduceArgs,
    name: &str,
    cells: &[senet::train::study::Cell],
    runs: &[senet::train::study::PlannedRun],
) -> Result<ExitCode> {
    use senet::train::study::{self, StudyOutcome};
    use std::io::IsTerminal;
    use std::sync::atomic::Ordering;
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let (stop, received) = stop_on_signals()?;
    let mut template =
        senet::train::TrainOptions::new(cells[0].model.clone(), a.data.options(), &a.out);
    template.epochs = a.epochs;
    template.batch = a.batch;
    template.device = a.device.clone();
    template.progress = std::io::stderr().is_terminal();
    // Time left from this invocation's pace in epochs (a run resumed half-way, or runs
    // finished before it, are not counted as if this invocation had trained them).
    let started = std::time::Instant::now();
    let total_epochs = runs.len() * a.epochs;
    let epochs_done = || -> usize {
        runs.iter()
            .map(|r| study::epochs_done(&r.folder, a.epochs).unwrap_or(0))
            .sum()
    };
    let at_start = epochs_done();
    let outcome = study::run_all(&template, cells, runs, &stop, |done, total| {
        let now = epochs_done();
        let left = match now.saturating_sub(at_start) {
            _ if now >= total_epochs => String::new(),
            0 => String::new(),
            n => {
                let per = started.elapsed().as_secs_f64() / n as f64;
                let hours = per * (total_epochs - now) as f64 / 3600.0;
                format!(", about {hours:.1} h left")
            }
        };
        senet::train::say(format!("study {name}: {done} of {total} runs done{left}"));
    })?;
    let signal = received.load(Ordering::SeqCst);
    if outcome == StudyOutcome::Stopped {
        senet::train::say(format!(
            "study {name} stopped; the same command carries it on from where it stopped"
        ));
        if signal > 0 {
            return Ok(ExitCode::from(u8::try_from(128 + signal).unwrap_or(1)));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn selftest(device: &str, cases: usize, seed: u64) -> Result<ExitCode> {
    if cases == 0 {
        bail!("--cases must be at least 1");
    }
    let device = Device::parse(device).with_context(|| format!("--device {device}"))?;
    println!("device: {}", device.describe());
    let rows = senet::tensor::testing::selftest::run(cases, seed, device);
    print!(
        "{}",
        senet::tensor::testing::selftest::format_table(&rows, device)
    );
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
    // What the picked GPU runs: opening it also checks SENET_GPU_KERNELS.
    if let Ok(Some(a)) = DeviceRequest::Gpu.choose() {
        match senet::gpu::Gpu::open_index(a.index) {
            Ok(gpu) => println!("gpu:{} runs {}", a.index, gpu_kernels_line(&gpu)),
            Err(e) => {
                eprintln!("error: opening gpu:{}: {e}", a.index);
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Which kernels a device runs (`--gpu-kernels`), and what it offers them.
fn gpu_kernels_line(gpu: &senet::gpu::Gpu) -> String {
    let subgroups = match gpu.subgroup_size() {
        Some(n) => format!("subgroups of {n}"),
        None => "no fixed-size subgroups".into(),
    };
    let kind = if !gpu.tuned_kernels() {
        "the plain kernels (--gpu-kernels plain)".to_string()
    } else if senet::gpu::gemm_subgroup::available(gpu) {
        format!(
            "the tuned kernels: subgroup GEMM, {}-thread reductions",
            gpu.reduce_workgroup()
        )
    } else {
        "the tuned kernels: the tiled GEMM (the subgroup GEMM needs subgroups of 8)".to_string()
    };
    let timestamps = if gpu.has_timestamps() {
        "timestamp queries for --profile"
    } else {
        "no timestamp queries (--profile waits after each kernel)"
    };
    format!("{kind}; {subgroups}; {timestamps}")
}
