//! H.264 in MPEG-TS (ISO/IEC 13818-1 §2.14, stream_type 0x1b): Annex B byte streams
//! (ITU-T H.264 Annex B) in PES packets, turned into access units with 4-byte NAL lengths.
//!
//! Access units: a new one starts at each PES that carries a PTS, and at each access unit
//! delimiter that follows a coded slice (§7.4.1.2.3: the AUD is the first NAL of an access
//! unit). A PES without a PTS continues the access unit in progress (encoders that split a
//! large picture over several PES do that). An access unit is complete when the next one
//! starts, so the newest picture waits for the next PES: one frame of latency.
//!
//! SPS and PPS are taken into an [`AvcConfig`] and removed from the samples, as are AUDs:
//! parameter sets travel in the track config (crate `media` docs), and the TS muxer writes its
//! own AUDs. An access unit with an IDR slice is a keyframe.

use std::collections::VecDeque;

use bytes::Bytes;
use media::{AccessUnit, AvcConfig, Codec, VIDEO_TIMESCALE};

use super::{TsCounters, TsEvent};

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// The largest access unit gathered from PES packets without a PTS, like
/// [`super::pes::MAX_PES_BYTES`].
const MAX_ACCESS_UNIT_BYTES: usize = super::pes::MAX_PES_BYTES;

pub use media::annex_b::nal_units;

/// The state of one H.264 elementary stream.
#[derive(Debug, Default)]
pub struct AvcAssembler {
    /// Annex B bytes of the PES packets since the last one with a PTS.
    pending: Vec<u8>,
    /// (pts, dts) of that PES, unwrapped, 90 kHz.
    pending_time: Option<(i64, i64)>,
    config: Option<AvcConfig>,
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    /// The parameter sets last turned into a config (or refused): not tried again.
    last_attempt: Option<(Bytes, Bytes)>,
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
            let nal_type = nal[0] & 0x1f;
            match nal_type {
                NAL_AUD => {
                    if unit.has_slice {
                        self.emit(std::mem::take(&mut unit), time.take(), events, counters);
                    }
                }
                NAL_SPS => self.sps = Some(Bytes::copy_from_slice(nal)),
                NAL_PPS => self.pps = Some(Bytes::copy_from_slice(nal)),
                _ => {
                    unit.has_slice |= (1..=5).contains(&nal_type);
                    unit.keyframe |= nal_type == NAL_IDR;
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
            codec: Codec::H264,
            pts,
            dts,
            keyframe: unit.keyframe,
            payload: Bytes::from(unit.payload),
        }));
    }

    fn default_frame_duration(&self) -> i64 {
        self.config
            .as_ref()
            .and_then(|c| c.frame_rate)
            .filter(|&(num, den)| num > 0 && den > 0)
            .map_or(3000, |(num, den)| {
                i64::from(VIDEO_TIMESCALE) * i64::from(den) / i64::from(num)
            })
    }

    /// A new SPS/PPS pair becomes the config (reported when it differs from the current one).
    fn update_config(&mut self, events: &mut VecDeque<TsEvent>, counters: &mut TsCounters) {
        let (Some(sps), Some(pps)) = (&self.sps, &self.pps) else {
            return;
        };
        if self
            .last_attempt
            .as_ref()
            .is_some_and(|(s, p)| s == sps && p == pps)
        {
            return;
        }
        self.last_attempt = Some((sps.clone(), pps.clone()));
        match AvcConfig::from_parameter_sets(sps, pps) {
            Ok(config) => {
                if self.config.as_ref() != Some(&config) {
                    events.push_back(TsEvent::VideoConfig(config.clone()));
                    self.config = Some(config);
                }
            }
            Err(_) => counters.bad_video += 1,
        }
    }
}
