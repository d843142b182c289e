//! The segment index of one stream: every segment still in the store, the Periods (publisher
//! sessions) they belong to, and the numbers playlists are made from. Rendering the HLS
//! playlists and the MPD is a pure function of this index, so it is tested without muxers.

use std::collections::VecDeque;

use media::{AacConfig, TrackConfig, VIDEO_TIMESCALE, rescale};

use crate::dash::{self, MpdKind};
use crate::hls::{self, SegmentFormat};

/// One track's part of a segment, on that track's timescale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackPart {
    pub start: i64,
    pub duration: u64,
    pub timescale: u32,
    /// Wall clock of `start`, Unix ms (`EXT-X-PROGRAM-DATE-TIME`).
    pub wall_ms: i64,
    pub bytes: u64,
    /// No media for this track in this segment: listed as a gap, no object in the store.
    pub gap: bool,
    /// Init segment file name in the track's folder (fMP4 tracks only).
    pub init_name: Option<String>,
}

/// One segment number: its parts in every track of the stream, all published together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentRecord {
    pub number: u64,
    pub period: usize,
    /// `EXT-X-DISCONTINUITY` before it: a returning publisher or a timestamp jump.
    pub discontinuity: bool,
    pub video: Option<TrackPart>,
    pub audio: Option<TrackPart>,
    /// The transcoded video renditions, in the stream's rung order (empty without a ladder).
    /// Their timing is the source's: same start, same duration.
    pub rungs: Vec<TrackPart>,
    /// The muxed MPEG-TS segment, on 90 kHz.
    pub ts: TrackPart,
}

impl SegmentRecord {
    /// Store paths of this segment's objects (gaps have none). `rung_names` are the stream's
    /// rungs, in the order of [`Self::rungs`].
    pub fn paths(&self, rung_names: &[String]) -> Vec<String> {
        let mut paths = Vec::with_capacity(3 + self.rungs.len());
        if self.video.as_ref().is_some_and(|part| !part.gap) {
            paths.push(format!("source/{}.m4s", self.number));
        }
        for (name, part) in rung_names.iter().zip(&self.rungs) {
            if !part.gap {
                paths.push(format!("{name}/{}.m4s", self.number));
            }
        }
        if self.audio.as_ref().is_some_and(|part| !part.gap) {
            paths.push(format!("audio/{}.m4s", self.number));
        }
        if !self.ts.gap {
            paths.push(format!("ts/{}.ts", self.number));
        }
        paths
    }
}

/// A publisher session's stretch of the timeline: a DASH Period.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeriodInfo {
    /// Where the Period starts on the output timeline, 90 kHz.
    pub start: i64,
    /// The source video track (H.264, HEVC or AV1) and its init segment's name.
    pub video: Option<(TrackConfig, String)>,
    pub audio: Option<(AacConfig, String)>,
    /// Parameters of each of the stream's rungs in this period (`None`: this publisher's ladder
    /// lacks it). Their init segments share the source's file name (the DASH template is one
    /// per AdaptationSet).
    pub rungs: Vec<Option<TrackConfig>>,
    /// Video samples and their total duration published in this period (measured frame rate).
    pub video_samples: u64,
    pub video_ticks: u64,
}

impl PeriodInfo {
    /// Frames per second as a fraction: the SPS timing if it has one, else measured.
    pub fn frame_rate(&self) -> Option<(u32, u32)> {
        let (video, _) = self.video.as_ref()?;
        self.rendition_frame_rate(video)
    }

