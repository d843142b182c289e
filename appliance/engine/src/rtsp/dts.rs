//! Decode timestamps for RTP video, which carries presentation times only (RFC 6184 §5.1,
//! RFC 7798 §4.1): a reorder window over the pts ([`DtsFromPts`]) and the reorder depth an
//! H.264 SPS announces (ITU-T H.264 §E.2.1, `max_num_reorder_frames`). Pure: no I/O, no clock.

/// Decode timestamps for video that arrives with presentation times only.
///
/// RTP (RFC 6184 §5.1, RFC 7798 §4.1) carries each picture's presentation time; with
/// B-frames pictures arrive in decode order with pts out of order, and a muxer needs a dts
/// that increases and never passes the pts. With a reorder depth `D` (at most `D` pictures
/// precede any picture in decode order and follow it in output order, H.264
/// `max_num_reorder_frames`, H.265 `sps_max_num_reorder_pics`), the `i`-th smallest pts of
/// the whole stream is among the first `i + D + 1` pictures received. So the dts of picture
/// `i` is the `(i - D)`-th smallest pts: kept in a min-heap of at most `D + 1` pts, it is the
/// heap's minimum after picture `i` is pushed, which is never above picture `i`'s own pts.
/// The first `D` pictures, for which no such pts exists yet, get the first pts minus
/// `D - i` frame durations. No picture is held back: the cost is a constant composition
/// offset of about `D` frames.
///
/// A pts below the last dts cannot happen when `D` is right. When `D` was read from the
/// stream's SPS ([`DtsFromPts::with_known_depth`]) it is trusted: such a pts is a timestamp
/// jump (below) during the first [`STARTUP_PICTURES`] pictures (servers send stale frames
/// first), and once after them; a second one after them means the SPS is wrong, and the
/// depth is treated as a guess from then on. When `D` is a guess ([`DtsFromPts::new`]), the stream may reorder deeper:
/// that picture's dts is clamped to the last one plus a tick, the window grows by one (to
/// [`MAX_REORDER_DEPTH`]) by keeping that pts in the heap, and the caller counts it once; the
/// next few pictures, until the heap's minimum passes the last dts again, are clamped the same
/// way (tick-long decode durations, and a dts above the pts for pictures that were reordered:
/// the price of a wrong guess, paid once). A pts more than
/// `MAX_REORDER_DEPTH + 1` frame durations behind the last dts cannot be reordering (no
/// decoder holds more pictures): it is a timestamp jump, and the window starts over from it
/// (the dts goes back with it; the segmenter re-anchors such jumps). GStreamer's RTSP server
/// does this at the start of a session joined mid-stream: the first frame it sends is about
/// 0.8 s ahead of the ones that follow.
#[derive(Clone, Debug)]
pub struct DtsFromPts {
    depth: usize,
    frame_duration: i64,
    pending: std::collections::BinaryHeap<std::cmp::Reverse<i64>>,
    first_pts: Option<i64>,
    received: usize,
    /// The window grew and its minimum has not passed the last dts yet.
    settling: bool,
    /// `depth` came from the SPS: a pts below the last dts is a jump, not deeper reordering.
    known: bool,
    /// Pictures seen since the window was made (restarts included).
    lifetime: u64,
    /// A jump after the startup pictures was forgiven already.
    forgiven: bool,
    last_dts: Option<i64>,
}

/// Pictures at the start of a window whose jumps never count against the SPS's depth.
pub const STARTUP_PICTURES: u64 = 30;
/// The deepest reorder window (the largest H.264 / H.265 decoded picture buffer is 16).
pub const MAX_REORDER_DEPTH: usize = 16;
/// What [`DtsFromPts::dts`] noticed about a picture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtsNote {
    InOrder,
    /// Reordered deeper than the window: this picture's dts is clamped, the window grew.
    ReorderedDeeper,
    /// The pts went back further than any reordering can: the window started over.
    TimestampJump,
}
/// The reorder depth assumed for non-Baseline H.264 whose SPS does not say, and for H.265
/// until its SPS is read: x264's and x265's with B-pyramid, and most cameras' (which send no
/// B-frames at all; for them it only adds a composition offset).
pub const DEFAULT_REORDER_DEPTH: usize = 2;

