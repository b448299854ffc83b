//! `senet reproduce`'s study runner on generated data: two tiny models x two seeds run to a
//! report, and a study stopped in the middle and started again gives the same report as one
//! that never stopped (all but the timing fields); the command end to end on CIFAR-10 files,
//! and the CIFAR-100 study on files in its binary layout with coarse or fine labels.
use senet::train::study::{self, Study, StudyOptions, StudyOutcome};
use senet::train::StopHandle;
use serde_json::Value;
use std::path::Path;

mod common;
#[path = "fixtures/support.rs"]
mod support;

/// The study's first two cells (resnet and se-resnet at depth 9, width 4), two seeds.
fn tiny_study(dir: &Path) -> (Vec<study::Cell>, Vec<study::PlannedRun>) {
    let o = StudyOptions {
        study: Study::Cifar10,
        families: false,
        grid: false,
        width: 4,
        classes: 10,
    };
    let cells: Vec<study::Cell> = study::cells(&o).unwrap().into_iter().take(2).collect();
    let runs = study::plan(&cells, 2, dir);
    (cells, runs)
}

/// report.json without the fields that measure time.
fn report_without_timing(dir: &Path) -> Value {
    let mut v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    for cell in v["cells"].as_array_mut().unwrap() {
        let cell = cell.as_object_mut().unwrap();
        cell.remove("images_per_s");
        cell.remove("seconds");
    }
    v
}

