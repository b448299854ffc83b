//! The run folder (`--out`): `config.json`, `metrics.csv`, `curves.png`, `last.safetensors` +
//! `last.optim.safetensors` (the optimizer state) and `best.safetensors`, each written through
//! a temporary file and a rename; and reading them back to resume.
use crate::config_file::{self, RESUME_KEYS};
use crate::metrics::{self, EpochMetrics, StepMetrics};
use crate::plot;
use crate::save_set::SaveSet;
use anyhow::{anyhow, bail, Context, Result};
use senet_models::Model;
use senet_nn::checkpoint::{self, Metadata};
use senet_nn::optim::Optimizer;
use senet_tensor::Device;
use serde_json::{Map, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a run was, saved in the checkpoint metadata so a resume continues exactly.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunState {
    /// Completed epochs.
    pub epoch: usize,
    /// Optimizer steps taken.
    pub step: u64,
    /// Summed per-image training loss of the current (partial) epoch.
    pub loss_sum: f64,
    /// Training images predicted right in the current epoch.
    pub correct: u64,
    /// Training images seen in the current epoch.
    pub seen: u64,
    /// Seconds of stepping in the current epoch.
    pub seconds: f64,
    /// The best test top-1 (%) so far: an epoch that reaches it (a tie included) saves
    /// `best.safetensors`.
    pub best_top1: f64,
    /// Summed per-image training loss since the last row of `steps.csv`.
    pub window_loss_sum: f64,
    /// Training images predicted right since the last row of `steps.csv`.
    pub window_correct: u64,
    /// Training images seen since the last row of `steps.csv`.
    pub window_seen: u64,
}

impl RunState {
    /// Records the state in checkpoint metadata (the float sums by their bits, exactly).
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
        m.insert(
            "window_loss_sum_bits".into(),
            self.window_loss_sum.to_bits().to_string(),
        );
        m.insert("window_correct".into(), self.window_correct.to_string());
        m.insert("window_seen".into(), self.window_seen.to_string());
    }

    /// Reads back what [`RunState::write`] recorded in the metadata of the checkpoint at
    /// `path` (named in errors).
    pub fn read(m: &Metadata, path: &Path) -> Result<Self> {
        let get = |k: &str| {
            m.get(k).ok_or_else(|| {
                anyhow!(
                    "{}: metadata {k} is missing: not a training checkpoint of this program",
                    path.display()
                )
            })
        };
        let optional = |k: &str| -> Result<u64> {
            m.get(k).map_or(Ok(0), |v| {
                v.parse()
                    .with_context(|| format!("{}: metadata {k}={v:?}", path.display()))
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
            // Checkpoints from before steps.csv have no window: the next row starts afresh.
            window_loss_sum: f64::from_bits(optional("window_loss_sum_bits")?),
            window_correct: optional("window_correct")?,
            window_seen: optional("window_seen")?,
        })
    }
}

/// The files a run writes into its folder (and `senet eval --run` adds): the only files
/// `--overwrite` removes.
pub const RUN_FILES: &[&str] = &[
    "config.json",
    "metrics.csv",
    "steps.csv",
    "curves.png",
    "last.safetensors",
    "last.optim.safetensors",
    "best.safetensors",
    "confusion.csv",
    "confusion.png",
    "misclassified.png",
];
/// The lock a run holds on its folder while it runs (see [`RunLock`]).
pub const LOCK_FILE: &str = ".senet-lock";
/// The subfolder of `--tensorboard`'s event files.
pub const TENSORBOARD_DIR: &str = "tensorboard";

/// Whether `name` in a run folder is a file the trainer writes: one of [`RUN_FILES`], or the
/// temporary name of one (`.NAME.tmp`, `.NAME.staged`), or the save journal.
fn is_run_file(name: &str) -> bool {
    let temporary = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp").or_else(|| n.strip_suffix(".staged")));
    RUN_FILES.contains(&temporary.unwrap_or(name))
        || crate::save_set::is_journal(name)
        || name == LOCK_FILE
}

/// What a folder given as `--out` holds.
#[derive(Debug, Default)]
pub struct Contents {
    /// Files (and the TensorBoard folder) a run writes.
    pub ours: Vec<PathBuf>,
    /// Everything else: never removed.
    pub foreign: Vec<PathBuf>,
}

impl Contents {
    /// Holds a run: any of ours but the temporaries a kill can leave before the first file.
    pub fn holds_run(&self) -> bool {
        self.ours.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
        })
    }

    fn names(paths: &[PathBuf]) -> String {
        let mut names: Vec<String> = paths
            .iter()
            .filter_map(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        names.sort();
        if names.len() > 8 {
            let more = names.len() - 8;
            names.truncate(8);
            names.push(format!("and {more} more"));
        }
        names.join(", ")
    }
}

