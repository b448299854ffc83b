//! The trainer as a user meets it, through the real `senet` binary on a tiny CIFAR-10 folder:
//! a run is never overwritten by accident, a run remembers its options (`config.json`,
//! `--config`, `eval --run`, `predict --run`), the logs (`steps.csv`, timestamps, TensorBoard
//! files read back), and the scriptable outputs (`--json`).
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use senet::train::tensorboard;
use serde_json::Value;
use std::path::Path;

#[path = "fixtures/support.rs"]
mod support;
use support::*;
mod common;
use common::checkpoint_bits as tensors;

/// A tiny CIFAR-10 folder: 20 training images (4 steps of 5 per epoch), 10 test images.
fn tiny_data(dir: &Path) {
    let mut rng = StdRng::seed_from_u64(11);
    let mut image =
        |label: u8| record(label, &(0..3072).map(|_| rng.random()).collect::<Vec<u8>>());
    let train: Vec<Vec<u8>> = (0..4).map(|i| image(i as u8)).collect();
    let test: Vec<Vec<u8>> = (0..10).map(|i| image(i as u8)).collect();
    write_cifar10(dir, &train, &test);
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// `senet train` of a width-4 resnet-18 on `data` into `out`, plus `extra` flags.
fn train_args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "train", "--device", "cpu", "--batch", "5", "--model", "resnet", "--depth", "18",
        "--preset", "cifar", "--width", "4",
    ]
    .map(String::from)
    .to_vec();
    args.extend(["--data".into(), s(data), "--out".into(), s(out)]);
    args.extend(extra.iter().map(|e| e.to_string()));
    args
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The stderr of a run that must succeed (where the trainer tells its story).
fn stderr_of_success(o: &std::process::Output) -> String {
    success(o);
    stderr(o)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_run_is_never_overwritten_by_accident() {
    let dir = scratch("ux-overwrite");
    tiny_data(&dir);
    let out = dir.join("run");
    success(&senet(train_args(&dir, &out, &["--epochs", "1"])));
    let before = std::fs::read(out.join("last.safetensors")).unwrap();

    // The same command again: refused, nothing changed, and the message says what to do.
    let err = failure(&senet(train_args(&dir, &out, &["--epochs", "1"])));
    for word in ["already holds a run", "--resume", "--overwrite", "--out"] {
        assert!(err.contains(word), "{word}: {err}");
    }
    assert_eq!(std::fs::read(out.join("last.safetensors")).unwrap(), before);

    // A file the trainer did not write: --overwrite refuses and deletes nothing.
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let listed = names(&out);
    let err = failure(&senet(train_args(
        &dir,
        &out,
        &["--overwrite", "--seed", "1"],
    )));
    assert!(
        err.contains("notes.txt") && err.contains("did not write"),
        "{err}"
    );
    assert_eq!(names(&out), listed);
    assert!(
        failure(&senet(train_args(&dir, &out, &["--overwrite", "--resume"])))
            .contains("cannot be used with")
    );

    // Without it, --overwrite replaces every file of the old run: no stale best, metrics or
    // curves beside the new weights (a 3-step run writes no best.safetensors or metrics.csv).
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    let err = stderr_of_success(&senet(train_args(
        &dir,
        &out,
        &["--overwrite", "--seed", "1", "--max-steps", "3"],
    )));
    assert!(err.contains("--overwrite: removing the run"), "{err}");
    let now = names(&out);
    for gone in ["best.safetensors", "metrics.csv"] {
        assert!(!now.contains(&gone.to_string()), "{gone} left: {now:?}");
    }
    assert_ne!(std::fs::read(out.join("last.safetensors")).unwrap(), before);
    assert_eq!(json(&out.join("config.json"))["seed"], 1);

    // A run that fails before its first step leaves no folder behind.
    let fresh = dir.join("never");
    let err = failure(&senet(train_args(&dir, &fresh, &["--classes", "7"])));
    assert!(err.contains("--classes 7"), "{err}");
    assert!(!fresh.exists());
    let err = failure(&senet(train_args(&dir.join("missing"), &fresh, &[])));
    assert!(err.contains("missing"), "{err}");
    assert!(!fresh.exists());
    links_locks_and_other_programs_files(&dir, &out);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `--out` is checked like an attacker's: a link planted as steps.csv is not written through,
/// another program's event files are not removed, and a folder another run holds is refused.
fn links_locks_and_other_programs_files(dir: &Path, out: &Path) {
    // Another program's event file in tensorboard/ makes that folder not ours.
    let tb = out.join("tensorboard");
    std::fs::create_dir_all(&tb).unwrap();
    let pytorch = tb.join("events.out.tfevents.1796000000.host.42.0");
    std::fs::write(&pytorch, "not ours").unwrap();
    let err = failure(&senet(train_args(dir, out, &["--overwrite"])));
    assert!(
        err.contains("tensorboard") && err.contains("did not write"),
        "{err}"
    );
    assert!(pytorch.exists());
    std::fs::remove_dir_all(&tb).unwrap();

    // A second run on a folder whose lock is held (by this test, as a running run holds it).
    let lock = std::fs::File::create(out.join(".senet-lock")).unwrap();
    // SAFETY: flock(2) on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
        0
    );
    let err = failure(&senet(train_args(dir, out, &["--resume"])));
    assert!(err.contains("in use by another"), "{err}");
    drop(lock);

    // A link planted as steps.csv in a fresh folder: refused, the target untouched.
    let fresh = dir.join("linked");
    std::fs::create_dir_all(&fresh).unwrap();
    let target = dir.join("precious.txt");
    std::fs::write(&target, "mine\n").unwrap();
    std::os::unix::fs::symlink(&target, fresh.join("steps.csv")).unwrap();
    let err = failure(&senet(train_args(
        dir,
        &fresh,
        &["--log-every", "1", "--max-steps", "2"],
    )));
    assert!(err.contains("steps.csv"), "{err}");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "mine\n");

    // --out itself may be a link to a folder.
    let real = dir.join("real-run");
    std::fs::create_dir_all(&real).unwrap();
    let via = dir.join("via-link");
    std::os::unix::fs::symlink(&real, &via).unwrap();
    success(&senet(train_args(dir, &via, &["--max-steps", "1"])));
    assert!(real.join("last.safetensors").exists());
}

