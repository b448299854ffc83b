//! Loss and top-1/top-5 accuracy of a model on a split, and `senet eval` (a checkpoint on the
//! test split, with per-class accuracy).
use crate::model_meta::load_model;
use crate::options::DataOptions;
use crate::plot::MisclassifiedImage;
use anyhow::{anyhow, bail, Context, Result};
use senet_data::{Batch, BatchLoader, Dataset, LoaderOptions, Split};
use senet_models::{Model, ModelConfig};
use senet_nn::checkpoint::{write_atomically, Metadata};
use senet_nn::Module;
use senet_tensor::{Device, NoGradGuard, Tensor};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Loss and accuracy over a split, with per-class accuracy, the confusion matrix and the
/// most confident mistakes.
#[derive(Clone, Debug)]
pub struct Evaluation {
    /// Mean cross-entropy per image (no label smoothing).
    pub loss: f64,
    /// Percentage of images whose true class scores highest (a tie counts as wrong).
    pub top1: f64,
    /// Percentage of images whose true class is among the 5 highest scores.
    pub top5: f64,
    /// `(correct, total)` per class.
    pub per_class: Vec<(usize, usize)>,
    /// `classes x classes` counts, row = true class, column = predicted class; `None` above
    /// [`MAX_CONFUSION_CLASSES`].
    pub confusion: Option<Vec<u64>>,
    /// The wrong predictions made with the highest confidence, most confident first (as many
    /// as asked for).
    pub mistakes: Vec<Mistake>,
}

/// The most classes a confusion matrix is kept for (a million counts).
pub const MAX_CONFUSION_CLASSES: usize = 1000;

/// One wrong prediction.
#[derive(Clone, Debug, PartialEq)]
pub struct Mistake {
    /// The image's place in the split.
    pub index: usize,
    /// The true class.
    pub label: usize,
    /// The class the model chose.
    pub predicted: usize,
    /// The softmax probability of `predicted`.
    pub confidence: f32,
}

/// The predicted class of a row of logits and its softmax probability. A tie for the highest
/// score goes to a class other than `label` (as in [`topk`], a tie is not a correct answer).
fn prediction(row: &[f32], label: usize) -> (usize, f32) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let predicted = row
        .iter()
        .enumerate()
        .filter(|&(_, &v)| v == max)
        .map(|(k, _)| k)
        .find(|&k| k != label)
        .unwrap_or(label);
    let sum: f64 = row.iter().map(|&v| f64::from(v - max).exp()).sum();
    (predicted, (1.0 / sum) as f32)
}

impl Evaluation {
    /// What `senet eval` prints: loss, top-1, top-5, then a table of per-class accuracy.
    pub fn report(&self, class_names: &[String]) -> String {
        let mut s = format!(
            "loss: {:.4}\ntop-1: {:.2}%\ntop-5: {:.2}%\n{:<20} {:>8} {:>8} {:>9}\n",
            self.loss, self.top1, self.top5, "class", "correct", "images", "accuracy"
        );
        for (name, (correct, total)) in class_names.iter().zip(&self.per_class) {
            // Writing to a String cannot fail.
            writeln!(
                s,
                "{name:<20} {correct:>8} {total:>8} {:>8.2}%",
                100.0 * *correct as f64 / (*total).max(1) as f64
            )
            .expect("writing to a String");
        }
        s
    }
}

/// Counts of correct top-1 and top-5 predictions in a batch of logits `[n, classes]`.
pub(crate) fn topk(
    logits: &[f32],
    classes: usize,
    labels: &[u32],
    per_class: Option<&mut [(usize, usize)]>,
) -> (usize, usize) {
    let (mut top1, mut top5) = (0, 0);
    let mut pc = per_class;
    for (row, &label) in logits.chunks_exact(classes).zip(labels) {
        let target = row[label as usize];
        // Rank of the label: how many other classes score at least as high. A tie counts
        // against the label, so a model whose outputs are all equal scores 0%, not 100%. (NaN
        // compares false with everything: callers refuse non-finite logits first, see
        // [`check_finite`].)
        let higher = row
            .iter()
            .enumerate()
            .filter(|&(k, &v)| v > target || (v == target && k != label as usize))
            .count();
        top1 += (higher == 0) as usize;
        top5 += (higher < 5) as usize;
        if let Some(pc) = pc.as_deref_mut() {
            pc[label as usize].0 += (higher == 0) as usize;
            pc[label as usize].1 += 1;
        }
    }
    (top1, top5)
}

