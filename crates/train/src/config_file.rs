//! A run's `config.json` and `senet train --config FILE`.
//!
//! `config.json` records every option of `senet train` under its flag's own name (`model`,
//! `depth`, `lr`, `warmup`, `no-augment`, ...), with the values the run used, plus the project's
//! `version` and `commit` and a `resolved` object (the full model description, the dataset's
//! classes, the device picked) that is information only. The same keys, in a JSON or TOML file,
//! are what `--config` reads: each becomes the flag it names unless the command line gives that
//! flag itself, and then goes through the flag's own parser and range check. So a run's
//! `config.json` is a config file, and `senet train --config runs/a/config.json --out runs/b`
//! trains the same run again.
//!
//! Runs written before this format (keys such as `warmup_epochs` and `model.family`, no
//! `version`) are translated by [`legacy_flags`], so they still resume and evaluate.
use crate::options::{schedule_flag, DatasetSpec, OptimizerChoice, TrainOptions};
use anyhow::{anyhow, bail, Context, Result};
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};
use senet_data::Dataset;
use senet_models::ModelConfig;
use serde_json::{Map, Value};
use std::ffi::OsString;
use std::path::Path;

/// This program's version, recorded in every run.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit it was built from (`build.rs`; "unknown" outside a git checkout), with
/// `-dirty` when the work tree had changes.
pub const COMMIT: &str = env!("SENET_COMMIT");

/// Keys of `config.json` that are not flags: read back for information, never applied.
const INFO_KEYS: [&str; 4] = ["version", "commit", "resolved", "resumed"];

/// The largest config file read (a run's `config.json` is about 1.5 KB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Every training option of `o` under its flag's name, as the flag would be written.
pub fn options_json(o: &TrainOptions) -> Map<String, Value> {
    let m = &o.model;
    // The model options a preset does not fix, as `--set NAME=VALUE` would give them.
    let set: Vec<Value> = m
        .entries()
        .into_iter()
        .filter(|(k, _)| !["family", "depth", "preset", "width", "classes"].contains(k))
        .map(|(k, v)| Value::String(format!("{k}={v}")))
        .collect();
    let (dataset, labels, image_size, resize) = match &o.data.spec {
        DatasetSpec::Cifar10 => ("cifar10", "fine", 32, false),
        DatasetSpec::Cifar100 { coarse } => (
            "cifar100",
            if *coarse { "coarse" } else { "fine" },
            32,
            false,
        ),
        DatasetSpec::ImageFolder { image_size, resize } => {
            ("imagefolder", "fine", *image_size, *resize)
        }
    };
    let path = |p: &Path| Value::String(p.display().to_string());
    // The data and the --init file as absolute paths: `eval --run` and `--config` then find
    // them from any folder.
    let absolute = |p: &Path| path(&std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf()));
    let stats = |v: Option<[f32; 3]>| v.map_or(Value::Null, f32_json);
    let optional = |v: Option<u64>| v.map_or(Value::Null, Value::from);
    let entries: Vec<(&str, Value)> = vec![
        ("model", m.family.to_string().into()),
        ("depth", m.depth.map_or(Value::Null, Value::from)),
        ("preset", m.preset.to_string().into()),
        ("width", m.width.into()),
        ("classes", o.classes.map_or(Value::Null, Value::from)),
        ("set", Value::Array(set)),
        ("dataset", dataset.into()),
        ("labels", labels.into()),
        ("data", absolute(&o.data.dir)),
        (
            "data-url",
            o.data.url.clone().map_or(Value::Null, Value::from),
        ),
        (
            "data-md5",
            o.data.md5.clone().map_or(Value::Null, Value::from),
        ),
        ("image-size", image_size.into()),
        ("resize", resize.into()),
        ("mean", stats(o.data.mean)),
        ("std", stats(o.data.std)),
        ("epochs", o.epochs.into()),
        ("max-steps", optional(o.max_steps)),
        ("save-every", optional(o.save_every)),
        ("batch", o.batch.into()),
        ("lr", o.lr.into()),
        ("momentum", o.momentum.into()),
        ("nesterov", o.nesterov.into()),
        ("weight-decay", o.weight_decay.into()),
        (
            "optimizer",
            match o.optimizer {
                OptimizerChoice::Sgd => "sgd",
                OptimizerChoice::AdamW => "adamw",
            }
            .into(),
        ),
        ("schedule", schedule_flag(o.schedule).into()),
        ("warmup", o.warmup.into()),
        ("label-smoothing", o.label_smoothing.into()),
        ("no-augment", (!o.augment).into()),
        ("no-shuffle", (!o.shuffle).into()),
        ("seed", o.seed.into()),
        ("device", o.device.clone().into()),
        ("init", o.init.as_deref().map_or(Value::Null, absolute)),
        ("out", path(&o.out)),
        ("workers", o.workers.into()),
        ("log-every", o.log_every.into()),
        ("tensorboard", o.tensorboard.into()),
    ];
    entries
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

