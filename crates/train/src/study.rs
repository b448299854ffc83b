//! What a `senet reproduce` study trains: its cells (one model each, for one of the paper's
//! research questions in MODELS.md) times its seeds, each (cell, seed) a run of the ordinary
//! trainer in its own folder `DIR/<cell>/seed-<n>`.
//!
//! - `cifar10`: resnet, se-resnet and senetv2 at depth 9, paper preset (the paper's CIFAR-10
//!   networks); with `families` also resnext, se-resnext and senextv2.
//! - `cifar100`: the same three at depth 50 (the paper's CIFAR-100 networks).
//! - `ablation`: SaE on senetv2-9, question 3: cardinality {1, 2, 4, 8} at reduction 32 and
//!   reduction {8, 16, 32, 64} at cardinality 4 (7 cells, the paper's choice k4-r32 once), or
//!   with `grid` all 16 pairs.
use crate::study_report::{self, CellFacts, RunResult};
use crate::{Outcome, StopHandle, TrainOptions};
use anyhow::{anyhow, bail, Context, Result};
use senet_models::{stages, BlockKind, Family, ModelConfig, Preset};
use senet_nn::checkpoint;
use std::path::{Path, PathBuf};

/// The studies `senet reproduce --study` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Study {
    /// The paper's CIFAR-10 networks: resnet, se-resnet and senetv2 at depth 9.
    Cifar10,
    /// The paper's CIFAR-100 networks: the same families at depth 50.
    Cifar100,
    /// SaE's cardinality and reduction on senetv2-9 (research question 3).
    Ablation,
}

/// What decides a study's cells.
#[derive(Clone, Debug)]
pub struct StudyOptions {
    /// Which study.
    pub study: Study,
    /// `--families`: add the ResNeXt families (cifar10 and cifar100 studies).
    pub families: bool,
    /// `--grid`: every (cardinality, reduction) pair of the ablation, not the cross.
    pub grid: bool,
    /// Base width of every model.
    pub width: usize,
    /// Classes of the dataset.
    pub classes: usize,
}

/// One model of a study, trained once per seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Cell {
    /// Folder and report name: the family (`senetv2`), or for the ablation `senetv2-k4-r32`.
    pub name: String,
    /// The network every seed of the cell trains.
    pub model: ModelConfig,
}

/// One run of a study: a cell, a seed and the folder its trainer writes.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedRun {
    /// The cell's name.
    pub cell: String,
    /// Seeds the run's weights, data order and augmentation.
    pub seed: u64,
    /// The run folder, `DIR/<cell>/seed-<n>`.
    pub folder: PathBuf,
}

/// The ablation's SaE cardinalities `k`.
pub const CARDINALITIES: [usize; 4] = [1, 2, 4, 8];
/// The ablation's SE/SaE reduction ratios `r`.
pub const REDUCTIONS: [usize; 4] = [8, 16, 32, 64];

/// The cells of a study, in report order. The ablation refuses a width at which some cell's
/// SaE would have a hidden size below 2 (the reduction would then reduce to nothing).
pub fn cells(o: &StudyOptions) -> Result<Vec<Cell>> {
    if o.width == 0 {
        bail!("--width must be at least 1");
    }
    let model = |family: Family, depth: usize| {
        let mut m = ModelConfig::new(family, Some(depth), Preset::Paper, o.classes);
        m.width = o.width;
        m
    };
    let mut families = vec![Family::ResNet, Family::SeResNet, Family::SeNetV2];
    if o.families {
        families.extend([Family::ResNeXt, Family::SeResNeXt, Family::SeNeXtV2]);
    }
    let depth = match o.study {
        Study::Cifar10 | Study::Ablation => 9,
        Study::Cifar100 => 50,
    };
    if o.study != Study::Ablation {
        return Ok(families
            .into_iter()
            .map(|f| Cell {
                name: f.name().to_string(),
                model: model(f, depth),
            })
            .collect());
    }
    let pairs: Vec<(usize, usize)> = if o.grid {
        CARDINALITIES
            .iter()
            .flat_map(|&k| REDUCTIONS.iter().map(move |&r| (k, r)))
            .collect()
    } else {
        let mut p: Vec<(usize, usize)> = CARDINALITIES.iter().map(|&k| (k, 32)).collect();
        p.extend(REDUCTIONS.iter().filter(|&&r| r != 32).map(|&r| (4, r)));
        p
    };
    // SaE sits after each block's last conv: the fewest channels it sees are layer1's output.
    let (kind, _) = stages(depth).expect("depth 9 exists");
    let narrowest = match kind {
        BlockKind::Basic => o.width,
        BlockKind::Bottleneck => 4 * o.width,
    };
    // The largest reduction squeezes hardest: refuse the study if it leaves fewer than 2.
    if let Some(&(k, r)) = pairs.iter().max_by_key(|(_, r)| *r) {
        let hidden = narrowest / r;
        if hidden < 2 {
            bail!(
                "--width {}: cell senetv2-k{k}-r{r} would squeeze layer1's {narrowest} channels \
                 to a hidden size of {hidden} (C / r with r = {r}); the ablation needs at least \
                 2, so use --width {} or more",
                o.width,
                (2 * r).div_ceil(narrowest / o.width)
            );
        }
    }
    let mut out = Vec::new();
    for (k, r) in pairs {
        let mut m = model(Family::SeNetV2, depth);
        m.cardinality = Some(k);
        m.reduction = Some(r);
        out.push(Cell {
            name: format!("senetv2-k{k}-r{r}"),
            model: m,
        });
    }
    Ok(out)
}

