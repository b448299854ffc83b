//! One row of `metrics.csv` per epoch, and the file's text format.
use anyhow::{anyhow, bail, Result};

/// One row of `metrics.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochMetrics {
    /// The epoch this row closes, counting from 1.
    pub epoch: usize,
    /// Optimizer steps taken in the run so far.
    pub steps: u64,
    /// Mean training loss over the epoch's images, as measured during the steps (training
    /// mode, augmented images, while the weights still changed).
    pub train_loss: f64,
    /// Training top-1 (%) over the same images.
    pub train_top1: f64,
    /// Mean test loss after the epoch (evaluation mode).
    pub test_loss: f64,
    /// Test top-1 (%) after the epoch.
    pub test_top1: f64,
    /// Test top-5 (%) after the epoch.
    pub test_top5: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Training throughput: the epoch's images over its `seconds`.
    pub images_per_s: f64,
    /// Seconds the epoch's steps took (the test evaluation is not counted).
    pub seconds: f64,
}

/// The first line of `metrics.csv`: the column names, in [`EpochMetrics::csv`]'s order.
pub const CSV_HEADER: &str =
    "epoch,steps,train_loss,train_top1,test_loss,test_top1,test_top5,lr,images_per_s,seconds";

impl EpochMetrics {
    /// The row as `metrics.csv` stores it (no newline), with fixed decimals.
    pub fn csv(&self) -> String {
        format!(
            "{},{},{:.6},{:.4},{:.6},{:.4},{:.4},{:.8},{:.1},{:.1}",
            self.epoch,
            self.steps,
            self.train_loss,
            self.train_top1,
            self.test_loss,
            self.test_top1,
            self.test_top5,
            self.lr,
            self.images_per_s,
            self.seconds
        )
    }

    /// Reads a row [`EpochMetrics::csv`] wrote; the error names the row and the bad field.
    pub fn parse(line: &str) -> Result<Self> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 10 {
            bail!(
                "metrics.csv row {line:?} has {} fields, expected 10",
                f.len()
            );
        }
        let n = |i: usize| {
            f[i].parse::<f64>()
                .map_err(|_| anyhow!("metrics.csv row {line:?}: field {} is not a number", i + 1))
        };
        Ok(EpochMetrics {
            epoch: f[0].parse()?,
            steps: f[1].parse()?,
            train_loss: n(2)?,
            train_top1: n(3)?,
            test_loss: n(4)?,
            test_top1: n(5)?,
            test_top5: n(6)?,
            lr: n(7)?,
            images_per_s: n(8)?,
            seconds: n(9)?,
        })
    }
}

/// One row of `steps.csv`: the training figures of the last `--log-every` steps.
#[derive(Clone, Debug, PartialEq)]
pub struct StepMetrics {
    /// Optimizer steps taken so far (the row's last step).
    pub step: u64,
    /// Epochs so far as a fraction (`step / steps_per_epoch`): the x axis of the curves.
    pub epoch: f64,
    /// Mean training loss over the steps since the previous row.
    pub train_loss: f64,
    /// Training top-1 (%) over the same steps.
    pub train_top1: f64,
    /// Learning rate of the row's last step.
    pub lr: f64,
    /// Seconds since the Unix epoch when the row was written.
    pub time: f64,
}

/// The first line of `steps.csv`: the column names, in [`StepMetrics::csv`]'s order.
pub const STEPS_CSV_HEADER: &str = "step,epoch,train_loss,train_top1,lr,time";

impl StepMetrics {
    /// The row as `steps.csv` stores it (no newline), with fixed decimals.
    pub fn csv(&self) -> String {
        format!(
            "{},{:.6},{:.6},{:.4},{:.8},{:.3}",
            self.step, self.epoch, self.train_loss, self.train_top1, self.lr, self.time
        )
    }

    /// Reads a row [`StepMetrics::csv`] wrote; the error names the row and the bad field.
    pub fn parse(line: &str) -> Result<Self> {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 6 {
            bail!("steps.csv row {line:?} has {} fields, expected 6", f.len());
        }
        let n = |i: usize| {
            f[i].parse::<f64>()
                .map_err(|_| anyhow!("steps.csv row {line:?}: field {} is not a number", i + 1))
        };
        Ok(StepMetrics {
            step: f[0]
                .parse()
                .map_err(|_| anyhow!("steps.csv row {line:?}: field 1 is not a step count"))?,
            epoch: n(1)?,
            train_loss: n(2)?,
            train_top1: n(3)?,
            lr: n(4)?,
            time: n(5)?,
        })
    }
}

/// A CSV file's text: the header, then one line per row.
fn with_header(header: &str, lines: impl Iterator<Item = String>) -> String {
    let mut text = format!("{header}\n");
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// The whole of `metrics.csv`.
pub fn csv_text(rows: &[EpochMetrics]) -> String {
    with_header(CSV_HEADER, rows.iter().map(EpochMetrics::csv))
}

/// The whole of `steps.csv`.
pub fn steps_csv_text(rows: &[StepMetrics]) -> String {
    with_header(STEPS_CSV_HEADER, rows.iter().map(StepMetrics::csv))
}

/// The rows of a `metrics.csv` text (blank lines skipped).
pub fn parse_csv(text: &str) -> Result<Vec<EpochMetrics>> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(EpochMetrics::parse)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_rows_round_trip() {
        let r = EpochMetrics {
            epoch: 3,
            steps: 1170,
            train_loss: 1.25,
            train_top1: 55.5,
            test_loss: 1.1,
            test_top1: 60.25,
            test_top5: 95.5,
            lr: 0.0875,
            images_per_s: 812.3,
            seconds: 61.5,
        };
        assert_eq!(EpochMetrics::parse(&r.csv()).unwrap(), r);
        assert!(EpochMetrics::parse("1,2,3").is_err());
        assert_eq!(
            parse_csv(&csv_text(&[r.clone(), r.clone()])).unwrap(),
            [r.clone(), r]
        );
    }
}
