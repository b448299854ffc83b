//! What a run shows while an epoch runs: a progress bar on a terminal, a plain line every 50
//! steps otherwise (a log file), or nothing when progress is off.
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// The progress display of one epoch.
pub struct EpochProgress {
    bar: Option<ProgressBar>,
    /// Plain lines when there is no bar.
    lines: bool,
    epoch: usize,
    epochs: usize,
    steps_per_epoch: usize,
}

impl EpochProgress {
    /// The display of epoch `epoch` (1-based) of `epochs`, starting `skip` steps in.
    pub fn new(
        show: bool,
        steps_per_epoch: usize,
        skip: usize,
        epoch: usize,
        epochs: usize,
    ) -> Self {
        let bar = (show && std::io::stderr().is_terminal())
            .then(|| progress_bar(steps_per_epoch as u64, skip as u64, epoch, epochs));
        EpochProgress {
            bar,
            lines: show,
            epoch,
            epochs,
            steps_per_epoch,
        }
    }

    /// After step `in_epoch` of the epoch: `status` is the running loss, accuracy and rate.
    pub fn update(&self, in_epoch: u64, status: String) {
        if let Some(bar) = &self.bar {
            bar.set_position(in_epoch);
            bar.set_message(status);
        } else if self.lines && in_epoch.is_multiple_of(50) {
            eprintln!(
                "epoch {}/{} step {in_epoch}/{} {status}",
                self.epoch, self.epochs, self.steps_per_epoch
            );
        }
    }

    /// Leaves the bar where it stopped (the run stops mid-epoch).
    pub fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }

    /// Clears the bar at the end of the epoch (the epoch's summary line replaces it).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn progress_bar(len: u64, pos: u64, epoch: usize, epochs: usize) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {msg} ({elapsed} < {eta})",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix(format!("{epoch}/{epochs}"));
    bar.set_position(pos);
    bar
}
