//! AAC in ADTS (ISO/IEC 13818-7 §6.2, ISO/IEC 14496-3 §1.A.2.2; stream_type 0x0f): frames
//! split out of PES packets, the AudioSpecificConfig built from the ADTS header, raw frames
//! out with their ADTS header removed.
//!
//! Timing: AAC frames are exactly 1024 samples apart. The first frame that starts in a PES
//! with a PTS is anchored at that PTS (rescaled to the sample rate); every next frame gets the
//! previous pts + 1024. The clock is re-anchored to a PES PTS only when the two part by more
//! than two frames (a real gap or jump in the source), and after a new config. Frames may span
//! PES packets; the bytes left over wait for the next PES.

use std::collections::VecDeque;

use bytes::Bytes;
use media::{AacConfig, AccessUnit, Codec, VIDEO_TIMESCALE, rescale};

use super::{TsCounters, TsEvent};

/// samplingFrequencyIndex 0 to 12 (ISO/IEC 14496-3 Table 1.18).
const SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];
/// ADTS frame_length is 13 bits.
const MAX_FRAME_BYTES: usize = 0x1fff;
const SAMPLES_PER_FRAME: i64 = 1024;

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

/// The state of one ADTS elementary stream.
#[derive(Debug, Default)]
pub struct AdtsAssembler {
    /// Bytes of a frame that continues in the next PES.
    carry: Vec<u8>,
    config: Option<AacConfig>,
    /// The header the config was made from, so unchanged headers are not parsed into configs.
    config_header: Option<(u8, u32, u8)>,
    /// pts of the next frame on the sample-rate clock.
    next_pts: Option<i64>,
    /// Inside a run of bytes that are not ADTS (counted once per run).
    lost_sync: bool,
}

impl AdtsAssembler {
    /// Takes the elementary stream bytes of one PES; `pts` (unwrapped, 90 kHz) is its PTS.
    pub fn push_pes(
        &mut self,
        pts: Option<i64>,
        data: &[u8],
        events: &mut VecDeque<TsEvent>,
        counters: &mut TsCounters,
    ) {
        let mut buf = std::mem::take(&mut self.carry);
        let pes_start = buf.len();
        // alloc: only when a frame spans PES packets (the buffer is reused otherwise empty).
        buf.extend_from_slice(data);
        let mut pts = pts;
        let mut pos = 0;
        while pos < buf.len() {
            let header = match parse_adts_header(&buf[pos..]) {
                Ok(Some(header)) => header,
                Ok(None) => break,
                Err(_) => {
                    if !self.lost_sync {
                        self.lost_sync = true;
                        counters.bad_audio += 1;
                    }
                    pos += 1;
                    continue;
                }
            };
            if buf.len() - pos < header.frame_length {
                break;
            }
            self.lost_sync = false;
            let frame = &buf[pos..pos + header.frame_length];
            let frame_pts = if pos >= pes_start { pts.take() } else { None };
            pos += header.frame_length;
            self.emit(header, frame, frame_pts, events, counters);
        }
        buf.drain(..pos);
        if buf.len() > MAX_FRAME_BYTES {
            counters.bad_audio += 1;
            buf.clear();
        }
        self.carry = buf;
    }

    /// Drops a partial frame (a continuity error, or the end of the stream).
    pub fn reset_partial(&mut self) {
        self.carry.clear();
    }

