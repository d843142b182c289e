//! Where the packager will cut the source rendition, decided from the source units alone, so
//! the ladder can force an IDR in every rung at exactly those pts.
//!
//! This mirrors the video rules of `package::live::segmenter` (docs/packaging.md). The transcode
//! crate does not depend on the packager: the limits are shared through
//! `media::segment_rules`, the logic is restated here, and a test (tests/ladder_ffmpeg.rs) runs
//! both over the same real input and compares the cuts:
//!
//! - Units before the first keyframe are dropped. The first keyframe starts segment 0; the
//!   segment start is its dts plus its composition offset (pts − dts, clamped to 0..=5 s).
//! - A unit (in decode order) starts a new segment when it is a keyframe whose pts is at least
//!   `target` after the segment start, or a keyframe after a timestamp jump, or — keyframe or
//!   not — when `max_segment` (5 targets) of decode time has passed since the segment's first
//!   unit. The new segment starts `dts(unit) − dts(first unit of the old segment)` after the old
//!   start: for keyframes with equal composition offsets, exactly the new keyframe's pts.
//! - A jump is a dts that goes backwards or lands more than 5 s past the expected next one; the
//!   timeline is re-anchored at the expected dts. (The packager also looks at the audio head
//!   when re-anchoring; a jump of the source restarts the ladder in practice, see
//!   docs/transcode.md.)
//!
//! All times are on the 90 kHz clock. Pure: no clock reads, no I/O.

use media::rescale;
use media::segment_rules::{
    JUMP_THRESHOLD_MS, MAX_COMPOSITION_OFFSET_MS, MAX_SEGMENT_TARGETS, VIDEO_TICKS_PER_MS,
};

/// A dts this far past the expected next one is a jump.
const JUMP_THRESHOLD_TICKS: i64 = JUMP_THRESHOLD_MS * VIDEO_TICKS_PER_MS;
/// pts may lead dts by at most this much.
const MAX_COMPOSITION_TICKS: i64 = MAX_COMPOSITION_OFFSET_MS * VIDEO_TICKS_PER_MS;
/// Assumed frame duration until two units have been seen.
const NOMINAL_FRAME_TICKS: i64 = 3_000;

/// What a source unit is to the segment timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnitPlace {
    /// Before the stream's first keyframe: the packager drops it, the ladder skips it.
    BeforeFirstKeyframe,
    /// The first unit of a segment: every rung must have an IDR at this unit's pts.
    /// `keyframe` is false only for a cut forced by `max_segment` on a source without
    /// keyframes.
    StartsSegment { pts: i64, keyframe: bool },
    /// Inside the current segment.
    InSegment,
}

/// See the module docs. Feed every source video unit in decode order to
/// [`SegmentClock::place`].
#[derive(Clone, Debug)]
pub struct SegmentClock {
    target: i64,
    max_segment: i64,
    state: Option<Timeline>,
}

#[derive(Clone, Debug)]
struct Timeline {
    /// Added to input dts/pts to put them on the segment timeline.
    offset: i64,
    last_dts: i64,
    frame_duration: i64,
    segment_start: i64,
    /// dts (on the timeline) of the current segment's first unit.
    segment_first_dts: i64,
}

impl SegmentClock {
    /// A clock cutting at `target` ticks (90 kHz): the packager's `target_duration`.
    pub fn new(target: i64) -> Self {
        let target = target.max(1);
        SegmentClock {
            target,
            max_segment: target.saturating_mul(i64::from(MAX_SEGMENT_TARGETS)),
            state: None,
        }
    }

    /// A clock for a target given in milliseconds.
    pub fn from_millis(target_ms: u64) -> Self {
        Self::new(rescale(
            i64::try_from(target_ms).unwrap_or(i64::MAX / 90),
            1000,
            90_000,
        ))
    }

    pub fn target(&self) -> i64 {
        self.target
    }

