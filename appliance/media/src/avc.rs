//! H.264 codec parameters: the AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1) and
//! what we read from the sequence parameter set (ITU-T H.264 §7.3.2.1.1).

use bytes::Bytes;

use crate::MediaError;

/// Parameters of an H.264 track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// The AVCDecoderConfigurationRecord, as it goes into an `avcC` box (always with
    /// `lengthSizeMinusOne = 3`, matching [`crate::AccessUnit`] payloads).
    pub record: Bytes,
    /// Sequence parameter set NAL units (with their NAL header byte, no start code).
    pub sps: Vec<Bytes>,
    /// Picture parameter set NAL units (with their NAL header byte, no start code).
    pub pps: Vec<Bytes>,
    pub profile_idc: u8,
    /// The constraint_set flags byte (the "CC" of `avc1.PPCCLL`).
    pub constraint_flags: u8,
    pub level_idc: u8,
    /// Display size in pixels, after cropping.
    pub width: u32,
    pub height: u32,
    /// Frames per second as (numerator, denominator) when the SPS's VUI timing says so.
    pub frame_rate: Option<(u32, u32)>,
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord (the body of an FLV AVC sequence header or an
    /// `avcC` box). Records with 1- or 2-byte NAL lengths are rejected: every producer we take
    /// (RTMP encoders, x264) uses 4.
    pub fn from_record(record: &[u8]) -> Result<Self, MediaError> {
        let _ = record;
        unimplemented!("filled in by the media parsing work")
    }

    /// Builds the config from raw parameter sets (e.g. what x264 emits), writing the record.
    pub fn from_parameter_sets(sps: &[u8], pps: &[u8]) -> Result<Self, MediaError> {
        let _ = (sps, pps);
        unimplemented!("filled in by the media parsing work")
    }

    /// `avc1.PPCCLL`, e.g. `avc1.64001f` for High profile, level 3.1.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.constraint_flags, self.level_idc
        )
    }
}
