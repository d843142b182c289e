//! MPEG-TS muxer (ISO/IEC 13818-1) for HLS TS segments (RFC 8216 §3.2): PAT, PMT, PES with
//! PTS/DTS, PCR on the video PID, continuity counters, H.264 or HEVC with AUD and in-band
//! parameter sets, AAC in ADTS.
//!
//! Layout: one program (number 1), PMT on PID 0x1000, video (stream_type 0x1b for H.264, 0x24
//! for HEVC, §2.4.4.9 Table 2-34 and Annex B byte streams per ITU-T H.264 / H.265 Annex B) on
//! 0x100, audio (stream_type 0x0f, ADTS) on 0x101 — the PIDs ffmpeg uses, so captures compare
//! easily. AV1 is not carried: HLS defines no AV1-in-TS mapping (RFC 8216 §3.2 lists H.264 and
//! HEVC only, and AOM's AV1-in-MPEG-2-TS draft has no players), so [`TsMuxer::with_video`]
//! refuses it and a stream with AV1 video has no TS variant. PCR
//! travels on the video PID, or on the audio PID of an audio-only stream, in the first packet
//! of each of that PID's PES packets.
//!
//! Timing: every PTS/DTS is written [`TIMESTAMP_OFFSET`] (700 ms) after the unit's own time,
//! and the PCR carries the unit's own dts; so the PCR runs 700 ms behind the DTS of the frame
//! it travels with (T-STD: data arrives before it is decoded), and the slightly negative dts of
//! a B-frame stream's first frames still make valid timestamps. All are modulo 2^33.
//!
//! Not done: PCR-only packets (a PID whose frames are more than 100 ms apart, §2.7.2, gets its
//! PCR less often), SCTE-35, several AAC frames per PES, AV1, encryption (SAMPLE-AES).

mod packet;

use media::{AacConfig, AccessUnit, AvcConfig, Codec, TrackConfig, VIDEO_TIMESCALE, hevc, rescale};

use packet::{Continuity, FirstPacket, put_pes_header, write_packets, write_section};
pub use packet::{PACKET_SIZE, TIMESTAMP_MODULUS, crc32_mpeg2};

/// PID of the PMT.
pub const PMT_PID: u16 = 0x1000;
/// PID of the video (H.264 or HEVC) elementary stream.
pub const VIDEO_PID: u16 = 0x100;
/// PID of the AAC elementary stream.
pub const AUDIO_PID: u16 = 0x101;
/// The program_number of our one program.
pub const PROGRAM_NUMBER: u16 = 1;
/// 90 kHz ticks added to every PTS and DTS; the PCR is not shifted. See the module docs.
pub const TIMESTAMP_OFFSET: i64 = 63_000;

const PAT_PID: u16 = 0;
const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_HEVC: u8 = 0x24;
const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;
const STREAM_ID_VIDEO: u8 = 0xe0;
const STREAM_ID_AUDIO: u8 = 0xc0;
/// An ADTS frame_length is 13 bits and counts the 7-byte header (ISO/IEC 14496-3 §1.A.2.2).
const ADTS_MAX_PAYLOAD: usize = 0x1fff - 7;

const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// Access unit delimiter NAL (ITU-T H.264 §7.3.2.4): primary_pic_type 7 (any slice type),
/// then the RBSP stop bit. RFC 8216 §3.2 does not need it; Apple's validator and some set-top
/// decoders want every access unit to start with one.
const ACCESS_UNIT_DELIMITER: [u8; 6] = [0, 0, 0, 1, 0x09, 0xf0];
const NAL_TYPE_SPS: u8 = 7;
const NAL_TYPE_AUD: u8 = 9;
/// HEVC access unit delimiter (ITU-T H.265 §7.3.2.5): NAL header of type 35, layer 0,
/// TemporalId 0, then pic_type 2 (I, P or B slices) and the stop bit. Written by ffmpeg's
/// muxer too; same reasons as the H.264 one.
const HEVC_ACCESS_UNIT_DELIMITER: [u8; 7] = [0, 0, 0, 1, 0x46, 0x01, 0x50];

/// What the video PES writer needs to know about a codec's NAL units.
struct NalSyntax {
    /// The access unit delimiter written first in every PES, start code included.
    delimiter: &'static [u8],
    nal_type: fn(&[u8]) -> Option<u8>,
    sps_type: u8,
    aud_type: u8,
}

