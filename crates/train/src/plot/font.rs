//! A hand-drawn bitmap font for every printable ASCII character (' ' to '~'), so the pictures
//! need no system fonts (a bare CI machine has none).
//!
//! Each glyph is 5 pixels wide and 9 tall: capitals and digits use the top 7 rows, lower-case
//! letters have a 5-row body (rows 2 to 6), and rows 7 and 8 hold the descenders of g, j, p, q,
//! y and the comma. Characters advance 6 pixels (one blank column between them). Text is drawn
//! at an integer scale: scale 2 turns every font pixel into a 2x2 square.
use image::{Rgb, RgbImage};
use std::sync::OnceLock;

/// Glyph width in font pixels.
pub const GLYPH_W: u32 = 5;
/// Glyph height in font pixels, descenders included.
pub const GLYPH_H: u32 = 9;
/// Height of capitals and digits: what to centre on when aligning text with a tick or a cell.
pub const CAP_H: u32 = 7;
/// Horizontal distance from one character to the next, in font pixels.
const ADVANCE: u32 = GLYPH_W + 1;

/// The font as a type sheet: each entry is a run of characters and their glyphs side by side,
/// 9 lines of 5-column glyphs separated by a space ('#' = ink, '.' = paper). Drawn for this
/// project; read once into [`table`].
const SHEET: [(&str, &str); 12] = [
    (
        " !\"#$%&'",
        "
        ..... ..#.. .#.#. .#.#. ..#.. ##... .##.. ..#..
        ..... ..#.. .#.#. .#.#. .#### ##..# #..#. ..#..
        ..... ..#.. .#.#. ##### #.#.. ...#. #.#.. ..#..
        ..... ..#.. ..... .#.#. .###. ..#.. .#... .....
        ..... ..#.. ..... ##### ..#.# .#... #.#.# .....
        ..... ..... ..... .#.#. ####. #..## #..#. .....
        ..... ..#.. ..... .#.#. ..#.. ...## .##.# .....
        ..... ..... ..... ..... ..... ..... ..... .....
        ..... ..... ..... ..... ..... ..... ..... .....
        ",
    ),
    (
        "()*+,-./",
        "
        ...#. .#... ..... ..... ..... ..... ..... ....#
        ..#.. ..#.. ..#.. ..#.. ..... ..... ..... ....#
        .#... ...#. #.#.# ..#.. ..... ..... ..... ...#.
        .#... ...#. .###. ##### ..... .###. ..... ..#..
        .#... ...#. #.#.# ..#.. ..... ..... ..... .#...
        ..#.. ..#.. ..#.. ..#.. .##.. ..... .##.. #....
        ...#. .#... ..... ..... .##.. ..... .##.. #....
        ..... ..... ..... ..... ..#.. ..... ..... .....
        ..... ..... ..... ..... .#... ..... ..... .....
        ",
    ),
    (
        "01234567",
        "
        .###. ..#.. .###. ##### ...#. ##### ..##. #####
        #...# .##.. #...# ...#. ..##. #.... .#... ....#
        #..## ..#.. ....# ..#.. .#.#. ####. #.... ...#.
        #.#.# ..#.. ...#. ...#. #..#. ....# ####. ..#..
        ##..# ..#.. ..#.. ....# ##### ....# #...# .#...
        #...# ..#.. .#... #...# ...#. #...# #...# .#...
        .###. .###. ##### .###. ...#. .###. .###. .#...
        ..... ..... ..... ..... ..... ..... ..... .....
        ..... ..... ..... ..... ..... ..... ..... .....
        ",
    ),
    (
        "89:;<=>?",
        "
        .###. .###. ..... ..... ...#. ..... .#... .###.
        #...# #...# .##.. .##.. ..#.. ..... ..#.. #...#
        #...# #...# .##.. .##.. .#... ##### ...#. ....#
        .###. .#### ..... ..... #.... ..... ....# ...#.
        #...# ....# .##.. .##.. .#... ##### ...#. ..#..
        #...# ...#. .##.. .##.. ..#.. ..... ..#.. .....
        .###. .##.. ..... ..#.. ...#. ..... .#... ..#..
        ..... ..... ..... .#... ..... ..... ..... .....
        ..... ..... ..... ..... ..... ..... ..... .....
        ",
    ),
    (
        "@ABCDEFG",
        "
        .###. .###. ####. .###. ###.. ##### ##### .###.
        #...# #...# #...# #...# #..#. #.... #.... #...#
        #.### #...# #...# #.... #...# #.... #.... #....
        #.#.# ##### ####. #.... #...# ####. ####. #.###
        #.### #...# #...# #.... #...# #.... #.... #...#
        #.... #...# #...# #...# #..#. #.... #.... #...#
        .###. #...# ####. .###. ###.. ##### #.... .####
        ..... ..... ..... ..... ..... ..... ..... .....
        ..... ..... ..... ..... ..... ..... ..... .....
        ",
    ),
    (
        "HIJKLMNO",
        "
        #...# .###. ..### #...# #.... #...# #...# .###.
        #...# ..#.. ...#. #..#. #.... ##.## ##..# #...#
        #...# ..#.. ...#. #.#.. #.... #.#.# ##..# #...#
        ##### ..#.. ...#. ##... #.... #.#.# #.#.# #...#
        #...# ..#.. ...#. #.#.. #.... #...# #..## #...#
        #...# ..#.. #..#. #..#. #.... #...# #..## #...#
        #...# .###. .##.. #...# ##### #...# #...# .###.
        ..... ..... ..... ..... ..... ..... ..... .....
        ..... ..... ..... ..... ..... ..... ..... .....
        ",
    ),
    (
        "PQRSTUVW",
        "
        ####. .###. ####. .#### ##### #...# #...# #...#
        #...# #...# #...# #.... ..#.. #...# #...# #...#
        #...# #...# #...# #.... ..#.. #...# #...# #...#
        ####. #...# ####. .###. ..#.. #...# #...# #.#.#
        #.... #.#.# #.#.. ....# ..#.. #...# #...# #.#.#
        #.... #..#. #..#. ....# ..#.. #...# .#.#. #.#.#
        #.... .##.# #...# ####. ..#.. .###. ..#.. .#.#.
        ..... ..... ..... ..... ..... ..... ..... .....
        ..... ..... ..... ..... ..... ..... ..... .....
        ",
    ),
    (
        "XYZ[\\]^_",
        "
        #...# #...# ##### .###. #.... .###. ..#.. .....
        #...# #...# ....# .#... #.... ...#. .#.#. .....
        .#.#. .#.#. ...#. .#... .#... ...#. #...# .....
        ..#.. ..#.. ..#.. .#... ..#.. ...#. ..... .....
        .#.#. ..#.. .#... .#... ...#. ...#. ..... .....
        #...# ..#.. #.... .#... ....# ...#. ..... .....
        #...# ..#.. ##### .###. ....# .###. ..... .....
        ..... ..... ..... ..... ..... ..... ..... #####
        ..... ..... ..... ..... ..... ..... ..... .....
        ",
    ),
    (
        "`abcdefg",
        "
        .#... ..... #.... ..... ....# ..... ..##. .....
        ..#.. ..... #.... ..... ....# ..... .#..# .....
        ...#. .###. #.##. .###. .##.# .###. .#... .####
        ..... ....# ##..# #.... #..## #...# ###.. #...#
        ..... .#### #...# #.... #...# ##### .#... #...#
        ..... #...# #...# #...# #...# #.... .#... #...#
        ..... .#### ####. .###. .#### .###. .#... .####
        ..... ..... ..... ..... ..... ..... ..... ....#
        ..... ..... ..... ..... ..... ..... ..... .###.
        ",
    ),
    (
        "hijklmno",
        "
        #.... ..#.. ...#. #.... .##.. ..... ..... .....
        #.... ..... ..... #.... ..#.. ..... ..... .....
        #.##. .##.. ..##. #..#. ..#.. ##.#. #.##. .###.
        ##..# ..#.. ...#. #.#.. ..#.. #.#.# ##..# #...#
        #...# ..#.. ...#. ##... ..#.. #.#.# #...# #...#
        #...# ..#.. ...#. #.#.. ..#.. #.#.# #...# #...#
        #...# .###. ...#. #..#. .###. #.#.# #...# .###.
        ..... ..... #..#. ..... ..... ..... ..... .....
        ..... ..... .##.. ..... ..... ..... ..... .....
        ",
    ),
    (
        "pqrstuvw",
        "
        ..... ..... ..... ..... .#... ..... ..... .....
        ..... ..... ..... ..... .#... ..... ..... .....
        ####. .#### #.##. .#### ####. #...# #...# #...#
        #...# #...# ##..# #.... .#... #...# #...# #...#
        #...# #...# #.... .###. .#... #...# #...# #.#.#
        #...# #...# #.... ....# .#..# #..## .#.#. #.#.#
        ####. .#### #.... ####. ..##. .##.# ..#.. .#.#.
        #.... ....# ..... ..... ..... ..... ..... .....
        #.... ....# ..... ..... ..... ..... ..... .....
        ",
    ),
    (
        "xyz{|}~",
        "
        ..... ..... ..... ...## ..#.. ##... .....
        ..... ..... ..... ..#.. ..#.. ..#.. .....
        #...# #...# ##### ..#.. ..#.. ..#.. .#...
        .#.#. #...# ...#. .#... ..#.. ...#. #.#.#
        ..#.. #...# ..#.. ..#.. ..#.. ..#.. ...#.
        .#.#. #...# .#... ..#.. ..#.. ..#.. .....
        #...# .#### ##### ...## ..#.. ##... .....
        ..... ....# ..... ..... ..#.. ..... .....
        ..... .###. ..... ..... ..... ..... .....
        ",
    ),
];

