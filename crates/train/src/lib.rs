//! The SENetV2 trainer as a library: what `senet train` and `senet eval` run, and what the
//! examples call.
//!
//! Fill in [`TrainOptions`] (or parse the command line's [`TrainArgs`]) and call [`train`] with a
//! [`StopHandle`]. One epoch: a seeded permutation of the training split in batches (augmented
//! on background threads), forward in training mode, cross-entropy, `backward`, one optimizer
//! step with the scheduled learning rate; then an evaluation on the test split ([`evaluate()`]).
//! Every `--log-every` steps a row goes to `steps.csv` (and, with `--tensorboard`, to
//! [`tensorboard`] event files). After every epoch the run folder (`--out`, [`run_dir`]) gets
//! `metrics.csv`, `curves.png` ([`plot`]), `last.safetensors` (+ `last.optim.safetensors`, the
//! optimizer state) and, when the test top-1 improved, `best.safetensors`, saved as one set
//! ([`save_set`]). `config.json` ([`config_file`]) records every option under its flag's name,
//! and is what `--config` reads. `--resume` continues from `last.*`: since the data order and the
//! augmentation depend only on (seed, epoch, batch) and the CPU kernels are deterministic, a run
//! killed and resumed ends with the same bits as one that never stopped.
//!
//! Modules depend one way: [`args`] -> [`options`]; [`config_file`] -> options; [`plot`] ->
//! [`metrics`]; [`run_dir`] -> config_file, metrics, plot, save_set, `progress`;
//! [`evaluate`](mod@evaluate) -> [`model_meta`], options, plot; `trainer` (the step loop) ->
//! config_file, evaluate, metrics, model_meta, options, progress, run_dir, [`stop`] and
//! tensorboard.
//!
//! For `senet reproduce` (in progress): [`study`] (a study's models and run folders) and
//! [`study_report`] -> metrics, [`stats`] (Welch's and paired intervals).

#![deny(missing_docs)]

pub mod args;
pub mod config_file;
pub mod evaluate;
pub mod metrics;
pub mod model_meta;
pub mod options;
pub mod plot;
mod progress;
pub mod run_dir;
pub mod save_set;
pub mod stats;
pub mod stop;
pub mod study;
pub mod study_report;
pub mod tensorboard;
mod trainer;

pub use args::{DataArgs, ModelArgs, TrainArgs};
pub use evaluate::{evaluate, evaluate_checkpoint, EvalReport, Evaluation, Mistake};
pub use metrics::{EpochMetrics, StepMetrics};
pub use model_meta::{config_from_metadata, load_model, model_metadata};
pub use options::{DataOptions, DatasetSpec, OptimizerChoice, TrainOptions};
pub use plot::curves;
pub use progress::say;
pub use stop::{Outcome, StopHandle};

use anyhow::Result;

/// Runs (or, with `o.resume`, resumes) a training run. Returns the per-epoch metrics and how it
/// ended. Calling [`StopHandle::stop`] on (a clone of) `stop` ends the run after the current
/// step with a checkpoint saved.
pub fn train(o: &TrainOptions, stop: &StopHandle) -> Result<(Vec<EpochMetrics>, Outcome)> {
    let mut trainer = trainer::Trainer::start(o, stop)?;
    let outcome = trainer.run();
    if outcome.is_err() {
        // A run that fails before its first step leaves no folder behind (when it made it).
        trainer.discard_if_unstarted();
    }
    Ok((trainer.rows, outcome?))
}
