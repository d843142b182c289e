//! corecast media types: what every stage upstream of the packager speaks.
//!
//! An [`AccessUnit`] is one encoded frame of one track. Video timestamps are on a 90 kHz clock;
//! audio timestamps are on the track's sample rate (converted once, at ingest), so AAC frames of
//! 1024 samples have exact integer durations. Payloads are the ISO-BMFF sample formats, so the
//! packager writes them into `mdat` unchanged:
//!
//! - H.264 and HEVC: NAL units, each behind a 4-byte big-endian length (the `avc1` / `hvc1`
//!   sample format of ISO/IEC 14496-15 §5.3.4.2 and §8.3.4). Parameter sets travel in the
//!   track's [`TrackConfig`], not in the samples (an in-band repeat is harmless).
//! - AV1: the OBUs of one temporal unit in the low-overhead bitstream format (every OBU with
//!   `obu_has_size_field = 1`), WITHOUT temporal delimiter OBUs (AV1-ISOBMFF §2.4). The
//!   sequence header OBU travels in [`Av1Config`]; a keyframe may repeat it in band.
//! - AAC: raw frames (no ADTS header).
//! - MP2 / MP3 and AC-3 (audio that is not AAC, which the engine transcodes to AAC before the
//!   hub sees it): one whole frame, header included, as the decoder takes it. Their track
//!   parameters are an [`AudioFormat`], not a [`TrackConfig`]: nothing downstream packages them.
//!
//! Nothing here does I/O or reads a clock.
#![forbid(unsafe_code)]

pub mod aac;
pub mod ac3;
pub mod annex_b;
pub mod av1;
pub mod avc;
mod bits;
pub mod crc;
pub mod encode;
pub mod hevc;
pub mod mpeg_audio;
pub mod segment_rules;

use bytes::Bytes;

pub use aac::AacConfig;
pub use av1::Av1Config;
pub use avc::AvcConfig;
pub use crc::crc32_mpeg2;
pub use hevc::HevcConfig;

/// The clock of every video track: 90 kHz, as in MPEG-TS and RTP.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Errors from parsing codec parameters. Each variant says what was wrong with which bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error("AVC decoder configuration record: {0}")]
    AvcRecord(String),
    #[error("H.264 sequence parameter set: {0}")]
    Sps(String),
    #[error("AAC AudioSpecificConfig {bytes:02x?}: {reason}")]
    AudioSpecificConfig { bytes: Vec<u8>, reason: String },
    #[error("HEVC decoder configuration record: {0}")]
    HevcRecord(String),
    #[error("H.265 {what}: {reason}")]
    HevcParameterSet { what: &'static str, reason: String },
    #[error("AV1 codec configuration record: {0}")]
    Av1Record(String),
    #[error("AV1 sequence header OBU: {0}")]
    Av1SequenceHeader(String),
    #[error("AV1 OBU stream at offset {offset}: {reason}")]
    Av1Obu { offset: usize, reason: String },
    /// An encoder's Annex B global header lacks a parameter set (`SPS`, `PPS`, `VPS`).
    #[error("the Annex B stream holds no {0}")]
    MissingParameterSet(&'static str),
}

/// Which kind of track a unit or config belongs to. A stream has at most one of each at the
/// ingest stage; renditions of a ladder are separate streams of units downstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TrackKind {
    Video,
    Audio,
}

/// The codec of an access unit or track.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    H264,
    /// HEVC / H.265.
    H265,
    Av1,
    Aac,
    /// MPEG-1/2 audio layer I or II (ISO/IEC 11172-3, 13818-3): MP2.
    Mp2,
    /// MPEG-1/2/2.5 audio layer III: MP3.
    Mp3,
    /// AC-3 (ATSC A/52).
    Ac3,
}

impl Codec {
    pub fn kind(self) -> TrackKind {
        match self {
            Codec::H264 | Codec::H265 | Codec::Av1 => TrackKind::Video,
            Codec::Aac | Codec::Mp2 | Codec::Mp3 | Codec::Ac3 => TrackKind::Audio,
        }
    }
}

/// One encoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessUnit {
    pub codec: Codec,
    /// Presentation time in the track's timescale ([`VIDEO_TIMESCALE`] or the audio sample rate).
    pub pts: i64,
    /// Decode time in the same timescale; equal to `pts` for audio and for video without
    /// B-frames, never greater than `pts`.
    pub dts: i64,
    /// A sync sample: an IDR picture for H.264, an IRAP picture for HEVC, a temporal unit
    /// starting with a key frame (and its sequence header) for AV1, every AAC frame.
    pub keyframe: bool,
    /// See the crate docs for the payload format of each codec.
    pub payload: Bytes,
}

