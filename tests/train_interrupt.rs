//! Ctrl-C sets `senet::train::STOP`; the loop then saves a checkpoint and returns cleanly.
//! (Its own test binary: STOP is process-wide.)
mod common;

use common::{options, tmp, write_cifar10};
use senet::train::{train, Outcome, STOP};
use std::sync::atomic::Ordering;

#[test]
fn an_interrupt_saves_and_resume_continues() {
    let dir = tmp("interrupt");
    write_cifar10(&dir, 4, 7);
    let mut o = options(&dir, &dir.join("run"), "cpu");
    STOP.store(true, Ordering::SeqCst);
    let (rows, outcome) = train(&o).unwrap();
    STOP.store(false, Ordering::SeqCst);
    assert_eq!(outcome, Outcome::Interrupted);
    assert!(rows.is_empty());
    let meta = senet::nn::checkpoint::read_metadata(&dir.join("run/last.safetensors")).unwrap();
    assert_eq!(meta["step"], "1", "stopped after the step that was running");
    o.resume = true;
    let (rows, outcome) = train(&o).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert_eq!(rows.len(), 3);
}
