//! FLV audio and video tag bodies, as RTMP audio (8) and video (9) messages carry them (Adobe
//! Video File Format Specification v10.1, E.4.2.1 VIDEODATA + AVCVIDEOPACKET, E.4.2.2
//! AUDIODATA + AACAUDIODATA), and the clocks that turn RTMP milliseconds into media time.
//!
//! Audio: AAC (SoundFormat 10) and MP3 (SoundFormat 2, and 14, "MP3 8 kHz"). An MP3 tag body
//! is MPEG audio frames after the one-byte header; the frames' own headers say the sample rate
//! and channels (the tag header's SoundRate cannot say 48 kHz, which ffmpeg writes as 44 kHz).
//! The engine transcodes MP3 to AAC. Other sound formats (ADPCM, PCM, Nellymoser, G.711,
//! Speex, Enhanced RTMP FourCCs) are refused by number or name.
//!
//! The tag parser first reads the tag header into a codec, then the codec's packet. Enhanced
//! RTMP (Veovera enhanced-rtmp v1, "Extending VideoTagHeader") adds a video header form where
//! bit 7 of the first byte (`IsExHeader`) is set: bits 6-4 are the frame type, bits 3-0 the
//! VideoPacketType (0 SequenceStart, 1 CodedFrames, 2 SequenceEnd, 3 CodedFramesX, 4 Metadata,
//! 5 MPEG2TSSequenceStart), then a FourCC. We take `hvc1` (SequenceStart: an
//! HEVCDecoderConfigurationRecord; CodedFrames: SI24 composition time, then length-prefixed
//! NAL units; CodedFramesX: the same without the composition time) and `av01` (SequenceStart:
//! an AV1CodecConfigurationRecord; CodedFrames / CodedFramesX: the OBUs of one temporal unit,
//! no composition time). Metadata (HDR colour info), MPEG2TSSequenceStart (AV1's TS descriptor,
//! which the `av1C` of SequenceStart makes redundant) and SequenceEnd are ignored. Other
//! FourCCs (`vp09`, and Enhanced RTMP audio such as `Opus`) are refused by name.

use bytes::{Bytes, BytesMut};
use media::Codec;

/// Why a tag body was not taken; the session adds where it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// A codec or format we do not take, named by its id or FourCC.
    #[error("unsupported {0}")]
    Unsupported(String),
    #[error("{0}")]
    Malformed(String),
}

/// FLV video codec id of H.264 (E.4.2.1).
const VIDEO_CODEC_AVC: u8 = 7;
/// FLV sound format of AAC (E.4.2.2).
const SOUND_FORMAT_AAC: u8 = 10;
/// FLV sound formats of MP3, and of "MP3 8 kHz" (E.4.2.2).
const SOUND_FORMAT_MP3: u8 = 2;
const SOUND_FORMAT_MP3_8KHZ: u8 = 14;
/// Sound format 9 announces an Enhanced RTMP audio FourCC header.
const SOUND_FORMAT_EX_HEADER: u8 = 9;
/// Video frame type 5: a video info/command frame, no picture.
const FRAME_TYPE_COMMAND: u8 = 5;
/// Video frame type 1: a keyframe (a seekable frame).
const FRAME_TYPE_KEY: u8 = 1;

/// Enhanced RTMP VideoPacketType values (enhanced-rtmp v1).
mod packet_type {
    pub const SEQUENCE_START: u8 = 0;
    pub const CODED_FRAMES: u8 = 1;
    pub const SEQUENCE_END: u8 = 2;
    pub const CODED_FRAMES_X: u8 = 3;
    pub const METADATA: u8 = 4;
    pub const MPEG2TS_SEQUENCE_START: u8 = 5;
}

