//! The step loop: setting a run up (or resuming it), the steps of an epoch, and what happens
//! after each epoch (evaluation, metrics, checkpoints).
use crate::config_file::config_json;
use crate::evaluate::{batch_tensor, evaluate, read_back, topk};
use crate::metrics::{EpochMetrics, StepMetrics};
use crate::model_meta::model_metadata;
use crate::options::TrainOptions;
use crate::progress::{say, short_duration, unix_seconds, EpochProgress};
use crate::run_dir::{self, Curves, RunDir, RunLock, RunState};
use crate::stop::{Outcome, StopHandle};
use crate::tensorboard::EventWriter;
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
    /// The rows of `steps.csv` so far.
    pub steps: Vec<StepMetrics>,
    /// `--tensorboard`'s event file.
    events: Option<EventWriter>,
    /// The title of `curves.png`.
    title: String,
    /// Whether this run made the folder (removed again if the run fails before a step).
    made_folder: bool,
    /// Held while the run uses the folder.
    _lock: RunLock,
    /// For the whole run's time left: when this session's first step started and the step it
    /// started from.
    session: (Instant, u64),
    /// The last test evaluation's seconds, and all of this session's with its saves.
    eval_seconds: (f64, f64),
}

/// Loads the dataset of `o`, saying what it loads and what it found.
fn load_dataset(o: &TrainOptions) -> Result<Dataset> {
    say(format!(
        "loading {} from {}",
        o.data.describe(),
        o.data.dir.display()
    ));
    let t = Instant::now();
    let ds = o
        .data
        .load()
        .with_context(|| format!("loading --data {}", o.data.dir.display()))?;
    say(format!(
        "{} training and {} test images, {} classes ({:.1} s)",
        ds.train.len,
        ds.test.len,
        ds.classes.len(),
        t.elapsed().as_secs_f64()
    ));
    Ok(ds)
}

impl<'a> Trainer<'a> {
    /// Checks the options and `--out`, loads the data, builds the model and optimizer — from
    /// `last.*` when resuming — and writes `config.json`. Nothing is written before every check
    /// has passed: a run that cannot start leaves `--out` as it was.
    pub fn start(o: &'a TrainOptions, stop: &'a StopHandle) -> Result<Self> {
        o.validate()?;
        // Checked before anything is made (a quick error), then again under the folder's lock.
        run_dir::check_out(&o.out, o.resume, o.overwrite)?;
        let made_folder = run_dir::make_folder(&o.out)?;
        let started = RunLock::take(&o.out).and_then(|lock| Self::start_locked(o, stop, lock));
        match started {
            Ok(mut t) => {
                t.made_folder = made_folder;
                Ok(t)
            }
            Err(e) => {
                if made_folder {
                    run_dir::discard(&o.out);
                }
                Err(e)
            }
        }
    }

    /// [`Trainer::start`] once this process holds the folder's lock.
    fn start_locked(o: &'a TrainOptions, stop: &'a StopHandle, lock: RunLock) -> Result<Self> {
        let contents = run_dir::check_out(&o.out, o.resume, o.overwrite)?;
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
        let mut json = config_json(o, &config, &ds, &device.describe());

        if let (true, Some(c)) = (o.overwrite, &contents) {
            if c.holds_run() {
                say(format!(
                    "--overwrite: removing the run in {} ({} files)",
                    o.out.display(),
                    c.ours.len()
                ));
            }
            run_dir::remove_run_files(c)?;
        }
        let dir = RunDir::create(&o.out)?;
        let (state, rows, steps) = if o.resume {
            Self::resume_state(
                o,
                &dir,
                &mut json,
                &mut model,
                &mut opt,
                device,
                steps_per_epoch,
            )?
        } else {
            (RunState::default(), Vec::new(), Vec::new())
        };
        dir.write_config(&json)?;
        let events = if o.tensorboard {
            let mut events = EventWriter::create(&o.out.join(run_dir::TENSORBOARD_DIR))?;
            if o.resume {
                // TensorBoard forgets what the stopped run logged after this point.
                events.session_start(state.step + 1)?;
            }
            Some(events)
        } else {
            None
        };
        let base_meta = model_metadata(&config, &ds);
        Ok(Trainer {
            o,
            stop,
            dir,
            device,
            classes: config.classes,
            title: o.title(&config, &ds),
            ds,
            steps_per_epoch,
            schedule,
            model,
            opt,
            session: (Instant::now(), state.step),
            state,
            rows,
            base_meta,
            steps,
            events,
            made_folder: false,
            _lock: lock,
            eval_seconds: (0.0, 0.0),
        })
    }

