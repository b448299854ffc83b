//! The trainer end to end on a small generated dataset: the loss falls, every output file is
//! written, a killed-and-resumed run ends with the same bits as an uninterrupted one, a
//! diverging run stops and keeps the last good checkpoint, and a step on the GPU matches the
//! same step on the CPU.
mod common;

use common::{checkpoint_bits, options, tmp, write_cifar10};
use senet::train::{EpochMetrics, Outcome, StopHandle, TrainOptions};

/// A run nobody stops.
fn train(o: &TrainOptions) -> anyhow::Result<(Vec<EpochMetrics>, Outcome)> {
    senet::train::train(o, &StopHandle::new())
}

#[test]
fn a_short_run_learns_and_writes_every_file() {
    let dir = tmp("learns");
    write_cifar10(&dir, 16, 1);
    let out = dir.join("run");
    let (rows, outcome) = train(&options(&dir, &out, "cpu")).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert_eq!(rows.len(), 3);
    assert!(
        rows[2].train_loss < rows[0].train_loss * 0.9,
        "loss should fall: {rows:#?}"
    );
    assert_eq!(rows[2].steps, 3 * (160 / 16));
    for f in [
        "config.json",
        "metrics.csv",
        "last.safetensors",
        "last.optim.safetensors",
        "best.safetensors",
        "curves.png",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(
        csv.lines().next().unwrap(),
        "epoch,steps,train_loss,train_top1,test_loss,test_top1,test_top5,lr,images_per_s,seconds"
    );
    assert_eq!(csv.lines().count(), 4);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["seed"], 3);
    assert_eq!(config["model"], "resnet");
    assert_eq!(config["resolved"]["model"]["family"], "resnet");
    assert!(config["resolved"]["device"]
        .as_str()
        .unwrap()
        .starts_with("cpu"));
    // The checkpoint describes the model (MODELS.md's metadata keys).
    let meta = senet::nn::checkpoint::read_metadata(&out.join("last.safetensors")).unwrap();
    for k in [
        "family",
        "depth",
        "preset",
        "width",
        "classes",
        "class_names",
        "mean",
        "std",
        "input_size",
        "epoch",
        "step",
    ] {
        assert!(meta.contains_key(k), "metadata {k} missing: {meta:?}");
    }
    assert_eq!(meta["epoch"], "3");
    let png = image::open(out.join("curves.png")).unwrap();
    assert!(png.width() > 100 && png.height() > 100);
}

