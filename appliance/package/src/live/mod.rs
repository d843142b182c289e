//! The live packager of one stream: cuts segments on keyframes, muxes them as CMAF (one track
//! per file, so the same segments serve HLS and DASH) and MPEG-TS, and renders the HLS
//! playlists and the DASH MPD after every change. Pure: wall-clock time comes in as an argument.
//!
//! Object paths (relative to `/live/<stream>/`):
//! `index.m3u8` (multivariant), `index.mpd`, `source/index.m3u8`, `source/init.mp4`,
//! `source/N.m4s` (video), `audio/index.m3u8`, `audio/init.mp4`, `audio/N.m4s`,
//! `ts/index.m3u8`, `ts/N.ts` (source video and audio muxed, same boundaries). A returning
//! publisher whose codec parameters differ gets a new init segment, `init-<period>.mp4`, so the
//! segments still listed before the discontinuity keep theirs.
//!
//! Transcoded renditions ([`LivePackager::handle_start_renditions`]) add `<name>/index.m3u8`,
//! `<name>/init.mp4`, `<name>/N.m4s` per rung. A rung is cut where the source is cut (the
//! ladder puts its IDRs there), so segment N of every rendition covers the same time; segment N
//! is published once every rung has it, or once the source has run `target_duration` past its
//! end (a lagging rung then gets what it has, or a gap).
//!
//! Run-loop contract: call a `handle_*` method, then drain [`LivePackager::poll_output`] until
//! `None`. Outputs come in batches ended by [`PackagerOutput::Commit`]; publish each batch
//! atomically: a batch holds segment N of every track, its init segments when new, every
//! playlist and the MPD, and the removals of segments that left the store. Nothing is
//! published before the first segment exists (a player opening early gets 404, not an empty
//! playlist).
//!
//! Segmentation and timestamp rules are in [`segmenter`]; the layout and the reasons are in
//! docs/packaging.md.

mod index;
pub mod segmenter;

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use media::{AacConfig, AccessUnit, AvcConfig, TrackConfig, TrackKind, VIDEO_TIMESCALE, rescale};

use crate::fmp4;
use crate::hls::SegmentFormat;
use crate::ts::TsMuxer;
use index::{Bitrates, PeriodInfo, RenderContext, SegmentIndex, SegmentRecord, TrackPart};
use segmenter::{CutSegment, Segmenter, SegmenterConfig};

/// Track ids inside the CMAF files (one track per file; distinct so they never clash if a
/// client combines them).
pub const VIDEO_TRACK_ID: u32 = 1;
pub const AUDIO_TRACK_ID: u32 = 2;
/// A segment with no keyframe is cut anyway at this many target durations.
pub use media::segment_rules::MAX_SEGMENT_TARGETS;
/// Rung units held while their segment is not cut yet; past this the oldest are dropped (a
/// ladder far ahead of the source cannot happen, so this only bounds a broken caller).
const MAX_PENDING_RUNG_UNITS: usize = 2048;
/// Folder names a rung may not take.
const RESERVED_NAMES: [&str; 3] = ["source", "audio", "ts"];

/// A transcoded video rendition (a rung of the ladder) of the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendition {
    /// Folder and DASH Representation id, e.g. `720p`: letters, digits, `-`, `_`, `.`, and not
    /// `source`, `audio` or `ts`.
    pub name: String,
    /// The rung's codec parameters (its init segment, CODECS, RESOLUTION): H.264 or AV1.
    pub track: TrackConfig,
}

/// Whether `name` can be a rung's folder.
pub fn valid_rendition_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !RESERVED_NAMES.contains(&name)
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Settings of a stream's packager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackagerConfig {
    /// Segments are cut on the first keyframe at or after this much media time.
    pub target_duration: Duration,
    /// Segments listed in a live playlist. Segments that leave it stay fetchable for one more
    /// window, then are removed from the store.
    pub window: usize,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            target_duration: Duration::from_secs(2),
            window: 6,
        }
    }
}

/// What an output object is, so the engine can pick its content type and cache policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// HLS playlist, multivariant or media; changes as the stream advances.
    Playlist,
    /// DASH MPD; changes as the stream advances.
    Mpd,
    /// A playlist or MPD of an ended stream: it will not change again.
    FinalPlaylist,
    FinalMpd,
    VideoInit,
    AudioInit,
    VideoSegment,
    AudioSegment,
    TsSegment,
}

