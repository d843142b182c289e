//! The segmenter of one publisher session: maps input timestamps onto the stream's output
//! timeline and decides where segments end. It knows nothing of containers or playlists, so
//! its rules are tested with plain access units.
//!
//! Rules (docs/packaging.md explains why):
//! - The session's first video keyframe (or, without video, its first audio frame) lands at
//!   `start_position` on the output timeline; everything before it is dropped. Audio is mapped
//!   with the same offset, rescaled to its sample rate, so A/V sync is kept.
//! - A video segment ends at the first keyframe whose pts is at least `target` after the
//!   segment start. With no keyframe for `max_segment` of decode time, it ends at the next unit
//!   anyway (that segment then starts on a non-keyframe: bounded size wins over independence).
//! - Audio segment N takes the audio frames whose pts is before video segment N's end, once an
//!   audio frame at or after that end has arrived, or once video has run `audio_wait` past it.
//!   Without video, audio segments end at the first frame `target` after the segment start.
//! - A dts that goes backwards, or jumps more than [`JUMP_THRESHOLD_MS`] past the expected next
//!   dts, re-anchors that track so the unit lands where the stream's head is: the output stays
//!   continuous and never negative. If the unit is a video keyframe (an encoder restart), the
//!   segment is cut there and the next one is flagged as a discontinuity.

use std::collections::VecDeque;

use media::{AccessUnit, TrackKind, VIDEO_TIMESCALE, rescale};

/// A dts this far beyond the expected next one is a jump, not a gap in the feed.
pub use media::segment_rules::JUMP_THRESHOLD_MS;
use media::segment_rules::{MAX_COMPOSITION_OFFSET_MS, VIDEO_TICKS_PER_MS};
/// Audio held back while waiting for the first video keyframe.
const MAX_EARLY_AUDIO_UNITS: usize = 1024;

/// Durations of the segmenting rules, all in 90 kHz ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmenterConfig {
    pub target: i64,
    pub max_segment: i64,
    pub audio_wait: i64,
}

/// An access unit on the output timeline, with its decode duration (0 until known).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimedUnit {
    pub unit: AccessUnit,
    pub duration: u32,
    /// The unit's pts as it came in, before mapping: how a transcoded rendition's units
    /// (which carry the source's input pts) find their place on the output timeline.
    pub input_pts: i64,
}

/// One finished segment of the session: units on the output timeline, each with its duration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CutSegment {
    pub video: Vec<TimedUnit>,
    pub audio: Vec<TimedUnit>,
    /// Start and end on the output timeline, 90 kHz. For video, `end - start` is exactly the
    /// sum of the video sample durations.
    pub start: i64,
    pub end: i64,
    /// The segment follows a timestamp jump: playlists put a discontinuity before it.
    pub discontinuity: bool,
}

#[derive(Debug)]
struct Track {
    timescale: u32,
    /// Added to input timestamps to put them on the output timeline.
    offset: i64,
    last_dts: Option<i64>,
    /// The latest decode duration seen (or the nominal one): what the next dts should add.
    frame_duration: i64,
    pending: Vec<TimedUnit>,
}

impl Track {
    fn new(timescale: u32, frame_duration: i64) -> Self {
        Track {
            timescale,
            offset: 0,
            last_dts: None,
            frame_duration: frame_duration.max(1),
            pending: Vec::new(),
        }
    }

    fn expected_next(&self) -> Option<i64> {
        self.last_dts
            .map(|last| last.saturating_add(self.frame_duration))
    }

    fn ms(&self, ms: i64) -> i64 {
        rescale(ms, 1000, self.timescale)
    }
}

#[derive(Debug)]
struct ClosedVideo {
    video: Vec<TimedUnit>,
    start: i64,
    end: i64,
    discontinuity: bool,
}

