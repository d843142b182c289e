//! The demo picture: 75% colour bars, a scrolling grey ramp, a bouncing box, a flash square
//! that lights with each audio beep, and burnt-in text (title, UTC wall clock, frame counter).
//!
//! Cheap by construction: the static part (bars, black text area) is drawn once into a
//! background picture and copied in with three `memcpy`s per frame; the ramp is one precomputed
//! row copied at a moving offset; boxes and text touch only their own pixels. Nothing allocates
//! after `TestPattern::new`.

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use media::encode::RawVideoFrame;

#[cfg(test)]
use super::font::GLYPH_HEIGHT;
use super::font::{CELL_HEIGHT, CELL_WIDTH, GLYPH_WIDTH, glyph};

/// One colour as BT.601 limited-range Y, Cb, Cr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Yuv(pub u8, pub u8, pub u8);

const BLACK: Yuv = Yuv(16, 128, 128);
const WHITE: Yuv = Yuv(235, 128, 128);
const DARK_GREY: Yuv = Yuv(48, 128, 128);
/// SMPTE 75% bars, left to right: white, yellow, cyan, green, magenta, red, blue (ITU-R BT.801
/// values for 8-bit BT.601).
const BARS: [Yuv; 7] = [
    Yuv(180, 128, 128),
    Yuv(162, 44, 142),
    Yuv(131, 156, 44),
    Yuv(112, 72, 58),
    Yuv(84, 184, 198),
    Yuv(65, 100, 212),
    Yuv(35, 212, 114),
];
/// How long the flash square stays lit at the start of each second (the audio beep's length).
pub(crate) const FLASH: Duration = Duration::from_millis(100);
/// The bouncing box crosses the picture and comes back in this time.
const BOX_PERIOD_FRAMES_PER_FPS: u64 = 4;

/// A planar I420 picture with tightly packed rows (stride = width).
#[derive(Debug, Clone)]
pub(crate) struct I420Picture {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl I420Picture {
    pub fn new(width: usize, height: usize, colour: Yuv) -> Self {
        let chroma = width.div_ceil(2) * height.div_ceil(2);
        I420Picture {
            width,
            height,
            y: vec![colour.0; width * height],
            u: vec![colour.1; chroma],
            v: vec![colour.2; chroma],
        }
    }

    fn chroma_width(&self) -> usize {
        self.width.div_ceil(2)
    }

    /// Fills a rectangle, clipped to the picture. Chroma covers every 2x2 block the rectangle
    /// touches, so use even coordinates for crisp colour edges.
    pub fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, colour: Yuv) {
        let (x_end, y_end) = ((x + w).min(self.width), (y + h).min(self.height));
        if x >= x_end || y >= y_end {
            return;
        }
        for row in y..y_end {
            self.y[row * self.width + x..row * self.width + x_end].fill(colour.0);
        }
        let cw = self.chroma_width();
        for row in y / 2..y_end.div_ceil(2) {
            let span = row * cw + x / 2..row * cw + x_end.div_ceil(2);
            self.u[span.clone()].fill(colour.1);
            self.v[span].fill(colour.2);
        }
    }

    /// Draws `text` with its top-left corner at (x, y), each font pixel `scale` pixels square,
    /// in luma only (the text sits on a neutral background). Clipped to the picture.
    pub fn draw_text(&mut self, x: usize, y: usize, scale: usize, text: &[u8], luma: u8) {
        for (index, &c) in text.iter().enumerate() {
            let Some(rows) = glyph(c) else { continue };
            let cell_x = x + index * CELL_WIDTH * scale;
            for (gy, bits) in rows.iter().enumerate() {
                for gx in 0..GLYPH_WIDTH {
                    if bits & (1 << (GLYPH_WIDTH - 1 - gx)) != 0 {
                        self.fill_luma(cell_x + gx * scale, y + gy * scale, scale, luma);
                    }
                }
            }
        }
    }

    fn fill_luma(&mut self, x: usize, y: usize, size: usize, luma: u8) {
        let (x_end, y_end) = ((x + size).min(self.width), (y + size).min(self.height));
        for row in y.min(y_end)..y_end {
            self.y[row * self.width + x.min(x_end)..row * self.width + x_end].fill(luma);
        }
    }

    /// Copies `other`, which has the same size, into this picture without reallocating.
    pub fn copy_from(&mut self, other: &I420Picture) {
        self.y.copy_from_slice(&other.y);
        self.u.copy_from_slice(&other.u);
        self.v.copy_from_slice(&other.v);
    }

    pub fn as_raw_frame(&self, pts: i64) -> RawVideoFrame<'_> {
        RawVideoFrame {
            width: self.width as u32,
            height: self.height as u32,
            pts,
            planes: [&self.y, &self.u, &self.v],
            strides: [self.width, self.chroma_width(), self.chroma_width()],
        }
    }
}

/// Where things go, in pixels, worked out once from the picture size.
#[derive(Debug, Clone, Copy)]
struct Layout {
    bars_height: usize,
    ramp_top: usize,
    ramp_height: usize,
    text_top: usize,
    margin: usize,
    small_scale: usize,
    clock_scale: usize,
    box_size: usize,
    flash_size: usize,
}

