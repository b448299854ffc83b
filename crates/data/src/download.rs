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
    /// The whole transfer's deadline (default `DEADLINE`).
    pub deadline: Option<Duration>,
    /// The window of the minimum-progress rule (default `STALL_WINDOW`): a transfer that
    /// receives less than `MIN_PROGRESS_BYTES` in such a window ends with an error.
    pub stall_window: Option<Duration>,
}

/// Default deadline of a whole download (the CIFAR archives are 163-170 MB).
pub const DEADLINE: Duration = Duration::from_secs(2 * 60 * 60);
/// Default window of the minimum-progress rule.
pub const STALL_WINDOW: Duration = Duration::from_secs(60);
/// Bytes a transfer must receive in every stall window (1 KiB/s over the default one).
pub const MIN_PROGRESS_BYTES: u64 = 60 << 10;
/// The largest archive accepted (the server's Content-Length, and what is received).
pub const MAX_DOWNLOAD_BYTES: u64 = 1 << 30;
/// The most bytes an extracted archive may write, and the most in one file.
pub const MAX_EXTRACTED_BYTES: u64 = 2 << 30;
pub const MAX_EXTRACTED_FILE_BYTES: u64 = 512 << 20;

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
    remove_stale_temporaries(dir, archive.folder);

    // Temporary names live in the destination folder so the final rename stays on one filesystem.
    let pid = std::process::id();
    let part = TempPath::new(
        dir.join(format!(".{}.download-{pid}.tar.gz", archive.folder)),
        false,
    );
    let actual = download(url, &part.path, archive, dir, opts)?;
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

/// Removes what an earlier process, killed while fetching `folder` into `dir`, left there: its
/// `.FOLDER.download-PID.tar.gz` and `.FOLDER.extract-PID`. On Linux only those whose process
/// is gone (another one may be fetching right now); elsewhere none.
fn remove_stale_temporaries(dir: &Path, folder: &str) {
    #[cfg(target_os = "linux")]
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid = [".download-", ".extract-"].iter().find_map(|kind| {
                let rest = name.strip_prefix(&format!(".{folder}{kind}"))?;
                let pid = rest.strip_suffix(".tar.gz").unwrap_or(rest);
                (!pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())).then_some(pid)
            });
            let Some(pid) = pid else { continue };
            if !Path::new("/proc").join(pid).exists() {
                let path = entry.path();
                // symlink_metadata: a link planted there is removed, never followed.
                let _ = match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
                    _ => fs::remove_file(&path),
                };
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (dir, folder);
}

/// Streams `url` into `dest`, returning the lowercase hex md5 of what was received. Ends with
/// an error past the deadline, when a stall window passes with too little progress, and when
/// the archive is (or claims to be) over [`MAX_DOWNLOAD_BYTES`].
fn download(
    url: &str,
    dest: &Path,
    archive: &Archive,
    dir: &Path,
    opts: &DownloadOptions,
) -> Result<String> {
    let fail = |why: String| {
        Error::Download(format!(
            "cannot download {} from {url}: {why}; {}",
            archive.name,
            archive.where_to_put(dir)
        ))
    };
    let deadline = opts.deadline.unwrap_or(DEADLINE);
    let window = opts.stall_window.unwrap_or(STALL_WINDOW);
    // A read that blocks longer than the stall window has stalled anyway; the whole call
    // (connecting and the headers included) has the deadline.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(deadline))
        .timeout_connect(Some(window.min(Duration::from_secs(30))))
        .timeout_per_read(Some(window))
        .build()
        .into();
    let started = std::time::Instant::now();
    let mut response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    let total = response.body().content_length();
    if let Some(n) = total.filter(|&n| n > MAX_DOWNLOAD_BYTES) {
        return Err(fail(format!(
            "the server announces {n} bytes, over the {MAX_DOWNLOAD_BYTES}-byte cap"
        )));
    }

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
    let (mut window_start, mut window_bytes) = (std::time::Instant::now(), 0u64);
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail(format!("connection lost after {received} bytes: {e}"))),
        };
        window_bytes += n as u64;
        if received + n as u64 > MAX_DOWNLOAD_BYTES {
            return Err(fail(format!(
                "more than the {MAX_DOWNLOAD_BYTES}-byte cap arrived"
            )));
        }
        if started.elapsed() > deadline {
            return Err(fail(format!(
                "not finished within {} s ({received} bytes received)",
                deadline.as_secs()
            )));
        }
        if window_start.elapsed() >= window {
            if window_bytes < MIN_PROGRESS_BYTES {
                return Err(fail(format!(
                    "the transfer stalled: {window_bytes} bytes in the last {} s, under the \
                     minimum of {MIN_PROGRESS_BYTES} ({received} bytes received in all)",
                    window.as_secs_f64()
                )));
            }
            (window_start, window_bytes) = (std::time::Instant::now(), 0);
        }
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

/// Unpacks the `.tar.gz` at `archive` into `into`. Only folders and regular files, at
/// relative paths without `..`: a link would let a dataset file be any file on the machine, a
/// device or FIFO would block the reader. Sizes are capped ([`MAX_EXTRACTED_FILE_BYTES`] a
/// file, [`MAX_EXTRACTED_BYTES`] in all), so a gzip bomb costs bounded disk and time.
fn extract(archive: &Path, into: &Path, url: &str) -> Result<()> {
    let file = File::open(archive).map_err(io_err("cannot open", archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)));
    let refuse = |what: String| {
        Error::BadData(format!(
            "the archive downloaded from {url} {what}: refusing to extract it"
        ))
    };
    let mut written = 0u64;
    // Raw entries: extension headers (long names, pax) come to us as entries and are refused
    // below, rather than read whole by the tar crate or allowed to change an entry's size.
    let entries = tar
        .entries()
        .map_err(|e| refuse(format!("is unreadable ({e})")))?
        .raw(true);
    for entry in entries {
        let mut entry = entry.map_err(|e| refuse(format!("is unreadable ({e})")))?;
        let path = entry
            .path()
            .map_err(|e| refuse(format!("has a bad path ({e})")))?;
        let shown = path.display().to_string();
        let relative = path.components().all(|c| {
            matches!(
                c,
                std::path::Component::Normal(_) | std::path::Component::CurDir
            )
        });
        if !relative {
            return Err(refuse(format!(
                "holds {shown}, an absolute path or one with `..`"
            )));
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(refuse(format!(
                "holds {shown}, which is not a file or folder ({kind:?})"
            )));
        }
        let size = entry.header().size().unwrap_or(u64::MAX);
        written = written.saturating_add(size);
        if size > MAX_EXTRACTED_FILE_BYTES || written > MAX_EXTRACTED_BYTES {
            return Err(refuse(format!(
                "holds {shown} of {size} bytes, over the cap ({MAX_EXTRACTED_FILE_BYTES} a \
                 file, {MAX_EXTRACTED_BYTES} in all)"
            )));
        }
        entry
            .unpack_in(into)
            .map_err(|e| refuse(format!("cannot be extracted at {shown} ({e})")))?;
    }
    Ok(())
}