/// Every (cell, seed) run of a study under `dir`, seed by seed (every cell at seed 0, then at
/// seed 1, ...): a study stopped part way has already compared every model on the same seeds.
pub fn plan(cells: &[Cell], seeds: u64, dir: &Path) -> Vec<PlannedRun> {
    (0..seeds)
        .flat_map(|seed| {
            cells.iter().map(move |c| PlannedRun {
                cell: c.name.clone(),
                seed,
                folder: dir.join(&c.name).join(format!("seed-{seed}")),
            })
        })
        .collect()
}

/// Whether the run in `folder` has all `epochs` epochs in its `metrics.csv`.
pub fn finished(folder: &Path, epochs: usize) -> Result<bool> {
    Ok(epochs_done(folder, epochs)? >= epochs)
}

/// How many of its `epochs` epochs the run in `folder` has in its `metrics.csv` (0 when it has
/// not started).
pub fn epochs_done(folder: &Path, epochs: usize) -> Result<usize> {
    let rows = crate::run_dir::read_metrics(folder)?;
    Ok(rows
        .iter()
        .filter(|r| r.epoch <= epochs)
        .count()
        .min(epochs))
}

/// How an invocation of a study ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StudyOutcome {
    /// Every run has all its epochs.
    Complete,
    /// A run stopped early (Ctrl-C, or the template's `max_steps`); the study resumes it next
    /// time.
    Stopped,
}

/// Trains, in plan order, every run of `runs` that has not finished: a fresh one, or with
/// `--resume` one that has a checkpoint (one killed before its first checkpoint starts
/// afresh). `template` gives the data, recipe and device; each run gets its cell's model, its
/// seed and its folder. `progress(done, total)` is called before each run and at the end.
/// Stops at the first run that ends early.
pub fn run_all(
    template: &TrainOptions,
    cells: &[Cell],
    runs: &[PlannedRun],
    stop: &StopHandle,
    mut progress: impl FnMut(usize, usize),
) -> Result<StudyOutcome> {
    let total = runs.len();
    for (i, run) in runs.iter().enumerate() {
        let done = epochs_done(&run.folder, template.epochs)?;
        if done >= template.epochs {
            continue;
        }
        progress(i, total);
        let cell = cells
            .iter()
            .find(|c| c.name == run.cell)
            .ok_or_else(|| anyhow!("run {} names no cell of the study", run.cell))?;
        if let Some(parent) = run.folder.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let mut o = template.clone();
        o.model = cell.model.clone();
        o.seed = run.seed;
        o.out = run.folder.clone();
        o.resume = run.folder.join("last.safetensors").is_file();
        // A run killed before its first checkpoint left only its config and step log: there
        // is nothing to resume, so it starts afresh (the trainer's overwrite removes only its
        // own files, under the folder's lock). One with finished epochs but no checkpoint has
        // lost something, and is not replaced silently.
        o.overwrite = false;
        if !o.resume && run.folder.join("config.json").is_file() {
            if done > 0 {
                bail!(
                    "study run {} seed {}: {} has {done} of its {} epochs in metrics.csv but \
                     no last.safetensors to resume from; move the folder away to train it again",
                    run.cell,
                    run.seed,
                    run.folder.display(),
                    template.epochs
                );
            }
            crate::say(format!(
                "study run {} seed {}: stopped before its first checkpoint, so it starts afresh",
                run.cell, run.seed
            ));
            o.overwrite = true;
        }
        let (_, outcome) = crate::train(&o, stop)
            .with_context(|| format!("study run {} seed {}", run.cell, run.seed))?;
        if outcome != Outcome::Finished {
            return Ok(StudyOutcome::Stopped);
        }
    }
    progress(total, total);
    Ok(StudyOutcome::Complete)
}