    /// Places one source unit (decode order) on the segment timeline.
    pub fn place(&mut self, pts: i64, dts: i64, keyframe: bool) -> UnitPlace {
        let Some(timeline) = self.state.as_mut() else {
            if !keyframe {
                return UnitPlace::BeforeFirstKeyframe;
            }
            let composition = pts.saturating_sub(dts).clamp(0, MAX_COMPOSITION_TICKS);
            self.state = Some(Timeline {
                offset: dts.saturating_neg(),
                last_dts: 0,
                frame_duration: NOMINAL_FRAME_TICKS,
                segment_start: composition,
                segment_first_dts: 0,
            });
            return UnitPlace::StartsSegment {
                pts,
                keyframe: true,
            };
        };
        let mut mapped_dts = dts.saturating_add(timeline.offset);
        let mut mapped_pts = pts.saturating_add(timeline.offset);
        let last = timeline.last_dts;
        let expected = last.saturating_add(timeline.frame_duration);
        let jumped =
            mapped_dts < last || mapped_dts > expected.saturating_add(JUMP_THRESHOLD_TICKS);
        if jumped {
            let delta = expected.saturating_sub(mapped_dts);
            timeline.offset = timeline.offset.saturating_add(delta);
            mapped_dts = expected;
            mapped_pts = mapped_pts.saturating_add(delta);
        } else if mapped_dts == last {
            mapped_dts = last + 1;
        }
        if !jumped && mapped_dts - last > 1 && mapped_dts - last < 90_000 {
            timeline.frame_duration = mapped_dts - last;
        }
        let mapped_pts =
            mapped_pts.clamp(mapped_dts, mapped_dts.saturating_add(MAX_COMPOSITION_TICKS));
        timeline.last_dts = mapped_dts;
        let length = mapped_pts - timeline.segment_start;
        let cut = (keyframe && (jumped || length >= self.target))
            || mapped_dts - timeline.segment_first_dts >= self.max_segment;
        if !cut {
            return UnitPlace::InSegment;
        }
        timeline.segment_start += mapped_dts - timeline.segment_first_dts;
        timeline.segment_first_dts = mapped_dts;
        UnitPlace::StartsSegment { pts, keyframe }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Source units in decode order for `frames` frames at 30 fps with closed GOPs of `gop`
    /// frames, each an IDR then (P, B, B) groups as x264 orders them with 2 B-frames: pts run
    /// one frame ahead of dts, so every keyframe has the same composition offset.
    fn b_frame_stream(frames: i64, gop: i64, start: i64) -> Vec<(i64, i64, bool)> {
        let mut order = vec![0];
        let mut next = 1;
        while next + 2 < gop {
            order.extend([next + 2, next, next + 1]);
            next += 3;
        }
        order.extend(next..gop);
        (0..frames)
            .map(|decode| {
                let display = decode - decode % gop + order[(decode % gop) as usize];
                let pts = start + (display + 1) * 3000;
                (pts, start + decode * 3000, display % gop == 0)
            })
            .collect()
    }

    fn starts(clock: &mut SegmentClock, units: &[(i64, i64, bool)]) -> Vec<i64> {
        units
            .iter()
            .filter_map(|&(pts, dts, key)| match clock.place(pts, dts, key) {
                UnitPlace::StartsSegment { pts, .. } => Some(pts),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn cuts_on_the_first_keyframe_at_or_after_the_target() {
        // Keyframes every 25 frames (0.83 s); 2 s target: cuts at 0, 2.5 s, 5 s, not at the
        // keyframes between.
        let units = b_frame_stream(180, 25, 1_000_000);
        let mut clock = SegmentClock::new(180_000);
        let first_pts = units[0].0;
        let cuts = starts(&mut clock, &units);
        let expected: Vec<i64> = [0, 75, 150].iter().map(|f| first_pts + f * 3000).collect();
        assert_eq!(cuts, expected);
    }

    #[test]
    fn a_keyframe_exactly_at_the_target_cuts() {
        let units = b_frame_stream(130, 60, 0);
        let mut clock = SegmentClock::from_millis(2000);
        assert_eq!(clock.target(), 180_000);
        let cuts = starts(&mut clock, &units);
        assert_eq!(cuts, vec![3000, 183_000, 363_000]);
    }

    #[test]
    fn units_before_the_first_keyframe_are_placed_before_it() {
        let mut clock = SegmentClock::new(180_000);
        assert_eq!(clock.place(3000, 0, false), UnitPlace::BeforeFirstKeyframe);
        assert_eq!(
            clock.place(9000, 3000, true),
            UnitPlace::StartsSegment {
                pts: 9000,
                keyframe: true
            }
        );
        assert_eq!(clock.place(6000, 6000, false), UnitPlace::InSegment);
    }

    #[test]
    fn a_source_without_keyframes_is_cut_at_five_targets() {
        let mut clock = SegmentClock::new(90_000);
        assert!(matches!(
            clock.place(0, 0, true),
            UnitPlace::StartsSegment { .. }
        ));
        let mut cuts = Vec::new();
        for frame in 1..400 {
            let t = frame * 3000;
            if let UnitPlace::StartsSegment { pts, keyframe } = clock.place(t, t, false) {
                cuts.push((pts, keyframe));
            }
        }
        assert_eq!(cuts, vec![(450_000, false), (900_000, false)]);
    }

    #[test]
    fn a_keyframe_after_a_backwards_jump_cuts_early() {
        let mut clock = SegmentClock::new(180_000);
        clock.place(0, 0, true);
        for frame in 1..15 {
            assert_eq!(
                clock.place(frame * 3000, frame * 3000, false),
                UnitPlace::InSegment
            );
        }
        // The encoder restarts at 0 after 0.5 s: a keyframe there starts a segment at once.
        assert_eq!(
            clock.place(0, 0, true),
            UnitPlace::StartsSegment {
                pts: 0,
                keyframe: true
            }
        );
        // And the new segment is measured from the re-anchored timeline: 2 s later, not 2.5.
        let mut next = None;
        for frame in 1..100 {
            if let UnitPlace::StartsSegment { pts, .. } =
                clock.place(frame * 3000, frame * 3000, frame % 10 == 0)
            {
                next = Some(pts);
                break;
            }
        }
        assert_eq!(next, Some(180_000));
    }
}
