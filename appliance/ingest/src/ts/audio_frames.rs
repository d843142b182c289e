//! Audio elementary streams framed by their sync headers: AAC in ADTS (stream_type 0x0f;
//! ISO/IEC 13818-7 §6.2, ISO/IEC 14496-3 §1.A.2.2, header in [`super::adts`]), MPEG-1/2 audio
//! (stream_type 0x03 and 0x04; ISO/IEC 11172-3 §2.4.1.3, ISO/IEC 13818-3) and AC-3 (stream_type
//! 0x81, or 0x06 with an AC-3 descriptor; ATSC A/52 §5.3.1, §A.4 of A/52 for the ATSC and ETSI
//! EN 300 468 Annex D for the DVB signalling).
//!
//! Why frames and not whole PES payloads: each frame then gets its own exact pts (the samples
//! of a frame are fixed: 1024 for AAC, 384, 576 or 1152 for MPEG audio, 1536 for AC-3), the
//! first header tells the track's format before its first unit ([`TsEvent::AudioConfig`] built
//! from the ADTS header, [`TsEvent::AudioFormat`] for the audio the engine transcodes, so it can
//! open its AAC transcoder and the stream its AAC track before going live), and decoders take
//! exactly one frame per packet without a parser. AAC goes out as raw frames with the ADTS
//! header removed; MPEG audio and AC-3 frames go out whole. A PES may hold several frames, or
//! end inside one; the rest waits for the next PES.
//!
//! Timing: the first frame that starts in a PES with a PTS is anchored there (rescaled to the
//! sample rate), each next frame follows by its sample count, and the clock re-anchors to a PES
//! PTS only when the two part by more than two frames (a real gap or jump in the source), after
//! a new AAC config, or after a change of sample rate (a channel change of MPEG audio or AC-3
//! keeps the clock).

use std::collections::VecDeque;

use bytes::Bytes;
use media::ac3::Ac3Header;
use media::mpeg_audio::MpegAudioHeader;
use media::{AacConfig, AccessUnit, AudioFormat, Codec, VIDEO_TIMESCALE, rescale};

use super::adts::{self, parse_adts_header};
use super::{TsCounters, TsEvent};

/// The largest MPEG audio or AC-3 frame (AC-3 at 640 kbit/s, 32 kHz: 3840 bytes; MPEG-1 layer
/// II at 384 kbit/s, 32 kHz: 1728), with room to spare.
const MAX_SYNC_FRAME_BYTES: usize = 4096;

/// Which sync header frames the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameSyntax {
    Adts,
    MpegAudio,
    Ac3,
}

/// What a frame header says about the stream; a change of it is announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StreamHeader {
    /// Made into an [`AacConfig`].
    Aac {
        object_type: u8,
        sample_rate: u32,
        channel_configuration: u8,
    },
    /// Announced as it is.
    Format(AudioFormat),
}

impl StreamHeader {
    fn sample_rate(self) -> u32 {
        match self {
            StreamHeader::Aac { sample_rate, .. } => sample_rate,
            StreamHeader::Format(format) => format.sample_rate,
        }
    }
}

/// One parsed frame header, whichever syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Frame {
    stream: StreamHeader,
    /// The whole frame, header included.
    bytes: usize,
    /// Leading bytes left out of the unit's payload (the ADTS header).
    header_bytes: usize,
    samples: u32,
    /// More than one raw_data_block in an ADTS frame: rare, and each would need splitting.
    several_blocks: bool,
}

impl FrameSyntax {
    /// `Ok(None)` when more bytes are needed to read the header.
    fn parse(self, data: &[u8]) -> Result<Option<Frame>, String> {
        match self {
            FrameSyntax::Adts => Ok(parse_adts_header(data)?.map(|h| Frame {
                stream: StreamHeader::Aac {
                    object_type: h.object_type,
                    sample_rate: h.sample_rate,
                    channel_configuration: h.channel_configuration,
                },
                bytes: h.frame_length,
                header_bytes: h.header_length,
                samples: adts::SAMPLES_PER_FRAME,
                several_blocks: h.raw_blocks != 1,
            })),
            FrameSyntax::MpegAudio => Ok(MpegAudioHeader::parse(data)?.map(|h| Frame {
                stream: StreamHeader::Format(AudioFormat::from_mpeg_audio(&h)),
                bytes: h.frame_bytes,
                header_bytes: 0,
                samples: h.samples,
                several_blocks: false,
            })),
            FrameSyntax::Ac3 => Ok(Ac3Header::parse(data)?.map(|h| Frame {
                stream: StreamHeader::Format(AudioFormat::from_ac3(&h)),
                bytes: h.frame_bytes,
                header_bytes: 0,
                samples: media::ac3::FRAME_SAMPLES,
                several_blocks: false,
            })),
        }
    }