/// Sorts the entries of `out` into the run's files and others; `None` when `out` does not
/// exist. The TensorBoard folder counts as ours when it holds only event files.
pub fn inspect(out: &Path) -> Result<Option<Contents>> {
    // `out` itself may be a link to a folder (entries inside it are not followed).
    let meta = match std::fs::metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("--out {}", out.display())),
    };
    if !meta.is_dir() {
        bail!("--out {} exists and is not a folder", out.display());
    }
    let mut c = Contents::default();
    let entries =
        std::fs::read_dir(out).with_context(|| format!("reading --out {}", out.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading --out {}", out.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type()?;
        let ours = if name == TENSORBOARD_DIR && kind.is_dir() {
            std::fs::read_dir(entry.path())?.all(|e| {
                e.is_ok_and(|e| {
                    e.file_type().is_ok_and(|t| t.is_file())
                        && e.file_name()
                            .to_str()
                            .is_some_and(crate::tensorboard::is_own_file)
                })
            })
        } else {
            kind.is_file() && is_run_file(&name)
        };
        if ours {
            c.ours.push(entry.path());
        } else {
            c.foreign.push(entry.path());
        }
    }
    Ok(Some(c))
}

/// Checks what `--out` holds against `--resume` and `--overwrite` before anything is read or
/// written: a run there is never replaced by accident, and `--overwrite` never touches a file
/// the trainer did not write. Returns the folder's contents.
pub fn check_out(out: &Path, resume: bool, overwrite: bool) -> Result<Option<Contents>> {
    let contents = inspect(out)?;
    match &contents {
        None if resume => bail!("--resume: {} does not exist", out.display()),
        Some(c) if c.holds_run() && !resume && !overwrite => bail!(
            "{} already holds a run ({}): pass --resume to continue it, --overwrite to replace \
             it, or choose another --out",
            out.display(),
            Contents::names(&c.ours)
        ),
        Some(c) if overwrite && !c.foreign.is_empty() => bail!(
            "--overwrite: {} also holds files the trainer did not write ({}); it removes only \
             its own files, so move those away or choose another --out",
            out.display(),
            Contents::names(&c.foreign)
        ),
        _ => {}
    }
    Ok(contents)
}

/// Makes the folder `out` (and its parents); returns whether this call made it.
pub fn make_folder(out: &Path) -> Result<bool> {
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating --out {}", out.display()))?;
    }
    match std::fs::create_dir(out) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("creating --out {}", out.display())),
    }
}

/// Removes what a run that failed before its first step wrote into `out`, and `out` when that
/// leaves it empty (call it only for a folder the run made).
pub fn discard(out: &Path) {
    if let Ok(Some(contents)) = inspect(out) {
        let _ = remove_run_files(&contents);
    }
    let _ = std::fs::remove_file(out.join(LOCK_FILE));
    let _ = std::fs::remove_dir(out);
}

/// Removes the run files in `contents` (what [`inspect`] called ours) but the lock, which the
/// running process holds.
pub fn remove_run_files(contents: &Contents) -> Result<()> {
    for path in contents
        .ours
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n != LOCK_FILE))
    {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        removed.with_context(|| format!("--overwrite: removing {}", path.display()))?;
    }
    Ok(())
}

