//! Kill tests: the real `senet train` (tiny dataset, CPU) killed between any two file operations
//! of its saves (through the `SENET_TEST_KILL_AT_SAVE_OP` hook, not by luck), at random moments,
//! and stopped by SIGINT and SIGTERM. Each `--resume` continues, and the final weights and
//! optimizer state equal an uninterrupted run's bit for bit.
//!
//! `SENET_KILL_OPS=all` kills at every operation of the run's saves (about 55); otherwise a
//! spread of nine of them. `SENET_KILL_RANDOM=N` sets the random kills (default 3).
#![cfg(unix)]
mod common;

use common::{checkpoint_bits, tmp, write_cifar10};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// resnet-18 (CIFAR preset, width 4) for 2 epochs of 2 steps, saving after every step.
fn train_command(data: &Path, out: &Path, resume: bool) -> Command {
    train_epochs(data, out, resume, 2)
}

/// [`train_command`] for `epochs` epochs.
fn train_epochs(data: &Path, out: &Path, resume: bool, epochs: usize) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_senet"));
    let epochs = epochs.to_string();
    c.args([
        "train", "--model", "resnet", "--depth", "18", "--preset", "cifar",
    ])
    .args(["--width", "4", "--dataset", "cifar10", "--epochs", &epochs])
    .args([
        "--batch", "16", "--lr", "0.05", "--seed", "3", "--device", "cpu",
    ])
    .args(["--workers", "1", "--save-every", "1"])
    .arg("--data")
    .arg(data)
    .arg("--out")
    .arg(out)
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if resume {
        c.arg("--resume");
    }
    c
}

fn run(mut c: Command) -> (ExitStatus, String) {
    let o = c.output().unwrap();
    (o.status, String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Every tensor of a checkpoint as raw bits, by name.
type Bits = Vec<(String, Vec<u8>)>;

/// The run's final weights and optimizer state, and its metrics without the timing columns.
fn outcome(out: &Path) -> (Bits, Bits, Vec<String>) {
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    (
        checkpoint_bits(&out.join("last.safetensors")),
        checkpoint_bits(&out.join("last.optim.safetensors")),
        metrics
            .lines()
            .map(|l| l.rsplitn(3, ',').nth(2).unwrap().to_string())
            .collect(),
    )
}

/// Resumes the run in `out` to its end and checks it against the uninterrupted one.
fn resume_and_compare(data: &Path, out: &Path, reference: &Path, what: &str) {
    let (status, err) = run(train_command(data, out, true));
    assert!(status.success(), "{what}: resume failed: {err}");
    assert!(
        outcome(out) == outcome(reference),
        "{what}: differs from the uninterrupted run"
    );
    // Nothing of an interrupted save is left behind (the lock file is the folder's own: it
    // stays, and no process holds it now).
    for entry in std::fs::read_dir(out).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with('.') || name == ".senet-lock",
            "{what}: {name} left in the run folder"
        );
    }
}