/// See the module docs. Feed units with [`Segmenter::push`], take segments with
/// [`Segmenter::pop`]; [`Segmenter::finish`] closes everything when the publisher goes.
#[derive(Debug)]
pub struct Segmenter {
    config: SegmenterConfig,
    start_position: i64,
    video: Option<Track>,
    audio: Option<Track>,
    origin_set: bool,
    early_audio: VecDeque<AccessUnit>,
    segment_start: i64,
    segment_discontinuity: bool,
    /// Audio with a pts before this (90 kHz) belongs to a segment already handed out.
    audio_floor: i64,
    awaiting_audio: VecDeque<ClosedVideo>,
    ready: VecDeque<CutSegment>,
    dropped_units: u64,
}

impl Segmenter {
    /// A session whose first sample lands at `start_position` (90 kHz). `video` is the nominal
    /// frame duration in 90 kHz ticks, `audio` the sample rate and samples per frame.
    pub fn new(
        config: SegmenterConfig,
        start_position: i64,
        video: Option<i64>,
        audio: Option<(u32, u32)>,
    ) -> Self {
        Segmenter {
            config,
            start_position,
            video: video.map(|frame| Track::new(VIDEO_TIMESCALE, frame)),
            audio: audio.map(|(rate, samples)| Track::new(rate.max(1), i64::from(samples))),
            origin_set: false,
            early_audio: VecDeque::new(),
            segment_start: start_position,
            segment_discontinuity: false,
            audio_floor: start_position,
            awaiting_audio: VecDeque::new(),
            ready: VecDeque::new(),
            dropped_units: 0,
        }
    }

    /// Units dropped so far: before the first keyframe, late audio, tracks the session lacks.
    pub fn dropped_units(&self) -> u64 {
        self.dropped_units
    }

    /// The output dts (90 kHz) of the newest video unit: how far the source has got, which
    /// bounds how long a segment waits for its transcoded renditions.
    pub fn video_head(&self) -> Option<i64> {
        self.video.as_ref().and_then(|v| v.last_dts)
    }

    /// The next finished segment.
    pub fn pop(&mut self) -> Option<CutSegment> {
        self.ready.pop_front()
    }

    pub fn push(&mut self, unit: AccessUnit) {
        match unit.kind() {
            TrackKind::Video if self.video.is_some() => self.push_video(unit),
            TrackKind::Audio if self.audio.is_some() => self.push_audio(unit),
            _ => self.dropped_units += 1,
        }
    }

    /// The publisher went away: the open segment is closed with nominal durations for its last
    /// samples and handed out with whatever audio there is.
    pub fn finish(&mut self) {
        let end = if let Some(video) = self.video.as_mut() {
            close_last(video);
            span(&video.pending).map(|span| (self.segment_start + span, false))
        } else if let Some(audio) = self.audio.as_mut() {
            close_last(audio);
            let timescale = audio.timescale;
            audio.pending.last().map(|last| {
                let end = last.unit.pts + i64::from(last.duration);
                (rescale(end, timescale, VIDEO_TIMESCALE), true)
            })
        } else {
            None
        };
        if let Some((end, audio_only)) = end {
            let video = self
                .video
                .as_mut()
                .map(|v| std::mem::take(&mut v.pending))
                .unwrap_or_default();
            if audio_only || !video.is_empty() {
                self.awaiting_audio.push_back(ClosedVideo {
                    video,
                    start: self.segment_start,
                    end,
                    discontinuity: self.segment_discontinuity,
                });
            }
        }
        self.flush(true);
    }

    fn set_origin(&mut self, offset_90k: i64) {
        self.origin_set = true;
        if let Some(video) = self.video.as_mut() {
            video.offset = offset_90k;
        }
        if let Some(audio) = self.audio.as_mut() {
            audio.offset = rescale(offset_90k, VIDEO_TIMESCALE, audio.timescale);
        }
    }

    fn push_video(&mut self, unit: AccessUnit) {
        if !self.origin_set {
            if !unit.keyframe {
                self.dropped_units += 1;
                return;
            }
            self.set_origin(self.start_position.saturating_sub(unit.dts));
            let composition = unit
                .pts
                .saturating_sub(unit.dts)
                .clamp(0, MAX_COMPOSITION_OFFSET_MS * VIDEO_TICKS_PER_MS);
            self.segment_start = self.start_position + composition;
            self.audio_floor = self.segment_start;
            self.push_mapped_video(unit);
            for early in std::mem::take(&mut self.early_audio) {
                self.push_audio(early);
            }
            return;
        }
        self.push_mapped_video(unit);
    }