/// A parsed video tag body.
#[derive(Debug, PartialEq, Eq)]
pub enum VideoTag {
    /// AVCPacketType 0: an AVCDecoderConfigurationRecord.
    AvcSequenceHeader(Bytes),
    /// AVCPacketType 1: one access unit of 4-byte length-prefixed NAL units.
    AvcNalus {
        keyframe: bool,
        /// Milliseconds from decode to presentation time (SI24).
        composition_time: i32,
        data: Bytes,
    },
    /// Enhanced RTMP SequenceStart of `hvc1` (an HEVCDecoderConfigurationRecord) or `av01`
    /// (an AV1CodecConfigurationRecord).
    SequenceStart { codec: Codec, record: Bytes },
    /// Enhanced RTMP CodedFrames / CodedFramesX: one HEVC access unit (4-byte length-prefixed
    /// NAL units) or one AV1 temporal unit (OBUs).
    CodedFrame {
        codec: Codec,
        /// The tag's frame type says keyframe. The session decides from the bitstream.
        keyframe: bool,
        /// Milliseconds from decode to presentation time (HEVC CodedFrames only, else 0).
        composition_time: i32,
        data: Bytes,
    },
    /// AVCPacketType 2, an Enhanced RTMP SequenceEnd, Metadata or MPEG2TSSequenceStart, or a
    /// command frame: nothing to pass on.
    Ignored,
}

/// A parsed audio tag body.
#[derive(Debug, PartialEq, Eq)]
pub enum AudioTag {
    /// AACPacketType 0: an AudioSpecificConfig.
    AacSequenceHeader(Bytes),
    /// AACPacketType 1: one raw AAC frame.
    AacRaw(Bytes),
    /// SoundFormat 2 or 14: MPEG audio layer III frames (usually one), headers included.
    Mp3(Bytes),
}

fn flv_error(kind: &'static str, reason: String) -> TagError {
    TagError::Malformed(format!("{kind} tag: {reason}"))
}

pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag, TagError> {
    let Some(&first) = body.first() else {
        return Err(flv_error("video", "empty tag body".into()));
    };
    if first & 0x80 != 0 {
        return parse_ex_video_tag(first, body);
    }
    let frame_type = first >> 4;
    let codec_id = first & 0x0f;
    if frame_type == FRAME_TYPE_COMMAND {
        return Ok(VideoTag::Ignored);
    }
    if codec_id != VIDEO_CODEC_AVC {
        return Err(TagError::Unsupported(format!(
            "FLV video codec id {codec_id}"
        )));
    }
    let Some(&[packet_type, c0, c1, c2]) = body.get(1..5) else {
        return Err(flv_error(
            "video",
            format!(
                "AVC tag of {} bytes, shorter than its 5-byte header",
                body.len()
            ),
        ));
    };
    // SI24: sign-extend from bit 23.
    let composition_time = (i32::from_be_bytes([c0, c1, c2, 0])) >> 8;
    let data = body.slice(5..);
    match packet_type {
        0 => Ok(VideoTag::AvcSequenceHeader(data)),
        1 => Ok(VideoTag::AvcNalus {
            keyframe: frame_type == 1,
            composition_time,
            data,
        }),
        2 => Ok(VideoTag::Ignored),
        other => Err(flv_error("video", format!("AVCPacketType {other}"))),
    }
}