/// One change to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackagerOutput {
    Put {
        path: String,
        kind: ObjectKind,
        body: bytes::Bytes,
    },
    Remove {
        path: String,
    },
    /// The end of one consistent batch: publish everything before it together.
    Commit,
}

/// One publisher's time on the stream.
#[derive(Debug)]
struct Session {
    video: Option<TrackConfig>,
    audio: Option<AacConfig>,
    period: usize,
    /// Created at the first unit, when the session's place on the timeline is known.
    segmenter: Option<Segmenter>,
    ts: Option<TsMuxer>,
    /// (wall clock, output position at 90 kHz) of the session's first unit.
    anchor: (i64, i64),
    /// The Period's init segments are in the store.
    init_published: bool,
    /// This publisher's rungs, in the order given to `handle_start_renditions`.
    rungs: Vec<SessionRung>,
    /// Segments cut from the source, waiting for their rungs.
    awaiting_rungs: VecDeque<CutSegment>,
    /// No more rung units will come (the ladder ended or failed): publish without waiting.
    rungs_ended: bool,
}

/// One rung's units of the current session, waiting for the segment they belong to.
#[derive(Debug)]
struct SessionRung {
    /// Index among the stream's rungs; `None` for a rung the stream does not have.
    stream_index: Option<usize>,
    /// Units as the ladder made them: the source's input pts, decode order.
    pending: VecDeque<AccessUnit>,
    newest_input_pts: Option<i64>,
}

/// See the module docs.
#[derive(Debug)]
pub struct LivePackager {
    config: PackagerConfig,
    segmenter_config: SegmenterConfig,
    outputs: VecDeque<PackagerOutput>,
    /// The stream's tracks, fixed by the first publisher.
    tracks: Option<(bool, bool)>,
    session: Option<Session>,
    index: SegmentIndex,
    rates: Bitrates,
    next_number: u64,
    /// Wall clock of output time 0 (DASH `availabilityStartTime`).
    availability_start_ms: Option<i64>,
    /// End of the output timeline so far, 90 kHz.
    timeline_end: i64,
    target_duration_secs: u64,
    longest_segment_ms: u64,
    ended: bool,
    dropped_units: u64,
    /// The stream's rungs (folder names), fixed by the first publisher like its tracks.
    rung_names: Option<Vec<String>>,
    late_rendition_units: u64,
}

impl LivePackager {
    pub fn new(config: PackagerConfig) -> Self {
        let target = i64::try_from(config.target_duration.as_micros() * 9 / 100)
            .unwrap_or(i64::MAX)
            .max(1);
        let target_duration_secs = (config.target_duration.as_millis() as u64 + 500) / 1000;
        LivePackager {
            segmenter_config: SegmenterConfig {
                target,
                max_segment: target.saturating_mul(i64::from(MAX_SEGMENT_TARGETS)),
                audio_wait: target,
            },
            config,
            outputs: VecDeque::new(),
            tracks: None,
            session: None,
            index: SegmentIndex::default(),
            rates: Bitrates::default(),
            next_number: 0,
            availability_start_ms: None,
            timeline_end: 0,
            target_duration_secs: target_duration_secs.max(1),
            longest_segment_ms: 0,
            ended: false,
            dropped_units: 0,
            rung_names: None,
            late_rendition_units: 0,
        }
    }

    /// A publisher (re)starts with these tracks. `wall_clock_ms` is Unix time in ms. The first
    /// call starts the stream and fixes its tracks; a later one (a publisher back within the
    /// grace period) continues the same playlists after a discontinuity, in a new DASH Period.
    /// A returning publisher's extra tracks are ignored; tracks it lacks become gaps.
    pub fn handle_start(
        &mut self,
        wall_clock_ms: i64,
        video: Option<AvcConfig>,
        audio: Option<AacConfig>,
    ) {
        self.handle_start_tracks(
            wall_clock_ms,
            video.map(TrackConfig::Avc),
            audio,
            Vec::new(),
        );
    }