const AVC_SYNTAX: NalSyntax = NalSyntax {
    delimiter: &ACCESS_UNIT_DELIMITER,
    nal_type: avc_nal_type,
    sps_type: NAL_TYPE_SPS,
    aud_type: NAL_TYPE_AUD,
};

const HEVC_SYNTAX: NalSyntax = NalSyntax {
    delimiter: &HEVC_ACCESS_UNIT_DELIMITER,
    nal_type: hevc::nal_unit_type,
    sps_type: hevc::NAL_SPS,
    aud_type: hevc::NAL_AUD,
};

/// Whether the TS variant can carry a video track of this codec (H.264 and HEVC; see the
/// module docs for why not AV1).
pub fn carries_video(config: &TrackConfig) -> bool {
    matches!(config, TrackConfig::Avc(_) | TrackConfig::Hevc(_))
}

/// Muxes one stream's access units into 188-byte TS packets. Continuity counters run on across
/// segments, as a player joining segments expects.
#[derive(Debug)]
pub struct TsMuxer {
    /// An [`TrackConfig::Avc`] or [`TrackConfig::Hevc`]; see [`carries_video`].
    video: Option<TrackConfig>,
    audio: Option<AacConfig>,
    pat_continuity: Continuity,
    pmt_continuity: Continuity,
    video_continuity: Continuity,
    audio_continuity: Continuity,
    /// PMT version_number (5 bits): advanced when the set of streams changes.
    pmt_version: u8,
    /// The PES being built; kept between units so steady-state muxing does not allocate.
    pes: Vec<u8>,
    malformed_nal_units: u64,
    skipped_units: u64,
}

impl TsMuxer {
    /// A muxer for a stream with the given tracks (at least one).
    pub fn new(video: Option<AvcConfig>, audio: Option<AacConfig>) -> Self {
        Self::build(video.map(TrackConfig::Avc), audio)
    }

    /// A muxer for a stream whose video is H.264 or HEVC; `None` when `video` is a codec the
    /// TS variant does not carry ([`carries_video`]: AV1, or an audio config).
    pub fn with_video(video: Option<TrackConfig>, audio: Option<AacConfig>) -> Option<Self> {
        if video.as_ref().is_some_and(|video| !carries_video(video)) {
            return None;
        }
        Some(Self::build(video, audio))
    }

    fn build(video: Option<TrackConfig>, audio: Option<AacConfig>) -> Self {
        TsMuxer {
            video,
            audio,
            pat_continuity: Continuity::default(),
            pmt_continuity: Continuity::default(),
            video_continuity: Continuity::default(),
            audio_continuity: Continuity::default(),
            pmt_version: 0,
            pes: Vec::new(),
            malformed_nal_units: 0,
            skipped_units: 0,
        }
    }

    /// New codec parameters for the same stream (a publisher back after a drop, a new SPS).
    /// Continuity counters run on; when the set of tracks changes, the PMT's version_number
    /// advances so that receivers that cache the PMT read the new one (§2.4.4.9).
    pub fn set_tracks(&mut self, video: Option<AvcConfig>, audio: Option<AacConfig>) {
        // An H.264 config is always carried.
        let _ = self.set_video_tracks(video.map(TrackConfig::Avc), audio);
    }

    /// As [`Self::set_tracks`] for any video codec; returns false, changing nothing, when the
    /// TS variant does not carry `video` ([`carries_video`]). A change of video codec counts
    /// as a change of the set of tracks (the stream_type differs).
    pub fn set_video_tracks(
        &mut self,
        video: Option<TrackConfig>,
        audio: Option<AacConfig>,
    ) -> bool {
        if video.as_ref().is_some_and(|video| !carries_video(video)) {
            return false;
        }
        let video_codec = |video: &Option<TrackConfig>| video.as_ref().map(TrackConfig::codec);
        if video_codec(&video) != video_codec(&self.video)
            || audio.is_some() != self.audio.is_some()
        {
            self.pmt_version = (self.pmt_version + 1) & 0x1f;
        }
        self.video = video;
        self.audio = audio;
        true
    }

    /// The PID that carries the PCR: video's, or audio's in an audio-only stream
    /// (0x1fff, "no PCR", with neither).
    pub fn pcr_pid(&self) -> u16 {
        if self.video.is_some() {
            VIDEO_PID
        } else if self.audio.is_some() {
            AUDIO_PID
        } else {
            0x1fff
        }
    }

    /// NAL units dropped because their length prefix ran past the end of the unit or was 0.
    pub fn malformed_nal_units(&self) -> u64 {
        self.malformed_nal_units
    }