/// The Enhanced RTMP form of a video tag (see the module docs).
fn parse_ex_video_tag(first: u8, body: &Bytes) -> Result<VideoTag, TagError> {
    let frame_type = (first >> 4) & 0x07;
    let packet_type = first & 0x0f;
    let Some(fourcc) = body.get(1..5) else {
        return Err(flv_error(
            "video",
            format!(
                "Enhanced RTMP tag of {} bytes, shorter than its 5-byte header",
                body.len()
            ),
        ));
    };
    let codec = match fourcc {
        b"hvc1" => Codec::H265,
        b"av01" => Codec::Av1,
        _ => {
            return Err(TagError::Unsupported(format!(
                "Enhanced RTMP FourCC {:?}",
                String::from_utf8_lossy(fourcc)
            )));
        }
    };
    if frame_type == FRAME_TYPE_COMMAND && packet_type != packet_type::METADATA {
        return Ok(VideoTag::Ignored);
    }
    let keyframe = frame_type == FRAME_TYPE_KEY;
    match packet_type {
        packet_type::SEQUENCE_START => Ok(VideoTag::SequenceStart {
            codec,
            record: body.slice(5..),
        }),
        packet_type::CODED_FRAMES if codec == Codec::H265 => {
            let Some(&[c0, c1, c2]) = body.get(5..8) else {
                return Err(flv_error(
                    "video",
                    format!(
                        "HEVC CodedFrames tag of {} bytes, shorter than its 8-byte header",
                        body.len()
                    ),
                ));
            };
            Ok(VideoTag::CodedFrame {
                codec,
                keyframe,
                composition_time: i32::from_be_bytes([c0, c1, c2, 0]) >> 8,
                data: body.slice(8..),
            })
        }
        packet_type::CODED_FRAMES | packet_type::CODED_FRAMES_X => Ok(VideoTag::CodedFrame {
            codec,
            keyframe,
            composition_time: 0,
            data: body.slice(5..),
        }),
        packet_type::SEQUENCE_END | packet_type::METADATA | packet_type::MPEG2TS_SEQUENCE_START => {
            Ok(VideoTag::Ignored)
        }
        other => Err(flv_error(
            "video",
            format!("Enhanced RTMP VideoPacketType {other}"),
        )),
    }
}

pub fn parse_audio_tag(body: &Bytes) -> Result<AudioTag, TagError> {
    let Some(&first) = body.first() else {
        return Err(flv_error("audio", "empty tag body".into()));
    };
    let sound_format = first >> 4;
    if sound_format == SOUND_FORMAT_EX_HEADER {
        let fourcc = body.get(1..5).unwrap_or_default();
        return Err(TagError::Unsupported(format!(
            "Enhanced RTMP FourCC {:?}",
            String::from_utf8_lossy(fourcc)
        )));
    }
    if matches!(sound_format, SOUND_FORMAT_MP3 | SOUND_FORMAT_MP3_8KHZ) {
        return Ok(AudioTag::Mp3(body.slice(1..)));
    }
    if sound_format != SOUND_FORMAT_AAC {
        return Err(TagError::Unsupported(format!(
            "FLV sound format {sound_format} ({})",
            sound_format_name(sound_format)
        )));
    }
    let Some(&packet_type) = body.get(1) else {
        return Err(flv_error("audio", "AAC tag without AACPacketType".into()));
    };
    let data = body.slice(2..);
    match packet_type {
        0 => Ok(AudioTag::AacSequenceHeader(data)),
        1 => Ok(AudioTag::AacRaw(data)),
        other => Err(flv_error("audio", format!("AACPacketType {other}"))),
    }
}

/// The name of an FLV SoundFormat (E.4.2.2), for the error that refuses it.
fn sound_format_name(format: u8) -> &'static str {
    match format {
        0 => "linear PCM, platform endian",
        1 => "ADPCM",
        3 => "linear PCM, little endian",
        4..=6 => "Nellymoser",
        7 => "G.711 A-law",
        8 => "G.711 mu-law",
        11 => "Speex",
        15 => "device-specific sound",
        _ => "reserved",
    }
}

/// H.264 NAL unit types that do not travel in samples: SPS (7), PPS (8) and access unit
/// delimiters (9). Parameter sets travel in the track config; the TS muxer writes its own AUDs.
fn is_stripped_avc(header: u8) -> bool {
    matches!(header & 0x1f, 7..=9)
}

/// The HEVC equivalents (H.265 Table 7-1): VPS (32), SPS (33), PPS (34), AUD (35). `hvc1`
/// tracks keep parameter sets in the `hvcC` only.
fn is_stripped_hevc(header: u8) -> bool {
    matches!((header >> 1) & 0x3f, 32..=35)
}

/// Checks the 4-byte length framing of an AVC sample and drops SPS, PPS and AUD NAL units.
/// Returns the input itself (no copy) when nothing is dropped.
pub fn filter_avc_sample(data: Bytes) -> Result<Bytes, TagError> {
    filter_sample(data, is_stripped_avc)
}

