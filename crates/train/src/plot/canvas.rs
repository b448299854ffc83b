//! A white RGB picture with the few drawing operations the plots need: filled rectangles,
//! anti-aliased lines and dots, and text in the built-in [`font`].
use super::font;
use anyhow::{Context, Result};
use image::{Rgb, RgbImage};

/// The background.
pub const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
/// Text and axes.
pub const INK: Rgb<u8> = Rgb([40, 40, 40]);
/// Secondary text: axis names, notes.
pub const MUTED: Rgb<u8> = Rgb([110, 110, 110]);
/// Grid lines and frames.
pub const GRID: Rgb<u8> = Rgb([228, 228, 228]);

/// A rectangle of pixels: left, top, width, height.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
}

impl Rect {
    pub fn right(&self) -> i64 {
        self.x + self.w
    }

    pub fn bottom(&self) -> i64 {
        self.y + self.h
    }

    pub fn center_x(&self) -> i64 {
        self.x + self.w / 2
    }

    pub fn contains(&self, x: f64, y: f64) -> bool {
        x >= self.x as f64
            && x < self.right() as f64
            && y >= self.y as f64
            && y < self.bottom() as f64
    }
}

/// A picture being drawn, with the drawing operations the plots use.
pub struct Canvas {
    /// The pixels drawn so far.
    pub img: RgbImage,
}

impl Canvas {
    /// A white picture of `width` x `height` pixels.
    pub fn new(width: u32, height: u32) -> Self {
        Canvas {
            img: RgbImage::from_pixel(width, height, WHITE),
        }
    }

    /// Sets one pixel; pixels outside the picture are ignored, so callers need not clip.
    pub fn put(&mut self, x: i64, y: i64, c: Rgb<u8>) {
        self.blend(x, y, c, 1.0);
    }

    /// Mixes `c` into a pixel with weight `alpha` (0 to 1): partly covered edge pixels get part
    /// of the colour, which is what makes lines look smooth instead of jagged.
    pub fn blend(&mut self, x: i64, y: i64, c: Rgb<u8>, alpha: f64) {
        if x < 0 || y < 0 || x >= i64::from(self.img.width()) || y >= i64::from(self.img.height()) {
            return;
        }
        let p = self.img.get_pixel_mut(x as u32, y as u32);
        for (old, new) in p.0.iter_mut().zip(c.0) {
            *old = (f64::from(*old) * (1.0 - alpha) + f64::from(new) * alpha).round() as u8;
        }
    }

    pub fn fill(&mut self, r: Rect, c: Rgb<u8>) {
        let (w, h) = (i64::from(self.img.width()), i64::from(self.img.height()));
        for y in r.y.max(0)..r.bottom().min(h) {
            for x in r.x.max(0)..r.right().min(w) {
                self.img.put_pixel(x as u32, y as u32, c);
            }
        }
    }

    /// A 1-pixel outline just inside `r`.
    pub fn frame(&mut self, r: Rect, c: Rgb<u8>) {
        self.fill(Rect { h: 1, ..r }, c);
        self.fill(
            Rect {
                y: r.bottom() - 1,
                h: 1,
                ..r
            },
            c,
        );
        self.fill(Rect { w: 1, ..r }, c);
        self.fill(
            Rect {
                x: r.right() - 1,
                w: 1,
                ..r
            },
            c,
        );
    }

    /// Paints every pixel near a shape by how much of it the shape covers: `dist(px, py)` is
    /// the distance from a pixel centre to the shape's centre line and `half` its half-width.
    fn cover(
        &mut self,
        bounds: (f64, f64, f64, f64),
        half: f64,
        c: Rgb<u8>,
        dist: impl Fn(f64, f64) -> f64,
    ) {
        let (w, h) = (f64::from(self.img.width()), f64::from(self.img.height()));
        let (x0, y0) = (
            (bounds.0 - half - 1.0).max(0.0),
            (bounds.1 - half - 1.0).max(0.0),
        );
        let (x1, y1) = (
            (bounds.2 + half + 1.0).min(w - 1.0),
            (bounds.3 + half + 1.0).min(h - 1.0),
        );
        for y in y0.floor() as i64..=y1.ceil() as i64 {
            for x in x0.floor() as i64..=x1.ceil() as i64 {
                let covered = (half + 0.5 - dist(x as f64 + 0.5, y as f64 + 0.5)).clamp(0.0, 1.0);
                if covered > 0.0 {
                    self.blend(x, y, c, covered);
                }
            }
        }
    }

    /// An anti-aliased line `width` pixels wide from `a` to `b` (pixel coordinates, where pixel
    /// (x, y) covers x..x+1, y..y+1), with round ends so joined segments meet cleanly.
    pub fn line(&mut self, a: (f64, f64), b: (f64, f64), width: f64, c: Rgb<u8>) {
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = dx * dx + dy * dy;
        let bounds = (a.0.min(b.0), a.1.min(b.1), a.0.max(b.0), a.1.max(b.1));
        self.cover(bounds, width / 2.0, c, |px, py| {
            let t = if len2 > 0.0 {
                (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0)
            } else {
                0.0
            };
            (px - a.0 - t * dx).hypot(py - a.1 - t * dy)
        });
    }

