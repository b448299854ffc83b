//! `curves.png`: training and test loss, and top-1 accuracy, against the epoch — drawn with the
//! `image` crate and a tiny built-in bitmap font (no system fonts needed, so it works on a
//! bare CI machine).
use crate::metrics::EpochMetrics;
use anyhow::{Context, Result};
use image::{Rgb, RgbImage};
use senet_nn::checkpoint::write_atomically;
use std::path::Path;

const W: u32 = 1000;
const H: u32 = 400;
const TRAIN: Rgb<u8> = Rgb([31, 119, 180]);
const TEST: Rgb<u8> = Rgb([214, 39, 40]);
const INK: Rgb<u8> = Rgb([40, 40, 40]);
const GRID: Rgb<u8> = Rgb([225, 225, 225]);

/// 5x7 glyphs, one string of 7 rows of 5 columns each ('#' = ink).
fn glyph(c: char) -> Option<[&'static str; 7]> {
    Some(match c {
        '0' => [
            " ### ", "#   #", "#  ##", "# # #", "##  #", "#   #", " ### ",
        ],
        '1' => [
            "  #  ", " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### ",
        ],
        '2' => [
            " ### ", "#   #", "    #", "   # ", "  #  ", " #   ", "#####",
        ],
        '3' => [
            "#####", "   # ", "  #  ", "   # ", "    #", "#   #", " ### ",
        ],
        '4' => [
            "   # ", "  ## ", " # # ", "#  # ", "#####", "   # ", "   # ",
        ],
        '5' => [
            "#####", "#    ", "#### ", "    #", "    #", "#   #", " ### ",
        ],
        '6' => [
            "  ## ", " #   ", "#    ", "#### ", "#   #", "#   #", " ### ",
        ],
        '7' => [
            "#####", "    #", "   # ", "  #  ", " #   ", " #   ", " #   ",
        ],
        '8' => [
            " ### ", "#   #", "#   #", " ### ", "#   #", "#   #", " ### ",
        ],
        '9' => [
            " ### ", "#   #", "#   #", " ####", "    #", "   # ", " ##  ",
        ],
        '.' => [
            "     ", "     ", "     ", "     ", "     ", " ##  ", " ##  ",
        ],
        '-' => [
            "     ", "     ", "     ", " ### ", "     ", "     ", "     ",
        ],
        '%' => [
            "##   ", "##  #", "   # ", "  #  ", " #   ", "#  ##", "   ##",
        ],
        '(' => [
            "   # ", "  #  ", " #   ", " #   ", " #   ", "  #  ", "   # ",
        ],
        ')' => [
            " #   ", "  #  ", "   # ", "   # ", "   # ", "  #  ", " #   ",
        ],
        'a' => [
            "     ", "     ", " ### ", "    #", " ####", "#   #", " ####",
        ],
        'c' => [
            "     ", "     ", " ### ", "#    ", "#    ", "#   #", " ### ",
        ],
        'e' => [
            "     ", "     ", " ### ", "#   #", "#####", "#    ", " ### ",
        ],
        'h' => [
            "#    ", "#    ", "# ## ", "##  #", "#   #", "#   #", "#   #",
        ],
        'i' => [
            "  #  ", "     ", " ##  ", "  #  ", "  #  ", "  #  ", " ### ",
        ],
        'l' => [
            " ##  ", "  #  ", "  #  ", "  #  ", "  #  ", "  #  ", " ### ",
        ],
        'n' => [
            "     ", "     ", "# ## ", "##  #", "#   #", "#   #", "#   #",
        ],
        'o' => [
            "     ", "     ", " ### ", "#   #", "#   #", "#   #", " ### ",
        ],
        'p' => [
            "     ", "     ", "#### ", "#   #", "#### ", "#    ", "#    ",
        ],
        'r' => [
            "     ", "     ", "# ## ", "##  #", "#    ", "#    ", "#    ",
        ],
        's' => [
            "     ", "     ", " ####", "#    ", " ### ", "    #", "#### ",
        ],
        't' => [
            " #   ", " #   ", "#### ", " #   ", " #   ", " #  #", "  ## ",
        ],
        'u' => [
            "     ", "     ", "#   #", "#   #", "#   #", "#  ##", " ## #",
        ],
        'y' => [
            "     ", "     ", "#   #", "#   #", " ####", "    #", " ### ",
        ],
        _ => return None,
    })
}