/// One glyph: 9 rows, each a 5-bit mask whose bit 4 is the leftmost column.
pub type Glyph = [u8; GLYPH_H as usize];

/// The 95 glyphs of ' '..='~', indexed by `c as usize - 32`, read from [`SHEET`] on first use.
fn table() -> &'static [Glyph; 95] {
    static TABLE: OnceLock<[Glyph; 95]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut table = [[0u8; GLYPH_H as usize]; 95];
        for (chars, art) in SHEET {
            let lines: Vec<&str> = art
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            assert_eq!(
                lines.len(),
                GLYPH_H as usize,
                "font sheet {chars:?}: row count"
            );
            for (row, line) in lines.iter().enumerate() {
                let cells = line.as_bytes();
                assert_eq!(
                    cells.len(),
                    chars.len() * 6 - 1,
                    "font sheet {chars:?}: {line}"
                );
                for (i, c) in chars.bytes().enumerate() {
                    let bits = &cells[i * 6..i * 6 + 5];
                    table[usize::from(c - b' ')][row] = bits
                        .iter()
                        .fold(0, |acc, &b| acc << 1 | u8::from(b == b'#'));
                }
            }
        }
        table
    })
}

/// The glyph of a printable ASCII character; `None` for anything else.
pub fn glyph(c: char) -> Option<Glyph> {
    (' '..='~').contains(&c).then(|| table()[c as usize - 32])
}