    /// As [`Self::handle_start`], with transcoded video renditions beside the source. Their
    /// units come through [`Self::handle_rendition_unit`], `rendition` being the index in
    /// `rungs`, carrying the source's input timestamps (the ladder keeps them). The first
    /// start fixes the stream's rungs, as it fixes its tracks: a returning publisher's extra
    /// rungs are ignored and rungs it lacks become gaps. Rungs with an invalid or repeated
    /// name ([`valid_rendition_name`]) are ignored, and so is every rung of a stream without
    /// video. The MPEG-TS variant stays the source only.
    pub fn handle_start_renditions(
        &mut self,
        wall_clock_ms: i64,
        video: Option<AvcConfig>,
        audio: Option<AacConfig>,
        rungs: Vec<Rendition>,
    ) {
        self.handle_start_tracks(wall_clock_ms, video.map(TrackConfig::Avc), audio, rungs);
    }

    /// As [`Self::handle_start_renditions`] with a source video track of any codec the CMAF
    /// muxer writes ([`TrackConfig::Avc`], [`TrackConfig::Hevc`], [`TrackConfig::Av1`]); the
    /// codec strings of the playlists and MPD come from [`TrackConfig::codec_string`]. The
    /// MPEG-TS variant carries H.264 and HEVC; a stream with AV1 video has none (no TS
    /// segments, `ts/index.m3u8` is not published): see [`crate::ts::carries_video`].
    pub fn handle_start_tracks(
        &mut self,
        wall_clock_ms: i64,
        video: Option<TrackConfig>,
        audio: Option<AacConfig>,
        rungs: Vec<Rendition>,
    ) {
        let video = video.filter(|video| video.kind() == TrackKind::Video);
        if self.ended {
            return;
        }
        if self.session.is_some() {
            // A start without the previous publisher's end: close what it left open.
            self.handle_publisher_gone(wall_clock_ms);
        }
        if self.tracks.is_none() {
            let mut names: Vec<String> = Vec::new();
            if video.is_some() {
                for rung in &rungs {
                    if valid_rendition_name(&rung.name) && !names.contains(&rung.name) {
                        names.push(rung.name.clone());
                    }
                }
            }
            self.rung_names = Some(names);
        }
        let (has_video, has_audio) = *self
            .tracks
            .get_or_insert((video.is_some(), audio.is_some()));
        let video = video.filter(|_| has_video);
        let audio = audio.filter(|_| has_audio);
        let names = self.rung_names.as_deref().unwrap_or_default();
        let stream_index = |rung: &Rendition| names.iter().position(|n| *n == rung.name);
        let mut period_rungs: Vec<Option<TrackConfig>> = vec![None; names.len()];
        let mut session_rungs = Vec::with_capacity(rungs.len());
        for rung in &rungs {
            let index = stream_index(rung)
                .filter(|&i| video.is_some() && period_rungs.get(i).is_some_and(Option::is_none));
            if let Some(slot) = index.and_then(|i| period_rungs.get_mut(i)) {
                *slot = Some(rung.track.clone());
            }
            session_rungs.push(SessionRung {
                stream_index: index,
                pending: VecDeque::new(),
                newest_input_pts: None,
            });
        }
        let period = self.index.periods.len();
        let previous = self.index.periods.last();
        let video_init = video.as_ref().map(|video| {
            // The rungs share the source's init name (one DASH template for the video
            // AdaptationSet), so a change in any of them is a new name.
            let same = previous
                .filter(|p| p.rungs == period_rungs)
                .and_then(|p| p.video.as_ref())
                .filter(|(v, _)| v == video);
            let name = same.map_or_else(|| init_name(period), |(_, name)| name.clone());
            (video.clone(), name)
        });
        let audio_init = audio.as_ref().map(|aac| {
            let same = previous
                .and_then(|p| p.audio.as_ref())
                .filter(|(a, _)| a == aac);
            let name = same.map_or_else(|| init_name(period), |(_, name)| name.clone());
            (aac.clone(), name)
        });
        self.index.periods.push(PeriodInfo {
            start: 0, // set at the first unit
            video: video_init,
            audio: audio_init,
            rungs: period_rungs,
            video_samples: 0,
            video_ticks: 0,
        });
        self.session = Some(Session {
            ts: (video.is_some() || audio.is_some())
                .then(|| TsMuxer::with_video(video.clone(), audio.clone()))
                .flatten(),
            video,
            audio,
            period,
            segmenter: None,
            anchor: (wall_clock_ms, 0),
            init_published: false,
            rungs: session_rungs,
            awaiting_rungs: VecDeque::new(),
            rungs_ended: false,
        });
    }