#[test]
fn a_run_stopped_mid_epoch_and_resumed_ends_bit_identical() {
    let dir = tmp("resume");
    write_cifar10(&dir, 8, 2);
    let straight = options(&dir, &dir.join("straight"), "cpu");
    train(&straight).unwrap();

    // Stopped after 7 steps (inside epoch 2 of 5-step epochs), then resumed to the end.
    let mut o = options(&dir, &dir.join("resumed"), "cpu");
    o.max_steps = Some(7);
    let (_, outcome) = train(&o).unwrap();
    assert_eq!(outcome, Outcome::MaxSteps);
    // Resumed with the same --max-steps: nothing left to do, not one step more.
    o.resume = true;
    let (_, outcome) = train(&o).unwrap();
    assert_eq!(outcome, Outcome::MaxSteps);
    let meta = senet::nn::checkpoint::read_metadata(&dir.join("resumed/last.safetensors")).unwrap();
    assert_eq!(meta["step"], "7");
    o.max_steps = Some(10); // stopped again, exactly at an epoch boundary
    o.resume = true;
    train(&o).unwrap();
    o.max_steps = None;
    let (rows, outcome) = train(&o).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert_eq!(rows.len(), 3);
    assert_eq!(
        checkpoint_bits(&dir.join("straight/last.safetensors")),
        checkpoint_bits(&dir.join("resumed/last.safetensors"))
    );
    assert_eq!(
        checkpoint_bits(&dir.join("straight/last.optim.safetensors")),
        checkpoint_bits(&dir.join("resumed/last.optim.safetensors"))
    );
    let (a, b) = (
        std::fs::read_to_string(dir.join("straight/metrics.csv")).unwrap(),
        std::fs::read_to_string(dir.join("resumed/metrics.csv")).unwrap(),
    );
    // Same numbers except the timing columns.
    let strip = |s: &str| {
        s.lines()
            .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(&a), strip(&b));

    // Resuming with other settings is refused, naming them.
    o.lr = 0.2;
    let e = train(&o).unwrap_err().to_string();
    assert!(e.contains("lr"), "{e}");
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_checkpoint() {
    let dir = tmp("nan");
    write_cifar10(&dir, 8, 3);
    let mut o = options(&dir, &dir.join("run"), "cpu");
    o.lr = 1e12;
    o.warmup = 0.0;
    o.schedule = senet::nn::schedule::ScheduleKind::Constant;
    o.max_steps = Some(1);
    train(&o).unwrap();
    let good = std::fs::read(dir.join("run/last.safetensors")).unwrap();
    o.max_steps = None;
    o.resume = true;
    let e = format!("{:#}", train(&o).unwrap_err());
    assert!(
        e.contains("loss became") && e.contains("last.safetensors"),
        "{e}"
    );
    assert_eq!(
        std::fs::read(dir.join("run/last.safetensors")).unwrap(),
        good,
        "the last good checkpoint must stay"
    );
}

#[test]
fn init_loads_every_tensor_and_starts_a_fresh_optimizer() {
    let dir = tmp("init");
    write_cifar10(&dir, 8, 4);
    let mut o = options(&dir, &dir.join("first"), "cpu");
    o.epochs = 1;
    train(&o).unwrap();
    let mut o2 = options(&dir, &dir.join("second"), "cpu");
    o2.init = Some(dir.join("first/last.safetensors"));
    o2.max_steps = Some(1);
    o2.lr = 1e-12; // one negligible step: the weights must still be first/last's
    train(&o2).unwrap();
    let meta = senet::nn::checkpoint::read_metadata(&dir.join("second/last.safetensors")).unwrap();
    assert_eq!(meta["step"], "1", "a fresh run counts steps from 0");
    let a = checkpoint_bits(&dir.join("first/last.safetensors"));
    let b = checkpoint_bits(&dir.join("second/last.safetensors"));
    let bn =
        |v: &[(String, Vec<u8>)], name: &str| v.iter().find(|(n, _)| n == name).unwrap().1.clone();
    // num_batches_tracked continues from the loaded value (one epoch of 5 steps, + 1).
    assert_eq!(
        i64::from_le_bytes(bn(&a, "bn1.num_batches_tracked").try_into().unwrap()),
        5
    );
    assert_eq!(
        i64::from_le_bytes(bn(&b, "bn1.num_batches_tracked").try_into().unwrap()),
        6
    );
    // With a learning rate of 1e-12 the weights are first/last's to within f32 rounding.
    let f = |v: &[u8]| {
        v.chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect::<Vec<f32>>()
    };
    for name in ["conv1.weight", "fc.weight", "layer1.0.conv1.weight"] {
        for (x, y) in f(&bn(&a, name)).iter().zip(f(&bn(&b, name))) {
            assert!(
                (x - y).abs() <= 1e-6 * (1.0 + x.abs()),
                "{name}: {x} vs {y}"
            );
        }
    }
}

#[test]
fn resume_refuses_an_optimizer_state_that_is_not_the_weights_own() {
    use senet::nn::checkpoint::{load_tensors, save_tensors, Metadata};
    let dir = tmp("resume-optim");
    write_cifar10(&dir, 4, 3);
    let mut o = options(&dir, &dir.join("run"), "cpu");
    o.max_steps = Some(3);
    train(&o).unwrap();
    o.resume = true;
    o.max_steps = None;
    let optim = dir.join("run/last.optim.safetensors");
    let original = std::fs::read(&optim).unwrap();
    let (tensors, meta) = load_tensors(&optim, senet::tensor::Device::Cpu).unwrap();
    type Named = Vec<(String, senet::Tensor)>;
    let rewrite = |edit: &dyn Fn(&mut Named, &mut Metadata)| {
        let mut t: Named = tensors.clone().into_iter().collect();
        let mut m = meta.clone();
        edit(&mut t, &mut m);
        save_tensors(&t, &m, &optim).unwrap();
    };
    let refused = || format!("{:#}", train(&o).unwrap_err());
    // A parameter's state missing.
    rewrite(&|t, _| {
        t.remove(0);
    });
    assert!(
        refused().contains("has nothing for parameter"),
        "{}",
        refused()
    );
    // A state tensor of another shape.
    rewrite(&|t, _| t[0].1 = senet::Tensor::from_vec(vec![0f32; 3], &[3]).unwrap());
    assert!(refused().contains("has shape [3]"), "{}", refused());
    // State of a parameter the model does not have.
    rewrite(&|t, _| t.push(("head.weight.velocity".into(), t[0].1.clone())));
    assert!(refused().contains("head.weight"), "{}", refused());
    // Saved at another step than the weights.
    rewrite(&|_, m| {
        m.insert("run_step".into(), "2".into());
    });
    assert!(refused().contains("not one save"), "{}", refused());
    std::fs::write(&optim, original).unwrap();
    // Running sums the saved steps cannot have produced (they would overflow on the next step).
    let last = dir.join("run/last.safetensors");
    let weights = std::fs::read(&last).unwrap();
    let mut model = senet::models::build(&o.model, 0).unwrap();
    let mut meta = senet::nn::checkpoint::load(&mut model, &last).unwrap();
    meta.insert("train_seen".into(), u64::MAX.to_string());
    senet::nn::checkpoint::save(&mut model, &meta, &last).unwrap();
    assert!(refused().contains("never reaches"), "{}", refused());
    // The files as they were resume to the end.
    std::fs::write(&last, weights).unwrap();
    let (rows, outcome) = train(&o).unwrap();
    assert_eq!((rows.len(), outcome), (3, Outcome::Finished));
}

#[test]
fn bad_settings_are_errors() {
    let dir = tmp("bad");
    write_cifar10(&dir, 2, 5);
    let mut o = options(&dir, &dir.join("run"), "cpu");
    o.classes = Some(7);
    assert!(train(&o).unwrap_err().to_string().contains("--classes 7"));
    let mut o = options(&dir, &dir.join("run"), "cpu");
    o.batch = 1000;
    assert!(train(&o).unwrap_err().to_string().contains("--batch 1000"));
    let mut o = options(&dir, &dir.join("run"), "nonexistent-adapter");
    o.epochs = 1;
    assert!(format!("{:#}", train(&o).unwrap_err()).contains("nonexistent-adapter"));
    let o = options(&dir.join("missing"), &dir.join("run2"), "cpu");
    let e = format!("{:#}", train(&o).unwrap_err());
    assert!(
        e.contains("cifar-10-batches-bin") || e.contains("missing"),
        "{e}"
    );
}

#[test]
fn the_gpu_trains_and_one_step_matches_the_cpu() {
    let Some((_lock, gpu)) = senet::gpu::testing::gpu_for_tests() else {
        return;
    };
    let dir = tmp("gpu");
    write_cifar10(&dir, 8, 6);
    // One identical step on each device from the same weights and batch.
    let step = |device: String, name: &str| {
        let mut o = options(&dir, &dir.join(name), &device);
        o.max_steps = Some(1);
        o.workers = 0;
        train(&o).unwrap();
        checkpoint_bits(&dir.join(name).join("last.safetensors"))
    };
    let cpu = step("cpu".into(), "cpu");
    let dev = step(gpu.summary.name.clone(), "gpu");
    for ((name, a), (_, b)) in cpu.iter().zip(&dev) {
        if name.ends_with("num_batches_tracked") {
            assert_eq!(a, b);
            continue;
        }
        let f = |v: &[u8]| {
            v.chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect::<Vec<f32>>()
        };
        // f32 on both, summed in different orders through ~60 kernels and one SGD step.
        for (x, y) in f(a).iter().zip(f(b)) {
            assert!(
                (x - y).abs() <= 1e-3 * (1.0 + x.abs()),
                "{name}: cpu {x} gpu {y}"
            );
        }
    }
    // And a short run on the GPU learns.
    let mut o = options(&dir, &dir.join("gpu-run"), &gpu.summary.name);
    o.epochs = 2;
    let (rows, _) = train(&o).unwrap();
    assert!(rows[1].train_loss < rows[0].train_loss, "{rows:#?}");
}