/// As [`filter_avc_sample`] for HEVC: drops VPS, SPS, PPS and AUD NAL units. Also says whether
/// the sample holds an IRAP picture (a sync sample).
pub fn filter_hevc_sample(data: Bytes) -> Result<(Bytes, bool), TagError> {
    let mut irap = false;
    let mut pos = 0;
    while let Some(&[a, b, c, d, header]) = data.get(pos..pos + 5) {
        irap |= media::hevc::is_irap((header >> 1) & 0x3f);
        pos += 4 + u32::from_be_bytes([a, b, c, d]) as usize;
    }
    Ok((filter_sample(data, is_stripped_hevc)?, irap))
}

fn filter_sample(data: Bytes, is_stripped: fn(u8) -> bool) -> Result<Bytes, TagError> {
    let mut pos = 0;
    let mut keep_all = true;
    while pos < data.len() {
        let nal_len = match data.get(pos..pos + 4) {
            Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]) as usize,
            _ => {
                return Err(flv_error(
                    "video",
                    format!("AVC NAL length cut at offset {pos} of {}", data.len()),
                ));
            }
        };
        let Some(&header) = data.get(pos + 4) else {
            return Err(flv_error(
                "video",
                format!("empty NAL unit at offset {pos}"),
            ));
        };
        if nal_len == 0 || data.len() - pos - 4 < nal_len {
            return Err(flv_error(
                "video",
                format!(
                    "NAL unit at offset {pos} claims {nal_len} bytes, {} left",
                    data.len() - pos - 4
                ),
            ));
        }
        keep_all &= !is_stripped(header);
        pos += 4 + nal_len;
    }
    if keep_all {
        return Ok(data);
    }
    // alloc: only for encoders that repeat parameter sets or AUDs in samples.
    let mut kept = BytesMut::with_capacity(data.len());
    let mut pos = 0;
    while let Some(&[a, b, c, d, header]) = data.get(pos..pos + 5) {
        let end = pos + 4 + u32::from_be_bytes([a, b, c, d]) as usize;
        if !is_stripped(header) {
            kept.extend_from_slice(data.get(pos..end).unwrap_or_default());
        }
        pos = end;
    }
    Ok(kept.freeze())
}

/// Unwraps 32-bit millisecond timestamps into i64 across the 2^32 wrap: each timestamp is
/// taken as the nearest value to the previous one (so a small step back stays a step back).
#[derive(Debug, Default)]
pub struct TimestampUnwrapper {
    last: Option<(u32, i64)>,
}

impl TimestampUnwrapper {
    pub fn unwrap(&mut self, raw: u32) -> i64 {
        let value = match self.last {
            None => i64::from(raw),
            Some((last_raw, last)) => last + i64::from(raw.wrapping_sub(last_raw) as i32),
        };
        self.last = Some((raw, value));
        value
    }
}

/// AAC frames are exactly 1024 samples apart; RTMP timestamps are whole milliseconds and
/// jitter. The clock follows the sample count and re-anchors to the RTMP time only when the two
/// part by more than two frames (a gap or a jump in the source).
#[derive(Debug, Default)]
pub struct AacClock {
    next: Option<i64>,
}

impl AacClock {
    /// The pts (on the sample-rate clock) of the frame with RTMP time `ms`.
    pub fn pts(&mut self, ms: i64, sample_rate: u32, frame_samples: u32) -> i64 {
        let from_ms = media::rescale(ms, 1000, sample_rate);
        let tolerance = 2 * i64::from(frame_samples);
        let pts = match self.next {
            Some(next) if (from_ms - next).abs() <= tolerance => next,
            _ => from_ms,
        };
        self.next = Some(pts + i64::from(frame_samples));
        pts
    }