    /// Units not written at all: a codec without a track config, no valid NAL unit, an AAC
    /// frame too long for ADTS, or a zero sample rate.
    pub fn skipped_units(&self) -> u64 {
        self.skipped_units
    }

    /// Writes PAT and PMT; call at the start of every segment.
    pub fn write_tables(&mut self, out: &mut Vec<u8>) {
        // PAT (§2.4.4.3): one program, on a PMT PID that never changes, so version 0 always.
        let [pmt_pid_high, pmt_pid_low] = PMT_PID.to_be_bytes();
        let [program_high, program_low] = PROGRAM_NUMBER.to_be_bytes();
        #[rustfmt::skip]
        let pat = [
            0x00,                           // table_id: program_association_section
            0xb0, 13,                       // section_syntax_indicator, '0', reserved, length
            0x00, 0x01,                     // transport_stream_id
            0xc1,                           // reserved, version_number 0, current_next 1
            0x00, 0x00,                     // section_number, last_section_number
            program_high, program_low,
            0xe0 | pmt_pid_high, pmt_pid_low, // reserved, program_map_PID
        ];
        write_section(out, PAT_PID, &mut self.pat_continuity, &pat);

        // PMT (§2.4.4.8): the elementary streams, no descriptors.
        let [pcr_pid_high, pcr_pid_low] = self.pcr_pid().to_be_bytes();
        let mut pmt = [0u8; 22];
        #[rustfmt::skip]
        pmt[..12].copy_from_slice(&[
            0x02,                           // table_id: TS_program_map_section
            0xb0, 0,                        // section_length, patched below
            program_high, program_low,
            0xc1 | (self.pmt_version << 1), // reserved, version_number, current_next 1
            0x00, 0x00,                     // section_number, last_section_number
            0xe0 | pcr_pid_high, pcr_pid_low, // reserved, PCR_PID
            0xf0, 0x00,                     // reserved, program_info_length 0
        ]);
        let mut len = 12;
        let streams = [
            self.video.as_ref().map(|video| {
                let stream_type = match video {
                    TrackConfig::Hevc(_) => STREAM_TYPE_HEVC,
                    _ => STREAM_TYPE_H264,
                };
                (stream_type, VIDEO_PID)
            }),
            self.audio
                .as_ref()
                .map(|_| (STREAM_TYPE_AAC_ADTS, AUDIO_PID)),
        ];
        for (stream_type, pid) in streams.into_iter().flatten() {
            let [pid_high, pid_low] = pid.to_be_bytes();
            pmt[len..len + 5].copy_from_slice(&[stream_type, 0xe0 | pid_high, pid_low, 0xf0, 0]);
            len += 5;
        }
        // section_length counts the bytes after it, CRC_32 included.
        pmt[2] = (len - 3 + 4) as u8;
        write_section(out, PMT_PID, &mut self.pmt_continuity, &pmt[..len]);
    }

    /// Writes one access unit as a PES. Video units are converted to Annex B with an AUD (and
    /// the parameter sets before each keyframe: SPS/PPS, or VPS/SPS/PPS before an HEVC IRAP
    /// picture, unless the unit carries its own); audio units get an ADTS header and their pts is rescaled
    /// from the sample rate to 90 kHz. Timestamps are written modulo 2^33.
    ///
    /// Units this muxer cannot write are skipped and counted ([`Self::skipped_units`]); NAL
    /// units with a bad length prefix are dropped and counted
    /// ([`Self::malformed_nal_units`]), and the rest of the unit is written.
    pub fn write_unit(&mut self, unit: &AccessUnit, out: &mut Vec<u8>) {
        let written = match unit.codec {
            Codec::H264 | Codec::H265 => self.write_video(unit, out),
            Codec::Aac => self.write_audio(unit, out),
            _ => false,
        };
        if !written {
            self.skipped_units += 1;
        }
    }

