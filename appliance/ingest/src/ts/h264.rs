//! H.264 and HEVC in MPEG-TS (ISO/IEC 13818-1 §2.14 and §2.17, stream_type 0x1b and 0x24):
//! Annex B byte streams (ITU-T H.264 Annex B, H.265 Annex B) in PES packets, turned into
//! access units with 4-byte NAL lengths. The two codecs differ only in the NAL header (one
//! byte and type `& 0x1f` for H.264, two bytes and type `(b0 >> 1) & 0x3f` for HEVC) and in
//! which types are parameter sets, delimiters, pictures and sync pictures; see [`VideoCodec`].
//!
//! Access units: a new one starts at each PES that carries a PTS, and at each access unit
//! delimiter that follows a coded slice (§7.4.1.2.3: the AUD is the first NAL of an access
//! unit). A PES without a PTS continues the access unit in progress (encoders that split a
//! large picture over several PES do that). An access unit is complete when the next one
//! starts, so the newest picture waits for the next PES: one frame of latency.
//!
//! SPS and PPS (and VPS for HEVC) are taken into an [`AvcConfig`] / [`HevcConfig`] and removed
//! from the samples, as are AUDs: parameter sets travel in the track config (crate `media`
//! docs), and the TS muxer writes its own AUDs. An access unit with an IDR slice (H.264) or an
//! IRAP picture (HEVC: BLA, IDR or CRA, H.265 §7.4.2.2) is a keyframe.

use std::collections::VecDeque;

use bytes::Bytes;
use media::{AccessUnit, AvcConfig, Codec, HevcConfig, VIDEO_TIMESCALE, hevc};

use super::{TsCounters, TsEvent};

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// The largest access unit gathered from PES packets without a PTS, like
/// [`super::pes::MAX_PES_BYTES`].
const MAX_ACCESS_UNIT_BYTES: usize = super::pes::MAX_PES_BYTES;

pub use media::annex_b::nal_units;

/// Which video codec an elementary stream carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VideoCodec {
    #[default]
    H264,
    Hevc,
}

/// What a NAL unit is, as far as access units and track configs are concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NalRole {
    Delimiter,
    Vps,
    Sps,
    Pps,
    /// A coded slice; `true` for a sync picture.
    Slice(bool),
    Other,
}

impl VideoCodec {
    fn role(self, nal: &[u8]) -> NalRole {
        match self {
            VideoCodec::H264 => match nal.first().map(|b| b & 0x1f) {
                Some(NAL_AUD) => NalRole::Delimiter,
                Some(NAL_SPS) => NalRole::Sps,
                Some(NAL_PPS) => NalRole::Pps,
                Some(kind @ 1..=5) => NalRole::Slice(kind == NAL_IDR),
                _ => NalRole::Other,
            },
            VideoCodec::Hevc => match hevc::nal_unit_type(nal) {
                Some(hevc::NAL_AUD) => NalRole::Delimiter,
                Some(hevc::NAL_VPS) => NalRole::Vps,
                Some(hevc::NAL_SPS) => NalRole::Sps,
                Some(hevc::NAL_PPS) => NalRole::Pps,
                // VCL NAL unit types 0..=31 (Table 7-1).
                Some(kind @ 0..=31) => NalRole::Slice(hevc::is_irap(kind)),
                _ => NalRole::Other,
            },
        }
    }
}

/// The track config of either codec.
#[derive(Clone, Debug, PartialEq, Eq)]
enum VideoConfig {
    Avc(AvcConfig),
    Hevc(HevcConfig),
}

impl VideoConfig {
    fn frame_rate(&self) -> Option<(u32, u32)> {
        match self {
            VideoConfig::Avc(config) => config.frame_rate,
            VideoConfig::Hevc(config) => config.frame_rate,
        }
    }
}

/// The state of one H.264 or HEVC elementary stream.
#[derive(Debug, Default)]
pub struct AvcAssembler {
    codec: VideoCodec,
    /// Annex B bytes of the PES packets since the last one with a PTS.
    pending: Vec<u8>,
    /// (pts, dts) of that PES, unwrapped, 90 kHz.
    pending_time: Option<(i64, i64)>,
    config: Option<VideoConfig>,
    vps: Option<Bytes>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    /// The parameter sets last turned into a config (or refused): not tried again.
    last_attempt: Option<(Option<Bytes>, Bytes, Bytes)>,
    last_dts: Option<i64>,
    /// dts step between the last two access units, for units that have no PTS of their own.
    frame_duration: i64,
}

/// One access unit being built from NAL units.
#[derive(Default)]
struct UnitBuilder {
    payload: Vec<u8>,
    keyframe: bool,
    has_slice: bool,
}

impl AvcAssembler {
    /// An assembler for an elementary stream of `codec`.
    pub fn new(codec: VideoCodec) -> Self {
        AvcAssembler {
            codec,
            ..AvcAssembler::default()
        }
    }

    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// Takes the elementary stream bytes of one PES; `time` is its (pts, dts) if it had them.
    pub fn push_pes(
        &mut self,
        time: Option<(i64, i64)>,
        data: &[u8],
        events: &mut VecDeque<TsEvent>,
        counters: &mut TsCounters,
    ) {
        if time.is_some() {
            self.flush(events, counters);
            self.pending_time = time;
        }
        if self.pending.len() + data.len() > MAX_ACCESS_UNIT_BYTES {
            counters.bad_video += 1;
            self.pending.clear();
            self.pending_time = None;
            return;
        }
        // alloc: grows to the largest access unit once, then reused.
        self.pending.extend_from_slice(data);
    }