impl Layout {
    fn new(width: usize, height: usize) -> Self {
        let even = |v: usize| v & !1;
        let bars_height = even(height * 2 / 3);
        let ramp_height = even(height / 9).max(2);
        let margin = even((height / 45).min(width / 16)).max(2);
        let small_scale = (height / 180).max(1);
        // The clock is the widest line: 16 cells must fit beside the flash square.
        let clock_scale = (height / 120).max(1).min(width / (CELL_WIDTH * 20)).max(1);
        Layout {
            bars_height,
            ramp_top: bars_height,
            ramp_height,
            text_top: bars_height + ramp_height + margin,
            margin,
            small_scale,
            clock_scale,
            box_size: even((height / 6).min(width / 2)).max(2),
            flash_size: even((height / 8).min(width / 4)).max(2),
        }
    }
}

/// Renders demo pictures into one reused buffer.
#[derive(Debug)]
pub(crate) struct TestPattern {
    fps: u32,
    layout: Layout,
    background: I420Picture,
    picture: I420Picture,
    /// A grey ramp twice the picture width; each frame shows a window of it at a moving offset.
    ramp_row: Vec<u8>,
    /// Scratch for the text lines.
    text: [u8; 32],
}

impl TestPattern {
    /// `width` and `height` must be even and at least 16 (checked by the demo config).
    pub fn new(width: usize, height: usize, fps: u32) -> Self {
        let layout = Layout::new(width, height);
        let mut background = I420Picture::new(width, height, BLACK);
        for (index, colour) in BARS.iter().enumerate() {
            let x0 = (width * index / BARS.len()) & !1;
            let x1 = (width * (index + 1) / BARS.len()) & !1;
            background.fill_rect(x0, 0, x1 - x0, layout.bars_height, *colour);
        }
        let ramp_row = (0..2 * width)
            .map(|x| (16 + (x % width) * 219 / width) as u8)
            .collect();
        TestPattern {
            fps,
            layout,
            picture: background.clone(),
            background,
            ramp_row,
            text: [0; 32],
        }
    }

    /// Draws frame `index`; `wall_clock` is the UTC time burnt in.
    pub fn render(&mut self, index: u64, wall_clock: SystemTime) -> &I420Picture {
        let (width, fps) = (self.picture.width, u64::from(self.fps));
        let l = self.layout;
        self.picture.copy_from(&self.background);

        // Ramp scrolling left by one picture width every 4 s.
        let offset = ((index * width as u64 / (4 * fps)) % width as u64) as usize;
        for row in l.ramp_top..l.ramp_top + l.ramp_height {
            let start = row * width;
            self.picture.y[start..start + width]
                .copy_from_slice(&self.ramp_row[offset..offset + width]);
        }

        // A white box bouncing across the bars.
        let period = BOX_PERIOD_FRAMES_PER_FPS * fps;
        let phase = index % period;
        let travel = (width - l.box_size) as u64;
        let half = period / 2;
        let along = if phase < half { phase } else { period - phase };
        let box_x = ((along * travel / half.max(1)) as usize) & !1;
        let box_y = ((l.bars_height - l.box_size) / 2) & !1;
        self.picture
            .fill_rect(box_x, box_y, l.box_size, l.box_size, WHITE);

        // Flash square, lit while the audio beeps (the first 100 ms of every second).
        let into_second = Duration::from_nanos((index % fps) * 1_000_000_000 / fps);
        let flash = if into_second < FLASH {
            WHITE
        } else {
            DARK_GREY
        };
        let flash_x = width.saturating_sub(l.margin + l.flash_size) & !1;
        self.picture
            .fill_rect(flash_x, l.text_top, l.flash_size, l.flash_size, flash);

        // Text: title, clock, counter.
        let since_epoch = wall_clock.duration_since(UNIX_EPOCH).unwrap_or_default();
        let day_ms = since_epoch.as_millis() % 86_400_000;
        let (h, m, s, ms) = (
            day_ms / 3_600_000,
            day_ms / 60_000 % 60,
            day_ms / 1000 % 60,
            day_ms % 1000,
        );
        let mut y = l.text_top;
        self.draw_line(l.margin, y, l.small_scale, format_args!("CORECAST DEMO"));
        y += CELL_HEIGHT * l.small_scale + l.margin;
        self.draw_line(
            l.margin,
            y,
            l.clock_scale,
            format_args!("{h:02}:{m:02}:{s:02}.{ms:03} UTC"),
        );
        y += CELL_HEIGHT * l.clock_scale + l.margin;
        self.draw_line(l.margin, y, l.small_scale, format_args!("FRAME {index:08}"));
        &self.picture
    }