/// What is drawn for `c`: its glyph, or '?' for characters the font lacks.
fn glyph_or_mark(c: char) -> Glyph {
    glyph(c).unwrap_or_else(|| table()[usize::from(b'?' - b' ')])
}

/// Width in pixels of `text` drawn at `scale` (no trailing gap after the last character).
pub fn text_width(text: &str, scale: u32) -> u32 {
    let n = text.chars().count() as u32;
    (n * ADVANCE).saturating_sub(1) * scale
}

/// Height in pixels of a line of text at `scale`, descenders included.
pub const fn text_height(scale: u32) -> u32 {
    GLYPH_H * scale
}

/// Calls `ink(u, v)` for the top-left corner of every inked `scale`x`scale` square of `text`,
/// in text coordinates: `u` along the line, `v` down from the top of the line.
fn for_each_square(text: &str, scale: u32, mut ink: impl FnMut(i64, i64)) {
    let s = i64::from(scale);
    for (i, c) in text.chars().enumerate() {
        let left = i as i64 * i64::from(ADVANCE) * s;
        for (row, bits) in glyph_or_mark(c).iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits >> (GLYPH_W - 1 - col) & 1 == 1 {
                    ink(left + i64::from(col) * s, row as i64 * s);
                }
            }
        }
    }
}

