//! MPEG-TS muxer (ISO/IEC 13818-1) for HLS TS segments: PAT, PMT, PES with PTS/DTS, PCR on the
//! video PID, continuity counters, H.264 with AUD and in-band SPS/PPS, AAC in ADTS.

use media::{AacConfig, AccessUnit, AvcConfig};

/// Muxes one stream's access units into 188-byte TS packets. Continuity counters run on across
/// segments, as a player joining segments expects.
#[derive(Debug)]
pub struct TsMuxer {}

impl TsMuxer {
    /// A muxer for a stream with the given tracks (at least one).
    pub fn new(video: Option<AvcConfig>, audio: Option<AacConfig>) -> Self {
        let _ = (video, audio);
        unimplemented!()
    }

    /// Writes PAT and PMT; call at the start of every segment.
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        let _ = out;
        unimplemented!()
    }

    /// Writes one access unit as a PES. Video units are converted to Annex B with an AUD (and
    /// SPS/PPS before each keyframe); audio units get an ADTS header and their pts is rescaled
    /// from the sample rate to 90 kHz. Timestamps are written modulo 2^33.
    pub fn write_unit(&mut self, unit: &AccessUnit, out: &mut Vec<u8>) {
        let _ = (unit, out);
        unimplemented!()
    }
}