    /// One unit of a transcoded rendition of the current publisher: `rendition` indexes the
    /// `rungs` of [`Self::handle_start_renditions`]. Units come in decode order with the
    /// source's input pts; a unit whose segment is already published is dropped and counted
    /// ([`Self::late_rendition_units`]).
    pub fn handle_rendition_unit(
        &mut self,
        wall_clock_ms: i64,
        rendition: usize,
        unit: AccessUnit,
    ) {
        let rung = self
            .session
            .as_mut()
            .and_then(|s| s.rungs.get_mut(rendition))
            .filter(|r| r.stream_index.is_some());
        let Some(rung) = rung.filter(|_| unit.kind() == TrackKind::Video) else {
            self.late_rendition_units += 1;
            return;
        };
        rung.newest_input_pts = Some(rung.newest_input_pts.map_or(unit.pts, |p| p.max(unit.pts)));
        if rung.pending.len() >= MAX_PENDING_RUNG_UNITS {
            rung.pending.pop_front();
            self.late_rendition_units += 1;
        }
        rung.pending.push_back(unit);
        self.publish_ready(wall_clock_ms, false);
    }

    /// No more rendition units will come for the current publisher (its ladder ended or
    /// failed): segments stop waiting for them.
    pub fn handle_renditions_end(&mut self, wall_clock_ms: i64) {
        if let Some(session) = self.session.as_mut() {
            session.rungs_ended = true;
        }
        self.publish_ready(wall_clock_ms, false);
    }

    /// One access unit of the current publisher. `wall_clock_ms` is when it arrived.
    pub fn handle_unit(&mut self, wall_clock_ms: i64, unit: AccessUnit) {
        let Some(session) = self.session.as_mut() else {
            self.dropped_units += 1;
            return;
        };
        if session.segmenter.is_none() {
            // The session lands where the wall clock says, so the DASH timeline stays on
            // wall-clock time, and never before the end of what is already published.
            let availability_start = *self.availability_start_ms.get_or_insert(wall_clock_ms);
            let since_start = wall_clock_ms.saturating_sub(availability_start).max(0);
            let position = self.timeline_end.max(since_start.saturating_mul(90));
            // Whole milliseconds, so that `Period@start` is exact.
            let position = (position + 89) / 90 * 90;
            session.anchor = (wall_clock_ms, position);
            if let Some(period) = self.index.periods.get_mut(session.period) {
                period.start = position;
            }
            let frame = session
                .video
                .as_ref()
                .and_then(TrackConfig::frame_rate)
                .filter(|&(num, den)| num > 0 && den > 0)
                .map_or(3000, |(num, den)| {
                    i64::from(den) * i64::from(VIDEO_TIMESCALE) / i64::from(num)
                });
            session.segmenter = Some(Segmenter::new(
                self.segmenter_config,
                position,
                session.video.as_ref().map(|_| frame.max(1)),
                session
                    .audio
                    .as_ref()
                    .map(|aac| (aac.sample_rate, aac.frame_samples())),
            ));
        }
        if let Some(segmenter) = session.segmenter.as_mut() {
            segmenter.push(unit);
        }
        self.publish_ready(wall_clock_ms, false);
    }

    /// The publisher went away: the segment in progress is closed and published.
    pub fn handle_publisher_gone(&mut self, wall_clock_ms: i64) {
        if let Some(segmenter) = self.session.as_mut().and_then(|s| s.segmenter.as_mut()) {
            segmenter.finish();
        }
        self.publish_ready(wall_clock_ms, true);
        if let Some(session) = self.session.take() {
            self.dropped_units += session.segmenter.map_or(0, |s| s.dropped_units());
            let left: usize = session.rungs.iter().map(|r| r.pending.len()).sum();
            self.late_rendition_units += left as u64;
        }
    }

    /// The grace period passed: playlists get EXT-X-ENDLIST and the MPD becomes static.
    /// Units and starts after this are ignored.
    pub fn handle_end(&mut self, wall_clock_ms: i64) {
        if self.ended {
            return;
        }
        self.handle_publisher_gone(wall_clock_ms);
        self.ended = true;
        if !self.index.records.is_empty() {
            self.put_manifests(wall_clock_ms);
            self.outputs.push_back(PackagerOutput::Commit);
        }
    }