#[test]
fn a_stopped_study_resumes_to_the_same_report() {
    let root = common::tmp("reproduce");
    let data = root.join("data");
    common::write_cifar10(&data, 4, 5);
    let mut template = common::options(&data, &root.join("unused"), "cpu");
    template.epochs = 2;

    // Uninterrupted.
    let straight = root.join("straight");
    let (cells, runs) = tiny_study(&straight);
    let mut calls = Vec::new();
    let outcome = study::run_all(&template, &cells, &runs, &StopHandle::new(), |d, t| {
        calls.push((d, t))
    })
    .unwrap();
    assert_eq!(outcome, StudyOutcome::Complete);
    assert_eq!(calls.first(), Some(&(0, 4)));
    assert_eq!(calls.last(), Some(&(4, 4)));
    study::write_report(&straight, "tiny", "", &cells, &[], &runs, 2).unwrap();
    let want = report_without_timing(&straight);
    assert_eq!(want["runs_finished"], 4);
    assert_eq!(want["cells"][0]["name"], "resnet");
    assert_eq!(want["cells"][1]["seeds"], 2);
    assert_eq!(want["comparisons"][0]["a"], "se-resnet");
    let md = std::fs::read_to_string(straight.join("report.md")).unwrap();
    assert!(md.contains("4 of 4 runs finished"), "{md}");
    assert!(md.contains("| se-resnet - resnet: "), "{md}");

    // Stopped twice (mid-run: the template's step limit), then finished.
    let stopped = root.join("stopped");
    let (cells, runs) = tiny_study(&stopped);
    let mut limited = template.clone();
    limited.max_steps = Some(4);
    let stop = StopHandle::new();
    let first = study::run_all(&limited, &cells, &runs, &stop, |_, _| {}).unwrap();
    assert_eq!(first, StudyOutcome::Stopped);
    assert!(!study::finished(&runs[0].folder, 2).unwrap());
    // 3 steps an epoch: the limit of 4 fell in the second epoch.
    assert_eq!(study::epochs_done(&runs[0].folder, 2).unwrap(), 1);
    assert_eq!(study::epochs_done(&runs[1].folder, 2).unwrap(), 0);
    study::write_report(&stopped, "tiny", "", &cells, &[], &runs, 2).unwrap();
    assert_eq!(report_without_timing(&stopped)["runs_finished"], 0);
    // The first run finishes now (its 6 steps pass the limit of 4 only once resumed without
    // it); the second stops at the limit again.
    let second = study::run_all(&template, &cells, &runs[..1], &stop, |_, _| {}).unwrap();
    assert_eq!(second, StudyOutcome::Complete);
    let third = study::run_all(&limited, &cells, &runs, &stop, |_, _| {}).unwrap();
    assert_eq!(third, StudyOutcome::Stopped);
    let last = study::run_all(&template, &cells, &runs, &stop, |_, _| {}).unwrap();
    assert_eq!(last, StudyOutcome::Complete);
    study::write_report(&stopped, "tiny", "", &cells, &[], &runs, 2).unwrap();
    assert_eq!(report_without_timing(&stopped), want);

    // Killed for good (no checkpoint written since) in the first run's second epoch: with a
    // finished epoch in metrics.csv the study refuses to replace it; once that row is gone too
    // (what a kill in the first epoch leaves: config, step log, lock) it starts the run afresh.
    let killed = root.join("killed");
    let (cells, runs) = tiny_study(&killed);
    let first = study::run_all(&limited, &cells, &runs, &stop, |_, _| {}).unwrap();
    assert_eq!(first, StudyOutcome::Stopped);
    for name in ["last.safetensors", "last.optim.safetensors"] {
        std::fs::remove_file(runs[0].folder.join(name)).unwrap();
    }
    let err = study::run_all(&template, &cells, &runs, &stop, |_, _| {}).unwrap_err();
    let err = format!("{err:#}");
    for part in ["resnet seed 0", "1 of its 2 epochs", "no last.safetensors"] {
        assert!(err.contains(part), "{part:?} not in: {err}");
    }
    std::fs::remove_file(runs[0].folder.join("metrics.csv")).unwrap();
    assert!(runs[0].folder.join("config.json").is_file());
    let restarted = study::run_all(&template, &cells, &runs, &stop, |_, _| {}).unwrap();
    assert_eq!(restarted, StudyOutcome::Complete);
    study::write_report(&killed, "tiny", "", &cells, &[], &runs, 2).unwrap();
    assert_eq!(report_without_timing(&killed), want);

    // Not only the accuracies: every run ends with the same weights, bit for bit.
    for (a, b) in tiny_study(&straight).1.iter().zip(&runs) {
        assert_eq!(
            common::checkpoint_bits(&a.folder.join("last.safetensors")),
            common::checkpoint_bits(&b.folder.join("last.safetensors")),
            "{:?}",
            b.folder
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn senet_reproduce_runs_a_study_and_rebuilds_its_report() {
    let root = support::scratch("reproduce-cli");
    let data = root.join("data");
    common::write_cifar10(&data, 4, 7);
    let out = root.join("study");
    let args = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "reproduce",
            "--study",
            "cifar10",
            "--seeds",
            "2",
            "--epochs",
            "1",
            "--width",
            "4",
            "--batch",
            "16",
            "--device",
            "cpu",
        ]
        .map(String::from)
        .to_vec();
        a.extend(["--data".into(), data.display().to_string()]);
        a.extend(["--out".into(), out.display().to_string()]);
        a.extend(extra.iter().map(|e| e.to_string()));
        a
    };
    let o = support::senet(args(&[]));
    support::success(&o);
    let err = support::stderr(&o);
    assert!(err.contains("study cifar10: 0 of 6 runs done"), "{err}");
    assert!(err.contains("study cifar10: 6 of 6 runs done\n"), "{err}");
    // Paced once an epoch has been trained in this invocation; no estimate once all are done.
    assert!(
        err.contains("study cifar10: 1 of 6 runs done, about "),
        "{err}"
    );
    for cell in ["resnet", "se-resnet", "senetv2"] {
        for seed in 0..2 {
            let run = out.join(cell).join(format!("seed-{seed}"));
            let config: Value =
                serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap())
                    .unwrap();
            assert_eq!(config["seed"], seed, "{run:?}");
            assert!(config["commit"].is_string() && config["version"].is_string());
        }
    }
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("6 of 6 runs finished (1 epochs each)"), "{md}");
    assert!(md.contains("| senetv2 - resnet: "), "{md}");
    // Width 4, so not the paper's networks' size, but the paper's figure stands beside ours.
    assert!(
        md.contains("| senetv2 | 2 | ") && md.contains(" | 78.60 | "),
        "{md}"
    );
    let png = image::open(out.join("report.png")).unwrap();
    assert_eq!((png.width(), png.height()), (1000, 640));
    let report = report_without_timing(&out);
    assert_eq!(report["cells"].as_array().unwrap().len(), 3);
    assert!(report["cells"][2]["params"].as_u64().unwrap() > 0);

    // Again: every run is finished, nothing trains, the report is rebuilt the same.
    std::fs::remove_file(out.join("report.json")).unwrap();
    let o = support::senet(args(&["--report-only"]));
    support::success(&o);
    assert_eq!(report_without_timing(&out), report);

    // The ablation at a width that squeezes SaE to nothing is refused before anything runs.
    let o = support::senet([
        "reproduce",
        "--study",
        "ablation",
        "--width",
        "4",
        "--out",
        &root.join("ablation").display().to_string(),
    ]);
    let err = support::failure(&o);
    assert!(err.contains("--width 32 or more"), "{err}");
    assert!(!root.join("ablation").exists());
    let _ = std::fs::remove_dir_all(&root);
}