    /// More bytes than this left without a whole frame are not a frame.
    fn max_frame_bytes(self) -> usize {
        match self {
            FrameSyntax::Adts => adts::MAX_FRAME_BYTES,
            FrameSyntax::MpegAudio | FrameSyntax::Ac3 => MAX_SYNC_FRAME_BYTES,
        }
    }
}

/// The state of one audio elementary stream.
#[derive(Debug)]
pub struct AudioFrameAssembler {
    syntax: FrameSyntax,
    /// Bytes of a frame that continues in the next PES.
    carry: Vec<u8>,
    /// The last header announced, so unchanged headers are not announced again.
    stream: Option<StreamHeader>,
    /// The codec of the units; `None` when the header made no usable config (an ADTS
    /// channel_configuration 0, i.e. a PCE in the stream, or object type 4).
    codec: Option<Codec>,
    /// pts of the next frame on the sample-rate clock.
    next_pts: Option<i64>,
    /// Inside a run of bytes that are not frames (counted once per run).
    lost_sync: bool,
}

impl AudioFrameAssembler {
    pub fn new(syntax: FrameSyntax) -> Self {
        AudioFrameAssembler {
            syntax,
            carry: Vec::new(),
            stream: None,
            codec: None,
            next_pts: None,
            lost_sync: false,
        }
    }

