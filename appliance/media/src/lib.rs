//! corecast media types: what every stage upstream of the packager speaks.
//!
//! An [`AccessUnit`] is one encoded frame of one track. Video timestamps are on a 90 kHz clock;
//! audio timestamps are on the track's sample rate (converted once, at ingest), so AAC frames of
//! 1024 samples have exact integer durations. Video payloads are length-prefixed NAL units with
//! 4-byte lengths (the `avc1` sample format of ISO/IEC 14496-15), parameter sets travel in the
//! track's [`TrackConfig`], not in the samples. AAC payloads are raw frames (no ADTS header).
//!
//! Nothing here does I/O or reads a clock.
#![forbid(unsafe_code)]

pub mod aac;
pub mod annex_b;
pub mod avc;
pub mod crc;
pub mod encode;

use bytes::Bytes;

pub use aac::AacConfig;
pub use avc::AvcConfig;
pub use crc::crc32_mpeg2;

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
    Aac,
}

impl Codec {
    pub fn kind(self) -> TrackKind {
        match self {
            Codec::H264 => TrackKind::Video,
            Codec::Aac => TrackKind::Audio,
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
    /// A sync sample: an IDR picture for H.264, every AAC frame.
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
    Aac(AacConfig),
}

impl TrackConfig {
    pub fn kind(&self) -> TrackKind {
        self.codec().kind()
    }

    pub fn codec(&self) -> Codec {
        match self {
            TrackConfig::Avc(_) => Codec::H264,
            TrackConfig::Aac(_) => Codec::Aac,
        }
    }

    /// Ticks per second of this track's timestamps.
    pub fn timescale(&self) -> u32 {
        match self {
            TrackConfig::Avc(_) => VIDEO_TIMESCALE,
            TrackConfig::Aac(aac) => aac.sample_rate,
        }
    }

    /// The RFC 6381 codec string used in HLS `CODECS` and DASH `codecs` attributes.
    pub fn codec_string(&self) -> String {
        match self {
            TrackConfig::Avc(avc) => avc.codec_string(),
            TrackConfig::Aac(aac) => aac.codec_string(),
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
