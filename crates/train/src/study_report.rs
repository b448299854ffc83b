//! A study's figures from its finished runs: per cell the mean and standard deviation of the
//! final test top-1 and top-5 over seeds, the runs' own training throughput and their training
//! time (all seeds together); per pair of cells the difference of mean top-1 with Welch's 95%
//! interval, the interval of the per-seed paired differences (same seed = same data order),
//! and a verdict line.
use crate::metrics::EpochMetrics;
use crate::stats::{self, Interval};
use serde_json::{json, Value};
use std::fmt::Write;

/// What one finished run contributes: its last epoch's test accuracy, its mean training
/// throughput over epochs and its summed epoch time.
#[derive(Clone, Debug, PartialEq)]
pub struct RunResult {
    /// The cell's name.
    pub cell: String,
    /// The run's seed.
    pub seed: u64,
    /// Test top-1 (%) after the last epoch.
    pub top1: f64,
    /// Test top-5 (%) after the last epoch.
    pub top5: f64,
    /// Training images per second, averaged over the epochs.
    pub images_per_s: f64,
    /// The epochs' training seconds, summed.
    pub seconds: f64,
}

impl RunResult {
    /// From a run's `metrics.csv` rows (`None` when it has none).
    pub fn from_metrics(cell: &str, seed: u64, rows: &[EpochMetrics]) -> Option<RunResult> {
        let last = rows.last()?;
        Some(RunResult {
            cell: cell.to_string(),
            seed,
            top1: last.test_top1,
            top5: last.test_top5,
            images_per_s: rows.iter().map(|r| r.images_per_s).sum::<f64>() / rows.len() as f64,
            seconds: rows.iter().map(|r| r.seconds).sum(),
        })
    }
}

/// One cell over its seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct CellSummary {
    /// The cell's name.
    pub name: String,
    /// Finished runs (one per seed).
    pub seeds: usize,
    /// Mean final test top-1 (%) over the seeds.
    pub top1_mean: f64,
    /// Sample standard deviation (NaN with one seed).
    pub top1_std: f64,
    /// Mean final test top-5 (%) over the seeds.
    pub top5_mean: f64,
    /// Sample standard deviation of top-5 (NaN with one seed).
    pub top5_std: f64,
    /// Training images per second, averaged over the runs.
    pub images_per_s: f64,
    /// Training seconds of all its runs together.
    pub seconds: f64,
}

/// What a cell is, apart from its runs: its size and cost, and the paper's figure for it.
#[derive(Clone, Debug, PartialEq)]
pub struct CellFacts {
    /// The cell's name.
    pub name: String,
    /// PyTorch's count: weights and biases.
    pub params: usize,
    /// Keras's count (the paper's tables): also batch norm's running statistics.
    pub params_keras: usize,
    /// One forward pass of one image.
    pub mflops: f64,
    /// The paper's published top-1 for this network and dataset, where it is comparable.
    pub paper_top1: Option<f64>,
}

/// `a - b` in mean top-1 points.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    /// The later cell in report order.
    pub a: String,
    /// The earlier cell, subtracted from `a`.
    pub b: String,
    /// Mean top-1 of `a` minus mean top-1 of `b`, over all seeds of each.
    pub diff: f64,
    /// Welch's 95% interval over all seeds of each (`None` below two seeds or without spread).
    pub welch: Option<Interval>,
    /// Over the seeds both cells have.
    pub paired: Option<Interval>,
    /// One line saying whether the difference is shown ([`stats::verdict`]).
    pub verdict: String,
}

