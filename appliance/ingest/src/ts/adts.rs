//! The ADTS header of AAC (ISO/IEC 13818-7 §6.2, ISO/IEC 14496-3 §1.A.2.2; stream_type
//! 0x0f): what [`super::audio_frames`] needs to split ADTS frames out of PES payloads and to
//! build their AudioSpecificConfig.

/// samplingFrequencyIndex 0 to 12 (ISO/IEC 14496-3 Table 1.18).
const SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];
/// ADTS frame_length is 13 bits.
pub const MAX_FRAME_BYTES: usize = 0x1fff;
/// Samples of one raw_data_block.
pub const SAMPLES_PER_FRAME: u32 = 1024;

/// The fields of a fixed + variable ADTS header that matter here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdtsHeader {
    /// profile + 1: 2 is AAC-LC.
    pub object_type: u8,
    pub sample_rate: u32,
    pub channel_configuration: u8,
    /// 7, or 9 with a CRC.
    pub header_length: usize,
    /// The whole frame, header included.
    pub frame_length: usize,
    /// number_of_raw_data_blocks_in_frame + 1.
    pub raw_blocks: u8,
}

/// Parses an ADTS header at the start of `data`: `Ok(None)` when fewer than 7 bytes are there.
pub fn parse_adts_header(data: &[u8]) -> Result<Option<AdtsHeader>, String> {
    let Some(&[b0, b1, b2, b3, b4, b5, b6]) = data.first_chunk::<7>() else {
        return Ok(None);
    };
    if b0 != 0xff || b1 & 0xf0 != 0xf0 {
        return Err("no ADTS syncword".into());
    }
    if b1 & 0x06 != 0 {
        return Err(format!("layer {} (must be 0)", (b1 >> 1) & 0x3));
    }
    let protection_absent = b1 & 0x01 != 0;
    let index = usize::from((b2 >> 2) & 0x0f);
    let sample_rate = *SAMPLE_RATES
        .get(index)
        .ok_or_else(|| format!("reserved sampling_frequency_index {index}"))?;
    let header_length = if protection_absent { 7 } else { 9 };
    let frame_length =
        (usize::from(b3 & 0x03) << 11) | (usize::from(b4) << 3) | usize::from(b5 >> 5);
    if frame_length <= header_length {
        return Err(format!("frame_length {frame_length}"));
    }
    Ok(Some(AdtsHeader {
        object_type: (b2 >> 6) + 1,
        sample_rate,
        channel_configuration: ((b2 & 0x01) << 2) | (b3 >> 6),
        header_length,
        frame_length,
        raw_blocks: (b6 & 0x03) + 1,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpeg_adts_header_parses() {
        // ffmpeg 5.1 `-c:a aac -f adts`, 48 kHz stereo LC, 363 payload bytes.
        let header = [0xff, 0xf1, 0x4c, 0x80, 0x2e, 0x5f, 0xfc];
        let parsed = parse_adts_header(&header).unwrap().unwrap();
        assert_eq!(
            parsed,
            AdtsHeader {
                object_type: 2,
                sample_rate: 48_000,
                channel_configuration: 2,
                header_length: 7,
                frame_length: 370,
                raw_blocks: 1,
            }
        );
        assert_eq!(parse_adts_header(&header[..6]), Ok(None));
        assert!(parse_adts_header(&[0xff, 0xf7, 0x4c, 0x80, 0x2e, 0x5f, 0xfc]).is_err());
        assert!(parse_adts_header(&[0xff, 0xf1, 0x7c, 0x80, 0x2e, 0x5f, 0xfc]).is_err());
        assert!(parse_adts_header(&[0xff, 0xf1, 0x4c, 0x80, 0x00, 0x1f, 0xfc]).is_err());
        // With CRC: 9-byte header.
        let crc = parse_adts_header(&[0xff, 0xf0, 0x4c, 0x80, 0x2e, 0x5f, 0xfc])
            .unwrap()
            .unwrap();
        assert_eq!(crc.header_length, 9);
    }
}
