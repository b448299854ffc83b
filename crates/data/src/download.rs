//! Fetching an official CIFAR archive: HTTP download to a temporary file with a progress bar,
//! md5 check, extraction into a temporary folder, then one rename into place.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use crate::error::{io_err, Error, Result};

/// Official CIFAR-10 binary archive.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// md5 of [`CIFAR10_URL`].
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// Official CIFAR-100 binary archive.
pub const CIFAR100_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz";
/// md5 of [`CIFAR100_URL`].
pub const CIFAR100_MD5: &str = "03b5dce01913d631647c71ecec9e9cb8";

/// How to fetch a CIFAR archive when the data folder lacks it.
#[derive(Clone, Debug, Default)]
pub struct DownloadOptions {
    /// Replaces the official URL (a mirror, or a local server in tests).
    pub url: Option<String>,
    /// Replaces the official md5 (hex); needed with a `url` whose archive differs.
    pub md5: Option<String>,
    /// Never touch the network: a missing dataset is an error that says where to put the files.
    pub offline: bool,
}

/// What one dataset's archive is and what it must contain.
pub(crate) struct Archive {
    /// Dataset name for messages, e.g. "CIFAR-10".
    pub name: &'static str,
    pub url: &'static str,
    pub md5: &'static str,
    /// The folder the archive unpacks to, e.g. "cifar-10-batches-bin".
    pub folder: &'static str,
    /// Files that must be inside `folder`.
    pub files: &'static [&'static str],
}

impl Archive {
    /// The advice given whenever the dataset is missing and cannot be fetched.
    pub(crate) fn where_to_put(&self, dir: &Path) -> String {
        format!(
            "put the files there yourself: download {} and unpack it into {} so that the folder {} \
             holds {}",
            self.url,
            dir.display(),
            dir.join(self.folder).display(),
            self.files.join(", ")
        )
    }
}

/// Removes a temporary file or folder when dropped, unless `keep` was called.
struct TempPath {
    path: PathBuf,
    dir: bool,
    armed: bool,
}

impl TempPath {
    fn new(path: PathBuf, dir: bool) -> Self {
        Self {
            path,
            dir,
            armed: true,
        }
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: a leftover temporary name is harmless (it never looks like a dataset).
            let _ = if self.dir {
                fs::remove_dir_all(&self.path)
            } else {
                fs::remove_file(&self.path)
            };
        }
    }
}

/// Downloads `archive` (or the override in `opts`), checks its md5 and unpacks it so that
/// `dir/archive.folder/` appears complete or not at all.
pub(crate) fn fetch(dir: &Path, archive: &Archive, opts: &DownloadOptions) -> Result<()> {
    let url = opts.url.as_deref().unwrap_or(archive.url);
    let expected = opts
        .md5
        .as_deref()
        .unwrap_or(archive.md5)
        .trim()
        .to_ascii_lowercase();
    let target = dir.join(archive.folder);
    if opts.offline {
        return Err(Error::Download(format!(
            "{} not found in {} (no {}) and downloads are off; {}",
            archive.name,
            dir.display(),
            target.display(),
            archive.where_to_put(dir)
        )));
    }
    fs::create_dir_all(dir).map_err(io_err("cannot create the data folder", dir))?;

    // Temporary names live in the destination folder so the final rename stays on one filesystem.
    let pid = std::process::id();
    let part = TempPath::new(
        dir.join(format!(".{}.download-{pid}.tar.gz", archive.folder)),
        false,
    );
    let actual = download(url, &part.path, archive, dir)?;
    if actual != expected {
        return Err(Error::Checksum {
            url: url.to_string(),
            expected,
            actual,
        });
    }

    let staging = TempPath::new(dir.join(format!(".{}.extract-{pid}", archive.folder)), true);
    let _ = fs::remove_dir_all(&staging.path); // a leftover of an earlier crash with our pid
    fs::create_dir_all(&staging.path)
        .map_err(io_err("cannot create the extraction folder", &staging.path))?;
    extract(&part.path, &staging.path, url)?;
    for file in archive.files {
        if !staging.path.join(archive.folder).join(file).is_file() {
            return Err(Error::BadData(format!(
                "the archive from {url} does not contain {}/{file}",
                archive.folder
            )));
        }
    }
    if let Err(e) = fs::rename(staging.path.join(archive.folder), &target) {
        // Another process may have finished the same download first: its copy is as good.
        if !target.join(archive.files[0]).is_file() {
            return Err(Error::Io {
                what: "cannot move the extracted dataset to",
                path: target,
                err: e,
            });
        }
    }
    Ok(())
}

/// Streams `url` into `dest`, returning the lowercase hex md5 of what was received.
fn download(url: &str, dest: &Path, archive: &Archive, dir: &Path) -> Result<String> {
    let fail = |why: String| {
        Error::Download(format!(
            "cannot download {} from {url}: {why}; {}",
            archive.name,
            archive.where_to_put(dir)
        ))
    };
    // Per-read rather than total timeouts: a slow link may take long, a dead one should not.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    let total = response.body().content_length();

    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    // The template is a constant; it only fails to parse if edited wrongly, hence the fallback.
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(format!("downloading {}", archive.name));

    let file = File::create(dest).map_err(io_err("cannot create", dest))?;
    let mut out = BufWriter::new(file);
    let mut reader = response.body_mut().as_reader();
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(format!("connection lost after {received} bytes: {e}"))),
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io_err("cannot write", dest))?;
        received += n as u64;
        bar.set_position(received);
    }
    bar.finish_and_clear();
    if let Some(n) = total {
        if received != n {
            return Err(fail(format!("received {received} of {n} bytes")));
        }
    }
    let file = out.into_inner().map_err(|e| Error::Io {
        what: "cannot write",
        path: dest.to_path_buf(),
        err: e.into_error(),
    })?;
    file.sync_all().map_err(io_err("cannot write", dest))?;
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Unpacks the `.tar.gz` at `archive` into `into` (paths escaping `into` are skipped by `tar`).
fn extract(archive: &Path, into: &Path, url: &str) -> Result<()> {
    let file = File::open(archive).map_err(io_err("cannot open", archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let bad = |e: std::io::Error| {
        Error::BadData(format!(
            "cannot extract the archive downloaded from {url}: {e}"
        ))
    };
    for entry in tar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        entry.unpack_in(into).map_err(bad)?;
    }
    Ok(())
}