/// An error when any logit is NaN or infinite: argmax and top-k over such values mean nothing
/// (NaN compares false with everything, so it would never rank below the label).
pub(crate) fn check_finite(logits: &[f32], classes: usize, first_image: usize) -> Result<()> {
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        bail!(
            "the model's output for image {} is {} (class {}): its weights are broken (a \
             diverged run or a damaged checkpoint), so no accuracy can be given",
            first_image + i / classes.max(1),
            logits[i],
            i % classes.max(1)
        );
    }
    Ok(())
}

/// The loss value and the logits of a step in one readback: on a GPU each read waits for the
/// device, so reading the two separately would stall it twice per step.
pub(crate) fn read_back(loss: &Tensor, logits: &Tensor) -> Result<(f64, Vec<f32>)> {
    let _guard = NoGradGuard::new();
    let both = Tensor::concat(
        &[&loss.reshape(&[1])?, &logits.reshape(&[logits.numel()])?],
        0,
    )?;
    let mut values = both.to_vec::<f32>()?;
    let loss = values.remove(0) as f64;
    Ok((loss, values))
}

/// A batch's images as an `[n, 3, size, size]` tensor on `device`.
pub(crate) fn batch_tensor(b: &Batch, size: usize, device: Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(b.images.clone(), &[b.len, 3, size, size])?.to_device(device)?)
}

/// Evaluates `model` on `split` in evaluation mode without recording a graph.
pub fn evaluate(
    model: &mut Model,
    split: &Arc<Split>,
    ds: &Dataset,
    batch: usize,
    device: Device,
) -> Result<Evaluation> {
    evaluate_keeping(model, split, ds, batch, device, 0)
}

/// [`evaluate`], also keeping the `mistakes` most confident wrong predictions.
pub fn evaluate_keeping(
    model: &mut Model,
    split: &Arc<Split>,
    ds: &Dataset,
    batch: usize,
    device: Device,
    mistakes: usize,
) -> Result<Evaluation> {
    let classes = model.config().classes;
    let loader = BatchLoader::new(
        split,
        LoaderOptions {
            workers: 1,
            ..LoaderOptions::test(ds, batch)
        },
    )?;
    let (mut loss, mut top1, mut top5, mut seen) = (0.0, 0, 0, 0);
    let mut per_class = vec![(0, 0); classes];
    let mut confusion = (classes <= MAX_CONFUSION_CLASSES).then(|| vec![0u64; classes * classes]);
    let mut wrong: Vec<Mistake> = Vec::new();
    for b in loader {
        let _guard = NoGradGuard::new();
        let x = batch_tensor(&b, ds.image_size, device)?;
        let logits = model.forward(&x, false)?;
        let (batch_loss, logits) = read_back(&logits.cross_entropy(&b.labels, 0.0)?, &logits)?;
        check_finite(&logits, classes, seen)?;
        loss += batch_loss * b.len as f64;
        let (t1, t5) = topk(&logits, classes, &b.labels, Some(&mut per_class));
        for (i, (row, &label)) in logits.chunks_exact(classes).zip(&b.labels).enumerate() {
            let label = label as usize;
            let (predicted, confidence) = prediction(row, label);
            if let Some(c) = confusion.as_mut() {
                c[label * classes + predicted] += 1;
            }
            if predicted != label && mistakes > 0 {
                wrong.push(Mistake {
                    index: seen + i,
                    label,
                    predicted,
                    confidence,
                });
            }
        }
        if wrong.len() > 2 * mistakes + 1024 {
            keep_most_confident(&mut wrong, mistakes);
        }
        top1 += t1;
        top5 += t5;
        seen += b.len;
    }
    keep_most_confident(&mut wrong, mistakes);
    if seen == 0 {
        bail!("the test split is empty");
    }
    Ok(Evaluation {
        loss: loss / seen as f64,
        top1: 100.0 * top1 as f64 / seen as f64,
        top5: 100.0 * top5 as f64 / seen as f64,
        per_class,
        confusion,
        mistakes: wrong,
    })
}

/// The `n` most confident mistakes, most confident first (ties: the earlier image first).
fn keep_most_confident(wrong: &mut Vec<Mistake>, n: usize) {
    wrong.sort_by(|a, b| {
        b.confidence
            .total_cmp(&a.confidence)
            .then(a.index.cmp(&b.index))
    });
    wrong.truncate(n);
}

