//! The cut rule shared by the packager's segmenter (`package::live::segmenter`) and the
//! transcode ladder's segment clock (`transcode::ladder::segment_clock`). The ladder forces an
//! IDR in every rung exactly where the packager will cut the source, so both must apply the
//! same limits; they live here, below both crates, and each crate states the rule itself
//! (docs/packaging.md, docs/transcode.md). Times are in milliseconds; `VIDEO_TICKS_PER_MS`
//! converts to the 90 kHz video clock.

/// A segment with no keyframe is cut anyway after this many target durations.
pub const MAX_SEGMENT_TARGETS: u32 = 5;
/// A dts this far beyond the expected next one is a timestamp jump, not a gap in the feed.
pub const JUMP_THRESHOLD_MS: i64 = 5_000;
/// pts may lead dts by at most this much; more is a broken timestamp, clamped.
pub const MAX_COMPOSITION_OFFSET_MS: i64 = 5_000;
/// Ticks of [`crate::VIDEO_TIMESCALE`] per millisecond.
pub const VIDEO_TICKS_PER_MS: i64 = crate::VIDEO_TIMESCALE as i64 / 1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_in_video_ticks() {
        assert_eq!(JUMP_THRESHOLD_MS * VIDEO_TICKS_PER_MS, 450_000);
        assert_eq!(MAX_COMPOSITION_OFFSET_MS * VIDEO_TICKS_PER_MS, 450_000);
    }
}