    /// The next change to publish; see the module docs for batches.
    pub fn poll_output(&mut self) -> Option<PackagerOutput> {
        self.outputs.pop_front()
    }

    /// Segments published so far (the next segment's number).
    pub fn published_segments(&self) -> u64 {
        self.next_number
    }

    /// Units that could not be placed: before a publisher started or before its first
    /// keyframe, audio too late for its segment, tracks the stream does not have.
    pub fn dropped_units(&self) -> u64 {
        self.dropped_units
            + self
                .session
                .as_ref()
                .and_then(|s| s.segmenter.as_ref())
                .map_or(0, |s| s.dropped_units())
    }

    /// Peak and average bit rate (bits/s) over the segments published so far, all tracks.
    pub fn bandwidth(&self) -> (u64, u64) {
        (self.rates.peak_total, self.rates.average_total())
    }

    /// Peak and average bit rate (bits/s) of each rung's variant (rung video + audio), in the
    /// stream's rung order, with the rung names.
    pub fn rendition_bandwidths(&self) -> Vec<(String, u64, u64)> {
        let names = self.rung_names.as_deref().unwrap_or_default();
        names
            .iter()
            .enumerate()
            .map(|(index, name)| {
                let rate = self.rates.rungs.get(index).cloned().unwrap_or_default();
                (name.clone(), rate.peak_total, rate.average_total())
            })
            .collect()
    }

    /// Rendition units that found no place: their segment was already published (the rung
    /// lagged past the wait), a rendition index the publisher did not start with, units left
    /// when the publisher went, or units before a segment's IDR.
    pub fn late_rendition_units(&self) -> u64 {
        self.late_rendition_units
    }

    /// Publishes the segments that are ready: cut from the source, and with every rung's
    /// units (or waited for long enough, or `force`d when the publisher is gone).
    fn publish_ready(&mut self, wall_clock_ms: i64, force: bool) {
        let wait = self.segmenter_config.target;
        loop {
            let Some(session) = self.session.as_mut() else {
                return;
            };
            if let Some(segmenter) = session.segmenter.as_mut() {
                while let Some(cut) = segmenter.pop() {
                    session.awaiting_rungs.push_back(cut);
                }
            }
            let Some(front) = session.awaiting_rungs.front() else {
                return;
            };
            let ready = force || session.rungs_ended || {
                let newest_source = front.video.iter().map(|s| s.input_pts).max();
                let rungs_have_it = session
                    .rungs
                    .iter()
                    .filter(|r| r.stream_index.is_some())
                    .all(|r| r.newest_input_pts >= newest_source);
                let head = session.segmenter.as_ref().and_then(Segmenter::video_head);
                let waited = head.is_some_and(|head| head >= front.end.saturating_add(wait));
                rungs_have_it || waited
            };
            if !ready {
                return;
            }
            let Some(cut) = session.awaiting_rungs.pop_front() else {
                return;
            };
            self.publish_segment(cut, wall_clock_ms);
        }
    }

