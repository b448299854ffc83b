//! Records the git commit the trainer is built from (`SENET_COMMIT`, written into every run's
//! `config.json`): the short hash, `-dirty` when tracked files had changes when this ran, or
//! "unknown" outside a git checkout.
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).map_or("unknown".into(), |hash| {
        let dirty =
            git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        if dirty {
            format!("{hash}-dirty")
        } else {
            hash
        }
    });
    println!("cargo:rustc-env=SENET_COMMIT={commit}");
    // Run again when HEAD moves or the index changes (a commit, a checkout, an add).
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for file in ["HEAD", "index"] {
            println!("cargo:rerun-if-changed={dir}/{file}");
        }
        if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{head}");
        }
    }
    // And when a source file changes, so that `-dirty` follows edits (cargo scans folders).
    for path in [
        "build.rs",
        "../../src",
        "../../crates",
        "../../shaders",
        "../../Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
}
