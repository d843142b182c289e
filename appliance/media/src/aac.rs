//! AAC codec parameters: the AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) and the ADTS
//! header (§1.A.2.2) that MPEG-TS carries AAC in.
//!
//! We take the AAC object types whose frames are 1024 samples and that ADTS can describe
//! (Main, LC, SSR, LTP: object types 1 to 4). Explicitly signalled HE-AAC (object types 5 and 29)
//! and 960-sample frames are refused by name; implicitly signalled HE-AAC (object type 2 with a
//! trailing SBR sync extension, as ffmpeg writes) is taken as the AAC-LC core it is.

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

/// samplingFrequencyIndex values 0 to 12 (§1.6.3.4, Table 1.18).
const SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Channel counts of channelConfiguration 1 to 7 (§1.6.3.5, Table 1.19).
const CHANNELS: [u8; 7] = [1, 2, 3, 4, 5, 6, 8];

impl AacConfig {
    /// Parses an AudioSpecificConfig (the body of an FLV AAC sequence header).
    pub fn from_asc(asc: &[u8]) -> Result<Self, MediaError> {
        let fail = |reason: String| MediaError::AudioSpecificConfig {
            bytes: asc.iter().copied().take(16).collect(),
            reason,
        };
        let mut r = AscReader { data: asc, bit: 0 };
        let truncated = |what: &str| fail(format!("truncated while reading {what}"));
        let mut object_type = r.bits(5).ok_or_else(|| truncated("audioObjectType"))?;
        if object_type == 31 {
            object_type = 32 + r.bits(6).ok_or_else(|| truncated("audioObjectTypeExt"))?;
        }
        let frequency_index = r
            .bits(4)
            .ok_or_else(|| truncated("samplingFrequencyIndex"))?;
        let sample_rate = match frequency_index {
            0xf => r.bits(24).ok_or_else(|| truncated("samplingFrequency"))?,
            index => *SAMPLE_RATES
                .get(index as usize)
                .ok_or_else(|| fail(format!("reserved samplingFrequencyIndex {index}")))?,
        };
        if sample_rate == 0 {
            return Err(fail("sampling frequency 0".into()));
        }
        let channel_config = r.bits(4).ok_or_else(|| truncated("channelConfiguration"))?;
        match object_type {
            1..=4 => {}
            5 | 29 => {
                return Err(fail(format!(
                    "explicitly signalled HE-AAC (object type {object_type}) is not supported; \
                     send AAC-LC"
                )));
            }
            other => {
                return Err(fail(format!(
                    "audio object type {other} is not supported (only 1 to 4: Main, LC, SSR, LTP)"
                )));
            }
        }
        let channels = match channel_config {
            0 => {
                return Err(fail(
                    "channelConfiguration 0 (channels in a program_config_element) is not \
                     supported"
                        .into(),
                ));
            }
            config => *CHANNELS
                .get(config as usize - 1)
                .ok_or_else(|| fail(format!("reserved channelConfiguration {config}")))?,
        };
        // GASpecificConfig (§4.4.1): frameLengthFlag first.
        let frame_length_flag = r.bits(1).ok_or_else(|| truncated("frameLengthFlag"))?;
        if frame_length_flag == 1 {
            return Err(fail(
                "960-sample frames (frameLengthFlag 1) are not supported".into(),
            ));
        }
        Ok(AacConfig {
            asc: Bytes::copy_from_slice(asc),
            // 1..=4, checked above.
            object_type: object_type as u8,
            sample_rate,
            channels,
        })
    }

    /// Writes an AudioSpecificConfig for the given parameters (for encoders we drive ourselves).
    pub fn new(object_type: u8, sample_rate: u32, channels: u8) -> Result<Self, MediaError> {
        let fail = |reason: String| MediaError::AudioSpecificConfig {
            bytes: Vec::new(),
            reason,
        };
        if !(1..=4).contains(&object_type) {
            return Err(fail(format!(
                "audio object type {object_type} is not supported (only 1 to 4)"
            )));
        }
        let frequency_index = SAMPLE_RATES
            .iter()
            .position(|&rate| rate == sample_rate)
            .ok_or_else(|| {
                fail(format!(
                    "sample rate {sample_rate} Hz has no frequency index"
                ))
            })?;
        let channel_config = CHANNELS
            .iter()
            .position(|&count| count == channels)
            .ok_or_else(|| fail(format!("{channels} channels have no channelConfiguration")))?
            + 1;
        // Both indexes are below 16, the object type below 32.
        let bits = (u16::from(object_type) << 11)
            | ((frequency_index as u16) << 7)
            | ((channel_config as u16) << 3);
        Ok(AacConfig {
            asc: Bytes::copy_from_slice(&bits.to_be_bytes()),
            object_type,
            sample_rate,
            channels,
        })
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
    ///
    /// ADTS has no explicit sample rate: a rate outside Table 1.18 is written as the index of
    /// the nearest rate below it (the mapping of §1.6.5.1, Table 1.21 rounds to ranges the same
    /// way). A frame longer than ADTS's 13-bit length (8191 bytes with the header) cannot occur
    /// for the object types we accept (at most 6144 bits per channel); the length saturates.
    pub fn adts_header(&self, payload_len: usize) -> [u8; 7] {
        let profile = self.object_type.saturating_sub(1) & 0x3;
        let frequency_index = SAMPLE_RATES
            .iter()
            .position(|&rate| rate <= self.sample_rate)
            .unwrap_or(SAMPLE_RATES.len() - 1) as u8;
        let channel_config = CHANNELS
            .iter()
            .position(|&count| count == self.channels)
            .map_or(0, |index| index as u8 + 1);
        let frame_length = u16::try_from(payload_len + 7)
            .unwrap_or(u16::MAX)
            .min(0x1fff);
        const BUFFER_FULLNESS_VBR: u16 = 0x7ff;
        [
            0xff,
            0xf1, // syncword, MPEG-4, layer 0, protection_absent
            (profile << 6) | (frequency_index << 2) | (channel_config >> 2),
            ((channel_config & 0x3) << 6) | (frame_length >> 11) as u8,
            (frame_length >> 3) as u8,
            (((frame_length & 0x7) as u8) << 5) | (BUFFER_FULLNESS_VBR >> 6) as u8,
            ((BUFFER_FULLNESS_VBR & 0x3f) as u8) << 2, // number_of_raw_data_blocks_in_frame 0
        ]
    }
}

/// MSB-first bit reader; `None` when the bits run out.
struct AscReader<'a> {
    data: &'a [u8],
    bit: usize,
}