/// The results of the runs that have all `epochs` epochs.
pub fn results(runs: &[PlannedRun], epochs: usize) -> Result<Vec<RunResult>> {
    let mut out = Vec::new();
    for run in runs {
        let mut rows = crate::run_dir::read_metrics(&run.folder)?;
        rows.retain(|r| r.epoch <= epochs);
        if rows.len() >= epochs {
            out.extend(RunResult::from_metrics(&run.cell, run.seed, &rows));
        }
    }
    Ok(out)
}

/// The classes the study's runs trained, as the first run folder with a `config.json` records
/// them (`resolved.model.classes`); `None` before any run has started. An image-folder dataset
/// has as many classes as it has class folders, which only the trainer reads.
pub fn trained_classes(runs: &[PlannedRun]) -> Result<Option<usize>> {
    for run in runs {
        let path = run.folder.join("config.json");
        if !path.is_file() {
            continue;
        }
        let config = crate::config_file::read(&path)?;
        let recorded =
            &config.get("resolved").unwrap_or(&serde_json::Value::Null)["model"]["classes"];
        let classes = recorded
            .as_str()
            .and_then(|c| c.parse::<usize>().ok())
            .or_else(|| recorded.as_u64().and_then(|c| usize::try_from(c).ok()))
            .filter(|&c| c > 0)
            .ok_or_else(|| {
                anyhow!(
                    "{}: resolved.model.classes is {recorded}, not a number of classes",
                    path.display()
                )
            })?;
        return Ok(Some(classes));
    }
    Ok(None)
}

/// The paper's published top-1 for a cell (MODELS.md), where our study trains the same
/// network on the same task: CIFAR-10 with 10 classes, CIFAR-100 with its 20 coarse labels.
pub fn paper_top1(o: &StudyOptions, cell: &str) -> Option<f64> {
    let row = ["resnet", "se-resnet", "senetv2"]
        .iter()
        .position(|&n| n == cell)?;
    match (o.study, o.classes) {
        (Study::Cifar10, 10) => Some([77.38, 77.79, 78.60][row]),
        (Study::Cifar100, 20) => Some([61.72, 62.26, 63.52][row]),
        _ => None,
    }
}

/// Each cell's parameters (both counts) and forward MFLOPs at `image_size`, from the model
/// built on the CPU and traced once ([`senet_models::summary`]), and its paper figure.
pub fn facts(o: &StudyOptions, cells: &[Cell], image_size: usize) -> Result<Vec<CellFacts>> {
    cells
        .iter()
        .map(|c| {
            let mut model = senet_models::build(&c.model, 0)?;
            let s = senet_models::summary(&mut model, image_size)?;
            Ok(CellFacts {
                name: c.name.clone(),
                params: s.trainable,
                params_keras: s.with_bn_statistics,
                mflops: s.mflops(),
                paper_top1: paper_top1(o, &c.name),
            })
        })
        .collect()
}