    /// Muxes one segment of every track, then publishes it with fresh playlists in one batch.
    fn publish_segment(&mut self, cut: CutSegment, wall_clock_ms: i64) {
        // Parameters of earlier periods, for tracks this publisher lacks (their gaps).
        let last_video_init = self.last_init(|r| r.video.as_ref());
        let last_audio_init = self.last_init(|r| r.audio.as_ref());
        let last_audio_rate = self
            .index
            .records
            .back()
            .and_then(|r| r.audio.as_ref())
            .map(|p| p.timescale);
        let Some(session) = self.session.as_mut() else {
            return;
        };
        let Some(period) = self.index.periods.get_mut(session.period) else {
            return;
        };
        let (has_video, has_audio) = self.tracks.unwrap_or((false, false));
        // alloc: the rung names once per segment, to borrow them beside the session.
        let rung_names = self.rung_names.clone().unwrap_or_default();
        let number = self.next_number;
        self.next_number += 1;
        // mfhd sequence numbers start at 1 and may wrap (ISO/IEC 14496-12 §8.8.5).
        let sequence = (number as u32).wrapping_add(1);
        let (anchor_wall, anchor_position) = session.anchor;
        let wall = |position_90k: i64| anchor_wall + (position_90k - anchor_position) / 90;
        let outputs = &mut self.outputs;

        let first_in_period = !session.init_published;
        if first_in_period {
            session.init_published = true;
            if let Some((video, name)) = &period.video {
                let body = fmp4::init_segment(VIDEO_TRACK_ID, video);
                put(
                    outputs,
                    format!("source/{name}"),
                    ObjectKind::VideoInit,
                    body,
                );
            }
            if let Some((_, name)) = &period.video {
                for (rung, video) in rung_names.iter().zip(&period.rungs) {
                    if let Some(video) = video {
                        let body = fmp4::init_segment(VIDEO_TRACK_ID, video);
                        put(
                            outputs,
                            format!("{rung}/{name}"),
                            ObjectKind::VideoInit,
                            body,
                        );
                    }
                }
            }
            if let Some((aac, name)) = &period.audio {
                let body = fmp4::init_segment(AUDIO_TRACK_ID, &TrackConfig::Aac(aac.clone()));
                put(
                    outputs,
                    format!("audio/{name}"),
                    ObjectKind::AudioInit,
                    body,
                );
            }
        }

        let span = (cut.end - cut.start).max(0) as u64;
        let video_init_name = period
            .video
            .as_ref()
            .map(|(_, name)| name.clone())
            .or(last_video_init);
        let mut rungs = Vec::new();
        if has_video {
            for (index, name) in rung_names.iter().enumerate() {
                let session_rung = session
                    .rungs
                    .iter_mut()
                    .find(|r| r.stream_index == Some(index));
                let units = session_rung.map_or_else(Vec::new, |rung| {
                    rung_units(rung, &cut, &mut self.late_rendition_units)
                });
                let mut part = TrackPart {
                    start: cut.start,
                    duration: span,
                    timescale: VIDEO_TIMESCALE,
                    wall_ms: wall(cut.start),
                    bytes: 0,
                    gap: units.is_empty(),
                    init_name: video_init_name.clone(),
                };
                if !units.is_empty() {
                    let body = fmp4::media_segment(sequence, VIDEO_TRACK_ID, &samples(&units));
                    part.bytes = body.len() as u64;
                    put(
                        outputs,
                        format!("{name}/{number}.m4s"),
                        ObjectKind::VideoSegment,
                        body,
                    );
                }
                rungs.push(part);
            }
        }
        let video = has_video.then(|| {
            let init_name = period.video.as_ref().map(|(_, name)| name.clone());
            let mut part = TrackPart {
                start: cut.start,
                duration: span,
                timescale: VIDEO_TIMESCALE,
                wall_ms: wall(cut.start),
                bytes: 0,
                gap: cut.video.is_empty(),
                init_name: init_name.or_else(|| video_init_name.clone()),
            };
            if !cut.video.is_empty() {
                let samples = samples(&cut.video);
                let body = fmp4::media_segment(sequence, VIDEO_TRACK_ID, &samples);
                part.bytes = body.len() as u64;
                period.video_samples += samples.len() as u64;
                period.video_ticks += span;
                put(
                    outputs,
                    format!("source/{number}.m4s"),
                    ObjectKind::VideoSegment,
                    body,
                );
            }
            part
        });
        let audio_rate = period.audio.as_ref().map(|(aac, _)| aac.sample_rate.max(1));
        let audio = has_audio.then(|| {
            let rate = audio_rate.or(last_audio_rate).unwrap_or(48_000).max(1);
            let init_name = period.audio.as_ref().map(|(_, name)| name.clone());
            let start = cut
                .audio
                .first()
                .map_or_else(|| rescale(cut.start, VIDEO_TIMESCALE, rate), |s| s.unit.pts);
            let duration = if cut.audio.is_empty() {
                rescale(span as i64, VIDEO_TIMESCALE, rate).max(0) as u64
            } else {
                cut.audio.iter().map(|s| u64::from(s.duration)).sum()
            };
            let mut part = TrackPart {
                start,
                duration,
                timescale: rate,
                wall_ms: wall(rescale(start, rate, VIDEO_TIMESCALE)),
                bytes: 0,
                gap: cut.audio.is_empty(),
                init_name: init_name.or(last_audio_init),
            };
            if !cut.audio.is_empty() {
                let body = fmp4::media_segment(sequence, AUDIO_TRACK_ID, &samples(&cut.audio));
                part.bytes = body.len() as u64;
                put(
                    outputs,
                    format!("audio/{number}.m4s"),
                    ObjectKind::AudioSegment,
                    body,
                );
            }
            part
        });

        let ts_body = session
            .ts
            .as_mut()
            .filter(|_| !(cut.video.is_empty() && cut.audio.is_empty()))
            .map(|muxer| mux_ts(muxer, &cut, audio_rate.unwrap_or(VIDEO_TIMESCALE)));
        let ts = TrackPart {
            start: cut.start,
            duration: span,
            timescale: VIDEO_TIMESCALE,
            wall_ms: wall(cut.start),
            bytes: ts_body.as_ref().map_or(0, |b| b.len() as u64),
            gap: ts_body.is_none(),
            init_name: None,
        };
        if let Some(body) = ts_body {
            put(
                outputs,
                format!("ts/{number}.ts"),
                ObjectKind::TsSegment,
                body,
            );
        }

        let record = SegmentRecord {
            number,
            period: session.period,
            // The first segment of a returning publisher follows a discontinuity.
            discontinuity: cut.discontinuity || (first_in_period && number > 0),
            video,
            audio,
            rungs,
            ts,
        };
        self.timeline_end = self.timeline_end.max(cut.end);
        self.longest_segment_ms = self.longest_segment_ms.max((span * 1000).div_ceil(90_000));
        // EXT-X-TARGETDURATION only grows: the EXTINF of every segment, rounded to the nearest
        // second, must not exceed it (RFC 8216bis §4.4.3.1).
        self.target_duration_secs = self.target_duration_secs.max((span + 45_000) / 90_000);
        self.rates.add(&record);
        let removed = self.index.push(record, self.config.window);
        self.put_manifests(wall_clock_ms);
        for old in removed {
            for path in old.paths(&rung_names) {
                self.outputs.push_back(PackagerOutput::Remove { path });
            }
        }
        self.outputs.push_back(PackagerOutput::Commit);
    }