    fn write_video(&mut self, unit: &AccessUnit, out: &mut Vec<u8>) -> bool {
        // The unit's codec must be the track's: an HEVC unit in an H.264 track (or the other
        // way round) would be written under the wrong stream_type.
        let NalSyntax {
            delimiter: aud,
            nal_type,
            sps_type,
            aud_type,
        } = match (&self.video, unit.codec) {
            (Some(TrackConfig::Avc(_)), Codec::H264) => AVC_SYNTAX,
            (Some(TrackConfig::Hevc(_)), Codec::H265) => HEVC_SYNTAX,
            _ => return false,
        };
        let Some(config) = &self.video else {
            return false;
        };
        let pes = &mut self.pes;
        pes.clear();
        let dts = (unit.dts != unit.pts).then_some(unit.dts + TIMESTAMP_OFFSET);
        put_pes_header(pes, STREAM_ID_VIDEO, unit.pts + TIMESTAMP_OFFSET, dts, None);
        let header_len = pes.len();
        pes.extend_from_slice(aud);

        let mut has_sps = false;
        let mut valid = 0;
        let malformed = for_each_nal_unit(&unit.payload, |nal| {
            has_sps |= nal_type(nal) == Some(sps_type);
            valid += usize::from(nal_type(nal) != Some(aud_type));
        });
        self.malformed_nal_units += malformed;
        if valid == 0 {
            return false;
        }
        // Parameter sets in the unit itself (a mid-stream change) win over the config's.
        if unit.keyframe && !has_sps {
            for parameter_set in parameter_sets(config) {
                pes.extend_from_slice(&START_CODE);
                pes.extend_from_slice(parameter_set);
            }
        }
        for_each_nal_unit(&unit.payload, |nal| {
            if nal_type(nal) != Some(aud_type) {
                pes.extend_from_slice(&START_CODE);
                pes.extend_from_slice(nal);
            }
        });
        debug_assert!(pes.len() > header_len);

        let first = FirstPacket {
            random_access: unit.keyframe,
            // Before time 0 (the first frames of a B-frame stream) the PCR waits at 0 rather
            // than wrapping to 2^33; it still stays behind the DTS, which carries the offset.
            pcr: Some(unit.dts.max(0)),
        };
        write_packets(out, VIDEO_PID, &mut self.video_continuity, first, &self.pes);
        true
    }

    fn write_audio(&mut self, unit: &AccessUnit, out: &mut Vec<u8>) -> bool {
        let Some(config) = &self.audio else {
            return false;
        };
        if config.sample_rate == 0 || unit.payload.len() > ADTS_MAX_PAYLOAD {
            return false;
        }
        let pts = rescale(unit.pts, config.sample_rate, VIDEO_TIMESCALE);
        let adts = config.adts_header(unit.payload.len());
        let pes = &mut self.pes;
        pes.clear();
        let payload_len = adts.len() + unit.payload.len();
        put_pes_header(
            pes,
            STREAM_ID_AUDIO,
            pts + TIMESTAMP_OFFSET,
            None,
            Some(payload_len),
        );
        pes.extend_from_slice(&adts);
        pes.extend_from_slice(&unit.payload);

        let first = FirstPacket {
            random_access: unit.keyframe,
            pcr: self.video.is_none().then_some(pts.max(0)),
        };
        write_packets(out, AUDIO_PID, &mut self.audio_continuity, first, &self.pes);
        true
    }
}

/// Calls `visit` with each NAL unit of a payload of 4-byte length-prefixed NAL units, and
/// returns how many were malformed: a zero length is skipped; a length running past the end
/// (or a stub of under 4 bytes at the end) ends the walk, since nothing after it can be framed.
fn for_each_nal_unit(payload: &[u8], mut visit: impl FnMut(&[u8])) -> u64 {
    let mut malformed = 0;
    let mut rest = payload;
    while !rest.is_empty() {
        let Some((length, after)) = rest.split_first_chunk::<4>() else {
            return malformed + 1;
        };
        let length = u32::from_be_bytes(*length) as usize;
        if length == 0 {
            malformed += 1;
            rest = after;
            continue;
        }
        let Some((nal, after)) = after.split_at_checked(length) else {
            return malformed + 1;
        };
        visit(nal);
        rest = after;
    }
    malformed
}

/// The parameter sets a decoder needs before a keyframe, in the order it needs them.
fn parameter_sets(config: &TrackConfig) -> impl Iterator<Item = &bytes::Bytes> {
    let (vps, sps, pps): (&[bytes::Bytes], &[bytes::Bytes], &[bytes::Bytes]) = match config {
        TrackConfig::Avc(avc) => (&[], &avc.sps, &avc.pps),
        TrackConfig::Hevc(hevc) => (&hevc.vps, &hevc.sps, &hevc.pps),
        _ => (&[], &[], &[]),
    };
    vps.iter().chain(sps).chain(pps)
}

fn avc_nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|header| header & 0x1f)
}

#[cfg(test)]
mod tests;