    pub fn syntax(&self) -> FrameSyntax {
        self.syntax
    }

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
            let frame = match self.syntax.parse(&buf[pos..]) {
                Ok(Some(frame)) => frame,
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
            if buf.len() - pos < frame.bytes {
                break;
            }
            self.lost_sync = false;
            let frame_pts = if pos >= pes_start { pts.take() } else { None };
            self.emit(
                frame,
                &buf[pos..pos + frame.bytes],
                frame_pts,
                events,
                counters,
            );
            pos += frame.bytes;
        }
        buf.drain(..pos);
        if buf.len() > self.syntax.max_frame_bytes() {
            counters.bad_audio += 1;
            buf.clear();
        }
        self.carry = buf;
    }

    /// Drops a partial frame (a continuity error, or the end of the stream).
    pub fn reset_partial(&mut self) {
        self.carry.clear();
    }

    /// Announces a new stream header.
    fn announce(&mut self, stream: StreamHeader, events: &mut VecDeque<TsEvent>) {
        match stream {
            StreamHeader::Aac {
                object_type,
                sample_rate,
                channel_configuration,
            } => {
                // A new AAC config always restarts the clock.
                self.next_pts = None;
                self.codec = match AacConfig::new(
                    object_type,
                    sample_rate,
                    // Channel configurations 1..=7 are 1, 2, 3, 4, 5, 6, 8 channels.
                    match channel_configuration {
                        7 => 8,
                        n => n,
                    },
                ) {
                    Ok(config) => {
                        events.push_back(TsEvent::AudioConfig(config));
                        Some(Codec::Aac)
                    }
                    Err(_) => None,
                };
            }
            StreamHeader::Format(format) => {
                // The clock only restarts when its rate changes (a channel change keeps it).
                if self.stream.map(StreamHeader::sample_rate) != Some(format.sample_rate) {
                    self.next_pts = None;
                }
                events.push_back(TsEvent::AudioFormat(format));
                self.codec = Some(format.codec);
            }
        }
        self.stream = Some(stream);
    }

    fn emit(
        &mut self,
        frame: Frame,
        bytes: &[u8],
        pts_90k: Option<i64>,
        events: &mut VecDeque<TsEvent>,
        counters: &mut TsCounters,
    ) {
        if self.stream != Some(frame.stream) {
            self.announce(frame.stream, events);
        }
        let Some(codec) = self.codec else {
            counters.bad_audio += 1;
            return;
        };
        if frame.several_blocks {
            counters.bad_audio += 1;
            return;
        }
        let sample_rate = frame.stream.sample_rate();
        let samples = i64::from(frame.samples);
        let from_pes = pts_90k.map(|pts| rescale(pts, VIDEO_TIMESCALE, sample_rate));
        let pts = match (self.next_pts, from_pes) {
            (Some(next), Some(anchor)) if (anchor - next).abs() <= 2 * samples => next,
            (_, Some(anchor)) => anchor,
            (Some(next), None) => next,
            (None, None) => {
                counters.units_before_config += 1;
                return;
            }
        };
        self.next_pts = Some(pts + samples);
        let Some(payload) = bytes.get(frame.header_bytes..) else {
            return;
        };
        counters.audio_units += 1;
        events.push_back(TsEvent::Media(AccessUnit {
            codec,
            pts,
            dts: pts,
            keyframe: true,
            // alloc: one buffer per frame (a few hundred bytes, ~40 to ~50 a second).
            payload: Bytes::copy_from_slice(payload),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ffmpeg mp2 frame (48 kHz stereo, 192 kbit/s: 576 bytes): its real header, then
    /// `fill`.
    fn mp2_frame(fill: u8) -> Vec<u8> {
        let mut frame = vec![0xff, 0xfd, 0xa4, 0x04];
        frame.resize(576, fill);
        frame
    }

    /// An ffmpeg ac3 frame (48 kHz stereo, 192 kbit/s: 768 bytes).
    fn ac3_frame(fill: u8) -> Vec<u8> {
        let mut frame = vec![0x0b, 0x77, 0xfe, 0x95, 0x14, 0x40, 0x43];
        frame.resize(768, fill);
        frame
    }

    /// An ADTS frame (AAC-LC, 48 kHz stereo) of `payload_len` bytes of `fill`.
    fn adts_frame(payload_len: usize, fill: u8) -> Vec<u8> {
        let config = AacConfig::new(2, 48_000, 2).unwrap();
        let mut f = config.adts_header(payload_len).to_vec();
        f.resize(7 + payload_len, fill);
        f
    }

    fn units(events: &VecDeque<TsEvent>) -> Vec<&AccessUnit> {
        events
            .iter()
            .filter_map(|e| match e {
                TsEvent::Media(unit) => Some(unit),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn adts_frames_split_across_pes_keep_an_even_clock() {
        let mut assembler = AudioFrameAssembler::new(FrameSyntax::Adts);
        let mut events = VecDeque::new();
        let mut counters = TsCounters::default();
        let mut stream = Vec::new();
        for i in 0..5u8 {
            stream.extend_from_slice(&adts_frame(100 + usize::from(i), i));
        }
        // PES 1: frames 0, 1 and part of 2, PTS 90_000 (48_000 on the sample clock).
        let cut = 107 + 108 + 50;
        assembler.push_pes(Some(90_000), &stream[..cut], &mut events, &mut counters);
        // PES 2 (PTS of frame 3, with 2 ms of jitter): the rest.
        let pts3 = 90_000 + 3 * 1920 + 180;
        assembler.push_pes(Some(pts3), &stream[cut..], &mut events, &mut counters);
        assert!(matches!(&events[0], TsEvent::AudioConfig(c) if c.sample_rate == 48_000));
        let got = units(&events);
        assert_eq!(got.len(), 5);
        for (i, unit) in got.iter().enumerate() {
            assert_eq!(unit.codec, Codec::Aac);
            assert_eq!(unit.pts, 48_000 + 1024 * i as i64);
            // The ADTS header is left out.
            assert_eq!(unit.payload.len(), 100 + i);
            assert!(unit.payload.iter().all(|&b| b == i as u8));
        }
        // A jump of a second re-anchors.
        events.clear();
        assembler.push_pes(
            Some(10 * 90_000),
            &adts_frame(10, 9),
            &mut events,
            &mut counters,
        );
        assert!(matches!(&events[0], TsEvent::Media(u) if u.pts == 480_000));
        // Garbage between frames is skipped and counted once.
        events.clear();
        let mut noisy = vec![1, 2, 3, 0xff, 0x00];
        noisy.extend_from_slice(&adts_frame(10, 1));
        assembler.push_pes(None, &noisy, &mut events, &mut counters);
        assert_eq!(counters.bad_audio, 1);
        assert!(matches!(&events[0], TsEvent::Media(u) if u.pts == 480_000 + 1024));
    }

    #[test]
    fn adts_config_changes_restart_the_clock_and_unusable_frames_are_counted() {
        /// `adts_frame` with its channel_configuration and raw_data_block count set.
        fn adts_variant(channel_configuration: u8, raw_blocks: u8) -> Vec<u8> {
            let mut f = adts_frame(20, 5);
            f[2] = (f[2] & !0x01) | (channel_configuration >> 2);
            f[3] = (f[3] & 0x3f) | ((channel_configuration & 0x03) << 6);
            f[6] = (f[6] & !0x03) | (raw_blocks - 1);
            f
        }
        let mut assembler = AudioFrameAssembler::new(FrameSyntax::Adts);
        let (mut events, mut counters) = (VecDeque::new(), TsCounters::default());
        // Stereo, then mono (a new config: unlike MPEG audio the clock restarts, and this PES's
        // PTS went to the first frame), then channel_configuration 0 (a PCE: no config), then
        // stereo again with two raw_data_blocks.
        let pes: Vec<u8> = [(2, 1), (1, 1), (0, 1), (2, 2)]
            .into_iter()
            .flat_map(|(channels, blocks)| adts_variant(channels, blocks))
            .collect();
        assembler.push_pes(Some(90_000), &pes, &mut events, &mut counters);
        let got: Vec<(u8, Option<i64>)> = events
            .iter()
            .map(|e| match e {
                TsEvent::AudioConfig(config) => (config.channels, None),
                TsEvent::Media(unit) => (0, Some(unit.pts)),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(got, [(2, None), (0, Some(48_000)), (1, None), (2, None)]);
        assert_eq!(counters.audio_units, 1);
        assert_eq!(counters.units_before_config, 1);
        assert_eq!(counters.bad_audio, 2);
    }

    #[test]
    fn mpeg_audio_frames_split_across_pes_keep_an_even_clock() {
        let mut assembler = AudioFrameAssembler::new(FrameSyntax::MpegAudio);
        let (mut events, mut counters) = (VecDeque::new(), TsCounters::default());
        let stream: Vec<u8> = (0..5).flat_map(mp2_frame).collect();
        // PES 1: frames 0, 1 and part of 2 at PTS 1 s; PES 2 (PTS of frame 3 with 1 ms of
        // jitter): the rest.
        let cut = 2 * 576 + 100;
        assembler.push_pes(Some(90_000), &stream[..cut], &mut events, &mut counters);
        let pts3 = 90_000 + 3 * 2160 + 90;
        assembler.push_pes(Some(pts3), &stream[cut..], &mut events, &mut counters);
        assert_eq!(
            events[0],
            TsEvent::AudioFormat(AudioFormat {
                codec: Codec::Mp2,
                sample_rate: 48_000,
                channels: 2,
            })
        );
        let got = units(&events);
        assert_eq!(got.len(), 5);
        for (i, unit) in got.iter().enumerate() {
            assert_eq!(unit.codec, Codec::Mp2);
            assert_eq!(unit.pts, 48_000 + 1152 * i as i64);
            assert_eq!(unit.payload[..], mp2_frame(i as u8)[..]);
        }
        assert_eq!(counters.audio_units, 5);
        assert_eq!(counters.bad_audio, 0);
        // A jump of a second re-anchors; garbage before a frame is skipped and counted once.
        events.clear();
        let mut noisy = vec![1, 2, 3, 0xff, 0x00];
        noisy.extend(mp2_frame(9));
        assembler.push_pes(Some(10 * 90_000), &noisy, &mut events, &mut counters);
        assert_eq!(counters.bad_audio, 1);
        assert_eq!(units(&events)[0].pts, 480_000);
    }

    #[test]
    fn ac3_frames_report_their_format_and_a_change_of_it() {
        let mut assembler = AudioFrameAssembler::new(FrameSyntax::Ac3);
        let (mut events, mut counters) = (VecDeque::new(), TsCounters::default());
        let mut pes: Vec<u8> = (0..3).flat_map(ac3_frame).collect();
        // A 5.1 frame at 384 kbit/s (1536 bytes) after the stereo ones.
        let mut surround = vec![0x0b, 0x77, 0x94, 0x12, 0x1c, 0x40, 0xeb];
        surround.resize(1536, 7);
        pes.extend(&surround);
        assembler.push_pes(Some(0), &pes, &mut events, &mut counters);
        let formats: Vec<AudioFormat> = events
            .iter()
            .filter_map(|e| match e {
                TsEvent::AudioFormat(format) => Some(*format),
                _ => None,
            })
            .collect();
        assert_eq!(
            formats
                .iter()
                .map(|f| (f.codec, f.channels))
                .collect::<Vec<_>>(),
            [(Codec::Ac3, 2), (Codec::Ac3, 6)]
        );
        let pts: Vec<i64> = units(&events).iter().map(|u| u.pts).collect();
        // Same rate, so the clock goes on through the change.
        assert_eq!(pts, [0, 1536, 3072, 4608]);
        assert_eq!(counters.units_before_config, 0);
    }

    #[test]
    fn truncated_and_random_input_never_panics() {
        let mut seed = 0x1234_5678_u32;
        for syntax in [FrameSyntax::Adts, FrameSyntax::MpegAudio, FrameSyntax::Ac3] {
            let mut assembler = AudioFrameAssembler::new(syntax);
            let (mut events, mut counters) = (VecDeque::new(), TsCounters::default());
            let good = match syntax {
                FrameSyntax::Adts => adts_frame(300, 1),
                FrameSyntax::MpegAudio => mp2_frame(1),
                FrameSyntax::Ac3 => ac3_frame(1),
            };
            for round in 0..200 {
                let mut data = good.clone();
                for _ in 0..round % 7 {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let at = seed as usize % data.len();
                    data[at] = (seed >> 8) as u8;
                }
                data.truncate(seed as usize % (data.len() + 1));
                assembler.push_pes(Some(round * 3000), &data, &mut events, &mut counters);
            }
            assembler.reset_partial();
        }
    }
}