    /// A video rendition's frame rate: its SPS timing, else the source's measured rate (a rung
    /// has the source's pictures).
    pub fn rendition_frame_rate(&self, video: &TrackConfig) -> Option<(u32, u32)> {
        if let Some(rate) = video.frame_rate().filter(|&(num, den)| num > 0 && den > 0) {
            return Some(rate);
        }
        if self.video_ticks == 0 {
            return None;
        }
        // Frames per 1000 s, rounded: enough for 29.970 and friends.
        let milli_fps = (self.video_samples * u64::from(VIDEO_TIMESCALE) * 1000
            + self.video_ticks / 2)
            / self.video_ticks;
        let milli_fps = u32::try_from(milli_fps).unwrap_or(u32::MAX);
        let divisor = gcd(milli_fps, 1000).max(1);
        Some((milli_fps / divisor, 1000 / divisor))
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Bit rates measured over every segment published so far. The top-level figures are the
/// source variant's (source video + audio); `rungs` are each rung's variant (rung + audio).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bitrates {
    pub peak_total: u64,
    pub peak_video: u64,
    pub peak_audio: u64,
    bytes: u64,
    ticks: u64,
    pub rungs: Vec<VariantRate>,
}

/// Peak and average of one rung's variant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VariantRate {
    pub peak_total: u64,
    pub peak_video: u64,
    bytes: u64,
    ticks: u64,
}

impl VariantRate {
    pub fn average_total(&self) -> u64 {
        (self.bytes * 8 * u64::from(VIDEO_TIMESCALE))
            .checked_div(self.ticks)
            .unwrap_or(0)
    }
}

fn rate(bytes: u64, ticks: u64, timescale: u32) -> u64 {
    (bytes * 8 * u64::from(timescale))
        .checked_div(ticks)
        .unwrap_or(0)
}

impl Bitrates {
    pub fn add(&mut self, record: &SegmentRecord) {
        let audio_bytes = record
            .audio
            .as_ref()
            .filter(|p| !p.gap)
            .map_or(0, |p| p.bytes);
        if self.rungs.len() < record.rungs.len() {
            self.rungs
                .resize(record.rungs.len(), VariantRate::default());
        }
        for (variant, part) in self.rungs.iter_mut().zip(&record.rungs) {
            let video = if part.gap { 0 } else { part.bytes };
            variant.peak_video = variant
                .peak_video
                .max(rate(video, part.duration, part.timescale));
            let bytes = video + audio_bytes;
            variant.peak_total =
                variant
                    .peak_total
                    .max(rate(bytes, record.ts.duration, VIDEO_TIMESCALE));
            variant.bytes += bytes;
            variant.ticks += record.ts.duration;
        }
        let video = record.video.as_ref().filter(|p| !p.gap);
        let audio = record.audio.as_ref().filter(|p| !p.gap);
        if let Some(v) = video {
            self.peak_video = self.peak_video.max(rate(v.bytes, v.duration, v.timescale));
        }
        if let Some(a) = audio {
            self.peak_audio = self.peak_audio.max(rate(a.bytes, a.duration, a.timescale));
        }
        let bytes = video.map_or(0, |p| p.bytes) + audio.map_or(0, |p| p.bytes);
        self.peak_total = self
            .peak_total
            .max(rate(bytes, record.ts.duration, VIDEO_TIMESCALE));
        self.bytes += bytes;
        self.ticks += record.ts.duration;
    }

    pub fn average_total(&self) -> u64 {
        (self.bytes * 8 * u64::from(VIDEO_TIMESCALE))
            .checked_div(self.ticks)
            .unwrap_or(0)
    }
}

/// What rendering needs besides the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderContext {
    pub has_video: bool,
    /// The stream's rungs (folder names), in the order of [`SegmentRecord::rungs`].
    pub rung_names: Vec<String>,
    pub has_audio: bool,
    pub window: usize,
    pub target_ms: u64,
    pub target_duration_secs: u64,
    /// Longest segment so far, ms.
    pub longest_segment_ms: u64,
    pub availability_start_ms: i64,
    pub now_ms: i64,
    pub ended: bool,
}

/// The segments still in the store, oldest first, and what left it.
#[derive(Debug, Default)]
pub struct SegmentIndex {
    pub records: VecDeque<SegmentRecord>,
    pub periods: Vec<PeriodInfo>,
    /// Discontinuities of records already dropped from `records`.
    removed_discontinuities: u64,
}

