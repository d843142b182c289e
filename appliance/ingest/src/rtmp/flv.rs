//! FLV audio and video tag bodies, as RTMP audio (8) and video (9) messages carry them (Adobe
//! Video File Format Specification v10.1, E.4.2.1 VIDEODATA + AVCVIDEOPACKET, E.4.2.2
//! AUDIODATA + AACAUDIODATA), and the clocks that turn RTMP milliseconds into media time.
//!
//! The tag parser first reads the tag header into a codec, then the codec's packet: Enhanced
//! RTMP (FourCC codecs: HEVC, AV1, Opus) adds a header form where the `IsExHeader` bit is set,
//! which is refused by name today and slots in beside the legacy codec ids.

use bytes::{Bytes, BytesMut};

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
/// Sound format 9 announces an Enhanced RTMP audio FourCC header.
const SOUND_FORMAT_EX_HEADER: u8 = 9;
/// Video frame type 5: a video info/command frame, no picture.
const FRAME_TYPE_COMMAND: u8 = 5;

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
    /// AVCPacketType 2, or a command frame: nothing to pass on.
    Ignored,
}

/// A parsed audio tag body.
#[derive(Debug, PartialEq, Eq)]
pub enum AudioTag {
    /// AACPacketType 0: an AudioSpecificConfig.
    AacSequenceHeader(Bytes),
    /// AACPacketType 1: one raw AAC frame.
    AacRaw(Bytes),
}

fn flv_error(kind: &'static str, reason: String) -> TagError {
    TagError::Malformed(format!("{kind} tag: {reason}"))
}

pub fn parse_video_tag(body: &Bytes) -> Result<VideoTag, TagError> {
    let Some(&first) = body.first() else {
        return Err(flv_error("video", "empty tag body".into()));
    };
    if first & 0x80 != 0 {
        let fourcc = body.get(1..5).unwrap_or_default();
        return Err(TagError::Unsupported(format!(
            "Enhanced RTMP FourCC {:?}",
            String::from_utf8_lossy(fourcc)
        )));
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
    if sound_format != SOUND_FORMAT_AAC {
        return Err(TagError::Unsupported(format!(
            "FLV sound format {sound_format}"
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

/// NAL unit types that do not travel in samples: SPS (7), PPS (8) and access unit
/// delimiters (9). Parameter sets travel in the track config; the TS muxer writes its own AUDs.
fn is_stripped(nal_type: u8) -> bool {
    matches!(nal_type, 7..=9)
}

/// Checks the 4-byte length framing of an AVC sample and drops SPS, PPS and AUD NAL units.
/// Returns the input itself (no copy) when nothing is dropped.
pub fn filter_avc_sample(data: Bytes) -> Result<Bytes, TagError> {
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
        keep_all &= !is_stripped(header & 0x1f);
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
        if !is_stripped(header & 0x1f) {
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
        let hevc = Bytes::from_static(&[0x90, b'h', b'v', b'c', b'1']);
        let err = parse_video_tag(&hevc).unwrap_err().to_string();
        assert!(err.contains("hvc1"), "{err}");
        let mp3 = Bytes::from_static(&[0x2f, 0]);
        let err = parse_audio_tag(&mp3).unwrap_err().to_string();
        assert!(err.contains("unsupported FLV sound format 2"), "{err}");
        assert!(parse_video_tag(&Bytes::from_static(&[0x17, 1, 0])).is_err());
        assert!(parse_video_tag(&Bytes::new()).is_err());
        assert!(parse_audio_tag(&Bytes::from_static(&[0xaf])).is_err());
        assert!(parse_audio_tag(&Bytes::from_static(&[0xaf, 7])).is_err());
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