impl DtsFromPts {
    /// `frame_duration` (90 kHz ticks) spaces the first `depth` pictures' dts.
    pub fn new(depth: usize, frame_duration: i64) -> Self {
        DtsFromPts {
            depth: depth.min(MAX_REORDER_DEPTH),
            frame_duration: frame_duration.max(1),
            pending: std::collections::BinaryHeap::with_capacity(MAX_REORDER_DEPTH + 2),
            first_pts: None,
            received: 0,
            settling: false,
            known: false,
            lifetime: 0,
            forgiven: false,
            last_dts: None,
        }
    }

    /// A window of the depth the stream's SPS announces, which never grows.
    pub fn with_known_depth(depth: usize, frame_duration: i64) -> Self {
        DtsFromPts {
            known: true,
            ..DtsFromPts::new(depth, frame_duration)
        }
    }

    fn restart(&mut self) {
        *self = DtsFromPts {
            known: self.known,
            lifetime: self.lifetime,
            forgiven: self.forgiven,
            ..DtsFromPts::new(self.depth, self.frame_duration)
        };
    }

    pub fn depth(&self) -> usize {
        self.depth
    }

    /// The dts of the next picture (in decode order) with presentation time `pts`, and what
    /// was noticed on the way.
    pub fn dts(&mut self, pts: i64) -> (i64, DtsNote) {
        let jump = (MAX_REORDER_DEPTH as i64 + 1) * self.frame_duration;
        let far_below = self.last_dts.is_some_and(|last| pts < last - jump);
        let below = self.last_dts.is_some_and(|last| pts < last);
        if below && !far_below && self.known && self.lifetime >= STARTUP_PICTURES {
            // Forgiven once; the next time the SPS is wrong.
            self.known = !self.forgiven;
            self.forgiven = true;
        }
        self.lifetime += 1;
        if far_below || (below && self.known) {
            self.restart();
            self.lifetime -= 1;
            let (dts, _) = self.dts(pts);
            return (dts, DtsNote::TimestampJump);
        }
        self.pending.push(std::cmp::Reverse(pts));
        let first = *self.first_pts.get_or_insert(pts);
        let candidate = if self.received < self.depth {
            let ahead = (self.depth - self.received) as i64;
            first - ahead * self.frame_duration
        } else {
            self.pending.pop().map_or(pts, |std::cmp::Reverse(min)| min)
        };
        self.received += 1;
        let Some(last) = self.last_dts else {
            self.last_dts = Some(candidate);
            return (candidate, DtsNote::InOrder);
        };
        if candidate > last {
            self.settling = false;
            self.last_dts = Some(candidate);
            return (candidate, DtsNote::InOrder);
        }
        let dts = last + 1;
        self.last_dts = Some(dts);
        // Two pictures at one instant (a broken timestamp, not reordering) are nudged; so are
        // the pictures after the window grew, until it catches up.
        if candidate == last || self.settling {
            return (dts, DtsNote::InOrder);
        }
        if self.depth < MAX_REORDER_DEPTH {
            self.depth += 1;
            self.pending.push(std::cmp::Reverse(candidate));
            self.settling = true;
        }
        (dts, DtsNote::ReorderedDeeper)
    }
}

