use bytes::Bytes;
use media::Codec;

use super::*;

const FRAME: i64 = 3000; // 30 fps on 90 kHz
const AAC_FRAME: i64 = 1024;

fn config() -> SegmenterConfig {
    SegmenterConfig {
        target: 180_000,
        max_segment: 540_000,
        audio_wait: 180_000,
    }
}

fn video(dts: i64, pts: i64, keyframe: bool) -> AccessUnit {
    AccessUnit {
        codec: Codec::H264,
        pts,
        dts,
        keyframe,
        payload: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
    }
}

fn audio(pts: i64) -> AccessUnit {
    AccessUnit {
        codec: Codec::Aac,
        pts,
        dts: pts,
        keyframe: true,
        payload: Bytes::from_static(&[0x21, 0x10]),
    }
}

/// `frames` frames in decode order of closed GOPs of `gop` frames with an IBBP pattern (two
/// B-frames, so pts = dts + 2 frames for the I-frame), starting at input dts `base`.
fn ibbp(base: i64, frames: i64, gop: i64) -> Vec<AccessUnit> {
    let mut display_order = Vec::new();
    let mut gop_start = 0;
    while gop_start < frames {
        let len = gop.min(frames - gop_start);
        display_order.push(gop_start);
        let mut j = 1;
        while j < len {
            let p = (j + 2).min(len - 1);
            display_order.push(gop_start + p);
            display_order.extend((j..p).map(|b| gop_start + b));
            j = p + 1;
        }
        gop_start += gop;
    }
    display_order
        .into_iter()
        .enumerate()
        .map(|(decode, display)| {
            let dts = base + decode as i64 * FRAME;
            let pts = base + (display + 2) * FRAME;
            video(dts, pts, display % gop == 0)
        })
        .collect()
}

/// Interleaves video (90 kHz) and 48 kHz audio by time, as a muxed feed arrives.
fn interleave(video: Vec<AccessUnit>, audio: Vec<AccessUnit>) -> Vec<AccessUnit> {
    let mut all: Vec<(i64, AccessUnit)> = video
        .into_iter()
        .map(|u| (u.dts, u))
        .chain(
            audio
                .into_iter()
                .map(|u| (rescale(u.pts, 48_000, 90_000), u)),
        )
        .collect();
    all.sort_by_key(|(t, _)| *t);
    all.into_iter().map(|(_, u)| u).collect()
}

fn drain(segmenter: &mut Segmenter) -> Vec<CutSegment> {
    std::iter::from_fn(|| segmenter.pop()).collect()
}

fn video_span(segment: &CutSegment) -> i64 {
    segment
        .video
        .iter()
        .map(|s| i64::from(s.duration))
        .sum::<i64>()
}

#[test]
fn cuts_on_keyframes_with_b_frames_and_splits_audio_at_the_cut() {
    // 5 s of 30 fps video with a keyframe every 2 s, plus 48 kHz AAC, starting at input 10 s;
    // audio starts 0.5 s before video (it must be trimmed to the first keyframe).
    let frames = ibbp(900_000, 150, 60);
    let sound = (0..260).map(|k| audio(456_000 + k * AAC_FRAME)).collect();
    let mut segmenter = Segmenter::new(config(), 0, Some(FRAME), Some((48_000, 1024)));
    for unit in interleave(frames, sound) {
        segmenter.push(unit);
    }
    let mut segments = drain(&mut segmenter);
    assert_eq!(
        segments.len(),
        2,
        "two keyframe cuts are final before the end"
    );
    segmenter.finish();
    segments.extend(drain(&mut segmenter));
    assert_eq!(segments.len(), 3);

    // The first keyframe lands at dts 0 and presents 2 frames later.
    assert_eq!(segments[0].video[0].unit.dts, 0);
    assert_eq!(segments[0].start, 2 * FRAME);
    let counts: Vec<usize> = segments.iter().map(|s| s.video.len()).collect();
    assert_eq!(counts, [60, 60, 30]);
    for (n, segment) in segments.iter().enumerate() {
        assert!(
            segment.video[0].unit.keyframe,
            "segment {n} starts on a keyframe"
        );
        assert!(!segment.discontinuity);
        assert_eq!(segment.end - segment.start, video_span(segment));
        for s in segment.video.iter().chain(&segment.audio) {
            assert!(s.unit.dts >= 0 && s.unit.pts >= s.unit.dts && s.duration > 0);
        }
        if n > 0 {
            assert_eq!(segment.start, segments[n - 1].end, "contiguous timeline");
        }
        // Audio N is exactly the frames presented before video N's end.
        for s in &segment.audio {
            let at = rescale(s.unit.pts, 48_000, 90_000);
            assert!(at >= segment.start - 1920 && at < segment.end, "{n}: {at}");
        }
    }
    assert_eq!(segments[0].end - segments[0].start, 180_000);
    assert_eq!(segments[1].end - segments[1].start, 180_000);
    assert_eq!(segments[2].end - segments[2].start, 90_000);
    // Audio continues frame after frame across the cuts, starting at the first keyframe's pts.
    let audio: Vec<i64> = segments
        .iter()
        .flat_map(|s| s.audio.iter().map(|a| a.unit.pts))
        .collect();
    // The keyframe presents at 6000 ticks = 3200 samples; the first audio frame at or after it
    // is input frame 27: 456_000 + 27 * 1024 - 480_000.
    assert_eq!(audio[0], 3648);
    assert!(audio.windows(2).all(|w| w[1] - w[0] == AAC_FRAME));
    // Audio continues up to the end of the video.
    let last = *audio.last().unwrap_or(&0);
    assert!(rescale(last + AAC_FRAME, 48_000, 90_000) >= segments[2].end - 1920);
}

