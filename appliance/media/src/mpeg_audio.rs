//! MPEG audio frame headers: MPEG-1 audio (ISO/IEC 11172-3 §2.4.1.3 and §2.4.2.3), its
//! MPEG-2 lower sampling frequencies (ISO/IEC 13818-3 §2.4.2.3) and the unofficial MPEG-2.5
//! extension (8 to 12 kHz) that LAME writes. Layers I, II and III: MP1, MP2, MP3.
//!
//! Only what framing and a decoder set-up need: the frame length (so a byte stream can be cut
//! into frames), the sampling frequency, the channel count and the samples per frame (so each
//! frame gets an exact pts). Free-format frames (bitrate_index 0) carry no length in their
//! header and are refused.

/// One parsed 4-byte MPEG audio frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MpegAudioHeader {
    /// 1, 2 or 3.
    pub layer: u8,
    /// 1 for MPEG-1, 2 for MPEG-2 LSF, 25 for MPEG-2.5.
    pub version: u8,
    pub sample_rate: u32,
    /// 1 (mode 11, single channel) or 2.
    pub channels: u8,
    pub bitrate_kbps: u32,
    /// The whole frame, header included.
    pub frame_bytes: usize,
    /// Samples per channel in the frame: 384 (layer I), 1152 (layer II, and layer III of
    /// MPEG-1) or 576 (layer III of MPEG-2 / 2.5).
    pub samples: u32,
}

/// Bytes in a frame header.
pub const HEADER_BYTES: usize = 4;