    /// Forgets the anchor (a new AAC config: maybe a new sample rate).
    pub fn reset(&mut self) {
        self.next = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpeg_avc_tags_parse() {
        // Keyframe, NALU, composition time 66 ms (ffmpeg with -bf 2 at 30 fps).
        let body = Bytes::from_static(&[0x17, 0x01, 0x00, 0x00, 0x42, 0, 0, 0, 1, 0x65]);
        assert_eq!(
            parse_video_tag(&body).unwrap(),
            VideoTag::AvcNalus {
                keyframe: true,
                composition_time: 66,
                data: Bytes::from_static(&[0, 0, 0, 1, 0x65]),
            }
        );
        // Inter frame, negative composition time -33 (0xffffdf).
        let body = Bytes::from_static(&[0x27, 0x01, 0xff, 0xff, 0xdf, 0, 0, 0, 1, 0x41]);
        let VideoTag::AvcNalus {
            keyframe,
            composition_time,
            ..
        } = parse_video_tag(&body).unwrap()
        else {
            panic!("not a NALU tag");
        };
        assert_eq!((keyframe, composition_time), (false, -33));
        let end = Bytes::from_static(&[0x17, 0x02, 0, 0, 0]);
        assert_eq!(parse_video_tag(&end).unwrap(), VideoTag::Ignored);
        let header = Bytes::from_static(&[0x17, 0x00, 0, 0, 0, 1, 0x64]);
        assert_eq!(
            parse_video_tag(&header).unwrap(),
            VideoTag::AvcSequenceHeader(Bytes::from_static(&[1, 0x64]))
        );
    }

    #[test]
    fn other_codecs_are_refused_by_id() {
        let vp6 = Bytes::from_static(&[0x14, 0]);
        let err = parse_video_tag(&vp6).unwrap_err().to_string();
        assert!(err.contains("unsupported FLV video codec id 4"), "{err}");
        let vp9 = Bytes::from_static(&[0x90, b'v', b'p', b'0', b'9']);
        let err = parse_video_tag(&vp9).unwrap_err().to_string();
        assert!(
            err.contains("unsupported Enhanced RTMP FourCC \"vp09\""),
            "{err}"
        );
        let opus = Bytes::from_static(&[0x90, b'O', b'p', b'u', b's']);
        let err = parse_audio_tag(&opus).unwrap_err().to_string();
        assert!(err.contains("Opus"), "{err}");
        let speex = Bytes::from_static(&[0xb2, 0]);
        let err = parse_audio_tag(&speex).unwrap_err().to_string();
        assert!(err.contains("unsupported FLV sound format 11"), "{err}");
        assert!(parse_video_tag(&Bytes::from_static(&[0x17, 1, 0])).is_err());
        assert!(parse_video_tag(&Bytes::new()).is_err());
        assert!(parse_audio_tag(&Bytes::from_static(&[0xaf])).is_err());
        assert!(parse_audio_tag(&Bytes::from_static(&[0xaf, 7])).is_err());
    }

    #[test]
    fn enhanced_rtmp_hevc_and_av1_tags_parse() {
        // Key frame (1), SequenceStart (0), hvc1: the record follows the FourCC.
        let start = Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1', 0x01, 0x01, 0x60]);
        assert_eq!(
            parse_video_tag(&start).unwrap(),
            VideoTag::SequenceStart {
                codec: Codec::H265,
                record: Bytes::from_static(&[0x01, 0x01, 0x60]),
            }
        );
        // Inter frame (2), CodedFrames (1): SI24 composition time -40 (0xffffd8), then NALUs.
        let frames = Bytes::from_static(&[
            0xa1, b'h', b'v', b'c', b'1', 0xff, 0xff, 0xd8, 0, 0, 0, 2, 0x02, 0x01,
        ]);
        assert_eq!(
            parse_video_tag(&frames).unwrap(),
            VideoTag::CodedFrame {
                codec: Codec::H265,
                keyframe: false,
                composition_time: -40,
                data: Bytes::from_static(&[0, 0, 0, 2, 0x02, 0x01]),
            }
        );
        // Key frame, CodedFramesX (3): no composition time.
        let frames_x = Bytes::from_static(&[0x93, b'h', b'v', b'c', b'1', 0, 0, 0, 2, 0x26, 0x01]);
        assert_eq!(
            parse_video_tag(&frames_x).unwrap(),
            VideoTag::CodedFrame {
                codec: Codec::H265,
                keyframe: true,
                composition_time: 0,
                data: Bytes::from_static(&[0, 0, 0, 2, 0x26, 0x01]),
            }
        );
        // av01 CodedFrames (1) has no composition time: OBUs right after the FourCC.
        let av1 = Bytes::from_static(&[0x91, b'a', b'v', b'0', b'1', 0x12, 0x00, 0x32, 0x00]);
        assert_eq!(
            parse_video_tag(&av1).unwrap(),
            VideoTag::CodedFrame {
                codec: Codec::Av1,
                keyframe: true,
                composition_time: 0,
                data: Bytes::from_static(&[0x12, 0x00, 0x32, 0x00]),
            }
        );
        let av1_start = Bytes::from_static(&[0x90, b'a', b'v', b'0', b'1', 0x81, 0, 0x0c, 0]);
        assert!(matches!(
            parse_video_tag(&av1_start).unwrap(),
            VideoTag::SequenceStart {
                codec: Codec::Av1,
                ..
            }
        ));
        // SequenceEnd (2), Metadata (4), MPEG2TSSequenceStart (5), a command frame: ignored.
        for first in [0x92, 0x94, 0x95, 0xd1] {
            let tag = Bytes::from_owner([&[first][..], b"av01", &[0x80]].concat());
            assert_eq!(
                parse_video_tag(&tag).unwrap(),
                VideoTag::Ignored,
                "{first:#x}"
            );
        }
        // Truncated headers and unknown packet types are malformed, not panics.
        for bad in [
            &[0x90, b'h', b'v'][..],
            &[0x91, b'h', b'v', b'c', b'1', 0, 0],
            &[0x96, b'h', b'v', b'c', b'1'],
        ] {
            let err = parse_video_tag(&Bytes::copy_from_slice(bad)).unwrap_err();
            assert!(matches!(err, TagError::Malformed(_)), "{bad:?}: {err}");
        }
    }

    #[test]
    fn hevc_parameter_sets_and_delimiters_are_stripped_and_irap_found() {
        let sample = Bytes::from_static(&[
            0, 0, 0, 3, 0x46, 0x01, 0x50, // AUD (35)
            0, 0, 0, 3, 0x40, 0x01, 0x0c, // VPS (32)
            0, 0, 0, 3, 0x42, 0x01, 0x01, // SPS (33)
            0, 0, 0, 3, 0x44, 0x01, 0xc1, // PPS (34)
            0, 0, 0, 3, 0x4e, 0x01, 0x05, // prefix SEI (39)
            0, 0, 0, 3, 0x26, 0x01, 0xaf, // IDR_W_RADL (19)
        ]);
        let (kept, irap) = filter_hevc_sample(sample).unwrap();
        assert!(irap);
        assert_eq!(
            kept[..],
            [0, 0, 0, 3, 0x4e, 0x01, 0x05, 0, 0, 0, 3, 0x26, 0x01, 0xaf]
        );
        let trail = Bytes::from_static(&[0, 0, 0, 3, 0x02, 0x01, 0xd0]);
        let (same, irap) = filter_hevc_sample(trail.clone()).unwrap();
        assert!(!irap);
        assert_eq!(same.as_ptr(), trail.as_ptr());
        assert!(filter_hevc_sample(Bytes::from_static(&[0, 0, 0, 9, 0x02])).is_err());
    }

    #[test]
    fn aac_tags_parse() {
        let header = Bytes::from_static(&[0xaf, 0x00, 0x11, 0x90]);
        assert_eq!(
            parse_audio_tag(&header).unwrap(),
            AudioTag::AacSequenceHeader(Bytes::from_static(&[0x11, 0x90]))
        );
        let raw = Bytes::from_static(&[0xaf, 0x01, 0x21, 0x10]);
        assert_eq!(
            parse_audio_tag(&raw).unwrap(),
            AudioTag::AacRaw(Bytes::from_static(&[0x21, 0x10]))
        );
    }

    #[test]
    fn mp3_tags_parse_and_other_sound_formats_are_refused_by_name() {
        // ffmpeg -c:a libmp3lame -f flv: 0x2f (MP3, 44 kHz, 16-bit, stereo), then one frame.
        let body = Bytes::from_static(&[0x2f, 0xff, 0xfb, 0x90, 0x64, 0x00]);
        assert_eq!(
            parse_audio_tag(&body).unwrap(),
            AudioTag::Mp3(Bytes::from_static(&[0xff, 0xfb, 0x90, 0x64, 0x00]))
        );
        let low = Bytes::from_static(&[0xe2, 0xff, 0xe3]);
        assert!(matches!(parse_audio_tag(&low), Ok(AudioTag::Mp3(_))));
        for (first, name) in [
            (0x72, "sound format 7 (G.711 A-law)"),
            (0x82, "sound format 8 (G.711 mu-law)"),
            (0xb2, "sound format 11 (Speex)"),
            (0x62, "sound format 6 (Nellymoser)"),
        ] {
            let body = Bytes::copy_from_slice(&[first, 0, 0]);
            let Err(TagError::Unsupported(what)) = parse_audio_tag(&body) else {
                panic!("{first:02x} taken");
            };
            assert!(what.contains(name), "{what}");
        }
    }

    #[test]
    fn parameter_sets_and_delimiters_are_stripped() {
        let sample = Bytes::from_static(&[
            0, 0, 0, 2, 0x09, 0xf0, // AUD
            0, 0, 0, 2, 0x67, 0x64, // SPS
            0, 0, 0, 2, 0x68, 0xeb, // PPS
            0, 0, 0, 3, 0x06, 0x05, 0x01, // SEI
            0, 0, 0, 3, 0x65, 0x88, 0x84, // IDR slice
        ]);
        let kept = filter_avc_sample(sample).unwrap();
        assert_eq!(
            kept[..],
            [0, 0, 0, 3, 0x06, 0x05, 0x01, 0, 0, 0, 3, 0x65, 0x88, 0x84]
        );
        let plain = Bytes::from_static(&[0, 0, 0, 2, 0x41, 0x9a]);
        let same = filter_avc_sample(plain.clone()).unwrap();
        assert_eq!(
            same.as_ptr(),
            plain.as_ptr(),
            "copied a sample that needed no change"
        );
        for bad in [
            &[0, 0, 0, 5, 0x41, 0x9a][..],
            &[0, 0, 0],
            &[0, 0, 0, 0, 0x41],
            &[0, 0, 0, 1],
        ] {
            assert!(
                filter_avc_sample(Bytes::copy_from_slice(bad)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn timestamps_unwrap_across_2_pow_32() {
        let mut clock = TimestampUnwrapper::default();
        assert_eq!(clock.unwrap(u32::MAX - 10), i64::from(u32::MAX - 10));
        assert_eq!(clock.unwrap(5), (1i64 << 32) + 5);
        assert_eq!(clock.unwrap(2), (1i64 << 32) + 2);
        assert_eq!(clock.unwrap(u32::MAX), i64::from(u32::MAX));
    }

    #[test]
    fn aac_clock_is_even_despite_millisecond_jitter() {
        let mut clock = AacClock::default();
        // 48 kHz: 1024 samples = 21.333 ms; encoders send 0, 21, 43, 64, 85, ... with jitter.
        let ms = [0, 21, 43, 64, 85, 106, 128, 149, 172, 191];
        let pts: Vec<i64> = ms
            .iter()
            .map(|&t| clock.pts(1000 + t, 48_000, 1024))
            .collect();
        for pair in pts.windows(2) {
            assert_eq!(pair[1] - pair[0], 1024);
        }
        assert_eq!(pts[0], 48_000);
        // A jump of one second re-anchors.
        assert_eq!(clock.pts(2213, 48_000, 1024), 106_224);
        assert_eq!(clock.pts(2234, 48_000, 1024), 106_224 + 1024);
    }
}