/// An exclusive lock on a run folder, held while a run uses it: a second `senet train` on the
/// same `--out` (a resume and an overwrite started together, say) is refused instead of both
/// writing there. The OS releases it when the process ends, however it ends.
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    /// Takes the lock of the folder `out` (its lock file is created if missing); an error if
    /// another process holds it. The lock lasts as long as the returned value.
    pub fn take(out: &Path) -> Result<Self> {
        let path = out.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock(2) on a descriptor this function owns.
            let taken = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if taken != 0 {
                bail!(
                    "{} is in use by another `senet train` (it holds {}): wait for it to end, or \
                     choose another --out",
                    out.display(),
                    path.display()
                );
            }
        }
        Ok(RunLock { _file: file })
    }
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

/// What `curves.png` shows: the epoch rows, the logged steps, and the title.
#[derive(Clone, Copy)]
pub struct Curves<'a> {
    /// One row per finished epoch (`metrics.csv`).
    pub rows: &'a [EpochMetrics],
    /// The rows of `steps.csv`: the training figures between the epoch points.
    pub steps: &'a [StepMetrics],
    /// The picture's heading.
    pub title: &'a str,
}

/// Whether two recorded values of the setting `key` are the same: the normalization as f32
/// (however the file wrote the digits), `data` as an absolute path (older runs recorded it as
/// given), anything else exactly.
fn same_setting(key: &str, a: Option<&Value>, b: Option<&Value>) -> bool {
    let as_f32 = |v: Option<&Value>| -> Option<Vec<f32>> {
        v?.as_array()?
            .iter()
            .map(|x| x.as_f64().map(|x| x as f32))
            .collect()
    };
    let as_path = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| PathBuf::from(p)))
    };
    match key {
        "mean" | "std" => as_f32(a) == as_f32(b),
        "data" => as_path(a) == as_path(b),
        _ => a == b,
    }
}

/// The files of one run folder.
pub struct RunDir {
    out: PathBuf,
}

/// The rows of the `metrics.csv` in run folder `out` (none when it has none), without
/// creating or recovering anything: what `senet reproduce` reads of runs it does not train.
pub fn read_metrics(out: &Path) -> Result<Vec<EpochMetrics>> {
    let path = out.join("metrics.csv");
    if !path.exists() {
        return Ok(Vec::new());
    }
    metrics::parse_csv(&read_text(&path, 64 << 20)?)
}

impl RunDir {
    /// The folder `out`, created when missing; a save that a kill interrupted is finished or
    /// undone first ([`crate::save_set::recover`]).
    pub fn create(out: &Path) -> Result<Self> {
        std::fs::create_dir_all(out)
            .with_context(|| format!("creating --out {}", out.display()))?;
        if crate::save_set::recover(out)? {
            crate::progress::say(format!(
                "finished a save that was interrupted in {}",
                out.display()
            ));
        }
        Ok(RunDir {
            out: out.to_path_buf(),
        })
    }

    /// `last.safetensors`: where the run resumes from (named in messages).
    pub fn last(&self) -> PathBuf {
        self.out.join("last.safetensors")
    }