    fn emit(
        &mut self,
        header: AdtsHeader,
        frame: &[u8],
        pts_90k: Option<i64>,
        events: &mut VecDeque<TsEvent>,
        counters: &mut TsCounters,
    ) {
        let key = (
            header.object_type,
            header.sample_rate,
            header.channel_configuration,
        );
        if self.config_header != Some(key) {
            self.config_header = Some(key);
            self.next_pts = None;
            match AacConfig::new(
                header.object_type,
                header.sample_rate,
                // Channel configurations 1..=7 are 1, 2, 3, 4, 5, 6, 8 channels.
                match header.channel_configuration {
                    7 => 8,
                    n => n,
                },
            ) {
                Ok(config) => {
                    events.push_back(TsEvent::AudioConfig(config.clone()));
                    self.config = Some(config);
                }
                Err(_) => {
                    // e.g. channel_configuration 0 (a PCE in the stream) or object type 4.
                    self.config = None;
                }
            }
        }
        let Some(config) = &self.config else {
            counters.bad_audio += 1;
            return;
        };
        if header.raw_blocks != 1 {
            // Several raw_data_blocks per ADTS frame: rare, and each would need splitting.
            counters.bad_audio += 1;
            return;
        }
        let sample_rate = config.sample_rate;
        let from_pes = pts_90k.map(|pts| rescale(pts, VIDEO_TIMESCALE, sample_rate));
        let pts = match (self.next_pts, from_pes) {
            (Some(next), Some(anchor)) if (anchor - next).abs() <= 2 * SAMPLES_PER_FRAME => next,
            (_, Some(anchor)) => anchor,
            (Some(next), None) => next,
            (None, None) => {
                counters.units_before_config += 1;
                return;
            }
        };
        self.next_pts = Some(pts + SAMPLES_PER_FRAME);
        let Some(raw) = frame.get(header.header_length..) else {
            return;
        };
        counters.audio_units += 1;
        events.push_back(TsEvent::Media(AccessUnit {
            codec: Codec::Aac,
            pts,
            dts: pts,
            keyframe: true,
            // alloc: one small buffer per AAC frame (a few hundred bytes, ~47 a second).
            payload: Bytes::copy_from_slice(raw),
        }));
    }
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

    fn frame(payload_len: usize, fill: u8) -> Vec<u8> {
        let config = AacConfig::new(2, 48_000, 2).unwrap();
        let mut f = config.adts_header(payload_len).to_vec();
        f.resize(7 + payload_len, fill);
        f
    }

    #[test]
    fn frames_split_across_pes_keep_an_even_clock() {
        let mut assembler = AdtsAssembler::default();
        let mut events = VecDeque::new();
        let mut counters = TsCounters::default();
        let mut stream = Vec::new();
        for i in 0..5u8 {
            stream.extend_from_slice(&frame(100 + usize::from(i), i));
        }
        // PES 1: frames 0, 1 and part of 2, PTS 90_000 (48_000 on the sample clock).
        let cut = 107 + 108 + 50;
        assembler.push_pes(Some(90_000), &stream[..cut], &mut events, &mut counters);
        // PES 2 (PTS of frame 3, with 2 ms of jitter): the rest.
        let pts3 = 90_000 + 3 * 1920 + 180;
        assembler.push_pes(Some(pts3), &stream[cut..], &mut events, &mut counters);
        let units: Vec<AccessUnit> = events
            .iter()
            .filter_map(|e| match e {
                TsEvent::Media(unit) => Some(unit.clone()),
                _ => None,
            })
            .collect();
        assert!(matches!(&events[0], TsEvent::AudioConfig(c) if c.sample_rate == 48_000));
        assert_eq!(units.len(), 5);
        for (i, unit) in units.iter().enumerate() {
            assert_eq!(unit.pts, 48_000 + 1024 * i as i64);
            assert_eq!(unit.payload.len(), 100 + i);
            assert!(unit.payload.iter().all(|&b| b == i as u8));
        }
        // A jump of a second re-anchors.
        events.clear();
        assembler.push_pes(Some(10 * 90_000), &frame(10, 9), &mut events, &mut counters);
        assert!(matches!(&events[0], TsEvent::Media(u) if u.pts == 480_000));
        // Garbage between frames is skipped and counted once.
        events.clear();
        let mut noisy = vec![1, 2, 3, 0xff, 0x00];
        noisy.extend_from_slice(&frame(10, 1));
        assembler.push_pes(None, &noisy, &mut events, &mut counters);
        assert_eq!(counters.bad_audio, 1);
        assert!(matches!(&events[0], TsEvent::Media(u) if u.pts == 480_000 + 1024));
    }
}