/// What `senet eval` found: the evaluation, the dataset's class names and description, the
/// checkpoint, and the mistakes' images.
pub struct EvalReport {
    /// Loss, accuracies, confusion matrix and mistakes on the test split.
    pub evaluation: Evaluation,
    /// The dataset's class names, indexed by label.
    pub classes: Vec<String>,
    /// The checkpoint evaluated.
    pub checkpoint: PathBuf,
    /// The dataset in words, e.g. `cifar100 (coarse labels)`.
    pub dataset: String,
    /// The dataset's folder or archive.
    pub data: PathBuf,
    /// The images of `evaluation.mistakes`, in the same order.
    pub misclassified: Vec<MisclassifiedImage>,
}

/// `senet eval`: the checkpoint at `path` (described by its metadata, else by `flags`) on the
/// test split of `data`, normalized as the checkpoint was trained (its stored mean and std),
/// keeping the `mistakes` most confident wrong predictions.
pub fn evaluate_checkpoint(
    path: &Path,
    flags: &Option<Result<ModelConfig>>,
    data: &DataOptions,
    device: &str,
    batch: usize,
    mistakes: usize,
) -> Result<EvalReport> {
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    let device = Device::parse(device).with_context(|| format!("--device {device}"))?;
    let (mut model, meta) = load_model(path, flags, device)?;
    let mut ds = data
        .load()
        .with_context(|| format!("loading --data {}", data.dir.display()))?;
    if ds.classes.len() != model.config().classes {
        bail!(
            "the model has {} classes, the dataset {}",
            model.config().classes,
            ds.classes.len()
        );
    }
    // The same number of classes is not enough: per-class accuracy would be reported under the
    // dataset's names for what the model learned as other classes.
    if let Some(json) = meta.get("class_names") {
        let names: Vec<String> = serde_json::from_str(json)
            .with_context(|| format!("{}: checkpoint metadata class_names", path.display()))?;
        if names != ds.classes {
            bail!(
                "{} was trained on the classes {names:?}, the dataset's are {:?}",
                path.display(),
                ds.classes
            );
        }
    }
    // The weights expect inputs normalized as in training.
    if let Some(mean) = stored_stats(&meta, "mean", path)? {
        ds.mean = mean;
    }
    if let Some(std) = stored_stats(&meta, "std", path)? {
        ds.std = std;
    }
    senet_data::files::check_batch(batch.min(ds.test.len), ds.image_size, "--batch")?;
    let e = evaluate_keeping(&mut model, &ds.test, &ds, batch, device, mistakes)
        .with_context(|| format!("evaluating --checkpoint {}", path.display()))?;
    let misclassified = e
        .mistakes
        .iter()
        .map(|m| MisclassifiedImage {
            rgb: interleaved(ds.test.image(m.index), ds.image_size),
            size: ds.image_size,
            label: m.label,
            predicted: m.predicted,
            confidence: m.confidence,
        })
        .collect();
    Ok(EvalReport {
        evaluation: e,
        classes: ds.classes,
        checkpoint: path.to_path_buf(),
        dataset: data.describe(),
        data: data.dir.clone(),
        misclassified,
    })
}

/// The mean or std a checkpoint stores (3 finite numbers, a std positive), if any.
fn stored_stats(meta: &Metadata, key: &str, path: &Path) -> Result<Option<[f32; 3]>> {
    let Some(text) = meta.get(key) else {
        return Ok(None);
    };
    let what = || format!("{}: checkpoint metadata {key}={text:?}", path.display());
    let v: Vec<f32> = serde_json::from_str(text).with_context(what)?;
    let v: [f32; 3] = v
        .try_into()
        .map_err(|_| anyhow!("{}: expected 3 numbers", what()))?;
    if v.iter()
        .any(|x| !x.is_finite() || (key == "std" && *x <= 0.0))
    {
        bail!("{}: not usable for normalization", what());
    }
    Ok(Some(v))
}

/// A planar `[3, size, size]` image as interleaved RGB rows (what pictures are drawn from).
fn interleaved(planar: &[u8], size: usize) -> Vec<u8> {
    let plane = size * size;
    (0..plane)
        .flat_map(|p| (0..3).map(move |c| planar[c * plane + p]))
        .collect()
}