    /// Where a resumed run continues: `last.*` loaded into `model` and `opt`, the epoch rows
    /// and the step rows up to it. A run stopped before its first save starts from step 0.
    #[allow(clippy::type_complexity)]
    fn resume_state(
        o: &TrainOptions,
        dir: &RunDir,
        json: &mut serde_json::Value,
        model: &mut Model,
        opt: &mut Optimizer,
        device: Device,
        steps_per_epoch: usize,
    ) -> Result<(RunState, Vec<EpochMetrics>, Vec<StepMetrics>)> {
        if o.out.join("config.json").exists() {
            let old = dir.check_resume_config(json)?;
            crate::config_file::carry_history(&old, json);
        }
        // Nothing saved yet (a kill before the first save, even before config.json was
        // written): nothing to resume. Any saved file without last.safetensors is an error
        // (load_last names it), never a restart that would replace metrics.csv or best.
        let saved = [
            "last.safetensors",
            "last.optim.safetensors",
            "best.safetensors",
            "metrics.csv",
        ]
        .iter()
        .any(|f| o.out.join(f).exists());
        // Only our dot files (the lock, a temporary config.json) besides config.json.
        let started_only = o.out.join("config.json").exists()
            || std::fs::read_dir(&o.out).is_ok_and(|d| {
                d.flatten()
                    .all(|e| e.file_name().to_string_lossy().starts_with('.'))
            });
        if !saved && started_only {
            say(format!(
                "{} has no checkpoint yet (the run stopped before its first save): starting from step 0",
                o.out.display()
            ));
            dir.restore_steps(0)?;
            return Ok((RunState::default(), Vec::new(), Vec::new()));
        }
        if !o.out.join("config.json").exists() {
            dir.check_resume_config(json)?; // the error names the missing file
        }
        let state = dir.load_last(model, opt, device)?;
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
                && state.window_correct <= state.window_seen
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
        let rows = dir.read_metrics(state.epoch)?;
        let steps = dir.restore_steps(state.step)?;
        say(format!(
            "resuming {} at epoch {} step {}",
            o.out.display(),
            state.epoch + 1,
            state.step
        ));
        Ok((state, rows, steps))
    }

    /// Removes what this run wrote when it made the folder and fails before its first step.
    pub fn discard_if_unstarted(&self) {
        if self.made_folder && self.state.step == 0 {
            self.dir.discard();
        }
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
            let ended = Instant::now();
            self.end_epoch(lr)?;
            self.eval_seconds.1 += ended.elapsed().as_secs_f64();
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
        let display = EpochProgress::new(
            o.progress,
            o.log_every,
            self.steps_per_epoch,
            skip,
            epoch + 1,
            o.epochs,
        );
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
            let status = format!(
                "loss {:.4} acc {:.2}% lr {lr:.5} {rate:.0} img/s | run: {} left",
                s.loss_sum / s.seen as f64,
                100.0 * s.correct as f64 / s.seen as f64,
                short_duration(self.run_seconds_left())
            );
            display.update(in_epoch, status);
            if self.state.step.is_multiple_of(o.log_every) {
                self.log_steps(lr)?;
            }
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
        s.window_loss_sum += loss_value * b.len as f64;
        s.window_correct += top1 as u64;
        s.window_seen += b.len as u64;
        Ok(())
    }

    /// Seconds the whole run still needs, from this session's pace: the steps left (to
    /// `--max-steps` when it comes first) and a test evaluation per epoch left.
    fn run_seconds_left(&self) -> f64 {
        let (started, first_step) = self.session;
        let done = self.state.step.saturating_sub(first_step).max(1) as f64;
        // The session's time less its evaluations (counted apart below) and saves.
        let stepping = started.elapsed().as_secs_f64() - self.eval_seconds.1;
        let per_step = stepping.max(0.0) / done;
        let total = (self.steps_per_epoch * self.o.epochs) as u64;
        let last = self.o.max_steps.map_or(total, |m| m.min(total));
        let evals = if self.o.max_steps.is_some_and(|m| m < total) {
            0
        } else {
            self.o.epochs - self.state.epoch
        };
        last.saturating_sub(self.state.step) as f64 * per_step + evals as f64 * self.eval_seconds.0
    }

