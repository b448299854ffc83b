//! Saving a run's files as one set.
//!
//! A save writes several files: the weights, the optimizer state that goes with them, the best
//! weights, `metrics.csv` and `curves.png`. Renamed into place one by one, a kill between two
//! renames left new weights beside old momentum (a resume then drifted from an uninterrupted
//! run) or lost a metrics row. So a save here is a small transaction with a redo journal:
//!
//! 1. every file is written as `.NAME.staged` and synced;
//! 2. the journal `.save-journal`, naming the staged files, is written to a temporary name,
//!    synced and renamed into place, and the folder synced: this is the commit point;
//! 3. each staged file is renamed over `NAME`, the folder synced, and the journal removed.
//!
//! [`recover`], run before a run reads or writes its folder, finishes a save whose journal
//! exists (every file it names was complete and on disk before the journal was written) and
//! removes staged files that have no journal (a save killed before its commit point, which
//! leaves the previous set whole). After a kill at any instant, the files a user opens are all
//! from one save.
//!
//! Test hook: with `SENET_TEST_KILL_AT_SAVE_OP=N` in the environment the process kills itself
//! (SIGKILL) right before the N-th file operation of its saves (counted from 1 over the whole
//! process), so the kill tests can stop it between any two operations rather than by luck.
use anyhow::{bail, Context, Result};
use senet_nn::checkpoint::{sync_dir, write_synced};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

const JOURNAL: &str = ".save-journal";
/// The files a save may name (the journal is refused if it names any other).
const NAMES: &[&str] = &[
    "last.safetensors",
    "last.optim.safetensors",
    "best.safetensors",
    "metrics.csv",
    "curves.png",
];
/// A journal is a few short lines; a bigger file is not one of ours.
const MAX_JOURNAL_BYTES: u64 = 4096;

/// Whether `name` is the save journal or its temporary name.
pub fn is_journal(name: &str) -> bool {
    name.strip_prefix(JOURNAL)
        .is_some_and(|rest| rest.is_empty() || rest == ".tmp")
}

fn staged(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".{name}.staged"))
}

