//! Training augmentation on `u8 [3, S, S]` planar images, then normalization to `f32`.
//!
//! The crop happens on the `u8` pixels, so its padding is black (0) and becomes
//! `(0 - mean) / std` after normalization, as in the reference PyTorch pipeline
//! (`RandomCrop(32, padding=4)`, `RandomHorizontalFlip()`, `Normalize(mean, std)`).
//! Slices must have the stated shapes (the loader guarantees it); shorter ones panic.

use rand::Rng;

/// Zero padding on each side before the random crop.
pub const PAD: usize = 4;

/// One draw of the random augmentation: a crop offset into the padded image and a flip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Augmentation {
    /// Column of the crop window in the padded image, `0..=2 * PAD`.
    pub dx: usize,
    /// Row of the crop window in the padded image, `0..=2 * PAD`.
    pub dy: usize,
    /// Mirror left-right after cropping.
    pub flip: bool,
}

impl Augmentation {
    /// No crop shift, no flip: `apply` copies the image.
    pub const IDENTITY: Self = Self {
        dx: PAD,
        dy: PAD,
        flip: false,
    };

    /// Draws a crop offset uniformly in `0..=2 * PAD` on each axis and a flip with
    /// probability 0.5.
    pub fn random(rng: &mut impl Rng) -> Self {
        Self {
            dx: rng.random_range(0..=2 * PAD),
            dy: rng.random_range(0..=2 * PAD),
            flip: rng.random_bool(0.5),
        }
    }

    /// Writes the augmented `img` (`[3, size, size]`) into `out` (same shape).
    pub fn apply(&self, img: &[u8], size: usize, out: &mut [u8]) {
        crop_padded(img, size, self.dx, self.dy, out);
        if self.flip {
            flip_horizontal(out, size);
        }
    }
}

/// The image surrounded by `pad` black pixels: `[3, size + 2 pad, size + 2 pad]`.
/// (The loader never builds it; [`crop_padded`] reads the window directly. Tests use it.)
pub fn pad(img: &[u8], size: usize, pad: usize) -> Vec<u8> {
    let big = size + 2 * pad;
    let mut out = vec![0u8; 3 * big * big];
    for c in 0..3 {
        for y in 0..size {
            let src = &img[(c * size + y) * size..][..size];
            out[(c * big + y + pad) * big + pad..][..size].copy_from_slice(src);
        }
    }
    out
}

/// The `size` x `size` window at column `dx`, row `dy` of the image zero-padded by [`PAD`],
/// without building the padded image. Offsets beyond `2 * PAD` just show more black.
pub fn crop_padded(img: &[u8], size: usize, dx: usize, dy: usize, out: &mut [u8]) {
    // Output (y, x) reads source (y + dy - PAD, x + dx - PAD) when that is inside the image.
    let shift_x = dx as isize - PAD as isize;
    let shift_y = dy as isize - PAD as isize;
    let n = size as isize;
    let x0 = (-shift_x).clamp(0, n) as usize; // first output column with a source pixel
    let x1 = (n - shift_x).clamp(0, n) as usize; // one past the last
    for c in 0..3 {
        for y in 0..size {
            let row = &mut out[(c * size + y) * size..][..size];
            let sy = y as isize + shift_y;
            if sy < 0 || sy >= n || x0 >= x1 {
                row.fill(0);
                continue;
            }
            let src = &img[(c * size + sy as usize) * size..][..size];
            row[..x0].fill(0);
            row[x1..].fill(0);
            let sx0 = (x0 as isize + shift_x) as usize;
            row[x0..x1].copy_from_slice(&src[sx0..sx0 + (x1 - x0)]);
        }
    }
}

/// Mirrors `[3, size, size]` left-right in place.
pub fn flip_horizontal(img: &mut [u8], size: usize) {
    for row in img.chunks_exact_mut(size.max(1)) {
        row.reverse();
    }
}

/// Lookup table of `(v / 255 - mean[c]) / std[c]` for every channel `c` and byte `v`.
pub fn normalize_table(mean: &[f32; 3], std: &[f32; 3]) -> [[f32; 256]; 3] {
    let mut table = [[0f32; 256]; 3];
    for c in 0..3 {
        for (v, t) in table[c].iter_mut().enumerate() {
            *t = (v as f32 / 255.0 - mean[c]) / std[c];
        }
    }
    table
}

/// Writes `[3, size, size]` bytes as normalized floats, channel `c` through `table[c]`.
pub fn normalize(img: &[u8], table: &[[f32; 256]; 3], out: &mut [f32]) {
    let plane = img.len() / 3;
    for c in 0..3 {
        let (src, dst) = (&img[c * plane..][..plane], &mut out[c * plane..][..plane]);
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = table[c][s as usize];
        }
    }
}