/// Fills a square, clipped to the image.
fn square(img: &mut RgbImage, x: i64, y: i64, size: u32, color: Rgb<u8>) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    for py in y.max(0)..(y + i64::from(size)).min(h) {
        for px in x.max(0)..(x + i64::from(size)).min(w) {
            img.put_pixel(px as u32, py as u32, color);
        }
    }
}

/// Draws `text` with the top-left corner of its first glyph at (x, y); clipped to the image.
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: u32, color: Rgb<u8>) {
    for_each_square(text, scale, |u, v| square(img, x + u, y + v, scale, color));
}

/// Draws `text` turned a quarter turn anticlockwise, reading upwards (like a y-axis label):
/// the line starts at `bottom` and the tops of the glyphs face left, towards `x`.
pub fn draw_text_up(
    img: &mut RgbImage,
    x: i64,
    bottom: i64,
    text: &str,
    scale: u32,
    color: Rgb<u8>,
) {
    let s = i64::from(scale);
    for_each_square(text, scale, |u, v| {
        square(img, x + v, bottom - u - s, scale, color);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_printable_character_has_a_glyph() {
        for c in ' '..='~' {
            let g = glyph(c).unwrap_or_else(|| panic!("no glyph for {c:?}"));
            assert_eq!(g.iter().any(|&row| row != 0), c != ' ', "ink of {c:?}");
            assert!(g.iter().all(|&row| row < 1 << GLYPH_W), "{c:?} is too wide");
        }
        assert!(glyph('\n').is_none() && glyph('é').is_none());
    }

    #[test]
    fn letters_and_digits_are_all_different() {
        let alnum: Vec<char> = (' '..='~').filter(char::is_ascii_alphanumeric).collect();
        assert_eq!(alnum.len(), 62);
        for (i, &a) in alnum.iter().enumerate() {
            for &b in &alnum[i + 1..] {
                assert_ne!(glyph(a), glyph(b), "{a:?} and {b:?} look the same");
            }
        }
    }

    #[test]
    fn text_is_measured_and_drawn_at_scale() {
        assert_eq!(text_width("", 2), 0);
        assert_eq!(text_width("ab", 1), 11);
        assert_eq!(text_width("ab", 3), 33);
        let mut img = RgbImage::from_pixel(40, 20, Rgb([255, 255, 255]));
        draw_text(&mut img, 1, 1, "l", 2, Rgb([0, 0, 0]));
        // 'l' starts with ".##.." on row 0: font column 1 is the 2x2 square at x 3..5, y 1..3.
        assert_eq!(img.get_pixel(3, 1), &Rgb([0, 0, 0]));
        assert_eq!(img.get_pixel(4, 2), &Rgb([0, 0, 0]));
        assert_eq!(img.get_pixel(1, 1), &Rgb([255, 255, 255]));
        // Clipping: text running off the image is cut, not a panic.
        draw_text(&mut img, 30, 15, "WWW", 3, Rgb([0, 0, 0]));
        draw_text_up(&mut img, -5, 100, "WWW", 3, Rgb([0, 0, 0]));
    }
}
