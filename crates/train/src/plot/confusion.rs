//! A confusion matrix as a heat map: row = true class, column = predicted class, each cell
//! coloured by the share of its row (white = none, dark blue = all of the true class's images).
//!
//! The picture stays bounded for any number of classes: above [`MAX_CELLS`] classes, cells hold
//! blocks of `group` x `group` classes (the sums of their counts, coloured by the share of the
//! block's rows); above [`MAX_NAMED`] classes the axes show class indices instead of names; and
//! counts are written in the cells only up to [`MAX_COUNTED`] classes, where digits still fit.
use super::canvas::{fitting_scale, truncate, Canvas, Rect, INK, MUTED, WHITE};
use super::font::{self, CAP_H};
use super::ticks::nice_ticks;
use anyhow::{bail, Context, Result};
use image::Rgb;

/// Most cells per side: 200 cells of 4 pixels make an 800-pixel matrix.
pub const MAX_CELLS: usize = 200;
/// Most classes whose names are written along the axes.
pub const MAX_NAMED: usize = 100;
/// Most classes whose counts are written in the cells.
pub const MAX_COUNTED: usize = 20;
/// The colour of a cell holding its whole row.
pub const DARK: Rgb<u8> = Rgb([8, 48, 107]);
/// Longest class name written, in characters.
const NAME_CHARS: usize = 16;
/// Left edge of the rotated "true" axis name.
const AXIS_NAME_X: i64 = 16;

/// Where everything goes.
struct Layout {
    /// Classes per cell along each side (1 unless there are more than [`MAX_CELLS`] classes).
    group: usize,
    /// Cells per side.
    cells: usize,
    /// Cell side in pixels.
    cell: i64,
    /// Axis labels: (cell, text), and the scale they are written at.
    labels: Vec<(usize, String)>,
    label_scale: u32,
    /// Pixels the widest label takes.
    labels_w: i64,
    matrix: Rect,
    width: u32,
    height: u32,
}

impl Layout {
    fn new(names: &[String]) -> Layout {
        let n = names.len();
        let group = n.div_ceil(MAX_CELLS);
        let cells = n.div_ceil(group);
        let cell = match cells {
            0..=12 => 64,
            13..=20 => 52,
            // Named rows need the font's full height (9 pixels) so names do not touch.
            21..=MAX_NAMED => (800 / cells as i64).max(i64::from(font::GLYPH_H)),
            _ => (800 / cells as i64).max(4),
        };
        let (labels, label_scale): (Vec<(usize, String)>, u32) = if n <= MAX_NAMED {
            let labels = names.iter().map(|s| truncate(s, NAME_CHARS)).enumerate();
            (labels.collect(), if cell >= 20 { 2 } else { 1 })
        } else {
            // Too many to name: a few round class indices, at the cell holding each.
            let ticks = nice_ticks(0.0, (n - 1) as f64, 8).into_iter();
            let indices = ticks.map(|t| t as usize).filter(|&t| t < n);
            (indices.map(|t| (t / group, t.to_string())).collect(), 2)
        };
        let labels_w = labels
            .iter()
            .map(|(_, s)| i64::from(font::text_width(s, label_scale)))
            .max()
            .unwrap_or(0);
        let side = cells as i64 * cell;
        let axis_name_w = i64::from(font::text_height(2));
        let matrix = Rect {
            x: AXIS_NAME_X + axis_name_w + 12 + labels_w + 8,
            y: 110,
            w: side,
            h: side,
        };
        let bar_bottom = matrix.y + side.max(200);
        let below = 8 + labels_w + 12 + axis_name_w + 16;
        Layout {
            group,
            cells,
            cell,
            labels,
            label_scale,
            labels_w,
            matrix,
            width: (matrix.right() + 140).max(640) as u32,
            height: (matrix.bottom() + below).max(bar_bottom + 30) as u32,
        }
    }

    /// The pixels of cell (row, col).
    fn cell_rect(&self, row: usize, col: usize) -> Rect {
        Rect {
            x: self.matrix.x + col as i64 * self.cell,
            y: self.matrix.y + row as i64 * self.cell,
            w: self.cell,
            h: self.cell,
        }
    }
}

/// A cell's colour for `share` (0 to 1) of its row. The square root spreads small shares
/// (the few-percent mistakes worth seeing) over more of the scale than a straight ramp would.
fn heat(share: f64) -> Rgb<u8> {
    let t = share.clamp(0.0, 1.0).sqrt();
    Rgb(std::array::from_fn(|i| {
        (f64::from(WHITE.0[i]) + (f64::from(DARK.0[i]) - f64::from(WHITE.0[i])) * t).round() as u8
    }))
}

