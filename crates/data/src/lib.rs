//! Datasets for the senet CIFAR trainer, independent of the rest of the framework: it hands out
//! plain `Vec<u8>` images and `Vec<f32>` batches that the trainer turns into tensors.
//!
//! - [`load_cifar10`] / [`load_cifar100`] read the official binary files (3073- / 3074-byte
//!   records), downloading, checking (md5) and extracting the official archive when the folder
//!   lacks them; [`DownloadOptions`] overrides the URL and checksum (the trainer's `--data-url` /
//!   `--data-md5`).
//! - [`load_image_folder`] reads `train/<class>/<image>` and `test/<class>/<image>` trees of PNG
//!   or JPEG files, from a folder or straight from a `.tar.gz` stream (nothing is unpacked, so a
//!   read-only archive is fine), decoding every image once, in parallel, into a compact `u8` array.
//! - Every loader returns a [`Dataset`]: two [`Split`]s holding images as `u8 [N, 3, H, W]`
//!   (RGB planar) with `u32` labels, the class names, and per-channel normalization statistics.
//! - [`augment`] holds the training augmentation (zero-padded random crop, horizontal flip) and
//!   normalization, as small functions that the tests check one by one.
//! - [`BatchLoader`] iterates an epoch in batches of normalized `f32 [B, 3, H, W]`, with worker
//!   threads preparing the next batches. The permutation depends only on `(seed, epoch)` and each
//!   batch's augmentation only on `(seed, epoch, batch index)`, so the output is the same for any
//!   number of workers and a run resumed mid-epoch (`skip`) sees what an uninterrupted one would.
//!
//! Errors are values ([`Error`]) whose messages name the file, record, offset or path at fault;
//! user data never causes a panic. Whatever is written to disk (downloads, extracted folders) goes
//! to a temporary name in the same folder first and is renamed when complete.
//!
//! ```no_run
//! use senet_data::{load_cifar10, BatchLoader, DownloadOptions, LoaderOptions};
//! # fn main() -> senet_data::Result<()> {
//! let ds = load_cifar10("data".as_ref(), &DownloadOptions::default())?;
//! for epoch in 0..2 {
//!     let loader = BatchLoader::new(&ds.train, LoaderOptions::train(&ds, 128, 42, epoch))?;
//!     for batch in loader {
//!         assert_eq!(batch.images.len(), batch.len * 3 * 32 * 32);
//!     }
//! }
//! # Ok(())
//! # }
//! ```

pub mod augment;
mod cifar;
mod download;
mod error;
pub mod files;
mod folder;
mod loader;

use std::sync::Arc;

pub use cifar::{
    load_cifar10, load_cifar100, Labels, CIFAR100_MEAN, CIFAR100_STD, CIFAR10_MEAN, CIFAR10_STD,
};
pub use download::{DownloadOptions, CIFAR100_MD5, CIFAR100_URL, CIFAR10_MD5, CIFAR10_URL};
pub use error::{Error, Result};
pub use folder::{load_image_folder, ImageFolderOptions};
pub use loader::{Batch, BatchLoader, LoaderOptions};

/// One split (train or test) decoded into memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// `u8 [len, 3, image_size, image_size]`, RGB planar (all R, then all G, then all B).
    pub images: Vec<u8>,
    /// One label per image, each below the dataset's number of classes.
    pub labels: Vec<u32>,
    /// Number of images.
    pub len: usize,
    /// Height and width of every image.
    pub image_size: usize,
}

impl Split {
    /// Bytes per image: `3 * image_size * image_size`.
    pub fn image_bytes(&self) -> usize {
        3 * self.image_size * self.image_size
    }

    /// Image `i` as `u8 [3, image_size, image_size]`. Panics if `i >= len` (a caller's bug).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_bytes();
        &self.images[i * n..(i + 1) * n]
    }

    /// Checks that the vectors agree with `len` and `image_size` (a `Split` may be built by hand).
    pub fn validate(&self) -> Result<()> {
        if self.labels.len() != self.len || self.images.len() != self.len * self.image_bytes() {
            return Err(Error::BadData(format!(
                "split of {} images of {}x{} has {} labels and {} image bytes (expected {} and {})",
                self.len,
                self.image_size,
                self.image_size,
                self.labels.len(),
                self.images.len(),
                self.len,
                self.len * self.image_bytes()
            )));
        }
        Ok(())
    }
}

/// A dataset ready for training: both splits, class names and normalization statistics.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Training split, shared with the loader threads.
    pub train: Arc<Split>,
    /// Test split.
    pub test: Arc<Split>,
    /// Class names; label `i` is `classes[i]`.
    pub classes: Vec<String>,
    /// Per-channel mean of `pixel / 255` (RGB), used by normalization.
    pub mean: [f32; 3],
    /// Per-channel standard deviation of `pixel / 255` (RGB).
    pub std: [f32; 3],
    /// Height and width of every image.
    pub image_size: usize,
}