    fn push_mapped_video(&mut self, unit: AccessUnit) {
        let head = self.head();
        let Some(video) = self.video.as_mut() else {
            return;
        };
        let input_pts = unit.pts;
        let (unit, jumped) = map_unit(video, unit, head);
        let dts = unit.dts;
        let keyframe = unit.keyframe;
        let first_dts = video.pending.first().map(|s| s.unit.dts);
        // Where the segment ends: a keyframe after the target, a keyframe that follows a jump,
        // or, without keyframes, any unit once the segment reaches the cap.
        let cut = first_dts.filter(|&first| {
            let length = unit.pts - self.segment_start;
            (keyframe && (jumped || length >= self.config.target))
                || dts - first >= self.config.max_segment
        });
        video.pending.push(TimedUnit {
            unit,
            duration: 0,
            input_pts,
        });
        if let Some(first) = cut {
            let span = dts - first;
            let mut closed = std::mem::take(&mut video.pending);
            if let Some(next) = closed.pop() {
                video.pending.push(next);
            }
            let end = self.segment_start + span;
            self.awaiting_audio.push_back(ClosedVideo {
                video: closed,
                start: self.segment_start,
                end,
                discontinuity: self.segment_discontinuity,
            });
            self.segment_start = end;
            self.segment_discontinuity = jumped && keyframe;
        }
        self.flush(false);
    }

    fn push_audio(&mut self, unit: AccessUnit) {
        if !self.origin_set {
            if self.video.is_some() {
                // Audio waits for the first video keyframe, which fixes the timeline origin.
                if self.early_audio.len() >= MAX_EARLY_AUDIO_UNITS {
                    self.early_audio.pop_front();
                    self.dropped_units += 1;
                }
                self.early_audio.push_back(unit);
                return;
            }
            let Some(audio) = self.audio.as_ref() else {
                return;
            };
            let start = rescale(self.start_position, VIDEO_TIMESCALE, audio.timescale);
            let offset = start.saturating_sub(unit.pts);
            self.set_origin(rescale(offset, audio.timescale, VIDEO_TIMESCALE));
            if let Some(audio) = self.audio.as_mut() {
                // Exact, not rounded through 90 kHz: the first frame lands on `start`.
                audio.offset = offset;
            }
            self.segment_start = self.start_position;
            self.audio_floor = self.start_position;
        }
        let head = self.head();
        let audio_only = self.video.is_none();
        let Some(audio) = self.audio.as_mut() else {
            return;
        };
        let input_pts = unit.pts;
        let (unit, jumped) = map_unit(audio, unit, head);
        let position = rescale(unit.pts, audio.timescale, VIDEO_TIMESCALE);
        if position < self.audio_floor && !jumped {
            // Before the first keyframe, or late for a segment already handed out.
            self.dropped_units += 1;
            return;
        }
        audio.pending.push(TimedUnit {
            unit,
            duration: 0,
            input_pts,
        });
        if audio_only
            && audio.pending.len() > 1
            && (jumped || position - self.segment_start >= self.config.target)
        {
            self.awaiting_audio.push_back(ClosedVideo {
                video: Vec::new(),
                start: self.segment_start,
                end: position,
                discontinuity: self.segment_discontinuity,
            });
            self.segment_start = position;
            self.segment_discontinuity = jumped;
        }
        self.flush(false);
    }

    /// The output position (90 kHz) that the stream has reached: where a re-anchored track
    /// continues so that it stays in step with the other.
    fn head(&self) -> i64 {
        [self.video.as_ref(), self.audio.as_ref()]
            .into_iter()
            .flatten()
            .filter_map(|track| {
                track
                    .expected_next()
                    .map(|next| rescale(next, track.timescale, VIDEO_TIMESCALE))
            })
            .max()
            .unwrap_or(self.start_position)
    }