#[test]
fn audio_only_cuts_on_duration() {
    let mut segmenter = Segmenter::new(config(), 90_000, None, Some((48_000, 1024)));
    for k in 0..300 {
        segmenter.push(audio(7_000_000 + k * AAC_FRAME));
    }
    segmenter.finish();
    let segments = drain(&mut segmenter);
    // 2 s = 93.75 frames: each segment takes 94 frames until the last one.
    let counts: Vec<usize> = segments.iter().map(|s| s.audio.len()).collect();
    assert_eq!(counts, [94, 94, 94, 18]);
    assert_eq!(segments[0].start, 90_000);
    assert_eq!(
        segments[0].audio[0].unit.pts, 48_000,
        "starts at the start position"
    );
    for pair in segments.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
    }
    assert!(segments.iter().all(|s| s.video.is_empty()));
}

#[test]
fn video_only_segments_are_handed_out_at_the_cut() {
    let mut segmenter = Segmenter::new(config(), 0, Some(FRAME), None);
    let frames = ibbp(0, 121, 60);
    for unit in frames {
        segmenter.push(unit);
    }
    let segments = drain(&mut segmenter);
    assert_eq!(segments.len(), 2);
    assert!(segments.iter().all(|s| s.audio.is_empty()));
}

#[test]
fn drops_units_before_the_first_keyframe() {
    let mut segmenter = Segmenter::new(config(), 0, Some(FRAME), None);
    segmenter.push(video(0, 0, false));
    segmenter.push(video(FRAME, FRAME, false));
    assert_eq!(segmenter.dropped_units(), 2);
    for k in 2..70 {
        segmenter.push(video(k * FRAME, k * FRAME, k % 60 == 2));
    }
    let segments = drain(&mut segmenter);
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].video[0].unit.dts, 0);
}

#[test]
fn backwards_jump_on_a_keyframe_cuts_with_a_discontinuity() {
    let mut segmenter = Segmenter::new(config(), 0, Some(FRAME), None);
    // 1.5 s, then the encoder restarts at 0 with a keyframe.
    for k in 0..45 {
        segmenter.push(video(500_000 + k * FRAME, 500_000 + k * FRAME, k == 0));
    }
    for k in 0..70 {
        segmenter.push(video(k * FRAME, k * FRAME, k % 60 == 0));
    }
    segmenter.finish();
    let segments = drain(&mut segmenter);
    assert_eq!(segments.len(), 3);
    assert_eq!(segments[0].video.len(), 45);
    assert!(!segments[0].discontinuity);
    assert!(segments[1].discontinuity, "the segment after the jump");
    assert!(!segments[2].discontinuity);
    assert_eq!(segments[1].video.len(), 60);
    for pair in segments.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
        let last = pair[0].video.last().map(|s| s.unit.dts).unwrap_or_default();
        assert_eq!(
            pair[1].video[0].unit.dts,
            last + FRAME,
            "continues the timeline"
        );
    }
    assert!(segments.iter().all(|s| s.end - s.start <= 180_000));
}

#[test]
fn forward_leap_mid_gop_is_absorbed() {
    let mut segmenter = Segmenter::new(config(), 0, Some(FRAME), None);
    for k in 0..30 {
        segmenter.push(video(k * FRAME, k * FRAME, k == 0));
    }
    // An hour ahead, then normal again.
    for k in 30..70 {
        let t = 324_000_000 + k * FRAME;
        segmenter.push(video(t, t, k == 60));
    }
    let segments = drain(&mut segmenter);
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].video.len(), 60);
    assert_eq!(
        segments[0].end - segments[0].start,
        180_000,
        "no giant segment"
    );
    assert!(segments[0].video.iter().all(|s| s.duration == FRAME as u32));
}

