//! A grid of misclassified images, each enlarged and captioned with its true and predicted
//! class.
use super::canvas::{truncate, Canvas, Rect, GRID, INK};
use super::curves::TEST;
use super::font;
use anyhow::{bail, Result};

/// One misclassified image and what the model said about it.
#[derive(Clone, Debug, PartialEq)]
pub struct MisclassifiedImage {
    /// `size` x `size` pixels, row-major, 3 bytes (R, G, B; 0-255) per pixel.
    pub rgb: Vec<u8>,
    /// Side of the square image in pixels.
    pub size: usize,
    /// The true class: an index into the class names.
    pub label: usize,
    /// The predicted class.
    pub predicted: usize,
    /// The predicted class's probability, 0 to 1.
    pub confidence: f32,
}

/// Images per row.
pub const COLUMNS: usize = 8;
/// Most images drawn (the first ones); the grid then stays within 8 x 8 tiles.
pub const MAX_IMAGES: usize = 64;
/// Images are enlarged by a whole factor towards this many pixels (32 -> 128), or shrunk to it.
pub const TILE: usize = 128;
/// Caption lines are cut to this many characters (at scale 2).
const CAPTION_CHARS: usize = 18;
const PAD: i64 = 16;
/// Room for the heading above the grid.
const TOP: i64 = 56;

/// The side of an image of `size` pixels in the grid: enlarged by the largest whole factor
/// that stays within [`TILE`] (nearest neighbour keeps the pixels sharp), larger ones shrunk
/// to [`TILE`].
pub fn shown_size(size: usize) -> usize {
    if size >= TILE {
        TILE
    } else {
        size * (TILE / size)
    }
}

/// Cell width and height, in pixels: the image and two caption lines under it.
fn cell_size() -> (i64, i64) {
    let caption_w = i64::from(font::text_width(&"m".repeat(CAPTION_CHARS), 2));
    let w = caption_w.max(TILE as i64) + PAD;
    let h = TILE as i64 + 8 + 2 * 22 + 2 * PAD;
    (w, h)
}

/// Top-left corner of the image of tile `i`, centred in its cell.
fn tile_origin(i: usize, shown: usize) -> (i64, i64) {
    let (w, h) = cell_size();
    let (col, row) = ((i % COLUMNS) as i64, (i / COLUMNS) as i64);
    let x = PAD + col * w + (w - PAD - shown as i64) / 2;
    let y = TOP + row * h + (TILE - shown) as i64;
    (x, y)
}

/// The PNG bytes of a grid of (at most `MAX_IMAGES` of) `images`, `COLUMNS` to a row, each
/// captioned `true: NAME` and `pred: NAME NN%` with `names` indexed by class.
pub fn misclassified_png(images: &[MisclassifiedImage], names: &[String]) -> Result<Vec<u8>> {
    if images.is_empty() {
        bail!("no misclassified images to draw");
    }
    for (i, im) in images.iter().enumerate() {
        let expected = im.size.checked_mul(im.size).and_then(|p| p.checked_mul(3));
        if im.size == 0 || expected != Some(im.rgb.len()) {
            bail!(
                "misclassified image {i}: {} bytes of RGB for a {1} x {1} image",
                im.rgb.len(),
                im.size
            );
        }
        for (what, class) in [("label", im.label), ("prediction", im.predicted)] {
            if class >= names.len() {
                bail!(
                    "misclassified image {i}: {what} {class} is not one of the {} classes",
                    names.len()
                );
            }
        }
    }
    let shown = &images[..images.len().min(MAX_IMAGES)];
    let (cw, ch) = cell_size();
    let cols = shown.len().min(COLUMNS) as i64;
    let rows = shown.len().div_ceil(COLUMNS) as i64;
    let mut c = Canvas::new((PAD + cols * cw) as u32, (TOP + rows * ch) as u32);
    let heading = if shown.len() < images.len() {
        format!(
            "misclassified: the first {} of {}",
            shown.len(),
            images.len()
        )
    } else {
        format!("misclassified: {} images", images.len())
    };
    c.text(PAD, 18, &heading, 2, INK);
    for (i, im) in shown.iter().enumerate() {
        draw_tile(&mut c, i, im, names);
    }
    c.png()
}