#[test]
fn kills_between_save_operations_resume_to_the_same_bits() {
    let dir = tmp("kill-ops");
    write_cifar10(&dir, 4, 5);
    let reference = dir.join("reference");
    let (status, err) = run(train_command(&dir, &reference, false));
    assert!(status.success(), "{err}");

    let all = std::env::var("SENET_KILL_OPS").is_ok_and(|v| v == "all");
    let ops: Vec<u64> = if all {
        (1..).take(200).collect()
    } else {
        vec![1, 3, 6, 9, 13, 17, 22, 30, 44]
    };
    let mut killed = 0;
    for op in ops {
        let out = dir.join(format!("op{op}"));
        let mut c = train_command(&dir, &out, false);
        c.env("SENET_TEST_KILL_AT_SAVE_OP", op.to_string());
        let (status, err) = run(c);
        if status.success() {
            // Past the run's last save operation.
            assert!(all, "operation {op} was never reached: {err}");
            break;
        }
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "operation {op}: {status} {err}"
        );
        killed += 1;
        resume_and_compare(
            &dir,
            &out,
            &reference,
            &format!("killed at save operation {op}"),
        );
        std::fs::remove_dir_all(&out).unwrap();
    }
    eprintln!("killed at {killed} save operations; every resume matched");
    assert!(killed >= 9, "{killed}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn kills_at_random_moments_resume_to_the_same_bits() {
    let dir = tmp("kill-random");
    write_cifar10(&dir, 4, 6);
    let reference = dir.join("reference");
    let started = Instant::now();
    let (status, err) = run(train_command(&dir, &reference, false));
    assert!(status.success(), "{err}");
    let whole = started.elapsed();
    let kills: u64 = std::env::var("SENET_KILL_RANDOM")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let mut rng = StdRng::seed_from_u64(11);
    for k in 0..kills {
        let out = dir.join(format!("random{k}"));
        // Killed up to three times in a row, each resume possibly killed again.
        for round in 0..3 {
            let mut child = train_command(&dir, &out, round > 0).spawn().unwrap();
            let at = whole.mul_f64(rng.random_range(0.05..0.95));
            std::thread::sleep(at);
            let _ = child.kill();
            child.wait().unwrap();
        }
        resume_and_compare(&dir, &out, &reference, &format!("random kill {k}"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigint_and_sigterm_save_and_exit_130_and_143() {
    // Long enough (40 epochs) that the signal always lands mid-run.
    const EPOCHS: usize = 40;
    let dir = tmp("kill-signals");
    write_cifar10(&dir, 4, 7);
    let reference = dir.join("reference");
    let (status, err) = run(train_epochs(&dir, &reference, false, EPOCHS));
    assert!(status.success(), "{err}");
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let out = dir.join(signal);
        let child = train_epochs(&dir, &out, false, EPOCHS).spawn().unwrap();
        // Once the first save is on disk the loop is running.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !out.join("last.safetensors").exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let kill = Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let o = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "SIG{signal}: {err}");
        assert!(err.contains("saving a checkpoint"), "{err}");
        let (status, err) = run(train_epochs(&dir, &out, true, EPOCHS));
        assert!(status.success(), "SIG{signal}: resume failed: {err}");
        assert!(
            outcome(&out) == outcome(&reference),
            "SIG{signal}: differs from the uninterrupted run"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A server that announces a CIFAR-sized archive and then sends one byte every 50 ms.
fn trickling_url() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cifar.tar.gz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut buf = [0u8; 1024];
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = stream.read(&mut buf);
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 170000000\r\nConnection: close\r\n\r\n";
        let _ = stream.write_all(head.as_bytes());
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end && stream.write_all(b"x").is_ok() {
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    url
}

#[test]
fn ctrl_c_during_a_download_stops_at_once_and_its_leftovers_go_at_the_next_start() {
    let dir = tmp("kill-download");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let download_command = |url: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_senet"));
        c.args([
            "train", "--model", "resnet", "--depth", "18", "--width", "4", "--device", "cpu",
        ])
        .args([
            "--dataset",
            "cifar10",
            "--data-md5",
            "00",
            "--data-url",
            url,
        ])
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(dir.join("run"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        c
    };
    let partial = || {
        std::fs::read_dir(&data)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".download-"))
            .collect::<Vec<_>>()
    };
    let child = download_command(&trickling_url()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while partial().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!partial().is_empty(), "the download never started");
    let sent = Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "{:?}",
        sent.elapsed()
    );

    // The next start, whatever it does, removes what the stopped download left.
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/x.tar.gz", refused.local_addr().unwrap());
    drop(refused);
    let (status, _) = run(download_command(&dead));
    assert!(!status.success());
    assert!(partial().is_empty(), "{:?}", partial());
    std::fs::remove_dir_all(&dir).unwrap();
}