impl AccessUnit {
    pub fn kind(&self) -> TrackKind {
        self.codec.kind()
    }
}

/// Codec parameters of a track: what an init segment, a PMT or a CODECS string is made from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrackConfig {
    Avc(AvcConfig),
    Hevc(HevcConfig),
    Av1(Av1Config),
    Aac(AacConfig),
}

impl TrackConfig {
    pub fn kind(&self) -> TrackKind {
        self.codec().kind()
    }

    pub fn codec(&self) -> Codec {
        match self {
            TrackConfig::Avc(_) => Codec::H264,
            TrackConfig::Hevc(_) => Codec::H265,
            TrackConfig::Av1(_) => Codec::Av1,
            TrackConfig::Aac(_) => Codec::Aac,
        }
    }

    /// Display size in pixels of a video track; `None` for audio.
    pub fn video_size(&self) -> Option<(u32, u32)> {
        match self {
            TrackConfig::Avc(avc) => Some((avc.width, avc.height)),
            TrackConfig::Hevc(hevc) => Some((hevc.width, hevc.height)),
            TrackConfig::Av1(av1) => Some((av1.width, av1.height)),
            TrackConfig::Aac(_) => None,
        }
    }

    /// Frames per second of a video track as (numerator, denominator), when its parameter
    /// sets carry timing (H.264 / HEVC VUI); `None` for AV1 and audio.
    pub fn frame_rate(&self) -> Option<(u32, u32)> {
        match self {
            TrackConfig::Avc(avc) => avc.frame_rate,
            TrackConfig::Hevc(hevc) => hevc.frame_rate,
            _ => None,
        }
    }

    /// Ticks per second of this track's timestamps.
    pub fn timescale(&self) -> u32 {
        match self {
            TrackConfig::Avc(_) | TrackConfig::Hevc(_) | TrackConfig::Av1(_) => VIDEO_TIMESCALE,
            TrackConfig::Aac(aac) => aac.sample_rate,
        }
    }

    /// The RFC 6381 codec string used in HLS `CODECS` and DASH `codecs` attributes.
    pub fn codec_string(&self) -> String {
        match self {
            TrackConfig::Avc(avc) => avc.codec_string(),
            TrackConfig::Hevc(hevc) => hevc.codec_string(),
            TrackConfig::Av1(av1) => av1.codec_string(),
            TrackConfig::Aac(aac) => aac.codec_string(),
        }
    }
}

/// The parameters of an audio track that is not AAC (see [`Codec::Mp2`], [`Codec::Mp3`],
/// [`Codec::Ac3`]), as its frame headers say them: enough to open a decoder and to know the AAC
/// it will be transcoded to. Its units' timestamps are on `sample_rate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioFormat {
    pub codec: Codec,
    pub sample_rate: u32,
    /// 1 to 6 (AC-3 5.1 counts its LFE channel).
    pub channels: u8,
}

impl AudioFormat {
    /// The format of an MPEG audio frame header (layer III is MP3, layers I and II MP2).
    pub fn from_mpeg_audio(header: &mpeg_audio::MpegAudioHeader) -> Self {
        AudioFormat {
            codec: if header.layer == 3 {
                Codec::Mp3
            } else {
                Codec::Mp2
            },
            sample_rate: header.sample_rate,
            channels: header.channels,
        }
    }

    pub fn from_ac3(header: &ac3::Ac3Header) -> Self {
        AudioFormat {
            codec: Codec::Ac3,
            sample_rate: header.sample_rate,
            channels: header.channels,
        }
    }
}

/// Converts a timestamp between timescales, rounding to the nearest tick.
pub fn rescale(value: i64, from: u32, to: u32) -> i64 {
    if from == to {
        return value;
    }
    let (from, to) = (i128::from(from), i128::from(to));
    // Floor division, so negative values round to nearest like positive ones.
    let scaled = (i128::from(value) * to * 2 + from).div_euclid(from * 2);
    // A timestamp that does not fit after rescaling is clamped; callers treat such jumps as
    // discontinuities long before this could matter.
    scaled.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rescale_rounds_to_nearest() {
        assert_eq!(rescale(1000, 1000, 90_000), 90_000);
        assert_eq!(rescale(1, 1000, 48_000), 48);
        assert_eq!(rescale(1024, 48_000, 90_000), 1920);
        assert_eq!(rescale(1, 3, 2), 1); // 0.666 -> 1
        assert_eq!(rescale(-1000, 1000, 90_000), -90_000);
    }
}