/// Image `i` (nearest-neighbour resampled), a thin frame, and its two caption lines.
fn draw_tile(c: &mut Canvas, i: usize, im: &MisclassifiedImage, names: &[String]) {
    let shown = shown_size(im.size);
    let (x0, y0) = tile_origin(i, shown);
    for y in 0..shown {
        for x in 0..shown {
            // The source pixel under the centre-ish of the shown one.
            let (sx, sy) = (x * im.size / shown, y * im.size / shown);
            let p = (sy * im.size + sx) * 3;
            let rgb = image::Rgb([im.rgb[p], im.rgb[p + 1], im.rgb[p + 2]]);
            c.put(x0 + x as i64, y0 + y as i64, rgb);
        }
    }
    let side = shown as i64;
    c.frame(
        Rect {
            x: x0 - 1,
            y: y0 - 1,
            w: side + 2,
            h: side + 2,
        },
        GRID,
    );
    let (cw, _) = cell_size();
    let cx = PAD + (i % COLUMNS) as i64 * cw + (cw - PAD) / 2;
    let y = y0 + side + 8;
    let truth = truncate(&names[im.label], CAPTION_CHARS - "true: ".len());
    c.text_centered(cx, y, &format!("true: {truth}"), 2, INK);
    let confidence = if im.confidence.is_finite() {
        format!(" {:.0}%", (im.confidence * 100.0).clamp(0.0, 100.0))
    } else {
        " ?%".to_string()
    };
    let room = CAPTION_CHARS - "pred: ".len() - confidence.len();
    let guess = truncate(&names[im.predicted], room);
    c.text_centered(cx, y + 22, &format!("pred: {guess}{confidence}"), 2, TEST);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["airplane", "automobile", "bird"]
            .map(String::from)
            .to_vec()
    }

    /// A `size` x `size` image whose every pixel differs from its neighbours.
    fn pattern(size: usize, seed: u8) -> MisclassifiedImage {
        let rgb = (0..size * size)
            .flat_map(|i| {
                let (x, y) = ((i % size) as u8, (i / size) as u8);
                [
                    x.wrapping_mul(7),
                    y.wrapping_mul(5),
                    seed.wrapping_add(x ^ y),
                ]
            })
            .collect();
        MisclassifiedImage {
            rgb,
            size,
            label: 1,
            predicted: 0,
            confidence: 0.973,
        }
    }

    fn decode(bytes: &[u8]) -> image::RgbImage {
        image::load_from_memory(bytes).unwrap().to_rgb8()
    }

    #[test]
    fn the_first_tile_is_the_first_image_scaled_up() {
        let images = [pattern(32, 0), pattern(32, 100), pattern(32, 200)];
        let img = decode(&misclassified_png(&images, &names()).unwrap());
        let (cw, ch) = cell_size();
        assert_eq!(img.dimensions(), ((PAD + 3 * cw) as u32, (TOP + ch) as u32));
        assert_eq!(shown_size(32), 128);
        let (x0, y0) = tile_origin(0, 128);
        for (sy, sx) in [(0, 0), (0, 31), (17, 5), (31, 31)] {
            let p = (sy * 32 + sx) * 3;
            let want = image::Rgb([images[0].rgb[p], images[0].rgb[p + 1], images[0].rgb[p + 2]]);
            for (dx, dy) in [(0, 0), (3, 3), (1, 2)] {
                let (x, y) = (x0 + 4 * sx as i64 + dx, y0 + 4 * sy as i64 + dy);
                assert_eq!(
                    img.get_pixel(x as u32, y as u32),
                    &want,
                    "source ({sx}, {sy})"
                );
            }
        }
        // The caption under it is drawn: the prediction line's colour appears below the image.
        let caption = (y0 + 128) as u32..img.height();
        assert!(img
            .enumerate_pixels()
            .any(|(x, y, p)| x < cw as u32 && caption.contains(&y) && *p == TEST));
    }

    #[test]
    fn large_images_are_shrunk_and_long_lists_capped() {
        let big = pattern(300, 9);
        let img = decode(&misclassified_png(std::slice::from_ref(&big), &names()).unwrap());
        let (x0, y0) = tile_origin(0, shown_size(300));
        let want = image::Rgb([big.rgb[0], big.rgb[1], big.rgb[2]]);
        assert_eq!(img.get_pixel(x0 as u32, y0 as u32), &want);
        let many = vec![pattern(32, 1); 100];
        let img = decode(&misclassified_png(&many, &names()).unwrap());
        let (cw, ch) = cell_size();
        assert_eq!(
            img.dimensions(),
            ((PAD + 8 * cw) as u32, (TOP + 8 * ch) as u32)
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(misclassified_png(&[], &names()).is_err());
        let mut short = pattern(32, 0);
        short.rgb.pop();
        assert!(misclassified_png(&[short], &names()).is_err());
        let mut empty = pattern(32, 0);
        (empty.size, empty.rgb) = (0, Vec::new());
        assert!(misclassified_png(&[empty], &names()).is_err());
        let mut label = pattern(8, 0);
        label.label = 3;
        assert!(misclassified_png(&[label], &names()).is_err());
        let mut predicted = pattern(8, 0);
        predicted.predicted = 7;
        assert!(misclassified_png(&[predicted], &names()).is_err());
    }
}