/// Counts file operations and kills the process at the one the test hook names.
fn operation() {
    static KILL_AT: OnceLock<Option<u64>> = OnceLock::new();
    static DONE: AtomicU64 = AtomicU64::new(0);
    let kill_at = *KILL_AT.get_or_init(|| {
        std::env::var("SENET_TEST_KILL_AT_SAVE_OP")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if kill_at == Some(DONE.fetch_add(1, Ordering::SeqCst) + 1) {
        #[cfg(unix)]
        // SAFETY: kill(2) on our own pid; nothing of ours runs after it.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}

/// Files being saved together into one folder (see the module comment).
pub struct SaveSet {
    dir: PathBuf,
    names: Vec<&'static str>,
}

impl SaveSet {
    /// An empty set of files to save into `dir`.
    pub fn new(dir: &Path) -> Self {
        SaveSet {
            dir: dir.to_path_buf(),
            names: Vec::new(),
        }
    }

    /// Writes `bytes` as the staged copy of `name` (one of `NAMES`) and syncs it.
    pub fn stage(&mut self, name: &'static str, bytes: &[u8]) -> Result<()> {
        debug_assert!(NAMES.contains(&name));
        let path = staged(&self.dir, name);
        operation();
        write_synced(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        self.names.push(name);
        Ok(())
    }

    /// Commits the staged files: the journal, then the renames (see the module comment).
    pub fn commit(self) -> Result<()> {
        let io = |what: &str| format!("{what} in {}", self.dir.display());
        operation();
        sync_dir(&self.dir).with_context(|| io("syncing the staged files"))?;
        let tmp = self.dir.join(format!("{JOURNAL}.tmp"));
        operation();
        write_synced(&tmp, (self.names.join("\n") + "\n").as_bytes())
            .with_context(|| io("writing the save journal"))?;
        operation();
        std::fs::rename(&tmp, self.dir.join(JOURNAL))
            .with_context(|| io("committing the save journal"))?;
        operation();
        sync_dir(&self.dir).with_context(|| io("syncing the save journal"))?;
        finish(&self.dir, &self.names)
    }
}

/// Renames each staged file of `names` that is still there over its name, syncs the folder
/// and removes the journal. Safe to run again after a kill part way through.
fn finish(dir: &Path, names: &[&str]) -> Result<()> {
    for name in names {
        let from = staged(dir, name);
        if from.exists() {
            operation();
            std::fs::rename(&from, dir.join(name))
                .with_context(|| format!("renaming {} into place", from.display()))?;
        }
    }
    operation();
    sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))?;
    operation();
    std::fs::remove_file(dir.join(JOURNAL))
        .with_context(|| format!("removing the save journal in {}", dir.display()))?;
    operation();
    sync_dir(dir).with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// Brings a run folder back to one whole set after a kill: finishes a committed save, and
/// removes what an uncommitted one left. Returns whether a save was finished.
pub fn recover(dir: &Path) -> Result<bool> {
    if !dir.is_dir() {
        return Ok(false);
    }
    let journal = dir.join(JOURNAL);
    let mut finished = false;
    if let Ok(meta) = std::fs::symlink_metadata(&journal) {
        if !meta.is_file() || meta.len() > MAX_JOURNAL_BYTES {
            bail!(
                "{} is not a save journal of this program (not a regular file of at most {MAX_JOURNAL_BYTES} bytes): remove it by hand",
                journal.display()
            );
        }
        let text = std::fs::read_to_string(&journal)
            .with_context(|| format!("reading {}", journal.display()))?;
        let mut names = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            match NAMES.iter().find(|n| **n == line) {
                Some(n) => names.push(*n),
                None => bail!(
                    "{} names {line:?}, not a file a save writes: remove the journal by hand",
                    journal.display()
                ),
            }
        }
        finish(dir, &names)?;
        finished = true;
    }
    // Staged files without a journal: a save that never reached its commit point.
    for name in NAMES {
        let path = staged(dir, name);
        if path.exists() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    let tmp = dir.join(format!("{JOURNAL}.tmp"));
    if tmp.exists() {
        std::fs::remove_file(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    Ok(finished)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("senet-save-set-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    #[test]
    fn a_commit_replaces_every_file_and_leaves_nothing_behind() {
        let dir = scratch("commit");
        std::fs::write(dir.join("metrics.csv"), "old").unwrap();
        let mut set = SaveSet::new(&dir);
        set.stage("metrics.csv", b"new").unwrap();
        set.stage("last.safetensors", b"weights").unwrap();
        set.commit().unwrap();
        assert_eq!(read(&dir, "metrics.csv"), "new");
        assert_eq!(read(&dir, "last.safetensors"), "weights");
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["last.safetensors", "metrics.csv"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn recover_rolls_a_committed_save_forward_and_an_uncommitted_one_back() {
        // Committed (journal written), killed after the first rename: finished.
        let dir = scratch("forward");
        std::fs::write(dir.join("last.safetensors"), "new weights").unwrap();
        std::fs::write(dir.join("last.optim.safetensors"), "old momentum").unwrap();
        std::fs::write(staged(&dir, "last.optim.safetensors"), "new momentum").unwrap();
        std::fs::write(
            dir.join(JOURNAL),
            "last.safetensors\nlast.optim.safetensors\n",
        )
        .unwrap();
        assert!(recover(&dir).unwrap());
        assert_eq!(read(&dir, "last.optim.safetensors"), "new momentum");
        assert!(!dir.join(JOURNAL).exists());

        // Not committed: the staged files go, the old set stays.
        std::fs::write(staged(&dir, "last.safetensors"), "half a save").unwrap();
        std::fs::write(dir.join(format!("{JOURNAL}.tmp")), "last.safe").unwrap();
        assert!(!recover(&dir).unwrap());
        assert_eq!(read(&dir, "last.safetensors"), "new weights");
        assert!(!staged(&dir, "last.safetensors").exists());
        assert!(!dir.join(format!("{JOURNAL}.tmp")).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_journal_naming_other_files_is_refused() {
        let dir = scratch("hostile");
        std::fs::write(dir.join(JOURNAL), "../../etc/passwd\n").unwrap();
        let err = recover(&dir).unwrap_err().to_string();
        assert!(err.contains("not a file a save writes"), "{err}");
        std::fs::write(dir.join(JOURNAL), "x".repeat(5000)).unwrap();
        assert!(recover(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