/// CIFAR-100 is not on this machine, so its study runs on generated files in the official
/// binary layout: with coarse labels the cells are the paper's depth-50 networks with 20 classes
/// and its CIFAR-100 figures stand beside ours; with fine labels the report says they are not
/// comparable and leaves them out.
#[test]
fn the_cifar100_study_runs_on_binary_files_with_coarse_or_fine_labels() {
    let root = support::scratch("reproduce-cifar100");
    let data = root.join("data");
    common::write_cifar100(&data, 40, 20);
    let run = |labels: &str, seeds: &str| {
        let out = root.join(labels);
        let o = support::senet([
            "reproduce",
            "--study",
            "cifar100",
            "--dataset",
            "cifar100",
            "--labels",
            labels,
            "--data",
            &data.display().to_string(),
            "--seeds",
            seeds,
            "--epochs",
            "1",
            "--width",
            "4",
            "--batch",
            "20",
            "--device",
            "cpu",
            "--out",
            &out.display().to_string(),
        ]);
        support::success(&o);
        // The paper's own data: nothing to warn about.
        let err = support::stderr(&o);
        assert!(!err.contains("warning"), "{err}");
        let md = std::fs::read_to_string(out.join("report.md")).unwrap();
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap())
                .unwrap();
        (out, md, json)
    };

    let (out, md, json) = run("coarse", "2");
    assert!(md.contains("6 of 6 runs finished (1 epochs each)"), "{md}");
    assert!(md.contains(", cifar100 (coarse labels) data "), "{md}");
    for (i, (cell, paper)) in [("resnet", 61.72), ("se-resnet", 62.26), ("senetv2", 63.52)]
        .into_iter()
        .enumerate()
    {
        assert_eq!(json["cells"][i]["name"], cell);
        assert_eq!(json["cells"][i]["paper_top1"], paper, "{json}");
        let config: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(cell).join("seed-1").join("config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(config["resolved"]["model"]["depth"], "50", "{config}");
        assert_eq!(config["resolved"]["model"]["classes"], "20", "{config}");
        assert_eq!(config["labels"], "coarse", "{config}");
    }
    assert!(md.contains(" | 63.52 | "), "{md}");
    assert!(md.contains("| senetv2 - resnet: "), "{md}");
    assert_eq!(json["note"], "");

    let (_, md, json) = run("fine", "1");
    assert!(md.contains("3 of 3 runs finished"), "{md}");
    assert!(md.contains("not comparable"), "{md}");
    assert!(!md.contains("63.52"), "{md}");
    assert!(json["cells"][2]["paper_top1"].is_null(), "{json}");

    // A cifar100 study left on the default --dataset cifar10 is warned about; a report of a
    // study that never ran is refused by name.
    let never = root.join("never").display().to_string();
    let report_of_nothing = |flags: &[&str]| {
        let args = [
            &["reproduce"][..],
            flags,
            &["--report-only", "--out", &never],
        ]
        .concat();
        support::failure(&support::senet(args))
    };
    let err = report_of_nothing(&["--study", "cifar100"]);
    assert!(
        err.contains("warning: study cifar100 on cifar10 data")
            && err.contains("--dataset cifar100 --labels coarse"),
        "{err}"
    );
    assert!(
        err.contains("--report-only") && err.contains("is not a folder; nothing to report"),
        "{err}"
    );
    // And the other way round.
    let err = report_of_nothing(&["--study", "cifar10", "--dataset", "cifar100"]);
    assert!(
        err.contains(
            "warning: study cifar10 on cifar100 data; the paper's cifar10 networks were \
                      trained with --dataset cifar10"
        ),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

/// An image folder has as many classes as class folders, which only the trainer counts: the
/// report describes the networks the runs trained (3 outputs here, so fewer parameters than
/// the 10-class networks) and leaves the paper's 10-class figures out, saying why.
#[test]
fn an_image_folder_study_reports_the_classes_it_trained() {
    let root = support::scratch("reproduce-folder");
    let data = root.join("data");
    for (split, images) in [("train", 4u8), ("test", 2)] {
        for (c, class) in ["cat", "dog", "ship"].into_iter().enumerate() {
            let dir = data.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..images {
                let img = image::RgbImage::from_fn(32, 32, |x, y| {
                    image::Rgb([(x * 8) as u8, (y * 8) as u8, i * 30 + c as u8 * 60])
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
    let out = root.join("study");
    let (data_arg, out_arg) = (data.display().to_string(), out.display().to_string());
    let o = support::senet([
        "reproduce",
        "--study",
        "cifar10",
        "--dataset",
        "imagefolder",
        "--data",
        &data_arg,
        "--seeds",
        "1",
        "--epochs",
        "1",
        "--width",
        "4",
        "--batch",
        "6",
        "--device",
        "cpu",
        "--out",
        &out_arg,
    ]);
    support::success(&o);
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let note = json["note"].as_str().unwrap();
    assert!(
        note.contains("with 3 classes they are not comparable"),
        "{json}"
    );
    let sized = |classes| {
        let o = StudyOptions {
            study: Study::Cifar10,
            families: false,
            grid: false,
            width: 4,
            classes,
        };
        study::facts(&o, &study::cells(&o).unwrap(), 32).unwrap()
    };
    let (three, ten) = (sized(3), sized(10));
    for (i, cell) in json["cells"].as_array().unwrap().iter().enumerate() {
        assert!(cell["paper_top1"].is_null(), "{cell}");
        assert_eq!(cell["params"], three[i].params, "{cell}");
        assert!(three[i].params < ten[i].params);
    }
    let _ = std::fs::remove_dir_all(&root);
}