/// The PNG bytes of the confusion matrix `counts` (`names.len()` squared entries, row-major,
/// row = true class, column = predicted class) under `title`.
pub fn confusion_png(counts: &[u64], names: &[String], title: &str) -> Result<Vec<u8>> {
    let n = names.len();
    if n == 0 {
        bail!("a confusion matrix needs at least one class");
    }
    let expected = n
        .checked_mul(n)
        .with_context(|| format!("{n} classes are too many for a confusion matrix"))?;
    if counts.len() != expected {
        bail!(
            "confusion matrix: {} counts for {n} classes, expected {n} x {n} = {expected}",
            counts.len()
        );
    }
    let layout = Layout::new(names);
    let (sums, row_totals) = bin(counts, n, layout.group, layout.cells);
    let mut c = Canvas::new(layout.width, layout.height);
    draw_heading(&mut c, &layout, counts, n, title);
    draw_cells(&mut c, &layout, &sums, &row_totals, n <= MAX_COUNTED);
    draw_labels(&mut c, &layout, n > MAX_NAMED);
    draw_colour_bar(&mut c, &layout);
    c.png()
}

/// Counts summed into `cells` x `cells` blocks of `group` classes, and each block row's total.
fn bin(counts: &[u64], n: usize, group: usize, cells: usize) -> (Vec<f64>, Vec<f64>) {
    let mut sums = vec![0.0; cells * cells];
    let mut row_totals = vec![0.0; cells];
    for (t, row) in counts.chunks_exact(n).enumerate() {
        let r = t / group;
        for (p, &count) in row.iter().enumerate() {
            sums[r * cells + p / group] += count as f64;
            row_totals[r] += count as f64;
        }
    }
    (sums, row_totals)
}

/// The title and, under it, how many images the matrix holds and how many were right.
fn draw_heading(c: &mut Canvas, layout: &Layout, counts: &[u64], n: usize, title: &str) {
    let width = i64::from(layout.width);
    let room = width - 32;
    c.title(18, title);
    let total: u128 = counts.iter().map(|&v| u128::from(v)).sum();
    let right: u128 = (0..n).map(|i| u128::from(counts[i * n + i])).sum();
    let mut note = format!("{total} images");
    if total > 0 {
        note += &format!(
            ", {:.2}% on the diagonal",
            right as f64 * 100.0 / total as f64
        );
    }
    if layout.group > 1 {
        note += &format!(", {} x {} classes per cell", layout.group, layout.group);
    }
    let scale = fitting_scale(&note, room, 2).unwrap_or(1);
    c.text_centered(
        width / 2,
        58,
        &truncate(&note, (room / 6) as usize),
        scale,
        MUTED,
    );
}

/// The coloured cells, with their counts when `counted` and the cells are big enough.
fn draw_cells(c: &mut Canvas, layout: &Layout, sums: &[f64], row_totals: &[f64], counted: bool) {
    // Cells big enough to be told apart get a 1-pixel white gap on their right and bottom.
    let gap = i64::from(layout.cell >= 16);
    // One size for every count: the largest at which the widest one fits.
    let widest = sums.iter().fold(0.0, |m: f64, &s| m.max(s));
    let count_scale = counted
        .then(|| fitting_scale(&format!("{widest:.0}"), layout.cell - gap - 4, 2))
        .flatten();
    for row in 0..layout.cells {
        for col in 0..layout.cells {
            let sum = sums[row * layout.cells + col];
            let share = if row_totals[row] > 0.0 {
                sum / row_totals[row]
            } else {
                0.0
            };
            let r = layout.cell_rect(row, col);
            let colour = heat(share);
            c.fill(
                Rect {
                    w: r.w - gap,
                    h: r.h - gap,
                    ..r
                },
                colour,
            );
            if let Some(scale) = count_scale {
                let text = format!("{sum:.0}");
                let ink = if share > 0.3 { WHITE } else { INK };
                let y = r.y + (r.h - gap) / 2 - i64::from(CAP_H * scale) / 2;
                c.text_centered(r.x + (r.w - gap) / 2, y, &text, scale, ink);
            }
        }
    }
}

/// Class names (or indices) along both axes, and the axes' names.
fn draw_labels(c: &mut Canvas, layout: &Layout, indices: bool) {
    let (m, scale) = (layout.matrix, layout.label_scale);
    let cap = i64::from(CAP_H * scale);
    for (cell, label) in &layout.labels {
        let r = layout.cell_rect(*cell, *cell);
        let (cx, cy) = (r.x + layout.cell / 2, r.y + layout.cell / 2);
        c.text_right(m.x - 8, cy - cap / 2, label, scale, INK);
        // Written upwards, ending just under the matrix: long names fit narrow columns.
        let w = i64::from(font::text_width(label, scale));
        c.text_up(cx - cap / 2, m.bottom() + 8 + w, label, scale, INK);
    }
    let (true_name, predicted_name) = if indices {
        ("true class (index)", "predicted class (index)")
    } else {
        ("true", "predicted")
    };
    let w = i64::from(font::text_width(true_name, 2));
    c.text_up(AXIS_NAME_X, m.y + m.h / 2 + w / 2, true_name, 2, MUTED);
    let y = m.bottom() + 8 + layout.labels_w + 12;
    c.text_centered(m.center_x(), y, predicted_name, 2, MUTED);
}