    /// Refuses to resume with settings (`json`, as [`config_file::config_json`] makes them)
    /// that differ from the run's `config.json` in a key that must not change, or with another
    /// model; names each difference. An old-format `config.json` is compared through
    /// [`config_file::legacy_flags`], on the keys it has.
    pub fn check_resume_config(&self, json: &Value) -> Result<Map<String, Value>> {
        let config_path = self.out.join("config.json");
        let old = config_file::read(&config_path)
            .with_context(|| format!("--resume needs {}", config_path.display()))?;
        let empty = Map::new();
        let now = json.as_object().unwrap_or(&empty);
        let resolved =
            |m: &Map<String, Value>, key: &str| m.get("resolved").and_then(|r| r.get(key)).cloned();
        let mut diffs = Vec::new();
        for key in RESUME_KEYS.iter().copied().filter(|k| old.contains_key(*k)) {
            if !same_setting(key, old.get(key), now.get(key)) {
                diffs.push(format!(
                    "--{key}: {} (run) vs {} (now)",
                    old.get(key).unwrap_or(&Value::Null),
                    now.get(key).unwrap_or(&Value::Null)
                ));
            }
        }
        // What the options came to: the model, and the normalization used (the dataset's own
        // when not given). Old-format files have the model only.
        for key in ["model", "mean", "std"] {
            let (then, current) = (resolved(&old, key), resolved(now, key));
            if then.is_some() && !same_setting(key, then.as_ref(), current.as_ref()) {
                diffs.push(format!(
                    "{key} used: {} (run) vs {} (now)",
                    then.unwrap_or(Value::Null),
                    current.unwrap_or(Value::Null)
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
        Ok(old)
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
        let mut rows = read_metrics(&self.out)?;
        rows.retain(|r| r.epoch <= epochs);
        Ok(rows)
    }

    /// The rows of `steps.csv` up to step `step`, and the file rewritten to hold just those (a
    /// run resumed from an earlier checkpoint logs the later steps again). A last line cut
    /// short by a kill is dropped; any other line that does not parse is an error.
    pub fn restore_steps(&self, step: u64) -> Result<Vec<StepMetrics>> {
        let path = self.out.join("steps.csv");
        if !path.exists() {
            return Ok(Vec::new());
        }
        let text = read_text(&path, 256 << 20)?;
        let mut lines = text.lines();
        if lines.next().is_some_and(|h| h != metrics::STEPS_CSV_HEADER) {
            bail!(
                "{} does not start with the header {}: not a file this program wrote",
                path.display(),
                metrics::STEPS_CSV_HEADER
            );
        }
        // A log, not a checkpoint: a damaged line is dropped with a warning rather than keep a
        // good checkpoint from resuming (a kill can cut the last line short).
        let mut rows = Vec::new();
        let mut dropped = 0;
        for line in lines.filter(|l| !l.trim().is_empty()) {
            match StepMetrics::parse(line) {
                Ok(r) => rows.push(r),
                Err(_) => dropped += 1,
            }
        }
        if dropped > 0 {
            crate::progress::say(format!(
                "{}: dropped {dropped} damaged line(s)",
                path.display()
            ));
        }
        rows.retain(|r| r.step <= step);
        write_text(&path, &metrics::steps_csv_text(&rows))?;
        Ok(rows)
    }

    /// Appends rows to `steps.csv` (made with its header when missing). A log, not a
    /// checkpoint: appended as it grows, and trimmed to the checkpoint on resume.
    pub fn append_steps(&self, rows: &[StepMetrics]) -> Result<()> {
        let path = self.out.join("steps.csv");
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        // The one file not written through a rename: never follow a link planted in its place.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
        let mut file = options
            .open(&path)
            .with_context(|| format!("opening {} (it must be a regular file)", path.display()))?;
        let empty = file
            .metadata()
            .with_context(|| format!("reading {}", path.display()))?
            .len()
            == 0;
        let mut text = String::new();
        if empty {
            text.push_str(metrics::STEPS_CSV_HEADER);
            text.push('\n');
        }
        for r in rows {
            text.push_str(&r.csv());
            text.push('\n');
        }
        file.write_all(text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Removes what a run that failed before its first step wrote, and the folder when that
    /// leaves it empty (it was made for this run).
    pub fn discard(&self) {
        discard(&self.out);
    }

    /// Writes `config.json` (pretty-printed, through a temporary file and a rename).
    pub fn write_config(&self, json: &Value) -> Result<()> {
        write_text(
            &self.out.join("config.json"),
            &serde_json::to_string_pretty(json)?,
        )
    }

    /// Saves `last.safetensors` and `last.optim.safetensors` as one set (see [`SaveSet`]),
    /// with `best.safetensors` when `best`, and `metrics.csv` and `curves.png` when `curves`.
    pub fn save(
        &self,
        model: &mut Model,
        opt: &Optimizer,
        meta: &Metadata,
        best: bool,
        curves: Option<Curves>,
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
        if let Some(c) = curves {
            // No epoch finished yet: curves.png shows the logged steps, metrics.csv waits.
            if !c.rows.is_empty() {
                set.stage("metrics.csv", metrics::csv_text(c.rows).as_bytes())?;
            }
            set.stage(
                "curves.png",
                &plot::curves_png_titled(c.rows, c.steps, c.title)?,
            )?;
        }
        set.commit()
    }
}