    fn draw_line(&mut self, x: usize, y: usize, scale: usize, args: std::fmt::Arguments<'_>) {
        let capacity = self.text.len();
        let mut cursor = &mut self.text[..];
        // A line longer than the scratch is cut short; ours are at most 16 characters.
        let _ = cursor.write_fmt(args);
        let len = capacity - cursor.len();
        let text = self.text;
        self.picture.draw_text(x, y, scale, &text[..len], 235);
    }

    /// The rectangle (x, y, w, h) holding the frame counter's digits, for tests.
    #[cfg(test)]
    pub fn counter_rect(&self) -> (usize, usize, usize, usize) {
        let l = self.layout;
        let y = l.text_top
            + CELL_HEIGHT * l.small_scale
            + l.margin
            + CELL_HEIGHT * l.clock_scale
            + l.margin;
        let x = l.margin + 6 * CELL_WIDTH * l.small_scale;
        (
            x,
            y,
            8 * CELL_WIDTH * l.small_scale,
            GLYPH_HEIGHT * l.small_scale,
        )
    }

    /// The rectangle (x, y, w, h) holding the clock's digits, for tests.
    #[cfg(test)]
    pub fn clock_rect(&self) -> (usize, usize, usize, usize) {
        let l = self.layout;
        let y = l.text_top + CELL_HEIGHT * l.small_scale + l.margin;
        (
            l.margin,
            y,
            12 * CELL_WIDTH * l.clock_scale,
            GLYPH_HEIGHT * l.clock_scale,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luma_of(picture: &I420Picture, (x, y, w, h): (usize, usize, usize, usize)) -> Vec<u8> {
        (y..y + h)
            .flat_map(|row| {
                picture.y[row * picture.width + x..row * picture.width + x + w].to_vec()
            })
            .collect()
    }

    #[test]
    fn counter_and_clock_regions_change_with_frame_and_time() {
        let mut pattern = TestPattern::new(640, 360, 30);
        let t0 = UNIX_EPOCH + Duration::from_millis(45_296_789); // 12:34:56.789
        let frame1 = pattern.render(1, t0).clone();
        let frame2 = pattern.render(2, t0).clone();
        let later = pattern.render(2, t0 + Duration::from_secs(1)).clone();

        let counter = pattern.counter_rect();
        assert_ne!(luma_of(&frame1, counter), luma_of(&frame2, counter));
        let clock = pattern.clock_rect();
        assert_eq!(luma_of(&frame1, clock), luma_of(&frame2, clock));
        assert_ne!(luma_of(&frame2, clock), luma_of(&later, clock));
        // Text is drawn: the counter area holds both text white and background black.
        let pixels = luma_of(&frame1, counter);
        assert!(pixels.contains(&235) && pixels.contains(&16));
    }

    #[test]
    fn clock_text_is_utc_time_of_day() {
        let mut pattern = TestPattern::new(640, 360, 30);
        let wall = UNIX_EPOCH + Duration::from_millis(45_296_789);
        let clock = pattern.clock_rect();
        let rendered = luma_of(pattern.render(0, wall), clock);
        // Draw the expected string on a blank copy of the same area and compare.
        let mut expected = I420Picture::new(640, 360, BLACK);
        let (x, y, _, _) = clock;
        expected.draw_text(x, y, pattern.layout.clock_scale, b"12:34:56.789", 235);
        assert_eq!(rendered, luma_of(&expected, clock));
    }

    #[test]
    fn box_moves_and_flash_follows_the_second() {
        let mut pattern = TestPattern::new(640, 360, 30);
        let wall = UNIX_EPOCH;
        let bars = (0, 0, 640, pattern.layout.bars_height);
        let a = luma_of(pattern.render(0, wall), bars);
        let b = luma_of(pattern.render(15, wall), bars);
        assert_ne!(a, b, "the box moved");
        let l = pattern.layout;
        let flash = ((640 - l.margin - l.flash_size) & !1, l.text_top, 2, 2);
        assert_eq!(luma_of(pattern.render(30, wall), flash), vec![235; 4]);
        assert_eq!(luma_of(pattern.render(33, wall), flash), vec![48; 4]);
    }

    #[test]
    fn tiny_and_odd_shaped_pictures_render_without_panicking() {
        for (width, height) in [(16, 16), (16, 720), (1920, 16), (322, 242)] {
            let mut pattern = TestPattern::new(width, height, 1);
            for index in 0..8 {
                let picture = pattern.render(index, UNIX_EPOCH + Duration::from_secs(86_399));
                assert_eq!(picture.as_raw_frame(0).check_planes(), Ok(()));
            }
        }
    }

    #[test]
    fn fill_rect_clips_at_the_edges() {
        let mut picture = I420Picture::new(8, 4, BLACK);
        picture.fill_rect(6, 2, 10, 10, WHITE);
        assert_eq!(
            &picture.y[2 * 8..3 * 8],
            &[16, 16, 16, 16, 16, 16, 235, 235]
        );
        assert_eq!(picture.u, vec![128; 8]);
        picture.fill_rect(20, 20, 4, 4, WHITE);
        picture.draw_text(7, 3, 3, b"E", 200);
        assert_eq!(picture.y[3 * 8 + 7], 200);
    }
}