#[test]
fn a_run_remembers_itself() {
    let dir = scratch("ux-config");
    tiny_data(&dir);
    let out = dir.join("a");
    let o = senet(train_args(
        &dir,
        &out,
        &[
            "--epochs",
            "2",
            "--lr",
            "0.02",
            "--warmup",
            "0.5",
            "--no-augment",
            "--set",
            "stem=cifar",
        ],
    ));
    success(&o);
    let config = json(&out.join("config.json"));
    for (key, value) in [
        ("model", Value::from("resnet")),
        ("depth", 18.into()),
        ("preset", "cifar".into()),
        ("width", 4.into()),
        ("dataset", "cifar10".into()),
        ("data", s(&dir).into()),
        ("image-size", 32.into()),
        ("resize", false.into()),
        ("lr", 0.02.into()),
        ("warmup", 0.5.into()),
        ("no-augment", true.into()),
        ("batch", 5.into()),
        ("epochs", 2.into()),
        ("log-every", 50.into()),
        ("set", serde_json::json!(["stem=cifar"])),
        ("version", env!("CARGO_PKG_VERSION").into()),
    ] {
        assert_eq!(config[key], value, "{key} in {config}");
    }
    // The normalization as given (none) and as used (the dataset's).
    assert_eq!(config["mean"], Value::Null);
    assert_eq!(config["resolved"]["mean"].as_array().unwrap().len(), 3);
    assert!(config["commit"].as_str().is_some_and(|c| !c.is_empty()));

    // The run's config.json as --config, with one flag overridden, trains the same run: the
    // same weights bit for bit when nothing else changes.
    let copy = dir.join("b");
    let mut args = vec![
        "train".to_string(),
        "--config".into(),
        s(&out.join("config.json")),
    ];
    args.extend(["--out".into(), s(&copy)]);
    success(&senet(&args));
    assert!(tensors(&copy.join("last.safetensors")) == tensors(&out.join("last.safetensors")));
    let copied = json(&copy.join("config.json"));
    assert_eq!(copied["lr"], 0.02);
    assert_eq!(copied["out"], s(&copy));

    config_files_give_every_option(&dir);
    eval_and_predict_take_the_run(&dir, &out);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A TOML file with underscores, a flag overriding it, a key that is no flag, a bad value.
fn config_files_give_every_option(dir: &Path) {
    // A TOML file with underscores, a flag overriding it, and a key that is no flag.
    let toml = dir.join("recipe.toml");
    std::fs::write(
        &toml,
        format!(
            "model = \"resnet\"\ndepth = 18\npreset = \"cifar\"\nwidth = 4\nbatch = 5\n\
             epochs = 1\nlr = 0.03\nlabel_smoothing = 0.1\ndevice = \"cpu\"\ndata = {:?}\n",
            s(dir)
        ),
    )
    .unwrap();
    let c = dir.join("c");
    let args = strings(&[
        "train",
        "--config",
        &s(&toml),
        "--lr",
        "0.04",
        "--out",
        &s(&c),
    ]);
    success(&senet(&args));
    let config = json(&c.join("config.json"));
    assert_eq!(config["lr"], 0.04, "the flag wins");
    assert_eq!(config["label-smoothing"], 0.1);
    assert_eq!(config["epochs"], 1);
    std::fs::write(&toml, "model = \"resnet\"\nresume = true\n").unwrap();
    let err = failure(&senet(strings(&["train", "--config", &s(&toml)])));
    assert!(
        err.contains("`resume`") && err.contains("command line"),
        "{err}"
    );
    std::fs::write(&toml, "model = \"resnet\"\nlearning_rate = 0.1\n").unwrap();
    let err = failure(&senet(strings(&["train", "--config", &s(&toml)])));
    assert!(
        err.contains("learning-rate") && err.contains("recipe.toml"),
        "{err}"
    );
    std::fs::write(&toml, "model = \"resnet\"\nbatch = 0\n").unwrap();
    let err = failure(&senet(strings(&["train", "--config", &s(&toml)])));
    assert!(
        err.contains("recipe.toml") && err.contains("--batch"),
        "{err}"
    );
}

/// `eval --run` and `predict --run` take the dataset, model and normalization from the run.
fn eval_and_predict_take_the_run(dir: &Path, out: &Path) {
    // eval --run and predict --run take the dataset, model and normalization from the run.
    let eval = success(&senet(strings(&[
        "eval",
        "--device",
        "cpu",
        "--run",
        &s(out),
    ])));
    assert!(eval.starts_with("loss: "), "{eval}");
    for f in ["confusion.csv", "confusion.png"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let last = success(&senet(strings(&[
        "eval",
        "--device",
        "cpu",
        "--run",
        &s(out),
        "--which",
        "last",
        "--json",
    ])));
    let doc: Value = serde_json::from_str(&last).unwrap();
    assert!(doc["checkpoint"]
        .as_str()
        .unwrap()
        .ends_with("last.safetensors"));
    assert_eq!(doc["images"], 10);
    let images = dir.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for (i, name) in ["b.png", "a.png"].iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(i as u64);
        let img = image::RgbImage::from_fn(32, 32, |_, _| image::Rgb(rng.random()));
        img.save(images.join(name)).unwrap();
    }
    std::fs::write(images.join("notes.txt"), "not an image").unwrap();
    let lines = success(&senet(strings(&[
        "predict",
        "--device",
        "cpu",
        "--run",
        &s(out),
        "--json",
        &s(&images),
    ])));
    let rows: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{lines}");
    assert!(
        rows[0]["path"].as_str().unwrap().ends_with("a.png"),
        "name order"
    );
    let top = rows[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    let p: Vec<f64> = top
        .iter()
        .map(|t| t["probability"].as_f64().unwrap())
        .collect();
    assert!(p.windows(2).all(|w| w[0] >= w[1]) && p[0] <= 1.0, "{p:?}");
    assert!(top[0]["class"].is_string());
}

#[test]
fn a_run_from_before_config_json_recorded_flags_still_resumes_and_evaluates() {
    let dir = scratch("ux-legacy");
    tiny_data(&dir);
    let out = dir.join("old");
    success(&senet(train_args(
        &dir,
        &out,
        &["--epochs", "2", "--max-steps", "5"],
    )));
    // config.json as the previous version wrote it.
    let legacy = serde_json::json!({
        "model.family": "resnet", "model.depth": "18", "model.preset": "cifar",
        "model.width": "4", "model.classes": "10",
        "dataset": "cifar10", "data": s(&dir), "data_url": null, "dataset_classes": 10,
        "epochs": 2, "max_steps": 5, "batch": 5, "lr": 0.1, "momentum": 0.9,
        "nesterov": true, "weight_decay": 0.0005, "optimizer": "sgd", "schedule": "cosine",
        "warmup_epochs": 1.0, "label_smoothing": 0.0, "augment": true, "shuffle": true,
        "seed": 0, "device": "cpu (AVX-512, 2 threads)", "init": null
    });
    std::fs::write(out.join("config.json"), legacy.to_string()).unwrap();
    let err = stderr_of_success(&senet(train_args(
        &dir,
        &out,
        &["--epochs", "2", "--resume"],
    )));
    assert!(err.contains("resuming"), "{err}");
    assert!(out.join("best.safetensors").exists());
    // A changed setting is still caught against the old file, under the flag's name.
    std::fs::write(out.join("config.json"), legacy.to_string()).unwrap();
    let err = failure(&senet(train_args(&dir, &out, &["--lr", "0.2", "--resume"])));
    assert!(err.contains("--lr: 0.1 (run) vs 0.2 (now)"), "{err}");
    let eval = success(&senet(strings(&[
        "eval",
        "--device",
        "cpu",
        "--run",
        &s(&out),
    ])));
    assert!(eval.contains("top-1"), "{eval}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn logs_people_can_use() {
    let dir = scratch("ux-logs");
    tiny_data(&dir);
    let out = dir.join("run");
    let o = senet(train_args(
        &dir,
        &out,
        &["--log-every", "3", "--tensorboard", "--epochs", "3"],
    ));
    success(&o);
    // stderr is a pipe here: every line of the run's story has a timestamp.
    let err = stderr(&o);
    let stamped = |l: &&str| {
        l.len() > 22 && l.starts_with("[20") && l.as_bytes()[11] == b' ' && l.as_bytes()[20] == b']'
    };
    let story: Vec<&str> = err.lines().filter(|l| l.contains("epoch ")).collect();
    assert!(story.len() >= 3 && story.iter().all(stamped), "{err}");
    assert!(err.contains("left"), "the whole run's time left: {err}");

    // steps.csv: a row every 3 steps (12 steps: 3, 6, 9, 12), each the mean of its 3 steps.
    let csv = std::fs::read_to_string(out.join("steps.csv")).unwrap();
    let rows: Vec<Vec<f64>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(
        csv.lines().next().unwrap(),
        "step,epoch,train_loss,train_top1,lr,time"
    );
    let steps: Vec<f64> = rows.iter().map(|r| r[0]).collect();
    assert_eq!(steps, [3.0, 6.0, 9.0, 12.0]);
    assert_eq!(rows[1][1], 1.5, "epoch = step / 4");
    assert!(rows
        .iter()
        .all(|r| r[2].is_finite() && r[2] > 0.0 && r[4] > 0.0));

    // TensorBoard: the same figures, read back with our reader (the official reader was
    // checked by hand, see the README).
    let files = tensorboard::event_files(&out.join("tensorboard")).unwrap();
    assert_eq!(files.len(), 1);
    let scalars = tensorboard::read_scalars(&files[0]).unwrap();
    let loss: Vec<(u64, f32)> = scalars
        .iter()
        .filter(|s| s.tag == "train/loss")
        .map(|s| (s.step, s.value))
        .collect();
    let expected: Vec<(u64, f32)> = rows.iter().map(|r| (r[0] as u64, r[2] as f32)).collect();
    assert_eq!(loss.len(), 4);
    for ((s1, v1), (s2, v2)) in loss.iter().zip(&expected) {
        assert_eq!(s1, s2);
        assert!((v1 - v2).abs() <= 1e-5 * v2.abs(), "{v1} vs {v2}");
    }
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    let top1: Vec<f64> = metrics
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(5).unwrap().parse().unwrap())
        .collect();
    let tb_top1: Vec<(u64, f32)> = scalars
        .iter()
        .filter(|s| s.tag == "epoch/test_top1")
        .map(|s| (s.step, s.value))
        .collect();
    assert_eq!(tb_top1.len(), 3);
    for ((step, v), (i, t)) in tb_top1.iter().zip(top1.iter().enumerate()) {
        assert_eq!(*step, 4 * (i as u64 + 1));
        assert!((f64::from(*v) - t).abs() < 1e-3);
    }

    // Stopped and resumed part-way: steps.csv holds each step once, as an uninterrupted run.
    let resumed = dir.join("resumed");
    // A normalization whose f64 expansion is long: it must compare equal on resume.
    let args = |out: &Path, extra: &[&str]| {
        let flags = ["--log-every", "3", "--epochs", "3", "--tensorboard"];
        let std = ["--std", "0.2452094,0.2428263,0.2605637"];
        train_args(&dir, out, &[&flags[..], &std, extra].concat())
    };
    let straight = dir.join("straight");
    success(&senet(args(&straight, &[])));
    success(&senet(args(&resumed, &["--max-steps", "5"])));
    success(&senet(args(&resumed, &["--resume"])));
    let read = |out: &Path| -> Vec<String> {
        let text = std::fs::read_to_string(out.join("steps.csv")).unwrap();
        // Without the time column.
        text.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(read(&resumed), read(&straight));
    // Two event files; the second starts with a restart marker at step 6, so TensorBoard drops
    // the first file's steps after the resume point (none here: it logged step 3 only).
    let files = tensorboard::event_files(&resumed.join("tensorboard")).unwrap();
    assert_eq!(files.len(), 2);
    let logged: Vec<u64> = files
        .iter()
        .flat_map(|f| tensorboard::read_scalars(f).unwrap())
        .filter(|s| s.tag == "train/loss")
        .map(|s| s.step)
        .collect();
    assert_eq!(logged, [3, 6, 9, 12]);
    std::fs::remove_dir_all(&dir).unwrap();
}