impl SegmentIndex {
    /// Adds a record; returns the records that left the store (listed-out for a whole window,
    /// RFC 8216bis §6.2.2), whose objects are to be removed.
    pub fn push(&mut self, record: SegmentRecord, window: usize) -> Vec<SegmentRecord> {
        self.records.push_back(record);
        let mut removed = Vec::new();
        while self.records.len() > window.saturating_mul(2).max(1) {
            if let Some(old) = self.records.pop_front() {
                self.removed_discontinuities += u64::from(old.discontinuity);
                removed.push(old);
            }
        }
        removed
    }

    fn listed(&self, window: usize) -> impl Iterator<Item = &SegmentRecord> {
        self.records
            .iter()
            .skip(self.records.len().saturating_sub(window.max(1)))
    }

    fn discontinuity_sequence(&self, window: usize) -> u64 {
        let unlisted = self.records.len().saturating_sub(window.max(1));
        self.removed_discontinuities
            + self
                .records
                .iter()
                .take(unlisted)
                .filter(|r| r.discontinuity)
                .count() as u64
    }

    /// A media playlist over one track's parts (`select` picks the part).
    pub fn media_playlist(
        &self,
        context: &RenderContext,
        format: SegmentFormat,
        select: impl Fn(&SegmentRecord) -> Option<&TrackPart>,
    ) -> String {
        let segments = self
            .listed(context.window)
            .filter_map(|record| {
                let part = select(record)?;
                Some(hls::PlaylistSegment {
                    number: record.number,
                    duration_ticks: part.duration,
                    timescale: part.timescale,
                    program_date_time_ms: part.wall_ms,
                    discontinuity: record.discontinuity,
                    gap: part.gap,
                    init_uri: part.init_name.clone(),
                })
            })
            .collect();
        hls::render_media_playlist(&hls::MediaPlaylist {
            format,
            target_duration_secs: context.target_duration_secs,
            discontinuity_sequence: self.discontinuity_sequence(context.window),
            segments,
            ended: context.ended,
        })
    }

    /// The multivariant playlist, from the latest Period's parameters: a variant for the
    /// source and one for each rung the latest publisher's ladder has.
    pub fn multivariant_playlist(&self, context: &RenderContext, rates: &Bitrates) -> String {
        let period = self.periods.last();
        let video = period.and_then(|p| p.video.as_ref());
        let audio = period.and_then(|p| p.audio.as_ref());
        let audio_codec = audio
            .filter(|_| context.has_audio)
            .map(|(aac, _)| aac.codec_string());
        let codecs = |video: Option<&TrackConfig>| {
            let mut codecs = Vec::with_capacity(2);
            codecs.extend(video.map(TrackConfig::codec_string));
            codecs.extend(audio_codec.clone());
            codecs
        };
        let mut variants = Vec::with_capacity(1 + context.rung_names.len());
        if context.has_video {
            variants.push(hls::Variant {
                bandwidth: rates.peak_total,
                average_bandwidth: rates.average_total(),
                codecs: codecs(video.map(|(video, _)| video)),
                resolution: video.and_then(|(video, _)| video.video_size()),
                frame_rate: period.and_then(PeriodInfo::frame_rate),
                uri: "source/index.m3u8".into(),
            });
            let rungs = period.map_or(&[][..], |p| &p.rungs[..]);
            for (index, (name, avc)) in context.rung_names.iter().zip(rungs).enumerate() {
                let (Some(avc), Some(info)) = (avc, period) else {
                    continue;
                };
                let rate = rates.rungs.get(index).cloned().unwrap_or_default();
                variants.push(hls::Variant {
                    bandwidth: rate.peak_total,
                    average_bandwidth: rate.average_total(),
                    codecs: codecs(Some(avc)),
                    resolution: avc.video_size(),
                    frame_rate: info.rendition_frame_rate(avc),
                    uri: format!("{name}/index.m3u8"),
                });
            }
        } else {
            variants.push(hls::Variant {
                bandwidth: rates.peak_total,
                average_bandwidth: rates.average_total(),
                codecs: codecs(None),
                resolution: None,
                frame_rate: None,
                uri: "audio/index.m3u8".into(),
            });
        }
        let rendition = (context.has_video && context.has_audio).then(|| hls::AudioRendition {
            name: "audio".into(),
            channels: audio.map_or(2, |(aac, _)| aac.channels),
            uri: "audio/index.m3u8".into(),
        });
        hls::render_multivariant_playlist(&hls::MultivariantPlaylist {
            variants,
            audio: rendition,
        })
    }

