//! AAC codec parameters: the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) and the ADTS
//! header (§1.A.2.2) that MPEG-TS carries AAC in.

use bytes::Bytes;

use crate::MediaError;

/// Parameters of an AAC track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AacConfig {
    /// The AudioSpecificConfig bytes, as in an `esds` DecoderSpecificInfo.
    pub asc: Bytes,
    /// Audio object type: 2 is AAC-LC.
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

impl AacConfig {
    /// Parses an AudioSpecificConfig (the body of an FLV AAC sequence header).
    pub fn from_asc(asc: &[u8]) -> Result<Self, MediaError> {
        let _ = asc;
        unimplemented!("filled in by the media parsing work")
    }

    /// Writes an AudioSpecificConfig for the given parameters (for encoders we drive ourselves).
    pub fn new(object_type: u8, sample_rate: u32, channels: u8) -> Result<Self, MediaError> {
        let _ = (object_type, sample_rate, channels);
        unimplemented!("filled in by the media parsing work")
    }

    /// `mp4a.40.N` with N the audio object type, e.g. `mp4a.40.2` for AAC-LC.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// Samples per AAC frame: 1024 for every object type we accept.
    pub fn frame_samples(&self) -> u32 {
        1024
    }

    /// The 7-byte ADTS header (no CRC) for a raw frame of `payload_len` bytes.
    pub fn adts_header(&self, payload_len: usize) -> [u8; 7] {
        let _ = payload_len;
        unimplemented!("filled in by the media parsing work")
    }
}
