use std::path::PathBuf;

/// Errors of layers and checkpoints. Checkpoint messages name the file and the tensor (or the
/// byte offset) so a user can tell what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Tensor(#[from] senet_tensor::Error),
    #[error("{path}: {msg}")]
    Checkpoint { path: PathBuf, msg: String },
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{0}")]
    Config(String),
}

pub type Result<T> = std::result::Result<T, Error>;