/// The colour scale right of the matrix, labelled with shares of the row.
fn draw_colour_bar(c: &mut Canvas, layout: &Layout) {
    let m = layout.matrix;
    let bar = Rect {
        x: m.right() + 24,
        y: m.y,
        w: 20,
        h: m.h.max(200),
    };
    for y in 0..bar.h {
        let t = 1.0 - y as f64 / (bar.h - 1) as f64;
        c.fill(
            Rect {
                y: bar.y + y,
                h: 1,
                ..bar
            },
            heat(t * t),
        );
    }
    c.frame(
        Rect {
            x: bar.x - 1,
            y: bar.y - 1,
            w: bar.w + 2,
            h: bar.h + 2,
        },
        MUTED,
    );
    c.text(bar.x - 4, bar.y - 34, "% of row", 2, MUTED);
    for share in [0.0f64, 0.1, 0.25, 0.5, 1.0] {
        let y = bar.bottom() - 1 - (share.sqrt() * (bar.h - 1) as f64).round() as i64;
        c.fill(
            Rect {
                x: bar.right(),
                y,
                w: 4,
                h: 1,
            },
            MUTED,
        );
        let label = format!("{:.0}%", share * 100.0);
        c.text(bar.right() + 8, y - i64::from(CAP_H), &label, 2, INK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("class {i}")).collect()
    }

    fn decode(bytes: &[u8]) -> image::RgbImage {
        image::load_from_memory(bytes).unwrap().to_rgb8()
    }

    /// A pixel near the top-left corner of cell (row, col), clear of the count written in it.
    fn corner(img: &image::RgbImage, layout: &Layout, row: usize, col: usize) -> Rgb<u8> {
        let r = layout.cell_rect(row, col);
        *img.get_pixel(r.x as u32 + 2, r.y as u32 + 2)
    }

    #[test]
    fn a_perfect_matrix_is_dark_on_the_diagonal_and_white_elsewhere() {
        let n = 10;
        let counts: Vec<u64> = (0..n * n)
            .map(|i| if i % (n + 1) == 0 { 100 } else { 0 })
            .collect();
        let img = decode(&confusion_png(&counts, &names(n), "perfect").unwrap());
        let layout = Layout::new(&names(n));
        assert_eq!(img.dimensions(), (layout.width, layout.height));
        for i in 0..n {
            assert_eq!(corner(&img, &layout, i, i), DARK, "diagonal cell {i}");
        }
        assert_eq!(corner(&img, &layout, 3, 4), WHITE);
        assert_eq!(corner(&img, &layout, 9, 0), WHITE);
        // The count is written in the cell: white digits on the dark diagonal.
        let r = layout.cell_rect(5, 5);
        let cell = (r.x..r.right() - 1).flat_map(|x| (r.y..r.bottom() - 1).map(move |y| (x, y)));
        let white = cell.filter(|&(x, y)| *img.get_pixel(x as u32, y as u32) == WHITE);
        assert!(white.count() > 20, "no count in the diagonal cell");
    }

    #[test]
    fn cells_are_coloured_by_the_share_of_their_row() {
        // Class 0: half right, half taken for class 1; class 2 has no images at all.
        let counts = [5, 5, 0, 0, 10, 0, 0, 0, 0];
        let img = decode(&confusion_png(&counts, &names(3), "halves").unwrap());
        let layout = Layout::new(&names(3));
        assert_eq!(corner(&img, &layout, 0, 0), heat(0.5));
        assert_eq!(corner(&img, &layout, 0, 1), heat(0.5));
        assert_ne!(heat(0.5), DARK);
        assert_ne!(heat(0.5), WHITE);
        assert_eq!(corner(&img, &layout, 1, 1), DARK);
        assert_eq!(
            corner(&img, &layout, 2, 2),
            WHITE,
            "an empty row stays white"
        );
    }

    #[test]
    fn wrong_shapes_are_errors() {
        assert!(confusion_png(&[1, 2, 3], &names(2), "t").is_err());
        assert!(confusion_png(&[], &[], "t").is_err());
        assert!(confusion_png(&[7], &names(1), "t").is_ok());
    }

    #[test]
    fn the_picture_stays_bounded_for_many_classes() {
        for n in [100, 150, 1000] {
            let counts: Vec<u64> = (0..n * n).map(|i| u64::from(i % (n + 1) == 0)).collect();
            let img = decode(&confusion_png(&counts, &names(n), "many").unwrap());
            assert!(
                img.width() <= 4096 && img.height() <= 4096,
                "{n}: {:?}",
                img.dimensions()
            );
            let layout = Layout::new(&names(n));
            assert!(layout.cells <= MAX_CELLS);
            assert_eq!(
                corner(&img, &layout, 0, 0),
                DARK,
                "{n}: first diagonal cell"
            );
        }
        let layout = Layout::new(&names(100_000));
        assert_eq!((layout.group, layout.cells), (500, 200));
        assert!(layout.width <= 4096 && layout.height <= 4096);
        assert!(layout.labels.len() <= 8, "indices, not 100000 names");
    }
}
