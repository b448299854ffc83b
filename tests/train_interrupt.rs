//! A stop request (what Ctrl-C sends through a `StopHandle`) makes the loop save a checkpoint
//! after the current step and return cleanly; `--resume` then finishes the run.
mod common;

use common::{options, tmp, write_cifar10};
use senet::train::{train, Outcome, StopHandle};

#[test]
fn an_interrupt_saves_and_resume_continues() {
    let dir = tmp("interrupt");
    write_cifar10(&dir, 4, 7);
    let mut o = options(&dir, &dir.join("run"), "cpu");
    let stop = StopHandle::new();
    // Stopped before the run starts: it still takes the step that was running, then saves.
    stop.stop();
    let (rows, outcome) = train(&o, &stop).unwrap();
    assert_eq!(outcome, Outcome::Interrupted);
    assert!(rows.is_empty());
    let meta = senet::nn::checkpoint::read_metadata(&dir.join("run/last.safetensors")).unwrap();
    assert_eq!(meta["step"], "1", "stopped after the step that was running");
    o.resume = true;
    let (rows, outcome) = train(&o, &StopHandle::new()).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert_eq!(rows.len(), 3);
}

#[test]
fn a_stop_from_another_thread_ends_the_run_mid_way() {
    let dir = tmp("interrupt-thread");
    write_cifar10(&dir, 4, 8);
    let mut o = options(&dir, &dir.join("run"), "cpu");
    o.epochs = 1000; // far more than the test waits for
    let stop = StopHandle::new();
    let (rows, outcome) = std::thread::scope(|s| {
        let run = s.spawn(|| train(&o, &stop));
        // Once the first epoch's row is on disk the loop is running: ask it to stop.
        while !dir.join("run/metrics.csv").exists() && !run.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        stop.stop();
        run.join().unwrap().unwrap()
    });
    assert_eq!(outcome, Outcome::Interrupted);
    assert!(!rows.is_empty() && rows.len() < 1000);
    let meta = senet::nn::checkpoint::read_metadata(&dir.join("run/last.safetensors")).unwrap();
    let step: u64 = meta["step"].parse().unwrap();
    assert!(step >= 2, "stopped after the first epoch (2 steps): {step}");
}
