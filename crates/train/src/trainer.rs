//! The step loop: setting a run up (or resuming it), the steps of an epoch, and what happens
//! after each epoch (evaluation, metrics, checkpoints).
use crate::evaluate::{batch_tensor, evaluate, read_back, topk};
use crate::metrics::EpochMetrics;
use crate::model_meta::model_metadata;
use crate::options::TrainOptions;
use crate::progress::EpochProgress;
use crate::run_dir::{config_json, RunDir, RunState};
use crate::stop::{Outcome, StopHandle};
use anyhow::{bail, Context, Result};
use senet_data::{Batch, BatchLoader, Dataset, LoaderOptions};
use senet_models::{build, Model};
use senet_nn::checkpoint::{self, Metadata};
use senet_nn::optim::Optimizer;
use senet_nn::schedule::Schedule;
use senet_nn::Module;
use senet_tensor::Device;
use std::ops::ControlFlow;
use std::time::Instant;

/// A run in progress: everything the loop reads and updates.
pub struct Trainer<'a> {
    o: &'a TrainOptions,
    stop: &'a StopHandle,
    dir: RunDir,
    device: Device,
    ds: Dataset,
    classes: usize,
    steps_per_epoch: usize,
    schedule: Schedule,
    model: Model,
    opt: Optimizer,
    state: RunState,
    /// The rows of `metrics.csv` so far.
    pub rows: Vec<EpochMetrics>,
    /// The model's description, written into every checkpoint.
    base_meta: Metadata,
}

