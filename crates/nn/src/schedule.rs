//! Learning-rate schedules as a function of the step: linear warm-up over the first
//! `warmup` epochs (fractions allowed), then constant, step decay, cosine to zero, or one-cycle.
//! The default recipe (warm-up 1 epoch, then cosine) equals the reference trainer's
//! `LambdaLR(lambda s: (s+1)/steps_per_epoch if s < steps_per_epoch else 0.5*(1+cos(pi*(s-w)/(total-w))))`.
use std::f64::consts::PI;

/// The shape of the schedule after warm-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ScheduleKind {
    /// The peak rate throughout.
    Constant,
    /// Multiply by `gamma` at 50% and again at 75% of the steps after warm-up.
    Step {
        /// The factor of each decay, e.g. 0.1.
        gamma: f64,
    },
    /// Half a cosine from the peak to zero.
    Cosine,
    /// One cycle: up from peak/25 to the peak over the first 30% of steps, then a cosine down
    /// to peak/25/1e4 (PyTorch's OneCycleLR defaults); warm-up is built in.
    OneCycle,
}

/// A learning-rate schedule: the rate for each optimizer step of a run.
///
/// ```
/// use senet_nn::schedule::{Schedule, ScheduleKind};
///
/// let s = Schedule { kind: ScheduleKind::Cosine, peak: 0.1, warmup_epochs: 1.0,
///                    steps_per_epoch: 10, total_steps: 100 };
/// assert!((s.lr(0) - 0.01).abs() < 1e-12); // warm-up: 1/10 of the peak
/// assert!((s.lr(10) - 0.1).abs() < 1e-12); // peak, then cosine down
/// assert!(s.lr(99) < 1e-3);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// What follows the warm-up.
    pub kind: ScheduleKind,
    /// The highest rate, reached at the end of warm-up.
    pub peak: f64,
    /// Warm-up length in epochs (fractions allowed).
    pub warmup_epochs: f64,
    /// Optimizer steps per epoch, to turn `warmup_epochs` into steps.
    pub steps_per_epoch: usize,
    /// Steps of the whole run; the schedule ends there.
    pub total_steps: usize,
}

impl Schedule {
    /// The learning rate for step `s` (0-based: the first optimizer step uses `lr(0)`).
    pub fn lr(&self, s: usize) -> f64 {
        let total = self.total_steps.max(1) as f64;
        let s_f = s as f64;
        if let ScheduleKind::OneCycle = self.kind {
            let up = (0.3 * total).max(1.0);
            let (lo, end) = (self.peak / 25.0, self.peak / 25.0 / 1e4);
            return if s_f < up {
                lo + (self.peak - lo) * (1.0 - (PI * s_f / up).cos()) / 2.0
            } else {
                end + (self.peak - end) * (1.0 + (PI * (s_f - up) / (total - up).max(1.0)).cos())
                    / 2.0
            };
        }
        let warm = (self.warmup_epochs * self.steps_per_epoch as f64).round();
        if s_f < warm {
            return self.peak * (s_f + 1.0) / warm;
        }
        let after = (total - warm).max(1.0);
        let t = (s_f - warm) / after;
        match self.kind {
            ScheduleKind::Constant => self.peak,
            ScheduleKind::Step { gamma } => {
                self.peak
                    * if t >= 0.75 {
                        gamma * gamma
                    } else if t >= 0.5 {
                        gamma
                    } else {
                        1.0
                    }
            }
            ScheduleKind::Cosine => self.peak * 0.5 * (1.0 + (PI * t).cos()),
            ScheduleKind::OneCycle => unreachable!("handled above"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_matches_the_reference_lambda() {
        let (spe, epochs) = (390usize, 15usize);
        let total = spe * epochs;
        let s = Schedule {
            kind: ScheduleKind::Cosine,
            peak: 0.1,
            warmup_epochs: 1.0,
            steps_per_epoch: spe,
            total_steps: total,
        };
        for step in [0usize, 1, 200, 389, 390, 391, 3000, total - 1] {
            let f = if step < spe {
                (step as f64 + 1.0) / spe as f64
            } else {
                0.5 * (1.0 + (PI * (step - spe) as f64 / (total - spe) as f64).cos())
            };
            assert!((s.lr(step) - 0.1 * f).abs() < 1e-15, "step {step}");
        }
    }

    #[test]
    fn other_schedules() {
        let base = Schedule {
            kind: ScheduleKind::Constant,
            peak: 1.0,
            warmup_epochs: 0.5,
            steps_per_epoch: 10,
            total_steps: 100,
        };
        assert_eq!(base.lr(0), 0.2);
        assert_eq!(base.lr(50), 1.0);
        let step = Schedule {
            kind: ScheduleKind::Step { gamma: 0.1 },
            ..base
        };
        assert_eq!(step.lr(10), 1.0);
        assert!((step.lr(60) - 0.1).abs() < 1e-12);
        assert!((step.lr(99) - 0.01).abs() < 1e-12);
        let one = Schedule {
            kind: ScheduleKind::OneCycle,
            ..base
        };
        assert!((one.lr(0) - 0.04).abs() < 1e-12);
        assert!((one.lr(30) - 1.0).abs() < 1e-12);
        assert!(one.lr(99) < 1e-3);
    }
}