/// f32 values as JSON numbers written as the f32 prints (`0.2452094`, not the f64 expansion
/// `0.24520935118198395`), so the file reads as the flag was given and compares exactly when
/// read back.
fn f32_json(v: [f32; 3]) -> Value {
    Value::Array(
        v.iter()
            .map(|x| {
                let shortest: f64 = x.to_string().parse().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(shortest).map_or(Value::Null, Value::Number)
            })
            .collect(),
    )
}

/// The most class names `resolved` lists (the checkpoints hold them all): `config.json` stays
/// far under the size [`read`] accepts.
const MAX_LISTED_CLASSES: usize = 1000;

/// The whole of a run's `config.json`: [`options_json`], the version and commit, and
/// `resolved`: the model, the normalization used (`mean`, `std`: the dataset's unless given),
/// the classes and the device.
pub fn config_json(o: &TrainOptions, model: &ModelConfig, ds: &Dataset, device: &str) -> Value {
    let mut m = options_json(o);
    m.insert("version".into(), VERSION.into());
    m.insert("commit".into(), COMMIT.into());
    let model: Map<String, Value> = model
        .entries()
        .into_iter()
        .map(|(k, v)| (k.to_string(), Value::String(v)))
        .collect();
    let classes: Value = if ds.classes.len() <= MAX_LISTED_CLASSES {
        serde_json::json!(ds.classes)
    } else {
        ds.classes.len().into()
    };
    m.insert(
        "resolved".into(),
        serde_json::json!({
            "model": model,
            "dataset": o.data.describe(),
            "mean": f32_json(ds.mean),
            "std": f32_json(ds.std),
            "classes": classes,
            "device": device,
        }),
    );
    Value::Object(m)
}

/// On resume: the run keeps the `version` and `commit` it started with, and `resumed` lists
/// each later build that continued it (with a warning when it differs).
pub fn carry_history(old: &Map<String, Value>, json: &mut Value) {
    let (Some(version), Some(commit)) = (old.get("version"), old.get("commit")) else {
        return; // an old-format file: this build is the first recorded
    };
    let mut resumed = old
        .get("resumed")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let now = (json["version"].clone(), json["commit"].clone());
    let last = resumed
        .last()
        .map_or((version.clone(), commit.clone()), |r| {
            (r["version"].clone(), r["commit"].clone())
        });
    if now != last {
        crate::progress::say(format!(
            "warning: the run was made by senet {} (commit {}), this is {} (commit {}): \
             both are recorded in config.json",
            last.0, last.1, now.0, now.1
        ));
        resumed.push(serde_json::json!({ "version": now.0, "commit": now.1 }));
    }
    json["version"] = version.clone();
    json["commit"] = commit.clone();
    if !resumed.is_empty() {
        json["resumed"] = Value::Array(resumed);
    }
}

/// The settings a resumed run must share with the run it continues (the model is compared
/// in full, through `resolved.model`).
pub const RESUME_KEYS: &[&str] = &[
    "dataset",
    "labels",
    "data",
    "image-size",
    "resize",
    "mean",
    "std",
    "epochs",
    "batch",
    "lr",
    "momentum",
    "nesterov",
    "weight-decay",
    "optimizer",
    "schedule",
    "warmup",
    "label-smoothing",
    "no-augment",
    "no-shuffle",
    "seed",
];

/// The options of a config file: JSON, or TOML when the name ends in `.toml`; keys written
/// with `_` are read as `-` (`image_size` is `image-size`), and a run folder's old-format
/// `config.json` is translated ([`legacy_flags`]).
pub fn read(path: &Path) -> Result<Map<String, Value>> {
    let bytes = senet_data::files::read_regular(path, MAX_CONFIG_BYTES, "a config file")
        .with_context(|| format!("reading {}", path.display()))?;
    let text =
        String::from_utf8(bytes).map_err(|_| anyhow!("{} is not UTF-8 text", path.display()))?;
    let is_toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    let value: Value = if is_toml {
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?
    } else {
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", path.display()))?
    };
    let Value::Object(map) = value else {
        bail!(
            "{} must hold a table of options (NAME = VALUE), not a single value",
            path.display()
        );
    };
    let map: Map<String, Value> = map
        .into_iter()
        .map(|(k, v)| (k.replace('_', "-"), v))
        .collect();
    Ok(if is_legacy(&map) {
        legacy_flags(&map)
    } else {
        map
    })
}

/// A `config.json` written before flags were recorded by name.
fn is_legacy(map: &Map<String, Value>) -> bool {
    !map.contains_key("version") && map.contains_key("model.family")
}

