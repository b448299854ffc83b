//! The run's pictures, drawn with the `image` crate and a built-in bitmap [`font`] (no system
//! fonts needed, so they work on a bare CI machine):
//!
//! - `curves.png` ([`curves_titled`]): loss, top-1 accuracy and learning rate against the epoch;
//! - a confusion matrix ([`confusion_png`]);
//! - a grid of misclassified images ([`misclassified_png`]);
//! - `senet reproduce`'s `report.png` ([`study_png`]): every run's test top-1 in one panel.
//!
//! Axes use round ticks ([`nice_ticks`]); the private `canvas` module holds the drawing
//! primitives (anti-aliased lines and dots, rectangles, text).
mod canvas;
mod confusion;
mod curves;
pub mod font;
mod grid;
mod ticks;

pub use confusion::confusion_png;
pub use curves::{curves_png_titled, study_png};
pub use grid::{misclassified_png, MisclassifiedImage};
pub use ticks::nice_ticks;

use crate::metrics::{EpochMetrics, StepMetrics};
use anyhow::{Context, Result};
use senet_nn::checkpoint::write_atomically;
use std::path::Path;

/// Writes [`curves_png_titled`] to `path` (through a temporary file and a rename).
pub fn curves_titled(
    rows: &[EpochMetrics],
    steps: &[StepMetrics],
    title: &str,
    path: &Path,
) -> Result<()> {
    let bytes = curves_png_titled(rows, steps, title)?;
    write_atomically(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// Writes the per-epoch curves of `rows` to `path` under a plain title.
pub fn curves(rows: &[EpochMetrics], path: &Path) -> Result<()> {
    curves_titled(rows, &[], "training curves", path)
}

/// The PNG bytes of [`curves`].
pub fn curves_png(rows: &[EpochMetrics]) -> Result<Vec<u8>> {
    curves_png_titled(rows, &[], "training curves")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curves_are_written_through_a_temporary_file() {
        let dir = std::env::temp_dir().join(format!("senet-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("curves.png");
        let rows = curves::tests::sample_rows(3);
        curves(&rows, &path).unwrap();
        let img = image::open(&path).unwrap();
        assert_eq!((img.width(), img.height()), (curves::W, curves::H));
        assert_eq!(std::fs::read(&path).unwrap(), curves_png(&rows).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