    /// An anti-aliased filled circle.
    pub fn dot(&mut self, center: (f64, f64), radius: f64, c: Rgb<u8>) {
        let bounds = (center.0, center.1, center.0, center.1);
        self.cover(bounds, radius, c, |px, py| {
            (px - center.0).hypot(py - center.1)
        });
    }

    /// Text with its top-left corner at (x, y).
    pub fn text(&mut self, x: i64, y: i64, s: &str, scale: u32, c: Rgb<u8>) {
        font::draw_text(&mut self.img, x, y, s, scale, c);
    }

    /// Text centred on `cx`.
    pub fn text_centered(&mut self, cx: i64, y: i64, s: &str, scale: u32, c: Rgb<u8>) {
        let w = i64::from(font::text_width(s, scale));
        self.text(cx - w / 2, y, s, scale, c);
    }

    /// Text ending at `right`.
    pub fn text_right(&mut self, right: i64, y: i64, s: &str, scale: u32, c: Rgb<u8>) {
        let w = i64::from(font::text_width(s, scale));
        self.text(right - w, y, s, scale, c);
    }

    /// Text reading upwards from `bottom`, glyph tops at `x` (see [`font::draw_text_up`]).
    pub fn text_up(&mut self, x: i64, bottom: i64, s: &str, scale: u32, c: Rgb<u8>) {
        font::draw_text_up(&mut self.img, x, bottom, s, scale, c);
    }

    /// A title centred across the picture from `top`: one line at scale 3 or 2 when it fits,
    /// else two lines at scale 2, split at a space, the second cut short if need be. Titles
    /// describe a run and can be long; wrapping keeps all of the start readable.
    pub fn title(&mut self, top: i64, title: &str) {
        let width = i64::from(self.img.width());
        let room = width - 32;
        let cx = width / 2;
        if let Some(scale) = fitting_scale(title, room, 3).filter(|&s| s >= 2) {
            let y = if scale == 3 { top } else { top + 8 };
            self.text_centered(cx, y, title, scale, INK);
            return;
        }
        let max_chars = (room / 12) as usize;
        let chars: Vec<char> = title.chars().collect();
        let first_end = chars[..=max_chars.min(chars.len() - 1)]
            .iter()
            .rposition(|&c| c == ' ')
            .filter(|&i| i > 0)
            .unwrap_or(max_chars);
        let first: String = chars[..first_end].iter().collect();
        let rest: String = chars[first_end..].iter().collect();
        self.text_centered(cx, top - 6, first.trim_end(), 2, INK);
        self.text_centered(
            cx,
            top + 16,
            &truncate(rest.trim_start(), max_chars),
            2,
            INK,
        );
    }

    /// The picture as PNG bytes.
    pub fn png(&self) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.img
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .context("encoding a PNG")?;
        Ok(bytes)
    }
}

/// `s` cut to at most `max` characters, ending in ".." when something was cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(2);
    s.chars().take(keep).chain("..".chars()).take(max).collect()
}

/// The largest scale (down to 1) at which `s` fits in `width` pixels, or `None`.
pub fn fitting_scale(s: &str, width: i64, max_scale: u32) -> Option<u32> {
    (1..=max_scale)
        .rev()
        .find(|&scale| i64::from(font::text_width(s, scale)) <= width)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_cover_their_middle_and_leave_the_rest() {
        let mut c = Canvas::new(40, 40);
        c.line((5.0, 20.0), (35.0, 20.0), 3.0, INK);
        assert_eq!(c.img.get_pixel(20, 19), &INK);
        assert_eq!(c.img.get_pixel(20, 30), &WHITE);
        // Off-picture shapes are clipped, not a panic.
        c.line((-100.0, -5.0), (500.0, 80.0), 2.0, INK);
        c.dot((39.5, 39.5), 4.0, INK);
        assert_eq!(c.img.get_pixel(39, 39), &INK);
    }

    #[test]
    fn names_are_truncated_with_dots() {
        assert_eq!(truncate("airplane", 8), "airplane");
        assert_eq!(truncate("automobile", 8), "automo..");
        assert_eq!(truncate("automobile", 1), ".");
        assert_eq!(fitting_scale("abc", 40, 3), Some(2));
        assert_eq!(fitting_scale("abc", 5, 3), None);
        // A long title wraps onto two lines instead of running off the picture.
        let mut c = Canvas::new(200, 60);
        c.title(10, "a title far too long for one line at any scale");
        let inked = |y: u32| (0..200).any(|x| *c.img.get_pixel(x, y) == INK);
        assert!(inked(6) && inked(28));
        c.title(10, &"x".repeat(300));
    }
}