    /// Writes a row of `steps.csv` (and TensorBoard scalars) for the steps since the last one.
    fn log_steps(&mut self, lr: f64) -> Result<()> {
        let s = &mut self.state;
        let seen = s.window_seen.max(1) as f64;
        let row = StepMetrics {
            step: s.step,
            epoch: s.step as f64 / self.steps_per_epoch as f64,
            train_loss: s.window_loss_sum / seen,
            train_top1: 100.0 * s.window_correct as f64 / seen,
            lr,
            time: unix_seconds(),
        };
        (s.window_loss_sum, s.window_correct, s.window_seen) = (0.0, 0, 0);
        self.dir.append_steps(std::slice::from_ref(&row))?;
        if let Some(events) = &mut self.events {
            events.scalar("train/loss", row.step, row.train_loss)?;
            events.scalar("train/top1", row.step, row.train_top1)?;
            events.scalar("train/lr", row.step, row.lr)?;
            events.flush()?;
        }
        self.steps.push(row);
        Ok(())
    }

    /// Saves `last.*` mid-epoch (the running sums included, so a resume continues exactly).
    fn stop_mid_epoch(&mut self, interrupted: bool, display: &EpochProgress) -> Result<Outcome> {
        let mut meta = self.base_meta.clone();
        self.state.write(&mut meta);
        let curves = Curves {
            rows: &self.rows,
            steps: &self.steps,
            title: &self.title,
        };
        self.dir
            .save(&mut self.model, &self.opt, &meta, false, Some(curves))?;
        display.abandon();
        say(format!(
            "{} at step {}: saved {}",
            if interrupted {
                "interrupted"
            } else {
                "--max-steps reached"
            },
            self.state.step,
            self.dir.last().display()
        ));
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
        let started = Instant::now();
        let eval = evaluate(&mut self.model, &self.ds.test, &self.ds, batch, self.device)
            .with_context(|| {
                format!(
                    "evaluating epoch {} of the run in {} (its last saved checkpoint: {})",
                    self.state.epoch + 1,
                    self.o.out.display(),
                    self.dir.last().display()
                )
            })?;
        let took = started.elapsed().as_secs_f64();
        self.eval_seconds.0 = took;
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
        say(format!(
            "epoch {}/{}: train loss {:.4} top-1 {:.2}% | test loss {:.4} top-1 {:.2}% top-5 {:.2}% | {:.0} img/s, {:.0} s",
            row.epoch, self.o.epochs, row.train_loss, row.train_top1, row.test_loss, row.test_top1, row.test_top5, row.images_per_s, row.seconds
        ));
        if let Some(events) = &mut self.events {
            for (tag, value) in [
                ("epoch/train_loss", row.train_loss),
                ("epoch/train_top1", row.train_top1),
                ("epoch/test_loss", row.test_loss),
                ("epoch/test_top1", row.test_top1),
                ("epoch/test_top5", row.test_top5),
                ("epoch/lr", row.lr),
            ] {
                events.scalar(tag, row.steps, value)?;
            }
            events.flush()?;
        }
        self.rows.push(row);
        self.state = RunState {
            epoch: s.epoch + 1,
            step: s.step,
            best_top1: s.best_top1.max(eval.top1),
            // The steps since the last row of steps.csv carry over into the next epoch.
            window_loss_sum: s.window_loss_sum,
            window_correct: s.window_correct,
            window_seen: s.window_seen,
            ..RunState::default()
        };
        let mut meta = self.base_meta.clone();
        self.state.write(&mut meta);
        let best = eval.top1 >= self.state.best_top1;
        let curves = Curves {
            rows: &self.rows,
            steps: &self.steps,
            title: &self.title,
        };
        self.dir
            .save(&mut self.model, &self.opt, &meta, best, Some(curves))
    }
}