/// Writes `dir/report.md` and `dir/report.json` from the finished runs, and `dir/report.png`
/// with every run's test top-1 curve (each through a temporary file and a rename). `title`
/// heads the Markdown; `note` (may be empty) follows it.
pub fn write_report(
    dir: &Path,
    title: &str,
    note: &str,
    cells: &[Cell],
    facts: &[CellFacts],
    runs: &[PlannedRun],
    epochs: usize,
) -> Result<()> {
    let order: Vec<String> = cells.iter().map(|c| c.name.clone()).collect();
    let found = results(runs, epochs)?;
    let (summary, pairs) = study_report::summarize(&order, &found);
    let md = format!(
        "# {title}\n\n{note}{}{} of {} runs finished ({epochs} epochs each). Accuracies are \
         each run's test accuracy after its last epoch (not its best epoch, which would pick \
         on the test set); a difference is later row minus earlier row, in points.\n\n{}",
        if note.is_empty() { "" } else { "\n\n" },
        found.len(),
        runs.len(),
        study_report::to_markdown(&summary, facts, &pairs)
    );
    let mut json = study_report::to_json(&summary, facts, &pairs);
    json["note"] = note.into();
    json["title"] = title.into();
    json["runs_finished"] = found.len().into();
    json["runs_planned"] = runs.len().into();
    json["epochs"] = epochs.into();
    let text = serde_json::to_string_pretty(&json)? + "\n";
    checkpoint::write_atomically(&dir.join("report.md"), md.as_bytes())?;
    checkpoint::write_atomically(&dir.join("report.json"), text.as_bytes())?;
    // Every run's test top-1 per epoch, finished or not.
    let mut curves = Vec::new();
    for run in runs {
        let rows = crate::run_dir::read_metrics(&run.folder)?;
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.epoch <= epochs)
            .map(|r| (r.epoch as f64, r.test_top1))
            .collect();
        if !points.is_empty() {
            curves.push((run.cell.clone(), points));
        }
    }
    let png = crate::plot::study_png(title, &curves)?;
    checkpoint::write_atomically(&dir.join("report.png"), &png)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(study: Study) -> StudyOptions {
        StudyOptions {
            study,
            families: false,
            grid: false,
            width: 64,
            classes: 10,
        }
    }

    #[test]
    fn comparison_studies_train_the_paper_networks() {
        let c = cells(&options(Study::Cifar10)).unwrap();
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["resnet", "se-resnet", "senetv2"]);
        assert!(c.iter().all(|c| c.model.depth == Some(9)
            && c.model.preset == Preset::Paper
            && c.model.width == 64
            && c.model.classes == 10));
        let o = StudyOptions {
            families: true,
            classes: 20,
            ..options(Study::Cifar100)
        };
        let c = cells(&o).unwrap();
        assert_eq!(c.len(), 6);
        assert_eq!(c[5].name, "senextv2");
        assert!(c
            .iter()
            .all(|c| c.model.depth == Some(50) && c.model.classes == 20));
    }

    #[test]
    fn the_ablation_is_a_cross_or_a_grid() {
        let cross = cells(&options(Study::Ablation)).unwrap();
        let pairs: Vec<(Option<usize>, Option<usize>)> = cross
            .iter()
            .map(|c| (c.model.cardinality, c.model.reduction))
            .collect();
        assert_eq!(
            pairs,
            [(1, 32), (2, 32), (4, 32), (8, 32), (4, 8), (4, 16), (4, 64)]
                .map(|(k, r)| (Some(k), Some(r)))
        );
        assert_eq!(cross[2].name, "senetv2-k4-r32");
        let grid = cells(&StudyOptions {
            grid: true,
            ..options(Study::Ablation)
        })
        .unwrap();
        assert_eq!(grid.len(), 16);
        for c in &grid {
            c.model.validate().unwrap();
        }
    }

    #[test]
    fn the_ablation_refuses_widths_that_squeeze_to_nothing() {
        // layer1 of senetv2-9 has 4 x width channels; r = 64 needs 128 of them for 2.
        let at = |width| {
            cells(&StudyOptions {
                width,
                ..options(Study::Ablation)
            })
        };
        assert!(at(32).is_ok());
        let err = at(31).unwrap_err().to_string();
        assert!(err.contains("--width 31") && err.contains("r64"), "{err}");
        assert!(err.contains("--width 32 or more"), "{err}");
        // The comparison studies have no SaE ablation to protect.
        let tiny = StudyOptions {
            width: 4,
            ..options(Study::Cifar10)
        };
        assert!(cells(&tiny).is_ok());
    }

    #[test]
    fn the_report_knows_the_paper_figures_and_each_cell_size() {
        let o = options(Study::Cifar10);
        assert_eq!(paper_top1(&o, "senetv2"), Some(78.60));
        assert_eq!(paper_top1(&o, "senextv2"), None);
        let coarse = StudyOptions {
            classes: 20,
            ..options(Study::Cifar100)
        };
        assert_eq!(paper_top1(&coarse, "resnet"), Some(61.72));
        let fine = StudyOptions {
            classes: 100,
            ..options(Study::Cifar100)
        };
        assert_eq!(
            paper_top1(&fine, "resnet"),
            None,
            "fine labels: not the paper's task"
        );
        // MODELS.md's exact counts for the paper's CIFAR-10 networks, and senetv2-9's MFLOPs.
        let f = facts(&o, &cells(&o).unwrap(), 32).unwrap();
        let counts: Vec<(usize, usize)> = f.iter().map(|f| (f.params, f.params_keras)).collect();
        assert_eq!(
            counts,
            [
                (8_046_090, 8_065_418),
                (8_398_210, 8_417_538),
                (9_443_050, 9_462_378)
            ]
        );
        assert!((f[2].mflops - 62.693_376).abs() < 1e-9);
    }

    #[test]
    fn runs_get_one_folder_per_cell_and_seed() {
        let c = cells(&options(Study::Cifar10)).unwrap();
        let runs = plan(&c, 3, Path::new("out"));
        assert_eq!(runs.len(), 9);
        assert_eq!(runs[2].cell, "senetv2");
        assert_eq!(runs[2].seed, 0);
        assert_eq!(runs[4].cell, "se-resnet");
        assert_eq!(runs[4].seed, 1);
        assert_eq!(runs[4].folder, Path::new("out/se-resnet/seed-1"));
    }
}