    /// Hands out closed segments whose audio is complete (or all of them when `force`).
    fn flush(&mut self, force: bool) {
        while let Some(front) = self.awaiting_audio.front() {
            let end = front.end;
            if let Some(audio) = self.audio.as_ref() {
                let reached = audio
                    .last_dts
                    .is_some_and(|last| rescale(last, audio.timescale, VIDEO_TIMESCALE) >= end);
                let video_head = self.video.as_ref().and_then(|v| v.last_dts);
                let waited = video_head.is_some_and(|head| head >= end + self.config.audio_wait);
                if !(force || reached || waited) {
                    return;
                }
            }
            let Some(closed) = self.awaiting_audio.pop_front() else {
                return;
            };
            let mut audio_units = Vec::new();
            if let Some(audio) = self.audio.as_mut() {
                let timescale = audio.timescale;
                let split = audio
                    .pending
                    .iter()
                    .position(|s| rescale(s.unit.pts, timescale, VIDEO_TIMESCALE) >= end)
                    .unwrap_or(audio.pending.len());
                audio_units = audio.pending.drain(..split).collect();
                if let Some(last) = audio_units.last_mut()
                    && last.duration == 0
                {
                    last.duration = clamp_duration(audio.frame_duration);
                }
            }
            self.audio_floor = self.audio_floor.max(end);
            self.ready.push_back(CutSegment {
                video: closed.video,
                audio: audio_units,
                start: closed.start,
                end: closed.end,
                discontinuity: closed.discontinuity,
            });
        }
    }
}

/// Puts a unit on the output timeline, re-anchoring the track on a jump, and sets the decode
/// duration of the unit before it. Returns the mapped unit and whether it jumped.
fn map_unit(track: &mut Track, mut unit: AccessUnit, head_90k: i64) -> (AccessUnit, bool) {
    let mut dts = unit.dts.saturating_add(track.offset);
    let mut pts = unit.pts.saturating_add(track.offset);
    let mut jumped = false;
    if let (Some(last), Some(expected)) = (track.last_dts, track.expected_next()) {
        if dts < last || dts > expected.saturating_add(track.ms(JUMP_THRESHOLD_MS)) {
            let head = rescale(head_90k, VIDEO_TIMESCALE, track.timescale);
            let target = expected.max(head);
            let delta = target.saturating_sub(dts);
            track.offset = track.offset.saturating_add(delta);
            dts = target;
            pts = pts.saturating_add(delta);
            jumped = true;
        } else if dts == last {
            // Two units at one instant: nudge so that every decode duration is positive.
            dts = last + 1;
        }
        if !jumped && dts - last > 1 && dts - last < track.ms(1000) {
            track.frame_duration = dts - last;
        }
    }
    // Input promises pts >= dts; enforce it, and bound the lead so no segment can grow from it.
    pts = pts.clamp(dts, dts.saturating_add(track.ms(MAX_COMPOSITION_OFFSET_MS)));
    if let Some(previous) = track.pending.last_mut() {
        previous.duration = clamp_duration(dts - previous.unit.dts);
    }
    track.last_dts = Some(dts);
    unit.dts = dts;
    unit.pts = pts;
    (unit, jumped)
}

/// Gives the last pending unit its nominal duration (nothing follows it).
fn close_last(track: &mut Track) {
    let duration = clamp_duration(track.frame_duration);
    if let Some(last) = track.pending.last_mut()
        && last.duration == 0
    {
        last.duration = duration;
    }
}

/// Decode time spanned by units whose durations are all known.
fn span(units: &[TimedUnit]) -> Option<i64> {
    let first = units.first()?;
    let last = units.last()?;
    Some(last.unit.dts + i64::from(last.duration) - first.unit.dts)
}

fn clamp_duration(ticks: i64) -> u32 {
    u32::try_from(ticks.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[path = "segmenter_tests.rs"]
mod tests;