    /// Turns the gathered bytes into access units (at the next PTS, or at the end).
    pub fn flush(&mut self, events: &mut VecDeque<TsEvent>, counters: &mut TsCounters) {
        if self.pending.is_empty() {
            self.pending_time = None;
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut time = self.pending_time.take();
        let mut unit = UnitBuilder::default();
        for nal in nal_units(&pending) {
            match self.codec.role(nal) {
                NalRole::Delimiter => {
                    if unit.has_slice {
                        self.emit(std::mem::take(&mut unit), time.take(), events, counters);
                    }
                }
                NalRole::Vps => self.vps = Some(Bytes::copy_from_slice(nal)),
                NalRole::Sps => self.sps = Some(Bytes::copy_from_slice(nal)),
                NalRole::Pps => self.pps = Some(Bytes::copy_from_slice(nal)),
                role => {
                    if let NalRole::Slice(sync) = role {
                        unit.has_slice = true;
                        unit.keyframe |= sync;
                    }
                    let Ok(length) = u32::try_from(nal.len()) else {
                        continue;
                    };
                    // alloc: one payload per access unit; it leaves as `Bytes`.
                    unit.payload.extend_from_slice(&length.to_be_bytes());
                    unit.payload.extend_from_slice(nal);
                }
            }
        }
        self.emit(unit, time, events, counters);
        self.pending = pending;
        self.pending.clear();
    }

    fn emit(
        &mut self,
        unit: UnitBuilder,
        time: Option<(i64, i64)>,
        events: &mut VecDeque<TsEvent>,
        counters: &mut TsCounters,
    ) {
        self.update_config(events, counters);
        if unit.payload.is_empty() {
            return;
        }
        if self.config.is_none() {
            counters.units_before_config += 1;
            return;
        }
        let (pts, dts) = match (time, self.last_dts) {
            (Some((pts, dts)), _) => (pts, dts.min(pts)),
            // An access unit without a PTS of its own (after an AUD inside a PES): one frame
            // after the last.
            (None, Some(last)) => {
                let dts = last + self.frame_duration;
                (dts, dts)
            }
            (None, None) => {
                counters.bad_video += 1;
                return;
            }
        };
        if let Some(last) = self.last_dts {
            let step = dts - last;
            // Plausible frame steps only (up to 1 s); others are jumps or gaps.
            if (1..=i64::from(VIDEO_TIMESCALE)).contains(&step) {
                self.frame_duration = step;
            }
        }
        if self.frame_duration == 0 {
            self.frame_duration = self.default_frame_duration();
        }
        self.last_dts = Some(dts);
        counters.video_units += 1;
        events.push_back(TsEvent::Media(AccessUnit {
            codec: match self.codec {
                VideoCodec::H264 => Codec::H264,
                VideoCodec::Hevc => Codec::H265,
            },
            pts,
            dts,
            keyframe: unit.keyframe,
            payload: Bytes::from(unit.payload),
        }));
    }

    fn default_frame_duration(&self) -> i64 {
        self.config
            .as_ref()
            .and_then(VideoConfig::frame_rate)
            .filter(|&(num, den)| num > 0 && den > 0)
            .map_or(3000, |(num, den)| {
                i64::from(VIDEO_TIMESCALE) * i64::from(den) / i64::from(num)
            })
    }

    /// A new SPS/PPS pair (with a VPS for HEVC) becomes the config (reported when it differs
    /// from the current one).
    fn update_config(&mut self, events: &mut VecDeque<TsEvent>, counters: &mut TsCounters) {
        let (Some(sps), Some(pps)) = (&self.sps, &self.pps) else {
            return;
        };
        let vps = match self.codec {
            VideoCodec::H264 => None,
            VideoCodec::Hevc => match &self.vps {
                Some(vps) => Some(vps.clone()),
                None => return,
            },
        };
        let attempt = (vps, sps.clone(), pps.clone());
        if self.last_attempt.as_ref() == Some(&attempt) {
            return;
        }
        let parsed = match &attempt {
            (Some(vps), sps, pps) => HevcConfig::from_parameter_sets(vps, sps, pps).map(|config| {
                (
                    VideoConfig::Hevc(config.clone()),
                    TsEvent::HevcConfig(config),
                )
            }),
            (None, sps, pps) => AvcConfig::from_parameter_sets(sps, pps).map(|config| {
                (
                    VideoConfig::Avc(config.clone()),
                    TsEvent::VideoConfig(config),
                )
            }),
        };
        self.last_attempt = Some(attempt);
        match parsed {
            Ok((config, event)) => {
                if self.config.as_ref() != Some(&config) {
                    events.push_back(event);
                    self.config = Some(config);
                }
            }
            Err(_) => counters.bad_video += 1,
        }
    }
}