    fn last_init(&self, part: fn(&SegmentRecord) -> Option<&TrackPart>) -> Option<String> {
        self.index
            .records
            .iter()
            .rev()
            .find_map(|r| part(r).and_then(|p| p.init_name.clone()))
    }

    /// Renders and queues every playlist and the MPD.
    fn put_manifests(&mut self, wall_clock_ms: i64) {
        let (has_video, has_audio) = self.tracks.unwrap_or((false, false));
        let rung_names = self.rung_names.clone().unwrap_or_default();
        let context = RenderContext {
            has_video,
            rung_names: rung_names.clone(),
            has_audio,
            window: self.config.window,
            target_ms: self.config.target_duration.as_millis() as u64,
            target_duration_secs: self.target_duration_secs,
            longest_segment_ms: self.longest_segment_ms,
            availability_start_ms: self.availability_start_ms.unwrap_or(wall_clock_ms),
            now_ms: wall_clock_ms,
            ended: self.ended,
        };
        let (playlist, mpd) = if self.ended {
            (ObjectKind::FinalPlaylist, ObjectKind::FinalMpd)
        } else {
            (ObjectKind::Playlist, ObjectKind::Mpd)
        };
        let text = |s: String| Bytes::from(s.into_bytes());
        if has_video {
            let body = self
                .index
                .media_playlist(&context, SegmentFormat::Fmp4, |r| r.video.as_ref());
            put(
                &mut self.outputs,
                "source/index.m3u8".into(),
                playlist,
                text(body),
            );
        }
        for (index, name) in rung_names.iter().enumerate() {
            let body = self
                .index
                .media_playlist(&context, SegmentFormat::Fmp4, |r| r.rungs.get(index));
            put(
                &mut self.outputs,
                format!("{name}/index.m3u8"),
                playlist,
                text(body),
            );
        }
        if has_audio {
            let body = self
                .index
                .media_playlist(&context, SegmentFormat::Fmp4, |r| r.audio.as_ref());
            put(
                &mut self.outputs,
                "audio/index.m3u8".into(),
                playlist,
                text(body),
            );
        }
        // No TS variant for video the TS muxer does not carry (AV1): no playlist of gaps.
        let ts_variant = self
            .index
            .periods
            .last()
            .and_then(|p| p.video.as_ref())
            .is_none_or(|(video, _)| crate::ts::carries_video(video));
        if ts_variant {
            let body = self
                .index
                .media_playlist(&context, SegmentFormat::Ts, |r| Some(&r.ts));
            put(
                &mut self.outputs,
                "ts/index.m3u8".into(),
                playlist,
                text(body),
            );
        }
        let body = self.index.multivariant_playlist(&context, &self.rates);
        put(&mut self.outputs, "index.m3u8".into(), playlist, text(body));
        let body = self.index.mpd(&context, &self.rates);
        put(&mut self.outputs, "index.mpd".into(), mpd, text(body));
    }
}