    /// The MPD: dynamic while live, static once ended (listing the segments still in the store,
    /// with the timeline rebased so that the first of them starts at 0).
    pub fn mpd(&self, context: &RenderContext, rates: &Bitrates) -> String {
        let listed: Vec<&SegmentRecord> = self.listed(context.window).collect();
        let base = if context.ended {
            listed.first().map_or(0, |r| r.ts.start)
        } else {
            0
        };
        let end = listed
            .last()
            .map_or(0, |r| r.ts.start + r.ts.duration as i64);
        let mut periods = Vec::new();
        for (index, info) in self.periods.iter().enumerate() {
            let records: Vec<&SegmentRecord> = listed
                .iter()
                .copied()
                .filter(|r| r.period == index)
                .collect();
            let Some(first) = records.first() else {
                continue;
            };
            let origin = info.start.max(base);
            let timeline = |part: fn(&SegmentRecord) -> Option<&TrackPart>, timescale: u32| {
                let init_name = records
                    .iter()
                    .find_map(|r| part(r).and_then(|p| p.init_name.clone()))
                    .unwrap_or_default();
                dash::SegmentTimeline {
                    timescale,
                    presentation_time_offset: rescale(origin, VIDEO_TIMESCALE, timescale).max(0)
                        as u64,
                    init_name,
                    start_number: first.number,
                    segments: records
                        .iter()
                        .filter_map(|r| part(r).map(|p| (p.start.max(0) as u64, p.duration)))
                        .collect(),
                }
            };
            let video = info
                .video
                .as_ref()
                .filter(|_| context.has_video)
                .map(|(avc, _)| {
                    let representation = |id: &str, video: &TrackConfig, bandwidth: u64| {
                        let (width, height) = video.video_size().unwrap_or((0, 0));
                        dash::VideoRepresentation {
                            id: id.to_owned(),
                            codecs: video.codec_string(),
                            width,
                            height,
                            frame_rate: info.rendition_frame_rate(video).unwrap_or((30, 1)),
                            bandwidth,
                        }
                    };
                    let mut representations = vec![representation(
                        dash::VIDEO_REPRESENTATION,
                        avc,
                        rates.peak_video,
                    )];
                    for (index, (name, rung)) in
                        context.rung_names.iter().zip(&info.rungs).enumerate()
                    {
                        if let Some(rung) = rung {
                            let peak = rates.rungs.get(index).map_or(0, |r| r.peak_video);
                            representations.push(representation(name, rung, peak));
                        }
                    }
                    dash::VideoAdaptationSet {
                        representations,
                        timeline: timeline(|r| r.video.as_ref(), VIDEO_TIMESCALE),
                    }
                });
            let audio = info
                .audio
                .as_ref()
                .filter(|_| context.has_audio)
                .map(|(aac, _)| dash::AudioAdaptationSet {
                    codecs: aac.codec_string(),
                    sample_rate: aac.sample_rate,
                    channels: aac.channels,
                    bandwidth: rates.peak_audio,
                    timeline: timeline(|r| r.audio.as_ref(), aac.sample_rate),
                });
            periods.push(dash::Period {
                id: index.to_string(),
                start_ticks: (origin - base).max(0) as u64,
                video,
                audio,
            });
        }
        let kind = if context.ended {
            MpdKind::Static {
                duration_ticks: (end - base).max(0) as u64,
            }
        } else {
            MpdKind::Dynamic {
                minimum_update_period_ms: context.target_ms,
                time_shift_buffer_depth_ms: context.target_ms * context.window as u64,
                suggested_presentation_delay_ms: context.target_ms * 3,
            }
        };
        dash::render_mpd(&dash::Mpd {
            kind,
            availability_start_ms: context.availability_start_ms,
            publish_time_ms: context.now_ms,
            min_buffer_time_ms: context.target_ms,
            max_segment_duration_ms: context.longest_segment_ms,
            periods,
        })
    }
}
