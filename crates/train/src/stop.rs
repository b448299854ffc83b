//! How a run is asked to stop early, and how it ended.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A request to stop a run, shared between the loop and whoever may ask (a Ctrl-C handler, a
/// test, another thread). Clones share one flag. The loop checks it after every step: it then
/// saves a checkpoint and returns [`Outcome::Interrupted`].
#[derive(Clone, Debug, Default)]
pub struct StopHandle(Arc<AtomicBool>, Arc<AtomicBool>);

impl StopHandle {
    /// A handle nobody has stopped yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop. Returns whether it had been asked already (so a Ctrl-C handler
    /// can treat a second press differently).
    pub fn stop(&self) -> bool {
        self.0.swap(true, Ordering::SeqCst)
    }

    /// Whether a stop has been asked for (through any clone).
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Marks the step loop as started (the trainer calls it). Before that there is nothing to
    /// save, so a stop request (say, Ctrl-C during a download) may end the program at once.
    pub fn set_running(&self) {
        self.1.store(true, Ordering::SeqCst);
    }

    /// Whether the step loop has started, so that a stop request is answered by a save.
    pub fn is_running(&self) -> bool {
        self.1.load(Ordering::SeqCst)
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// All epochs done.
    Finished,
    /// `--max-steps` reached (a checkpoint was written).
    MaxSteps,
    /// Ctrl-C (a checkpoint was written).
    Interrupted,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag_and_stop_reports_a_repeat() {
        let a = StopHandle::new();
        let b = a.clone();
        assert!(!a.is_stopped());
        assert!(!b.stop(), "the first request");
        assert!(a.is_stopped());
        assert!(a.stop(), "a second request");
    }
}