/// Cells in `order` (those without a finished run are left out), and every pair of them,
/// later minus earlier (so with resnet, se-resnet, senetv2: se-resnet - resnet, senetv2 -
/// resnet, senetv2 - se-resnet).
pub fn summarize(order: &[String], runs: &[RunResult]) -> (Vec<CellSummary>, Vec<Comparison>) {
    let of = |name: &str| -> Vec<&RunResult> {
        let mut r: Vec<&RunResult> = runs.iter().filter(|r| r.cell == name).collect();
        r.sort_by_key(|r| r.seed);
        r
    };
    let cells: Vec<CellSummary> = order
        .iter()
        .filter_map(|name| {
            let r = of(name);
            if r.is_empty() {
                return None;
            }
            let top1: Vec<f64> = r.iter().map(|r| r.top1).collect();
            let top5: Vec<f64> = r.iter().map(|r| r.top5).collect();
            let speed: Vec<f64> = r.iter().map(|r| r.images_per_s).collect();
            Some(CellSummary {
                name: name.clone(),
                seeds: r.len(),
                top1_mean: stats::mean(&top1),
                top1_std: stats::std_dev(&top1),
                top5_mean: stats::mean(&top5),
                top5_std: stats::std_dev(&top5),
                images_per_s: stats::mean(&speed),
                seconds: r.iter().map(|r| r.seconds).sum(),
            })
        })
        .collect();
    let mut pairs = Vec::new();
    for (i, b) in cells.iter().enumerate() {
        for a in &cells[i + 1..] {
            let (ra, rb) = (of(&a.name), of(&b.name));
            let top1 = |r: &[&RunResult]| r.iter().map(|r| r.top1).collect::<Vec<f64>>();
            let welch = stats::welch(&top1(&ra), &top1(&rb), 0.95);
            // Paired: the seeds both finished.
            let (mut pa, mut pb) = (Vec::new(), Vec::new());
            for x in &ra {
                if let Some(y) = rb.iter().find(|y| y.seed == x.seed) {
                    pa.push(x.top1);
                    pb.push(y.top1);
                }
            }
            let paired = stats::paired(&pa, &pb, 0.95);
            let seeds = ra.len().min(rb.len());
            let diff = a.top1_mean - b.top1_mean;
            pairs.push(Comparison {
                a: a.name.clone(),
                b: b.name.clone(),
                diff,
                verdict: stats::verdict(&a.name, &b.name, diff, welch.as_ref(), seeds),
                welch,
                paired,
            });
        }
    }
    (cells, pairs)
}

fn interval_json(i: &Option<Interval>) -> Value {
    match i {
        None => Value::Null,
        Some(i) => {
            json!({"diff": i.diff, "se": i.se, "df": i.df, "t": i.t, "low": i.low, "high": i.high})
        }
    }
}

/// The figures as JSON (`report.json`): `cells` and `comparisons`. NaN (a standard deviation
/// of one seed) is written as null.
pub fn to_json(cells: &[CellSummary], facts: &[CellFacts], pairs: &[Comparison]) -> Value {
    let num = |v: f64| if v.is_finite() { json!(v) } else { Value::Null };
    json!({
        "cells": cells.iter().map(|c| {
            let f = facts.iter().find(|f| f.name == c.name);
            json!({
                "name": c.name, "seeds": c.seeds,
                "top1_mean": num(c.top1_mean), "top1_std": num(c.top1_std),
                "top5_mean": num(c.top5_mean), "top5_std": num(c.top5_std),
                "images_per_s": num(c.images_per_s), "seconds": num(c.seconds),
                "params": f.map(|f| f.params), "params_keras": f.map(|f| f.params_keras),
                "mflops": f.map(|f| f.mflops), "paper_top1": f.and_then(|f| f.paper_top1),
            })
        }).collect::<Vec<_>>(),
        "comparisons": pairs.iter().map(|p| json!({
            "a": p.a, "b": p.b, "diff": num(p.diff), "welch": interval_json(&p.welch),
            "paired": interval_json(&p.paired), "verdict": p.verdict,
        })).collect::<Vec<_>>(),
    })
}