/// Draws `text` with its top-left corner at (x, y), at scale 2.
fn text(img: &mut RgbImage, x: i64, y: i64, text: &str, color: Rgb<u8>) {
    for (i, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        for (r, row) in rows.iter().enumerate() {
            for (col, ch) in row.chars().enumerate() {
                if ch == '#' {
                    for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                        put(
                            img,
                            x + i as i64 * 12 + col as i64 * 2 + dx,
                            y + r as i64 * 2 + dy,
                            color,
                        );
                    }
                }
            }
        }
    }
}

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u32) < img.width() && (y as u32) < img.height() {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// A 2-pixel-wide line (Bresenham).
fn line(img: &mut RgbImage, (x0, y0): (i64, i64), (x1, y1): (i64, i64), c: Rgb<u8>) {
    let (dx, dy) = ((x1 - x0).abs(), -(y1 - y0).abs());
    let (sx, sy) = (if x0 < x1 { 1 } else { -1 }, if y0 < y1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (x0, y0, dx + dy);
    loop {
        put(img, x, y, c);
        put(img, x, y + 1, c);
        if x == x1 && y == y1 {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// One panel: two series against the epoch, with y ticks, a title and a legend.
fn panel(img: &mut RgbImage, left: i64, title: &str, epochs: &[f64], series: [&[f64]; 2]) {
    let (top, width, height) = (40i64, 380i64, 300i64);
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    let (mut lo, mut hi) = all
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    if all.is_empty() {
        (lo, hi) = (0.0, 1.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.05;
    let (lo, hi) = (lo - pad, hi + pad);
    let max_epoch = epochs.last().copied().unwrap_or(1.0).max(1.0);
    let px = |e: f64| left + ((e / max_epoch) * width as f64).round() as i64;
    let py = |v: f64| top + height - (((v - lo) / (hi - lo)) * height as f64).round() as i64;
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let y = py(v);
        line(img, (left, y), (left + width, y), GRID);
        text(img, left - 70, y - 7, &format!("{v:.2}"), INK);
    }
    line(img, (left, top), (left, top + height), INK);
    line(img, (left, top + height), (left + width, top + height), INK);
    let step = (max_epoch / 5.0).ceil().max(1.0);
    let mut e = 0.0;
    while e <= max_epoch {
        text(img, px(e) - 6, top + height + 8, &format!("{e}"), INK);
        e += step;
    }
    text(img, left + width / 2 - 30, top + height + 30, "epoch", INK);
    text(img, left, 10, title, INK);
    for (s, color) in series.iter().zip([TRAIN, TEST]) {
        let pts: Vec<(i64, i64)> = epochs
            .iter()
            .zip(s.iter())
            .filter(|(_, v)| v.is_finite())
            .map(|(&e, &v)| (px(e), py(v)))
            .collect();
        for w in pts.windows(2) {
            line(img, w[0], w[1], color);
        }
        for &(x, y) in &pts {
            for d in -2..=2 {
                put(img, x + d, y, color);
                put(img, x, y + d, color);
            }
        }
    }
    text(img, left + width - 130, 10, "train", TRAIN);
    text(img, left + width - 60, 10, "test", TEST);
}

/// Writes the loss and top-1 curves of `rows` to `path` (PNG, atomically).
pub fn curves(rows: &[EpochMetrics], path: &Path) -> Result<()> {
    let bytes = curves_png(rows)?;
    write_atomically(path, &bytes).with_context(|| format!("writing {}", path.display()))
}

/// The PNG bytes of [`curves`].
pub fn curves_png(rows: &[EpochMetrics]) -> Result<Vec<u8>> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let epochs: Vec<f64> = rows.iter().map(|r| r.epoch as f64).collect();
    let col = |f: fn(&EpochMetrics) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
    panel(
        &mut img,
        80,
        "loss",
        &epochs,
        [&col(|r| r.train_loss), &col(|r| r.test_loss)],
    );
    panel(
        &mut img,
        590,
        "top-1 accuracy (%)",
        &epochs,
        [&col(|r| r.train_top1), &col(|r| r.test_top1)],
    );
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("encoding curves.png")?;
    Ok(bytes)
}
