use std::path::PathBuf;

/// Errors of layers and checkpoints. Checkpoint messages name the file and the tensor (or the
/// byte offset) so a user can tell what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor op refused (bad shapes, mixed devices...).
    #[error(transparent)]
    Tensor(#[from] senet_tensor::Error),
    /// A checkpoint file does not fit the model, or is not a valid safetensors file.
    #[error("{path}: {msg}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        msg: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {err}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        err: std::io::Error,
    },
    /// A setting or a saved state that makes no sense (an unknown name, optimizer state of
    /// another model).
    #[error("{0}")]
    Config(String),
}

/// The result of every fallible operation of this crate.
pub type Result<T> = std::result::Result<T, Error>;