/// The reorder depth an H.264 SPS (NAL header included) announces: VUI
/// `max_num_reorder_frames` (§E.2.1) when present, 0 for the Baseline profile (no B slices),
/// else `None`.
pub fn avc_reorder_depth(sps: &[u8]) -> Option<usize> {
    use h264_reader::nal::sps::SeqParameterSet;
    use h264_reader::rbsp::{BitReader, decode_nal};
    // decode_nal underflows on inputs shorter than 2 bytes; an SPS has at least 4.
    if sps.len() < 4 {
        return None;
    }
    let rbsp = decode_nal(sps).ok()?;
    let parsed = SeqParameterSet::from_bits(BitReader::new(&rbsp[..])).ok()?;
    if let Some(restrictions) = parsed
        .vui_parameters
        .as_ref()
        .and_then(|vui| vui.bitstream_restrictions.as_ref())
    {
        return usize::try_from(restrictions.max_num_reorder_frames).ok();
    }
    (u8::from(parsed.profile_idc) == 66).then_some(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `pts` (in frames of 3000 ticks) through a window of `depth`; returns the dts
    /// (in ticks) and how many pictures were flagged.
    fn run_window(depth: usize, frames: &[i64]) -> (Vec<i64>, usize) {
        let mut window = DtsFromPts::new(depth, 3000);
        let mut flagged = 0;
        let dts = frames
            .iter()
            .map(|&f| {
                let (dts, note) = window.dts(f * 3000);
                flagged += usize::from(note != DtsNote::InOrder);
                dts
            })
            .collect();
        (dts, flagged)
    }

    fn assert_valid(frames: &[i64], dts: &[i64]) {
        for (i, (pts, dts)) in frames.iter().map(|f| f * 3000).zip(dts).enumerate() {
            assert!(*dts <= pts, "picture {i}: dts {dts} > pts {pts}");
        }
        assert!(
            dts.windows(2).all(|w| w[0] < w[1]),
            "dts not increasing: {dts:?}"
        );
    }

    #[test]
    fn dts_without_b_frames_is_pts() {
        let frames: Vec<i64> = (0..10).collect();
        let (dts, flagged) = run_window(0, &frames);
        assert_eq!(dts, frames.iter().map(|f| f * 3000).collect::<Vec<_>>());
        assert_eq!(flagged, 0);
    }

    #[test]
    fn dts_with_b_frames_follows_the_sorted_pts() {
        // I P B B, as x264 bframes=2 without pyramid sends them: reorder depth 1.
        let frames = [0, 3, 1, 2, 6, 4, 5, 9, 7, 8];
        let (dts, flagged) = run_window(1, &frames);
        assert_eq!(flagged, 0);
        assert_eq!(
            dts,
            [-1, 0, 1, 2, 3, 4, 5, 6, 7, 8].map(|f| f * 3000).to_vec()
        );
        assert_valid(&frames, &dts);
        // B-pyramid (bframes=3): depth 2.
        let frames = [0, 4, 2, 1, 3, 8, 6, 5, 7, 12, 10, 9, 11];
        let (dts, flagged) = run_window(2, &frames);
        assert_eq!(flagged, 0);
        assert_eq!(&dts[..4], &[-2 * 3000, -3000, 0, 3000]);
        assert_valid(&frames, &dts);
        // A window deeper than needed only adds a composition offset.
        let (dts, flagged) = run_window(4, &frames);
        assert_eq!(flagged, 0);
        assert_valid(&frames, &dts);
    }

    #[test]
    fn dts_window_grows_when_reordering_is_deeper() {
        let frames = [0, 4, 2, 1, 3, 8, 6, 5, 7, 12, 10, 9, 11, 16, 14, 13, 15];
        let mut window = DtsFromPts::new(1, 3000);
        let mut flagged = Vec::new();
        let mut dts = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let (d, note) = window.dts(f * 3000);
            if note == DtsNote::ReorderedDeeper {
                flagged.push(i);
            }
            dts.push(d);
        }
        assert_eq!(window.depth(), 2);
        assert_eq!(flagged.len(), 1, "{flagged:?}");
        assert!(dts.windows(2).all(|w| w[0] < w[1]), "{dts:?}");
        // The fault is at picture 3 (pts 1 after 2); from the next GOP on, every dts is at or
        // below its pts and spaced by whole frames again.
        assert_eq!(flagged, [3]);
        for (i, (f, d)) in frames.iter().zip(&dts).enumerate().skip(5) {
            assert!(*d <= f * 3000, "picture {i}: {dts:?}");
        }
        assert!(dts[7..].windows(2).all(|w| w[1] - w[0] == 3000), "{dts:?}");
    }

    #[test]
    fn dts_window_restarts_after_a_backward_jump() {
        let mut window = DtsFromPts::new(0, 3000);
        assert_eq!(window.dts(900_000), (900_000, DtsNote::InOrder));
        assert_eq!(window.dts(903_000), (903_000, DtsNote::InOrder));
        // The camera's clock went back 10 s: a new timeline, not a reorder fault.
        assert_eq!(window.dts(3000), (3000, DtsNote::TimestampJump));
        assert_eq!(window.dts(6000), (6000, DtsNote::InOrder));
        // What GStreamer's RTSP server sends first to a client joining a shared stream: one
        // frame 0.83 s ahead, then the stream from 0. Depth 2 (x264 High without VUI).
        let mut window = DtsFromPts::new(2, 3000);
        let mut dts = Vec::new();
        let mut notes = Vec::new();
        for pts in [75_000, 0, 3000, 6000, 9000, 12_000] {
            let (d, note) = window.dts(pts);
            dts.push(d);
            notes.push(note);
        }
        use DtsNote::{InOrder, TimestampJump};
        assert_eq!(
            notes,
            [InOrder, TimestampJump, InOrder, InOrder, InOrder, InOrder]
        );
        assert_eq!(dts, [69_000, -6000, -3000, 0, 3000, 6000]);
        assert_eq!(window.depth(), 2);
        // Equal pts are nudged, not counted.
        let mut window = DtsFromPts::new(0, 3000);
        assert_eq!(window.dts(3000), (3000, InOrder));
        assert_eq!(window.dts(3000), (3001, InOrder));
        assert_eq!(window.depth(), 0);
        // The same first frame ahead by 4 frames, with the depth known from the SPS: a jump,
        // not reordering (a guessed depth would have grown to 16 and stayed there).
        let mut window = DtsFromPts::with_known_depth(0, 3000);
        let mut dts = Vec::new();
        let mut notes = Vec::new();
        for pts in [12_000, 0, 3000, 6000] {
            let (d, note) = window.dts(pts);
            dts.push(d);
            notes.push(note);
        }
        assert_eq!(notes, [InOrder, TimestampJump, InOrder, InOrder]);
        assert_eq!(dts, [12_000, 0, 3000, 6000]);
        assert_eq!(window.depth(), 0);
        // An SPS that says 0 for a stream with B-frames (I P B B): during the first
        // STARTUP_PICTURES every B-frame is taken for a jump, then one more is forgiven, then
        // the window grows once and stays right.
        let mut window = DtsFromPts::with_known_depth(0, 3000);
        let frames: Vec<i64> = std::iter::once(0)
            .chain((0..40).flat_map(|k| [3 * k + 3, 3 * k + 1, 3 * k + 2]))
            .collect();
        let notes: Vec<DtsNote> = frames.iter().map(|f| window.dts(f * 3000).1).collect();
        let deeper = notes.iter().position(|n| *n == DtsNote::ReorderedDeeper);
        assert!(deeper.is_some_and(|at| at > 30), "{notes:?}");
        assert!(
            notes[deeper.unwrap_or(0) + 1..]
                .iter()
                .all(|n| *n == InOrder),
            "{notes:?}"
        );
        assert_eq!(window.depth(), 1);
        // A known depth that is right sees no jumps: B-pyramid at 2.
        let mut window = DtsFromPts::with_known_depth(2, 3000);
        for f in [0, 4, 2, 1, 3, 8, 6, 5, 7, 12, 10, 9, 11] {
            assert_eq!(window.dts(f * 3000).1, InOrder, "frame {f}");
        }
    }

    #[test]
    fn reorder_depth_from_the_sps() {
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        // x264 Baseline: no B-frames, max_num_reorder_frames 0.
        assert_eq!(
            avc_reorder_depth(&hex("6742c00ad902c4ec0440000003004000000783c48992")),
            Some(0)
        );
        // x264 High, 1080p25, no bitstream restriction in its VUI: unknown.
        // x264 High, 1080p25: bframes=3 with B-pyramid, bitstream_restriction says 2.
        assert_eq!(
            avc_reorder_depth(&hex(
                "67640028acd940780227e5c044000003000400000300c83c60c658"
            )),
            Some(2)
        );
        assert_eq!(avc_reorder_depth(&[0x67, 0x64, 0x00]), None);
        assert_eq!(avc_reorder_depth(&[0x67, 0x64, 0x00, 0x28, 0xff]), None);
        assert_eq!(avc_reorder_depth(&[]), None);
        // Damaged SPS (every byte of x264's High SPS changed in turn, and every cut) never
        // panics: the SPS comes from the camera.
        let sps = hex("67640028acd940780227e5c044000003000400000300c83c60c658");
        for i in 0..sps.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut damaged = sps.clone();
                damaged[i] ^= flip;
                let _ = avc_reorder_depth(&damaged);
            }
            let _ = avc_reorder_depth(&sps[..i]);
        }
    }
}