fn init_name(period: usize) -> String {
    if period == 0 {
        "init.mp4".into()
    } else {
        format!("init-{period}.mp4")
    }
}

fn put(outputs: &mut VecDeque<PackagerOutput>, path: String, kind: ObjectKind, body: Bytes) {
    outputs.push_back(PackagerOutput::Put { path, kind, body });
}

/// Takes a rung's units for `cut` and puts them on the output timeline. The rung's units carry
/// the source's input pts, so each is placed where the source unit with that pts was placed
/// (a pts the source did not have takes the offset of the source unit before it). Units of
/// earlier segments (late) and units before the segment's IDR are dropped and counted. The
/// last unit lasts until the cut's end, so the rung's segment spans exactly the source's.
fn rung_units(
    rung: &mut SessionRung,
    cut: &CutSegment,
    late: &mut u64,
) -> Vec<segmenter::TimedUnit> {
    // alloc: one small map and one unit list per rung and segment.
    let mut map: Vec<(i64, i64)> = cut
        .video
        .iter()
        .map(|s| (s.input_pts, s.unit.pts))
        .collect();
    map.sort_unstable();
    let (Some(&(first_in, _)), Some(&(last_in, _))) = (map.first(), map.last()) else {
        return Vec::new();
    };
    let mut units: Vec<segmenter::TimedUnit> = Vec::new();
    while let Some(unit) = rung.pending.pop_front() {
        if unit.pts > last_in {
            rung.pending.push_front(unit);
            break;
        }
        if unit.pts < first_in || (units.is_empty() && !unit.keyframe) {
            *late += 1;
            continue;
        }
        let place = map.partition_point(|&(input, _)| input <= unit.pts);
        let (input, output) = map[place.saturating_sub(1)];
        let pts = output.saturating_add(unit.pts - input);
        let composition = unit.pts.saturating_sub(unit.dts).clamp(0, 450_000);
        let mut dts = pts - composition;
        if let Some(previous) = units.last_mut() {
            dts = dts.max(previous.unit.dts + 1);
            previous.duration = clamp_duration(dts - previous.unit.dts);
        }
        let input_pts = unit.pts;
        let mut unit = unit;
        unit.pts = pts.max(dts);
        unit.dts = dts;
        units.push(segmenter::TimedUnit {
            unit,
            duration: 0,
            input_pts,
        });
    }
    if let Some(last) = units.last_mut() {
        last.duration = clamp_duration(cut.end - last.unit.dts);
    }
    units
}

fn clamp_duration(ticks: i64) -> u32 {
    u32::try_from(ticks.max(1)).unwrap_or(u32::MAX)
}

/// The fMP4 samples of timed units; payloads are shared, not copied.
fn samples(units: &[segmenter::TimedUnit]) -> Vec<fmp4::Sample> {
    units
        .iter()
        .map(|s| fmp4::Sample::from_unit(&s.unit, s.duration))
        .collect()
}

/// One TS segment: tables, then both tracks' units in decode-time order.
fn mux_ts(muxer: &mut TsMuxer, cut: &CutSegment, audio_rate: u32) -> Bytes {
    let bytes: usize = cut
        .video
        .iter()
        .chain(&cut.audio)
        .map(|s| s.unit.payload.len())
        .sum();
    // alloc: one buffer per segment; TS adds a few percent of packet overhead.
    let mut out = Vec::with_capacity(bytes + bytes / 16 + 4096);
    muxer.write_tables(&mut out);
    let mut audio = cut.audio.iter().peekable();
    for video in &cut.video {
        while let Some(frame) =
            audio.next_if(|a| rescale(a.unit.dts, audio_rate, VIDEO_TIMESCALE) <= video.unit.dts)
        {
            muxer.write_unit(&frame.unit, &mut out);
        }
        muxer.write_unit(&video.unit, &mut out);
    }
    for frame in audio {
        muxer.write_unit(&frame.unit, &mut out);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests;