/// Loads the dataset of `o`, saying what it loads and what it found.
fn load_dataset(o: &TrainOptions) -> Result<Dataset> {
    eprintln!(
        "loading {} from {}",
        o.data.describe(),
        o.data.dir.display()
    );
    let t = Instant::now();
    let ds = o
        .data
        .load()
        .with_context(|| format!("loading --data {}", o.data.dir.display()))?;
    eprintln!(
        "{} training and {} test images, {} classes ({:.1} s)",
        ds.train.len,
        ds.test.len,
        ds.classes.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(ds)
}

impl<'a> Trainer<'a> {
    /// Checks the options, loads the data, builds the model and optimizer — from `last.*`
    /// when resuming — and writes `config.json`.
    pub fn start(o: &'a TrainOptions, stop: &'a StopHandle) -> Result<Self> {
        o.validate()?;
        let existed = o.out.is_dir();
        if o.resume && !existed {
            bail!("--resume: {} does not exist", o.out.display());
        }
        let dir = RunDir::create(&o.out)?;
        let device = Device::parse(&o.device).with_context(|| format!("--device {}", o.device))?;
        let ds = load_dataset(o)?;
        let config = o.model_for(&ds)?;
        let steps_per_epoch = o.steps_per_epoch(&ds)?;
        let total_steps = steps_per_epoch * o.epochs;

        let mut model = build(&config, o.seed)?;
        if let Some(init) = &o.init {
            // Every tensor, BN statistics and num_batches_tracked included; the optimizer starts fresh.
            checkpoint::load(&mut model, init)
                .with_context(|| format!("--init {}", init.display()))?;
        }
        model.to_device(device)?;
        let mut opt = o.optimizer();
        let schedule = Schedule {
            kind: o.schedule,
            peak: o.lr,
            warmup_epochs: o.warmup,
            steps_per_epoch,
            total_steps,
        };

        let json = config_json(o, &config, &device.describe(), ds.classes.len());
        let (mut state, mut rows) = (RunState::default(), Vec::new());
        // A folder holding nothing but our own dot-file temporaries (a kill while config.json
        // was first written) counts as empty.
        let started_only = o.out.join("config.json").exists()
            || std::fs::read_dir(&o.out).is_ok_and(|d| {
                d.flatten()
                    .all(|e| e.file_name().to_string_lossy().starts_with('.'))
            });
        if o.resume && !dir.last().exists() && started_only {
            // The run was started but stopped before its first save (before it wrote
            // config.json, even): nothing to resume.
            if o.out.join("config.json").exists() {
                dir.check_resume_config(&json)?;
            }
            eprintln!(
                "{} has no checkpoint yet (the run stopped before its first save): starting from step 0",
                o.out.display()
            );
        } else if o.resume {
            dir.check_resume_config(&json)?;
            state = dir.load_last(&mut model, &mut opt, device)?;
            // The saved position must be one this run can reach: a damaged or foreign file
            // would otherwise skip a negative number of batches.
            let first = (state.epoch as u64).checked_mul(steps_per_epoch as u64);
            let fits = first.is_some_and(|f| {
                state.epoch <= o.epochs
                    && state.step >= f
                    && state.step - f <= steps_per_epoch as u64
                    // The running sums cover the epoch's steps so far, no more.
                    && state.seen <= (state.step - f).saturating_mul(o.batch as u64)
                    && state.correct <= state.seen
            });
            if !fits {
                bail!(
                    "{}: it says epoch {} step {}, which a run of {} epochs of {steps_per_epoch} steps never reaches",
                    dir.last().display(),
                    state.epoch,
                    state.step,
                    o.epochs
                );
            }
            rows = dir.read_metrics(state.epoch)?;
            eprintln!(
                "resuming {} at epoch {} step {}",
                o.out.display(),
                state.epoch + 1,
                state.step
            );
        }
        dir.write_config(&json)?;
        let base_meta = model_metadata(&config, &ds);
        Ok(Trainer {
            o,
            stop,
            dir,
            device,
            classes: config.classes,
            ds,
            steps_per_epoch,
            schedule,
            model,
            opt,
            state,
            rows,
            base_meta,
        })
    }

    /// Trains the remaining epochs, or until asked to stop or `--max-steps` is reached.
    pub fn run(&mut self) -> Result<Outcome> {
        self.stop.set_running();
        while self.state.epoch < self.o.epochs {
            // Resumed at (or past) --max-steps: no step to take.
            if self.o.max_steps.is_some_and(|m| self.state.step >= m) {
                return Ok(Outcome::MaxSteps);
            }
            let lr = match self.train_epoch()? {
                ControlFlow::Continue(lr) => lr,
                ControlFlow::Break(outcome) => return Ok(outcome),
            };
            self.end_epoch(lr)?;
            if self.stop.is_stopped() {
                return Ok(Outcome::Interrupted);
            }
        }
        Ok(Outcome::Finished)
    }

    /// The remaining steps of the current epoch. Continues with the learning rate of the last
    /// step, or breaks with how the run ended when it stopped mid-epoch (after a checkpoint).
    fn train_epoch(&mut self) -> Result<ControlFlow<Outcome, f64>> {
        let (o, epoch) = (self.o, self.state.epoch);
        let skip = (self.state.step - (epoch * self.steps_per_epoch) as u64) as usize;
        let loader = BatchLoader::new(
            &self.ds.train,
            LoaderOptions {
                shuffle: o.shuffle,
                augment: o.augment,
                skip,
                workers: o.workers,
                ..LoaderOptions::train(&self.ds, o.batch, o.seed, epoch as u64)
            },
        )?;
        let display =
            EpochProgress::new(o.progress, self.steps_per_epoch, skip, epoch + 1, o.epochs);
        let started = Instant::now();
        let seconds_before = self.state.seconds;
        let seen_before = self.state.seen;
        // The rate of the last step taken (what the row reports if this epoch has none left).
        let mut lr = self.schedule.lr(self.state.step.saturating_sub(1) as usize);
        for b in loader {
            lr = self.schedule.lr(self.state.step as usize);
            self.step(&b, lr)?;
            let s = &mut self.state;
            s.seconds = seconds_before + started.elapsed().as_secs_f64();
            let in_epoch = s.step - (epoch * self.steps_per_epoch) as u64;
            let rate = (s.seen - seen_before) as f64 / started.elapsed().as_secs_f64().max(1e-9);
            display.update(
                in_epoch,
                format!(
                    "loss {:.4} acc {:.2}% lr {lr:.5} {rate:.0} img/s",
                    s.loss_sum / s.seen as f64,
                    100.0 * s.correct as f64 / s.seen as f64
                ),
            );
            let stop = self.stop.is_stopped();
            if stop || o.max_steps.is_some_and(|m| self.state.step >= m) {
                return self.stop_mid_epoch(stop, &display).map(ControlFlow::Break);
            }
            // A periodic save within the epoch (the epoch's end saves anyway).
            let at_end = self.state.step == ((epoch + 1) * self.steps_per_epoch) as u64;
            if !at_end
                && o.save_every
                    .is_some_and(|n| self.state.step.is_multiple_of(n))
            {
                let mut meta = self.base_meta.clone();
                self.state.write(&mut meta);
                self.dir
                    .save(&mut self.model, &self.opt, &meta, false, None)?;
            }
        }
        display.finish();
        Ok(ControlFlow::Continue(lr))
    }

    /// One optimizer step on batch `b` at learning rate `lr`, counted in the running sums.
    fn step(&mut self, b: &Batch, lr: f64) -> Result<()> {
        let x = batch_tensor(b, self.ds.image_size, self.device)?;
        // The graph goes at the end of the block: its saved activations are freed before the
        // update, and each parameter is left with one handle, which the update then changes
        // in place rather than copying.
        let (grads, loss, logits) = {
            let logits = self.model.forward(&x, true)?;
            let loss = logits.cross_entropy(&b.labels, self.o.label_smoothing)?;
            (loss.backward()?, loss.detach(), logits.detach())
        };
        self.opt.step(&mut self.model, &grads, lr)?;
        // Checked after the step so the device is not stalled mid-step; the weights this
        // step spoiled are never saved, so the checkpoint on disk stays the last good one.
        let (loss_value, logits) = read_back(&loss, &logits)?;
        if !loss_value.is_finite() {
            bail!(
                "the loss became {loss_value} at epoch {} step {}: stopping; the last good checkpoint is {} (try a lower --lr)",
                self.state.epoch + 1,
                self.state.step + 1,
                self.dir.last().display()
            );
        }
        let (top1, _) = topk(&logits, self.classes, &b.labels, None);
        let s = &mut self.state;
        s.step += 1;
        s.loss_sum += loss_value * b.len as f64;
        s.correct += top1 as u64;
        s.seen += b.len as u64;
        Ok(())
    }

    /// Saves `last.*` mid-epoch (the running sums included, so a resume continues exactly).
    fn stop_mid_epoch(&mut self, interrupted: bool, display: &EpochProgress) -> Result<Outcome> {
        let mut meta = self.base_meta.clone();
        self.state.write(&mut meta);
        self.dir
            .save(&mut self.model, &self.opt, &meta, false, None)?;
        display.abandon();
        eprintln!(
            "{} at step {}: saved {}",
            if interrupted {
                "interrupted"
            } else {
                "--max-steps reached"
            },
            self.state.step,
            self.dir.last().display()
        );
        Ok(if interrupted {
            Outcome::Interrupted
        } else {
            Outcome::MaxSteps
        })
    }

    /// After the last step of an epoch (`lr` its rate): evaluates on the test split, appends
    /// the row, and writes the checkpoints, `metrics.csv` and `curves.png`.
    fn end_epoch(&mut self, lr: f64) -> Result<()> {
        // 500 images a batch, fewer for big images: a batch stays under the 4 GiB cap.
        let size = self.ds.image_size as u64;
        let fits = (senet_data::files::MAX_BATCH_VALUES / (3 * size * size).max(1)).max(1);
        let batch = 500.min(self.ds.test.len.max(1)).min(fits as usize);
        let eval = evaluate(&mut self.model, &self.ds.test, &self.ds, batch, self.device)
            .with_context(|| {
                format!(
                    "evaluating epoch {} of the run in {} (its last saved checkpoint: {})",
                    self.state.epoch + 1,
                    self.o.out.display(),
                    self.dir.last().display()
                )
            })?;
        let s = &self.state;
        let row = EpochMetrics {
            epoch: s.epoch + 1,
            steps: s.step,
            train_loss: s.loss_sum / s.seen.max(1) as f64,
            train_top1: 100.0 * s.correct as f64 / s.seen.max(1) as f64,
            test_loss: eval.loss,
            test_top1: eval.top1,
            test_top5: eval.top5,
            lr,
            images_per_s: s.seen as f64 / s.seconds.max(1e-9),
            seconds: s.seconds,
        };
        eprintln!(
            "epoch {}/{}: train loss {:.4} top-1 {:.2}% | test loss {:.4} top-1 {:.2}% top-5 {:.2}% | {:.0} img/s, {:.0} s",
            row.epoch, self.o.epochs, row.train_loss, row.train_top1, row.test_loss, row.test_top1, row.test_top5, row.images_per_s, row.seconds
        );
        self.rows.push(row);
        self.state = RunState {
            epoch: s.epoch + 1,
            step: s.step,
            best_top1: s.best_top1.max(eval.top1),
            ..RunState::default()
        };
        let mut meta = self.base_meta.clone();
        self.state.write(&mut meta);
        let best = eval.top1 >= self.state.best_top1;
        self.dir
            .save(&mut self.model, &self.opt, &meta, best, Some(&self.rows))
    }
}