/// The flags an old-format `config.json` stands for. It recorded the resolved model as
/// `model.*`, the dataset in words ("cifar100 (fine labels)", "imagefolder (64x64, resized)"),
/// `augment`/`shuffle` rather than their `no-` flags and the device by description (dropped:
/// the default picks again). The model goes into `resolved.model`, as new runs record it.
pub fn legacy_flags(old: &Map<String, Value>) -> Map<String, Value> {
    let mut m = Map::new();
    let mut model = Map::new();
    let mut set = Vec::new();
    for (key, value) in old {
        let text = value.as_str().map(str::to_string);
        if let Some(option) = key.strip_prefix("model.") {
            // Keys were read with `_` as `-`; the model's own names use `_`.
            let option = option.replace('-', "_");
            model.insert(option.clone(), value.clone());
            let flag = match option.as_str() {
                "family" => Some("model"),
                "depth" | "preset" | "width" | "classes" => Some(option.as_str()),
                _ => None,
            };
            match (flag, text) {
                (Some(flag), Some(t)) => {
                    // Numbers were written as strings.
                    let v = t.parse::<u64>().map_or(Value::String(t), Value::from);
                    m.insert(flag.to_string(), v);
                }
                (None, Some(t)) => set.push(Value::String(format!("{option}={t}"))),
                _ => {}
            }
            continue;
        }
        match key.as_str() {
            "dataset" => {
                if let Some(t) = text {
                    legacy_dataset(&t, &mut m);
                }
            }
            "warmup-epochs" => {
                m.insert("warmup".into(), value.clone());
            }
            "augment" | "shuffle" => {
                if let Some(b) = value.as_bool() {
                    m.insert(format!("no-{key}"), (!b).into());
                }
            }
            "schedule" => {
                // `Step { gamma: 0.1 }` was written as "step { gamma: 0.1 }".
                if let Some(t) = text {
                    let word = t.split_whitespace().next().unwrap_or_default();
                    m.insert(key.clone(), word.into());
                }
            }
            "device" | "dataset-classes" => {}
            _ => {
                m.insert(key.clone(), value.clone());
            }
        }
    }
    m.insert("set".into(), Value::Array(set));
    m.insert("resolved".into(), serde_json::json!({ "model": model }));
    m
}

/// "cifar10", "cifar100 (coarse labels)" or "imagefolder (32x32, resized)" as flags.
fn legacy_dataset(words: &str, m: &mut Map<String, Value>) {
    let (kind, detail) = words.split_once(' ').unwrap_or((words, ""));
    m.insert("dataset".into(), kind.into());
    if kind == "cifar100" {
        let coarse = detail.contains("coarse");
        m.insert(
            "labels".into(),
            if coarse { "coarse" } else { "fine" }.into(),
        );
    }
    if kind == "imagefolder" {
        let size = detail
            .trim_start_matches('(')
            .split('x')
            .next()
            .and_then(|s| s.parse::<u64>().ok());
        if let Some(size) = size {
            m.insert("image-size".into(), size.into());
        }
        m.insert("resize".into(), detail.contains("resized").into());
    }
}

/// The command-line arguments that apply the options of `map` (read from `source`) to the
/// command `cmd`, whose arguments as the user gave them are `given`: one `--flag=value` for
/// each option the command line does not give itself. `only` limits the keys used (eval takes
/// just the data options of a run); without it, a key that is not a flag of `cmd` is an error.
pub fn flag_args(
    cmd: &Command,
    given: &ArgMatches,
    map: &Map<String, Value>,
    only: Option<&[&str]>,
    source: &Path,
) -> Result<Vec<OsString>> {
    let mut args = Vec::new();
    for (key, value) in map {
        if INFO_KEYS.contains(&key.as_str()) || only.is_some_and(|o| !o.contains(&key.as_str())) {
            continue;
        }
        let Some(arg) = cmd.get_arguments().find(|a| a.get_long() == Some(key)) else {
            bail!(
                "{}: `{key}` is not an option of `senet {}` (see --help for the flags; keys are \
                 flag names without the dashes)",
                source.display(),
                cmd.get_name()
            );
        };
        if !arg.get_action().takes_values() {
            bail!(
                "{}: `{key}` is not an option a file can give (it takes no value): give --{key} \
                 on the command line",
                source.display()
            );
        }
        if given.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            continue; // the command line wins
        }
        let scalar = |v: &Value| -> Result<String> {
            match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => bail!(
                    "{}: `{key}` = {v} is not a value a flag takes",
                    source.display()
                ),
            }
        };
        match value {
            Value::Null => {}
            Value::Array(items) if arg.get_value_delimiter().is_some() => {
                let parts: Result<Vec<String>> = items.iter().map(scalar).collect();
                args.push(format!("--{key}={}", parts?.join(",")).into());
            }
            Value::Array(items) => {
                for item in items {
                    args.push(format!("--{key}={}", scalar(item)?).into());
                }
            }
            v => args.push(format!("--{key}={}", scalar(v)?).into()),
        }
    }
    Ok(args)
}
