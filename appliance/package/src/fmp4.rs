//! CMAF fragmented MP4 (ISO/IEC 14496-12, ISO/IEC 23000-19): one track per file.
//! Init segments are `ftyp` + `moov`; media segments are `styp` + `moof` + `mdat`.

use bytes::Bytes;
use media::TrackConfig;

/// One sample of a media segment, on its track's timescale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Decode time of the sample.
    pub dts: i64,
    /// Decode duration: the next sample's dts minus this one's.
    pub duration: u32,
    /// pts minus dts (non-zero with B-frames).
    pub composition_offset: i32,
    /// A sync sample (IDR for video; every AAC frame).
    pub keyframe: bool,
    /// The sample bytes exactly as they go into `mdat`.
    pub data: Bytes,
}

/// The CMAF header of one track: `ftyp` + `moov` (with `avcC` or `esds`, and `mvex`).
pub fn init_segment(track_id: u32, config: &TrackConfig) -> Bytes {
    let _ = (track_id, config);
    unimplemented!()
}

/// One CMAF fragment as a segment: `styp` + `moof` (`mfhd` with `sequence_number`,
/// `traf` with `tfhd`, `tfdt` version 1 = `samples[0].dts`, `trun`) + `mdat`.
/// `samples` must be non-empty and in decode order.
pub fn media_segment(sequence_number: u32, track_id: u32, samples: &[Sample]) -> Bytes {
    let _ = (sequence_number, track_id, samples);
    unimplemented!()
}