/// A CSV field: quoted when it holds a comma, a quote or a line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl EvalReport {
    /// `confusion.csv`: a header of predicted classes, then one row per true class.
    pub fn confusion_csv(&self) -> Option<String> {
        let counts = self.evaluation.confusion.as_ref()?;
        let n = self.classes.len();
        let mut s = String::from("true \\ predicted");
        for name in &self.classes {
            s.push(',');
            s.push_str(&csv_field(name));
        }
        s.push('\n');
        for (name, row) in self.classes.iter().zip(counts.chunks_exact(n)) {
            s.push_str(&csv_field(name));
            for c in row {
                write!(s, ",{c}").expect("writing to a String");
            }
            s.push('\n');
        }
        Some(s)
    }

    /// Every figure of the text report as one JSON document.
    pub fn to_json(&self) -> serde_json::Value {
        let e = &self.evaluation;
        let per_class: Vec<serde_json::Value> = self
            .classes
            .iter()
            .zip(&e.per_class)
            .map(|(name, &(correct, images))| {
                serde_json::json!({
                    "class": name,
                    "correct": correct,
                    "images": images,
                    "accuracy": 100.0 * correct as f64 / images.max(1) as f64,
                })
            })
            .collect();
        serde_json::json!({
            "checkpoint": self.checkpoint.display().to_string(),
            "dataset": self.dataset,
            "data": self.data.display().to_string(),
            "images": e.per_class.iter().map(|p| p.1).sum::<usize>(),
            "loss": e.loss,
            "top1": e.top1,
            "top5": e.top5,
            "per_class": per_class,
        })
    }

    /// Writes `confusion.csv`, `confusion.png` and (with mistakes kept) `misclassified.png`
    /// into `dir`; returns the paths written.
    pub fn write_files(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut written = Vec::new();
        let mut write = |name: &str, bytes: &[u8]| -> Result<()> {
            let path = dir.join(name);
            write_atomically(&path, bytes)
                .with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
            Ok(())
        };
        if let (Some(csv), Some(counts)) = (self.confusion_csv(), &self.evaluation.confusion) {
            write("confusion.csv", csv.as_bytes())?;
            let title = format!(
                "{} on the test split of {}: top-1 {:.2}%",
                self.checkpoint.display(),
                self.dataset,
                self.evaluation.top1
            );
            write(
                "confusion.png",
                &crate::plot::confusion_png(counts, &self.classes, &title)?,
            )?;
        }
        if !self.misclassified.is_empty() {
            write(
                "misclassified.png",
                &crate::plot::misclassified_png(&self.misclassified, &self.classes)?,
            )?;
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_counts() {
        // 3 classes; row 0: label 2 is the max; row 1: label 0 is second.
        let logits = [0.1, 0.2, 0.9, 0.5, 0.7, 0.1];
        let mut pc = vec![(0, 0); 3];
        assert_eq!(topk(&logits, 3, &[2, 0], Some(&mut pc)), (1, 2));
        assert_eq!(pc, vec![(0, 1), (0, 0), (1, 1)]);
    }

    #[test]
    fn ties_never_count_for_the_label() {
        // Every output equal: no class is the answer, top-1 is 0 (top-5 counts 2 classes here).
        let logits = [0.5f32; 6];
        assert_eq!(topk(&logits, 6, &[3], None), (0, 0));
        assert_eq!(topk(&[0.5f32; 3], 3, &[1], None), (0, 1));
        // A tie with a lower-numbered class or a higher one counts the same.
        assert_eq!(topk(&[1.0, 2.0, 2.0], 3, &[1], None), (0, 1));
        assert_eq!(topk(&[1.0, 2.0, 2.0], 3, &[2], None), (0, 1));
        assert_eq!(topk(&[1.0, 2.0, 1.5], 3, &[1], None), (1, 1));
    }

    #[test]
    fn non_finite_logits_are_an_error() {
        assert!(check_finite(&[0.1, 0.2, 0.3, 0.4], 2, 0).is_ok());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let err = check_finite(&[0.1, 0.2, bad, 0.4], 2, 10)
                .unwrap_err()
                .to_string();
            assert!(err.contains("image 11") && err.contains("class 0"), "{err}");
        }
    }

    #[test]
    fn the_report_has_one_line_per_class() {
        let e = Evaluation {
            loss: 1.23456,
            top1: 50.0,
            top5: 100.0,
            per_class: vec![(1, 2), (0, 0)],
            confusion: None,
            mistakes: Vec::new(),
        };
        let names = ["cat".to_string(), "dog".to_string()];
        let report = e.report(&names);
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(
            lines[..3],
            ["loss: 1.2346", "top-1: 50.00%", "top-5: 100.00%"]
        );
        assert_eq!(lines.len(), 4 + 2);
        assert_eq!(
            lines[4].split_whitespace().collect::<Vec<_>>(),
            ["cat", "1", "2", "50.00%"]
        );
    }
}