/// bitrate_index 1 to 14 in kbit/s (11172-3 Table 2-B.1 / 13818-3 Table 2-B.1), per table:
/// MPEG-1 layer I, II, III, then MPEG-2/2.5 layer I, and layers II and III.
const BITRATES: [[u32; 14]; 5] = [
    [
        32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
    ],
    [
        32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
    ],
    [
        32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ],
    [
        32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
    ],
    [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
];

/// sampling_frequency 0 to 2 of MPEG-1; MPEG-2 halves them, MPEG-2.5 quarters them.
const MPEG1_RATES: [u32; 3] = [44_100, 48_000, 32_000];

impl MpegAudioHeader {
    /// Parses the header at the start of `data`: `Ok(None)` when fewer than 4 bytes are
    /// there, `Err` with the reason when they are not a frame header we can use.
    pub fn parse(data: &[u8]) -> Result<Option<Self>, String> {
        let Some(&[b0, b1, b2, b3]) = data.first_chunk::<HEADER_BYTES>() else {
            return Ok(None);
        };
        if b0 != 0xff || b1 & 0xe0 != 0xe0 {
            return Err("no MPEG audio syncword".into());
        }
        let version = match (b1 >> 3) & 0x03 {
            0 => 25,
            2 => 2,
            3 => 1,
            _ => return Err("reserved MPEG audio version id".into()),
        };
        let layer = match (b1 >> 1) & 0x03 {
            1 => 3,
            2 => 2,
            3 => 1,
            _ => return Err("reserved layer 0".into()),
        };
        let bitrate_index = usize::from(b2 >> 4);
        let table = match (version, layer) {
            (1, layer) => usize::from(layer - 1),
            (_, 1) => 3,
            _ => 4,
        };
        let bitrate_kbps = match bitrate_index {
            0 => return Err("free-format bitrate (bitrate_index 0)".into()),
            15 => return Err("bitrate_index 15".into()),
            // The match above leaves 1..=14, which indexes a 14-entry row.
            index => BITRATES[table][index - 1],
        };
        let rate_index = usize::from((b2 >> 2) & 0x03);
        let base = *MPEG1_RATES
            .get(rate_index)
            .ok_or("reserved sampling_frequency 3")?;
        let sample_rate = match version {
            1 => base,
            2 => base / 2,
            _ => base / 4,
        };
        let padding = usize::from((b2 >> 1) & 0x01);
        let bits_per_second = bitrate_kbps as usize * 1000;
        let rate = sample_rate as usize;
        let (frame_bytes, samples) = match (layer, version) {
            // Layer I counts 4-byte slots (§2.4.3.1).
            (1, _) => ((12 * bits_per_second / rate + padding) * 4, 384),
            (2, _) | (3, 1) => (144 * bits_per_second / rate + padding, 1152),
            _ => (72 * bits_per_second / rate + padding, 576),
        };
        Ok(Some(MpegAudioHeader {
            layer,
            version,
            sample_rate,
            channels: if b3 >> 6 == 3 { 1 } else { 2 },
            bitrate_kbps,
            frame_bytes,
            samples,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpeg_frame_headers_parse() {
        // ffmpeg's mp2 encoder, 48 kHz stereo 192 kbit/s.
        let mp2 = MpegAudioHeader::parse(&[0xff, 0xfd, 0xa4, 0x04])
            .unwrap()
            .unwrap();
        assert_eq!(
            mp2,
            MpegAudioHeader {
                layer: 2,
                version: 1,
                sample_rate: 48_000,
                channels: 2,
                bitrate_kbps: 192,
                frame_bytes: 576,
                samples: 1152,
            }
        );
        // libmp3lame, 44.1 kHz joint stereo 128 kbit/s: 417.96 bytes, no padding.
        let mp3 = MpegAudioHeader::parse(&[0xff, 0xfb, 0x90, 0x64])
            .unwrap()
            .unwrap();
        assert_eq!(
            (mp3.layer, mp3.sample_rate, mp3.channels, mp3.frame_bytes),
            (3, 44_100, 2, 417)
        );
        // The same frame with its padding bit set.
        let padded = MpegAudioHeader::parse(&[0xff, 0xfb, 0x92, 0x64])
            .unwrap()
            .unwrap();
        assert_eq!(padded.frame_bytes, 418);
        // libmp3lame, MPEG-2 22.05 kHz mono 32 kbit/s: 576-sample frames of 104 bytes.
        let lsf = MpegAudioHeader::parse(&[0xff, 0xf3, 0x40, 0xc4])
            .unwrap()
            .unwrap();
        assert_eq!((lsf.version, lsf.sample_rate, lsf.channels), (2, 22_050, 1));
        assert_eq!((lsf.frame_bytes, lsf.samples), (104, 576));
        // MPEG-2.5 layer III, 8 kHz, 8 kbit/s: 72 * 8000 / 8000.
        let low = MpegAudioHeader::parse(&[0xff, 0xe3, 0x18, 0xc4])
            .unwrap()
            .unwrap();
        assert_eq!(
            (low.version, low.sample_rate, low.frame_bytes),
            (25, 8_000, 72)
        );
        // Layer I, 44.1 kHz, 384 kbit/s: (12 * 384000 / 44100) slots of 4 bytes.
        let one = MpegAudioHeader::parse(&[0xff, 0xff, 0xc0, 0x00])
            .unwrap()
            .unwrap();
        assert_eq!((one.layer, one.frame_bytes, one.samples), (1, 416, 384));
    }

    #[test]
    fn short_input_needs_more_and_bad_headers_say_why() {
        assert_eq!(MpegAudioHeader::parse(&[0xff, 0xfb, 0x90]), Ok(None));
        for (bytes, reason) in [
            ([0xff, 0x1b, 0x90, 0x64], "syncword"),
            ([0xff, 0xeb, 0x90, 0x64], "version"),
            ([0xff, 0xf9, 0x90, 0x64], "layer"),
            ([0xff, 0xfb, 0x00, 0x64], "free-format"),
            ([0xff, 0xfb, 0xf0, 0x64], "bitrate_index 15"),
            ([0xff, 0xfb, 0x9c, 0x64], "sampling_frequency"),
            ([0x0b, 0x77, 0x14, 0x40], "syncword"),
        ] {
            let err = MpegAudioHeader::parse(&bytes).unwrap_err();
            assert!(err.contains(reason), "{bytes:02x?}: {err}");
        }
    }

    #[test]
    fn every_header_value_parses_or_fails_without_panicking() {
        for b1 in 0xe0..=0xffu8 {
            for b2 in 0..=0xffu8 {
                if let Ok(Some(header)) = MpegAudioHeader::parse(&[0xff, b1, b2, 0]) {
                    assert!(header.frame_bytes > HEADER_BYTES, "{b1:02x} {b2:02x}");
                }
            }
        }
    }
}
