//! The one error type of the crate: every message names the file, record, path or option at fault.

use std::io;
use std::path::{Path, PathBuf};

/// What went wrong while finding, downloading, reading or batching a dataset.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or folder could not be opened, read, written or renamed.
    #[error("{what} {}: {err}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        // Not named `source`: thiserror would chain it and `{:#}` would print it twice.
        err: io::Error,
    },
    /// The files are there but their contents are wrong: a truncated record, a label out of
    /// range, an undecodable image, a missing folder...
    #[error("{0}")]
    BadData(String),
    /// The dataset is absent and could not be fetched; the message says where to put the files.
    #[error("{0}")]
    Download(String),
    /// The downloaded archive is not the expected one; it has been deleted.
    #[error(
        "checksum mismatch for {url}: expected md5 {expected}, got {actual} \
         (the download was deleted; nothing was extracted)"
    )]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
    /// An option is out of range (batch size 0, a non-positive std, a skip past the epoch...).
    #[error("{0}")]
    Options(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Builds a `map_err` closure that attaches the action and the path to an `io::Error`.
pub(crate) fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> Error {
    let path = path.to_path_buf();
    move |err| Error::Io { what, path, err }
}