#[test]
fn small_forward_gap_is_kept_as_a_longer_frame() {
    let mut segmenter = Segmenter::new(config(), 0, Some(FRAME), None);
    for k in (0..10).chain(40..70) {
        segmenter.push(video(k * FRAME, k * FRAME, k % 60 == 0));
    }
    let segments = drain(&mut segmenter);
    assert_eq!(segments.len(), 1);
    assert_eq!(segments[0].video[9].duration, 31 * FRAME as u32);
}

#[test]
fn keyframe_less_video_is_cut_at_the_cap() {
    let mut segmenter = Segmenter::new(config(), 0, Some(FRAME), None);
    for k in 0..600 {
        segmenter.push(video(k * FRAME, k * FRAME, k == 0));
    }
    let segments = drain(&mut segmenter);
    assert_eq!(segments.len(), 3);
    for segment in &segments {
        assert_eq!(segment.end - segment.start, 540_000);
    }
    assert!(!segments[1].video[0].unit.keyframe);
}

#[test]
fn video_is_not_held_when_audio_stops() {
    let mut segmenter = Segmenter::new(config(), 0, Some(FRAME), Some((48_000, 1024)));
    let frames = ibbp(0, 300, 60);
    // Audio for the first second only.
    let sound = (0..47).map(|k| audio(k * AAC_FRAME)).collect();
    for unit in interleave(frames, sound) {
        segmenter.push(unit);
    }
    let segments = drain(&mut segmenter);
    // Cuts at 2, 4, 6, 8 s; the 8 s one waits for video to reach 10 s (never does).
    assert_eq!(segments.len(), 3);
    assert!(!segments[0].audio.is_empty());
    assert!(segments[1].audio.is_empty() && segments[2].audio.is_empty());
    // Audio that turns up late for a finished segment is dropped, not misplaced.
    let before = segmenter.dropped_units();
    segmenter.push(audio(48_000));
    assert_eq!(segmenter.dropped_units(), before + 1);
}

#[test]
fn audio_waits_for_the_cut_when_it_lags() {
    let mut segmenter = Segmenter::new(config(), 0, Some(FRAME), Some((48_000, 1024)));
    // All video first (2.3 s), then the audio.
    for unit in ibbp(0, 70, 60) {
        segmenter.push(unit);
    }
    assert!(segmenter.pop().is_none(), "segment 0 waits for its audio");
    for k in 0..110 {
        segmenter.push(audio(k * AAC_FRAME));
    }
    let segment = segmenter.pop().expect("audio reached the cut");
    assert_eq!(segment.end, 186_000);
    let last = segment.audio.last().map(|s| s.unit.pts).unwrap_or_default();
    assert!(rescale(last, 48_000, 90_000) < 186_000);
    assert!(rescale(last + AAC_FRAME, 48_000, 90_000) >= 186_000);
}

#[test]
fn erratic_timestamps_never_give_negative_or_giant_segments() {
    // A fixed-seed LCG: the same "random" feed every run.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (state >> 33) as i64
    };
    let mut segmenter = Segmenter::new(config(), 0, Some(FRAME), Some((48_000, 1024)));
    let (mut vdts, mut apts) = (0i64, 0i64);
    for _ in 0..20_000 {
        let roll = next() % 1000;
        let step = match roll {
            0..=2 => -(next() % 10_000_000), // backwards
            3..=5 => next() % 1_000_000_000, // leap forward
            6..=8 => i64::MAX / 4,           // absurd
            _ => FRAME,
        };
        if next() % 3 == 0 {
            apts = apts.saturating_add(if roll < 9 { step / 2 } else { AAC_FRAME });
            segmenter.push(audio(apts));
        } else {
            vdts = vdts.saturating_add(step);
            let pts = vdts.saturating_add(next() % 20_000);
            segmenter.push(video(vdts, pts, next() % 70 == 0));
        }
    }
    segmenter.finish();
    let segments = drain(&mut segmenter);
    assert!(segments.len() > 10);
    for pair in segments.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
    }
    for segment in &segments {
        let length = segment.end - segment.start;
        assert!(length > 0 && length <= 540_000 + 450_000, "{length}");
        for s in segment.video.iter().chain(&segment.audio) {
            assert!(s.unit.dts >= 0 && s.unit.pts >= s.unit.dts && s.duration > 0);
        }
    }
}