impl AscReader<'_> {
    fn bits(&mut self, count: u32) -> Option<u32> {
        let mut value = 0u32;
        for _ in 0..count {
            let byte = self.data.get(self.bit / 8)?;
            value = (value << 1) | u32::from((byte >> (7 - self.bit % 8)) & 1);
            self.bit += 1;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ffmpeg 5.1's native `aac` encoder, 48 kHz stereo, from the AAC sequence header of
    // `-c:a aac -f flv`: AAC-LC, then the SBR sync extension (0x2b7, "no SBR").
    const FFMPEG_AAC_48K_STEREO_ASC: [u8; 5] = [0x11, 0x90, 0x56, 0xe5, 0x00];

    #[test]
    fn ffmpeg_aac_asc_parses() {
        let config = AacConfig::from_asc(&FFMPEG_AAC_48K_STEREO_ASC).unwrap();
        assert_eq!(config.object_type, 2);
        assert_eq!(config.sample_rate, 48_000);
        assert_eq!(config.channels, 2);
        assert_eq!(config.codec_string(), "mp4a.40.2");
        assert_eq!(config.asc[..], FFMPEG_AAC_48K_STEREO_ASC);
    }

    #[test]
    fn new_writes_the_two_byte_asc_ffmpeg_writes() {
        let config = AacConfig::new(2, 48_000, 2).unwrap();
        assert_eq!(config.asc[..], FFMPEG_AAC_48K_STEREO_ASC[..2]);
        assert_eq!(AacConfig::new(2, 44_100, 1).unwrap().asc[..], [0x12, 0x08]);
        let surround = AacConfig::new(2, 48_000, 8).unwrap();
        assert_eq!(surround.asc[..], [0x11, 0xb8]); // channelConfiguration 7
        assert_eq!(AacConfig::from_asc(&surround.asc).unwrap(), surround);
        assert!(AacConfig::new(2, 47_999, 2).is_err());
        assert!(AacConfig::new(5, 48_000, 2).is_err());
        assert!(AacConfig::new(2, 48_000, 7).is_err());
    }

    #[test]
    fn escaped_object_type_and_explicit_frequency_are_read() {
        // objectType 31 + 6-bit escape = 32 + 10 = 42 (USAC-like): refused, by number.
        let escaped = [0xf9, 0x46, 0x40];
        let err = AacConfig::from_asc(&escaped).unwrap_err().to_string();
        assert!(err.contains("object type 42"), "{err}");
        // AAC-LC, index 0xf, 24-bit frequency 50000 (0x00c350), 2 channels, GA flags 0.
        let explicit = [0x17, 0x80, 0x61, 0xa8, 0x10];
        let config = AacConfig::from_asc(&explicit).unwrap();
        assert_eq!((config.sample_rate, config.channels), (50_000, 2));
        // ADTS falls back to the nearest index below: 48 kHz (3).
        assert_eq!((config.adts_header(0)[2] >> 2) & 0xf, 3);
    }

    #[test]
    fn unsupported_configs_are_refused_with_reasons() {
        let cases: [(&[u8], &str); 6] = [
            (&[0x11, 0x80], "channelConfiguration 0"),
            (&[0x16, 0x90], "reserved samplingFrequencyIndex 13"),
            (&[0x11, 0xc0], "reserved channelConfiguration 8"),
            (&[0x29, 0x90], "object type 5"),
            (&[0x11, 0x94], "960-sample"),
            (&[0x11], "truncated"),
        ];
        for (asc, expected) in cases {
            let err = AacConfig::from_asc(asc).unwrap_err().to_string();
            assert!(err.contains(expected), "{asc:02x?}: {err}");
        }
        for len in 0..2 {
            assert!(AacConfig::from_asc(&FFMPEG_AAC_48K_STEREO_ASC[..len]).is_err());
        }
    }

    #[test]
    fn adts_header_fields() {
        let config = AacConfig::new(2, 48_000, 2).unwrap();
        // The header ffmpeg 5.1's `-c:a aac -f adts` wrote for its second frame (48 kHz stereo
        // LC, 363 payload bytes, frame_length 370, buffer fullness 0x7ff).
        assert_eq!(
            config.adts_header(363),
            [0xff, 0xf1, 0x4c, 0x80, 0x2e, 0x5f, 0xfc]
        );
        let mono = AacConfig::new(2, 44_100, 1).unwrap();
        let header = mono.adts_header(0);
        assert_eq!((header[2] >> 2) & 0xf, 4);
        assert_eq!(((header[2] & 1) << 2) | (header[3] >> 6), 1);
        assert_eq!(
            (u32::from(header[3] & 3) << 11)
                | (u32::from(header[4]) << 3)
                | u32::from(header[5] >> 5),
            7
        );
    }
}