/// The figures as Markdown tables (the body of `report.md`).
pub fn to_markdown(cells: &[CellSummary], facts: &[CellFacts], pairs: &[Comparison]) -> String {
    let pm = |m: f64, s: f64| {
        if s.is_finite() {
            format!("{m:.2} ± {s:.2}")
        } else {
            format!("{m:.2}")
        }
    };
    let mut md = String::from(
        "| model | seeds | test top-1 % (mean ± sd) | paper's top-1 % | test top-5 % | parameters (PyTorch / Keras) | MFLOPs | training images/s (the runs' own) | training time, all seeds |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for c in cells {
        let f = facts.iter().find(|f| f.name == c.name);
        let paper = f
            .and_then(|f| f.paper_top1)
            .map_or("—".to_string(), |p| format!("{p:.2}"));
        let size = f.map_or("—".to_string(), |f| {
            format!(
                "{:.2}M / {:.2}M",
                f.params as f64 / 1e6,
                f.params_keras as f64 / 1e6
            )
        });
        let mflops = f.map_or("—".to_string(), |f| format!("{:.1}", f.mflops));
        let _ = writeln!(
            md,
            "| {} | {} | {} | {paper} | {} | {size} | {mflops} | {:.1} | {:.2} h |",
            c.name,
            c.seeds,
            pm(c.top1_mean, c.top1_std),
            pm(c.top5_mean, c.top5_std),
            c.images_per_s,
            c.seconds / 3600.0
        );
    }
    md.push_str("\n| difference of mean top-1 | Welch 95% CI | paired per-seed 95% CI | verdict |\n|---|---|---|---|\n");
    let ci = |i: &Option<Interval>| match i {
        Some(i) => format!("[{:+.2}, {:+.2}] (df {:.1})", i.low, i.high, i.df),
        None => "—".to_string(),
    };
    for p in pairs {
        let _ = writeln!(
            md,
            "| {} - {}: {:+.2} | {} | {} | {} |",
            p.a,
            p.b,
            p.diff,
            ci(&p.welch),
            ci(&p.paired),
            p.verdict
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cell: &str, seed: u64, top1: f64) -> RunResult {
        RunResult {
            cell: cell.into(),
            seed,
            top1,
            top5: top1 + 10.0,
            images_per_s: 100.0 + seed as f64,
            seconds: 60.0,
        }
    }

    #[test]
    fn cells_and_pairs_by_hand() {
        let runs = vec![
            run("resnet", 0, 80.0),
            run("resnet", 1, 81.0),
            run("resnet", 2, 82.0),
            run("senetv2", 2, 84.0),
            run("senetv2", 0, 81.0),
            run("senetv2", 1, 83.0),
        ];
        let order = ["resnet", "se-resnet", "senetv2"].map(String::from);
        let (cells, pairs) = summarize(&order, &runs);
        // se-resnet has no finished run: left out.
        assert_eq!(cells.len(), 2);
        assert_eq!(cells[1].name, "senetv2");
        assert_eq!(cells[1].seeds, 3);
        assert!((cells[1].top1_mean - 82.666_666_666_666_67).abs() < 1e-12);
        // 81, 83, 84: deviations -5/3, 1/3, 4/3, squares sum 42/9 over 2.
        assert!((cells[1].top1_std - (42.0f64 / 18.0).sqrt()).abs() < 1e-12);
        assert!((cells[0].images_per_s - 101.0).abs() < 1e-12);
        assert_eq!(cells[0].seconds, 180.0);
        assert_eq!(pairs.len(), 1);
        let p = &pairs[0];
        assert_eq!((p.a.as_str(), p.b.as_str()), ("senetv2", "resnet"));
        // Paired by seed: 1, 2, 2 -> mean 5/3, df 2.
        let paired = p.paired.unwrap();
        assert!((paired.diff - 5.0 / 3.0).abs() < 1e-12);
        assert_eq!(paired.df, 2.0);
        let welch = p.welch.unwrap();
        assert!((welch.diff - 5.0 / 3.0).abs() < 1e-12);
        assert!(
            p.verdict.starts_with("senetv2 - resnet: +1.67 points"),
            "{}",
            p.verdict
        );
        let facts = [CellFacts {
            name: "senetv2".into(),
            params: 9_443_050,
            params_keras: 9_462_378,
            mflops: 62.693_376,
            paper_top1: Some(78.6),
        }];
        let md = to_markdown(&cells, &facts, &pairs);
        assert!(
            md.contains(
                "| senetv2 | 3 | 82.67 ± 1.53 | 78.60 | 92.67 ± 1.53 | 9.44M / 9.46M | 62.7 |"
            ),
            "{md}"
        );
        assert!(md.contains("| resnet | 3 | 81.00 ± 1.00 | — |"), "{md}");
        assert!(md.contains("| senetv2 - resnet: +1.67 |"), "{md}");
        let j = to_json(&cells, &facts, &pairs);
        assert_eq!(j["cells"][0]["name"], "resnet");
        assert!(j["cells"][0]["params"].is_null());
        assert_eq!(j["cells"][1]["params_keras"], 9_462_378);
        assert_eq!(j["cells"][1]["paper_top1"], 78.6);
        assert_eq!(j["comparisons"][0]["paired"]["df"], 2.0);
    }

    #[test]
    fn one_seed_gives_no_interval_and_null_spread() {
        let runs = vec![run("a", 0, 50.0), run("b", 0, 55.0)];
        let order = ["a", "b"].map(String::from);
        let (cells, pairs) = summarize(&order, &runs);
        assert!(cells[0].top1_std.is_nan());
        assert_eq!(pairs[0].welch, None);
        assert_eq!(pairs[0].paired, None);
        assert!(pairs[0].verdict.contains("no interval at 1 seed"));
        let j = to_json(&cells, &[], &pairs);
        assert!(j["cells"][0]["top1_std"].is_null());
        assert_eq!(j["comparisons"][0]["diff"], 5.0);
        assert!(to_markdown(&cells, &[], &pairs).contains("| b - a: +5.00 | — | — |"));
    }
}
