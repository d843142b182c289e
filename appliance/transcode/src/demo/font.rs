//! A 5x7 bitmap font with just the characters the demo burns in: digits, `:`, `.`, space and
//! the letters of "CORECAST DEMO", "FRAME" and "UTC". Our own, so the demo needs no font file
//! and no text library.

/// Width and height of a glyph in font pixels; a character cell adds one column and one row
/// of spacing.
pub(crate) const GLYPH_WIDTH: usize = 5;
pub(crate) const GLYPH_HEIGHT: usize = 7;
pub(crate) const CELL_WIDTH: usize = GLYPH_WIDTH + 1;
pub(crate) const CELL_HEIGHT: usize = GLYPH_HEIGHT + 1;

/// The rows of `c`'s glyph, top first; bit 4 is the leftmost pixel. `None` for characters the
/// font does not have (they are drawn as blanks).
pub(crate) fn glyph(c: u8) -> Option<[u8; GLYPH_HEIGHT]> {
    let rows = match c {
        b'0' => [
            0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110,
        ],
        b'1' => [
            0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110,
        ],
        b'2' => [
            0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111,
        ],
        b'3' => [
            0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110,
        ],
        b'4' => [
            0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010,
        ],
        b'5' => [
            0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110,
        ],
        b'6' => [
            0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110,
        ],
        b'7' => [
            0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000,
        ],
        b'8' => [
            0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110,
        ],
        b'9' => [
            0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100,
        ],
        b':' => [
            0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000,
        ],
        b'.' => [
            0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100,
        ],
        b' ' => [0; GLYPH_HEIGHT],
        b'A' => [
            0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001,
        ],
        b'C' => [
            0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110,
        ],
        b'D' => [
            0b11100, 0b10010, 0b10001, 0b10001, 0b10001, 0b10010, 0b11100,
        ],
        b'E' => [
            0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111,
        ],
        b'F' => [
            0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000,
        ],
        b'M' => [
            0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001,
        ],
        b'O' => [
            0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110,
        ],
        b'R' => [
            0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001,
        ],
        b'S' => [
            0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110,
        ],
        b'T' => [
            0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100,
        ],
        b'U' => [
            0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110,
        ],
        _ => return None,
    };
    Some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_character_the_demo_writes_has_a_distinct_glyph() {
        let used = b"0123456789:. ACDEFMORSTU";
        let glyphs: Vec<_> = used.iter().map(|&c| glyph(c).expect("glyph")).collect();
        for (i, a) in glyphs.iter().enumerate() {
            assert!(a.iter().all(|row| *row < 1 << GLYPH_WIDTH));
            for b in &glyphs[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(glyph(b'x'), None);
    }
}
