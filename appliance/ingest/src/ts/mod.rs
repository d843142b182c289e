//! MPEG-TS demuxer (ISO/IEC 13818-1 / ITU-T H.222.0), sans-IO: bytes in, events out.
//!
//! Takes a stream of 188-byte transport packets in any slicing (UDP datagrams of 7 packets,
//! pieces of a file, an SRT payload) and reports the program's tracks as `media` types:
//! [`AvcConfig`] or [`HevcConfig`], [`AacConfig`] and [`AccessUnit`]s, plus SCTE-35 sections.
//!
//! Layers, bottom up: [`packet`] (sync, header, adaptation field, §2.4.3), [`psi`] (sections,
//! PAT and PMT, §2.4.4), [`pes`] (PES reassembly, PTS/DTS, §2.4.3.6), then the elementary
//! streams: [`h264`] (stream_type 0x1b and 0x24, Annex B of ITU-T H.264 and H.265),
//! [`audio_frames`] (audio split into frames by its sync headers: AAC in ADTS, stream_type 0x0f,
//! ISO/IEC 13818-7 §6.2, header in [`adts`]; and audio that is not AAC, for the engine to
//! transcode: MPEG-1/2 audio, stream_type 0x03 / 0x04, ISO/IEC 11172-3 §2.4.1.3, and AC-3,
//! stream_type 0x81 or 0x06 with an AC-3 descriptor, ATSC A/52 §5.3.1). SCTE-35 (stream_type 0x86, SCTE 35 §8)
//! sections are handed on whole for the packager.
//!
//! What it does with broken input: nothing panics and nothing is fatal. Lost sync (a byte that
//! is not 0x47 where a packet should start) skips to the next 0x47 that is followed by another
//! one 188 bytes later. Continuity-counter gaps drop the PES or section in progress on that
//! PID; a repeated counter (a duplicate packet, §2.4.3.3) is dropped. Sections with a bad
//! CRC_32, malformed PES headers, oversized PES and bad ADTS or parameter sets are skipped.
//! Each of these is counted in [`TsCounters`].
//!
//! Not done: several programs (the first program of the PAT is taken), more than one video
//! and one audio stream (the first of each in the PMT), other codecs (E-AC-3, LATM, ...
//! reported as
//! [`TsEvent::Unsupported`]), PCR (no clock recovery: timing comes from PTS/DTS), scrambled
//! packets (counted, dropped), 192- and 204-byte packets. See docs/protocols.md.

pub mod adts;
pub mod audio_frames;
pub mod h264;
pub mod packet;
pub mod pes;
pub mod psi;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use media::{AacConfig, AccessUnit, AudioFormat, AvcConfig, HevcConfig};

use audio_frames::{AudioFrameAssembler, FrameSyntax};
use h264::{AvcAssembler, VideoCodec};
use packet::{PACKET_SIZE, SYNC_BYTE, parse_packet};
use pes::{PesAssembler, PesHeader, PesProgress, TimestampUnwrapper, parse_pes_header};
use psi::{SectionAssembler, SectionOutput};

/// stream_type values (§2.4.4.9, Table 2-34, and the registrations the industry uses).
pub mod stream_type {
    pub const MPEG1_VIDEO: u8 = 0x01;
    pub const MPEG2_VIDEO: u8 = 0x02;
    pub const MPEG1_AUDIO: u8 = 0x03;
    pub const MPEG2_AUDIO: u8 = 0x04;
    pub const PRIVATE_PES: u8 = 0x06;
    pub const AAC_ADTS: u8 = 0x0f;
    pub const AAC_LATM: u8 = 0x11;
    pub const METADATA_PES: u8 = 0x15;
    pub const H264: u8 = 0x1b;
    pub const HEVC: u8 = 0x24;
    pub const AC3: u8 = 0x81;
    pub const SCTE35: u8 = 0x86;
    pub const EAC3: u8 = 0x87;
}

/// What a stream_type is, for logs.
pub fn stream_type_name(value: u8) -> &'static str {
    use stream_type::*;
    match value {
        MPEG1_VIDEO => "MPEG-1 video",
        MPEG2_VIDEO => "MPEG-2 video",
        MPEG1_AUDIO => "MPEG-1 audio",
        MPEG2_AUDIO => "MPEG-2 audio",
        PRIVATE_PES => "private data in PES (AC-3, Opus, subtitles, ...)",
        AAC_ADTS => "AAC (ADTS)",
        AAC_LATM => "AAC (LATM)",
        METADATA_PES => "metadata in PES (ID3)",
        H264 => "H.264",
        HEVC => "HEVC",
        AC3 => "AC-3",
        SCTE35 => "SCTE-35",
        EAC3 => "E-AC-3",
        _ => "unknown",
    }
}

/// Counts of what the demuxer took and what it had to skip. They only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TsCounters {
    /// Transport packets parsed.
    pub packets: u64,
    /// Bytes skipped while looking for packet sync.
    pub skipped_bytes: u64,
    /// Times sync was lost (a packet that did not start with 0x47).
    pub sync_losses: u64,
    /// Packets with transport_error_indicator set (dropped).
    pub transport_errors: u64,
    /// Packets with a malformed adaptation field or reserved adaptation_field_control.
    pub malformed_packets: u64,
    /// Continuity counter gaps on PIDs we read (the PES or section in progress is dropped).
    pub continuity_errors: u64,
    /// Duplicate packets (same continuity counter twice), dropped.
    pub duplicate_packets: u64,
    /// Scrambled packets on PIDs we read (dropped).
    pub scrambled_packets: u64,
    /// Sections with a bad CRC, that could not be assembled, or that did not parse.
    pub bad_sections: u64,
    /// PES packets with a malformed header, cut short, or over the size limit.
    pub bad_pes: u64,
    /// Video that could not be used: parameter sets that do not parse, access units with no
    /// time to give them, access units over the size limit.
    pub bad_video: u64,
    /// Audio that could not be used: bytes that are not ADTS, unsupported ADTS parameters.
    pub bad_audio: u64,
    /// Access units dropped because their track had no config yet (normal when joining a
    /// stream between keyframes).
    pub units_before_config: u64,
    pub video_units: u64,
    pub audio_units: u64,
    pub scte35_sections: u64,
}

impl TsCounters {
    /// Everything that was malformed or lost, summed: what an operator watches.
    pub fn errors(&self) -> u64 {
        self.sync_losses
            + self.transport_errors
            + self.malformed_packets
            + self.continuity_errors
            + self.bad_sections
            + self.bad_pes
            + self.bad_video
            + self.bad_audio
    }
}

/// One elementary stream as the PMT lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElementaryStream {
    pub pid: u16,
    pub stream_type: u8,
}

/// The program the demuxer follows, as its newest PMT describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramInfo {
    pub program_number: u16,
    pub pmt_pid: u16,
    pub version: u8,
    pub streams: Vec<ElementaryStream>,
    /// The H.264 stream whose access units are reported, if any.
    pub video_pid: Option<u16>,
    /// The audio stream whose access units are reported, if any: AAC, MPEG audio or AC-3.
    pub audio_pid: Option<u16>,
}

/// What the demuxer reports.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum TsEvent {
    /// A new program map (the first, or a new version).
    Program(ProgramInfo),
    /// The H.264 video track's parameters (first, and each time they change). Reported before
    /// the first access unit that uses them.
    VideoConfig(AvcConfig),
    /// The same for an HEVC video track (stream_type 0x24), whose units are [`Codec::H265`].
    ///
    /// [`Codec::H265`]: media::Codec::H265
    HevcConfig(HevcConfig),
    /// The audio track's parameters (first, and each time they change).
    AudioConfig(AacConfig),
    /// The same for an audio track that is not AAC (MPEG audio or AC-3), from its frame
    /// headers; its units are [`Codec::Mp2`], [`Codec::Mp3`] or [`Codec::Ac3`] frames. The
    /// engine transcodes them to AAC.
    ///
    /// [`Codec::Mp2`]: media::Codec::Mp2
    /// [`Codec::Mp3`]: media::Codec::Mp3
    /// [`Codec::Ac3`]: media::Codec::Ac3
    AudioFormat(AudioFormat),
    /// One access unit: video pts/dts on 90 kHz, audio on its sample rate, both unwrapped
    /// from 33 bits onto one continuous timeline. Only after its track's config.
    Media(AccessUnit),
    /// One SCTE-35 splice_info_section (table_id 0xfc), CRC checked, as it came: its splice
    /// times are 33-bit PTS values plus the section's pts_adjustment, for the packager to
    /// place with [`TsDemuxer::unwrap_timestamp`]. `pts_context` is the newest PES PTS of the
    /// program (90 kHz, unwrapped) when the section completed.
    Scte35 {
        pid: u16,
        section: Bytes,
        pts_context: Option<i64>,
    },
    /// A stream the PMT lists that is not read: a codec not supported, or a second video or
    /// audio stream.
    Unsupported {
        pid: u16,
        stream_type: u8,
        reason: &'static str,
    },
}

/// What a PID carries.
#[derive(Debug)]
enum PidRole {
    Pat(SectionAssembler),
    Pmt(SectionAssembler),
    Scte35(SectionAssembler),
    Video(PesAssembler, Box<AvcAssembler>),
    Audio(PesAssembler, AudioFrameAssembler),
}

#[derive(Debug)]
struct PidState {
    last_counter: Option<u8>,
    role: PidRole,
}

impl PidState {
    fn new(role: PidRole) -> Self {
        PidState {
            last_counter: None,
            role,
        }
    }

    /// Drops the PES or section in progress (data is missing from it).
    fn drop_partial(&mut self) {
        match &mut self.role {
            PidRole::Pat(s) | PidRole::Pmt(s) | PidRole::Scte35(s) => s.reset(),
            PidRole::Video(pes, _) => {
                pes.reset();
            }
            PidRole::Audio(pes, frames) => {
                pes.reset();
                frames.reset_partial();
            }
        }
    }
}

/// An MPEG-TS demuxer for one input. No sockets, no clock: it needs no time, so it takes
/// none.
///
/// Run loop: call [`handle_bytes`](Self::handle_bytes) with whatever arrived, then drain
/// [`poll_event`](Self::poll_event) until `None`. At the end of the input (a file, or a feed
/// that went silent) call [`handle_end_of_stream`](Self::handle_end_of_stream) and drain
/// again: the newest video access unit is only complete when the next one starts, and this
/// hands it out.
#[derive(Debug)]
pub struct TsDemuxer {
    /// Bytes not yet parsed: less than a packet once synced, or a stretch being searched.
    input: Vec<u8>,
    synced: bool,
    pids: HashMap<u16, PidState>,
    /// (version, CRC) of the PAT in force.
    pat: Option<(u8, u32)>,
    program: Option<ProgramState>,
    clock: TimestampUnwrapper,
    last_pts: Option<i64>,
    events: VecDeque<TsEvent>,
    counters: TsCounters,
    sections: SectionOutput,
}

#[derive(Debug)]
struct ProgramState {
    number: u16,
    pmt_pid: u16,
    /// (version, CRC) of the PMT in force.
    pmt: Option<(u8, u32)>,
    /// PIDs the PMT gave roles to.
    es_pids: Vec<u16>,
}

const PAT_PID: u16 = 0;

impl Default for TsDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsDemuxer {
    pub fn new() -> Self {
        let mut pids = HashMap::new();
        pids.insert(
            PAT_PID,
            PidState::new(PidRole::Pat(SectionAssembler::default())),
        );
        TsDemuxer {
            input: Vec::new(),
            synced: false,
            pids,
            pat: None,
            program: None,
            clock: TimestampUnwrapper::default(),
            last_pts: None,
            events: VecDeque::new(),
            counters: TsCounters::default(),
            sections: SectionOutput::default(),
        }
    }

    /// Feeds received bytes, in any slicing; returns how many were consumed (always all:
    /// an incomplete packet is kept for the next call).
    pub fn handle_bytes(&mut self, data: &[u8]) -> usize {
        // alloc: none in steady state; the buffer holds at most a packet between calls.
        self.input.extend_from_slice(data);
        let input = std::mem::take(&mut self.input);
        let mut pos = 0;
        loop {
            if self.synced {
                let Some(packet) = input.get(pos..pos + PACKET_SIZE) else {
                    break;
                };
                if packet[0] == SYNC_BYTE {
                    self.handle_packet(packet);
                    pos += PACKET_SIZE;
                    continue;
                }
                self.synced = false;
                self.counters.sync_losses += 1;
            }
            // Sync on a 0x47 that has another 0x47 one packet later, so a 0x47 inside a
            // payload does not fool it.
            let rest = &input[pos..];
            let candidate = rest.iter().enumerate().position(|(i, &b)| {
                b == SYNC_BYTE && rest.get(i + PACKET_SIZE).is_none_or(|&n| n == SYNC_BYTE)
            });
            match candidate {
                Some(at) if at + PACKET_SIZE < rest.len() => {
                    self.counters.skipped_bytes += at as u64;
                    pos += at;
                    self.synced = true;
                }
                Some(at) => {
                    // Not confirmed yet: keep it for the next call.
                    self.counters.skipped_bytes += at as u64;
                    pos += at;
                    break;
                }
                None => {
                    self.counters.skipped_bytes += rest.len() as u64;
                    pos = input.len();
                    break;
                }
            }
        }
        self.input = input;
        self.input.drain(..pos);
        data.len()
    }

    /// The input ended: completes what is in progress (the last PES of each stream and the
    /// video access unit waiting for its successor) and forgets partial packets.
    pub fn handle_end_of_stream(&mut self) {
        let input = std::mem::take(&mut self.input);
        if let Some(packet) = input.get(..PACKET_SIZE)
            && packet[0] == SYNC_BYTE
        {
            self.handle_packet(packet);
        }
        self.synced = false;
        let mut pids: Vec<u16> = self.pids.keys().copied().collect();
        pids.sort_unstable();
        for pid in pids {
            let Some(state) = self.pids.get_mut(&pid) else {
                continue;
            };
            match &mut state.role {
                PidRole::Video(pes, avc) => {
                    if pes.in_progress() {
                        complete_pes(
                            pes,
                            &mut self.clock,
                            &mut self.last_pts,
                            &mut self.counters,
                            |time, data, counters| {
                                avc.push_pes(time, data, &mut self.events, counters)
                            },
                        );
                    }
                    avc.flush(&mut self.events, &mut self.counters);
                }
                PidRole::Audio(pes, frames) => {
                    if pes.in_progress() {
                        complete_pes(
                            pes,
                            &mut self.clock,
                            &mut self.last_pts,
                            &mut self.counters,
                            |time, data, counters| {
                                frames.push_pes(
                                    time.map(|(pts, _)| pts),
                                    data,
                                    &mut self.events,
                                    counters,
                                )
                            },
                        );
                    }
                    frames.reset_partial();
                }
                PidRole::Pat(s) | PidRole::Pmt(s) | PidRole::Scte35(s) => s.reset(),
            }
            state.last_counter = None;
        }
    }

    pub fn poll_event(&mut self) -> Option<TsEvent> {
        self.events.pop_front()
    }

    pub fn counters(&self) -> &TsCounters {
        &self.counters
    }

    /// A raw 33-bit PTS (e.g. an SCTE-35 splice time plus its pts_adjustment) on the
    /// demuxer's unwrapped timeline: the value nearest to the newest timestamp seen.
    pub fn unwrap_timestamp(&self, raw: u64) -> i64 {
        self.clock.peek(raw)
    }

    fn handle_packet(&mut self, packet: &[u8]) {
        self.counters.packets += 1;
        let (header, payload) = match parse_packet(packet) {
            Ok(parsed) => parsed,
            Err(_) => {
                self.counters.malformed_packets += 1;
                return;
            }
        };
        if header.transport_error {
            // The header itself may be wrong (even the PID): trust nothing in it. The gap in
            // the continuity counter it leaves drops the PES it belonged to.
            self.counters.transport_errors += 1;
            return;
        }
        let Some(state) = self.pids.get_mut(&header.pid) else {
            return;
        };
        if header.scrambling != 0 {
            self.counters.scrambled_packets += 1;
            return;
        }
        if !header.has_payload {
            return;
        }
        let counter = header.continuity_counter;
        match state.last_counter {
            Some(last) if last == counter && !header.discontinuity => {
                self.counters.duplicate_packets += 1;
                return;
            }
            Some(last) if (last + 1) & 0x0f != counter && !header.discontinuity => {
                self.counters.continuity_errors += 1;
                state.drop_partial();
            }
            _ => {}
        }
        state.last_counter = Some(counter);
        let pusi = header.payload_unit_start;
        match &mut state.role {
            PidRole::Pat(assembler) | PidRole::Pmt(assembler) | PidRole::Scte35(assembler) => {
                assembler.push(pusi, payload, &mut self.sections);
                self.handle_sections(header.pid);
            }
            PidRole::Video(pes, avc) => feed_pes(
                pes,
                pusi,
                payload,
                &mut self.clock,
                &mut self.last_pts,
                &mut self.counters,
                |time, data, counters| avc.push_pes(time, data, &mut self.events, counters),
            ),
            PidRole::Audio(pes, frames) => feed_pes(
                pes,
                pusi,
                payload,
                &mut self.clock,
                &mut self.last_pts,
                &mut self.counters,
                |time, data, counters| {
                    frames.push_pes(time.map(|(pts, _)| pts), data, &mut self.events, counters)
                },
            ),
        }
    }

    fn handle_sections(&mut self, pid: u16) {
        self.counters.bad_sections += u64::from(std::mem::take(&mut self.sections.malformed));
        let sections = std::mem::take(&mut self.sections.sections);
        for section in sections {
            let role = self.pids.get(&pid).map(|s| match s.role {
                PidRole::Pat(_) => psi::TABLE_PAT,
                PidRole::Pmt(_) => psi::TABLE_PMT,
                _ => psi::TABLE_SCTE35,
            });
            let ok = match role {
                Some(psi::TABLE_PAT) => self.handle_pat(&section),
                Some(psi::TABLE_PMT) => self.handle_pmt(&section),
                Some(_) => self.handle_scte35(pid, section),
                None => true,
            };
            if !ok {
                self.counters.bad_sections += 1;
            }
        }
    }

    /// False when the section is malformed.
    fn handle_pat(&mut self, section: &[u8]) -> bool {
        let Ok(pat) = psi::parse_long_section(section) else {
            return false;
        };
        if pat.table_id != psi::TABLE_PAT {
            return false;
        }
        if !pat.current || self.pat == Some((pat.version, pat.crc)) {
            return true;
        }
        self.pat = Some((pat.version, pat.crc));
        let Some(&(number, pmt_pid)) = psi::pat_programs(pat.body).first() else {
            return true;
        };
        if let Some(program) = &self.program
            && program.number == number
            && program.pmt_pid == pmt_pid
        {
            return true;
        }
        if let Some(old) = self.program.take() {
            self.pids.remove(&old.pmt_pid);
            for pid in old.es_pids {
                self.pids.remove(&pid);
            }
        }
        self.pids.insert(
            pmt_pid,
            PidState::new(PidRole::Pmt(SectionAssembler::default())),
        );
        self.program = Some(ProgramState {
            number,
            pmt_pid,
            pmt: None,
            es_pids: Vec::new(),
        });
        true
    }

    fn handle_pmt(&mut self, section: &[u8]) -> bool {
        let Ok(pmt) = psi::parse_long_section(section) else {
            return false;
        };
        let Some(program) = self.program.as_mut() else {
            return true;
        };
        if pmt.table_id != psi::TABLE_PMT {
            return false;
        }
        if pmt.id != program.number || !pmt.current || program.pmt == Some((pmt.version, pmt.crc)) {
            // Another program's map on the same PID (allowed, §2.4.4.8), or nothing new.
            return true;
        }
        let Ok(streams) = psi::pmt_streams(pmt.body) else {
            return false;
        };
        program.pmt = Some((pmt.version, pmt.crc));
        let mut info = ProgramInfo {
            program_number: program.number,
            pmt_pid: program.pmt_pid,
            version: pmt.version,
            streams: Vec::new(),
            video_pid: None,
            audio_pid: None,
        };
        let mut roles: Vec<(u16, u8)> = Vec::new();
        for stream in streams {
            info.streams.push(ElementaryStream {
                pid: stream.pid,
                stream_type: stream.stream_type,
            });
            let reserved = stream.pid == PAT_PID
                || stream.pid == program.pmt_pid
                || roles.iter().any(|&(pid, _)| pid == stream.pid);
            let unsupported = |reason| TsEvent::Unsupported {
                pid: stream.pid,
                stream_type: stream.stream_type,
                reason,
            };
            // Private PES with an AC-3 descriptor is AC-3 (the DVB form, ffmpeg's system_b);
            // MPEG-1 and MPEG-2 audio share one framing, so one role.
            let kind = match stream.stream_type {
                stream_type::PRIVATE_PES if stream.ac3_descriptor => stream_type::AC3,
                stream_type::MPEG2_AUDIO => stream_type::MPEG1_AUDIO,
                other => other,
            };
            match kind {
                _ if reserved => self
                    .events
                    .push_back(unsupported("PID already in use in this program")),
                stream_type::H264 | stream_type::HEVC if info.video_pid.is_none() => {
                    info.video_pid = Some(stream.pid);
                    roles.push((stream.pid, stream.stream_type));
                }
                stream_type::AAC_ADTS
                | stream_type::MPEG1_AUDIO
                | stream_type::MPEG2_AUDIO
                | stream_type::AC3
                    if info.audio_pid.is_none() =>
                {
                    info.audio_pid = Some(stream.pid);
                    roles.push((stream.pid, kind));
                }
                stream_type::H264
                | stream_type::HEVC
                | stream_type::AAC_ADTS
                | stream_type::MPEG1_AUDIO
                | stream_type::MPEG2_AUDIO
                | stream_type::AC3 => self.events.push_back(unsupported(
                    "a second stream of its kind (only the first is read)",
                )),
                stream_type::SCTE35 => roles.push((stream.pid, stream.stream_type)),
                _ => self.events.push_back(unsupported("codec not supported")),
            }
        }
        // Keep the state of PIDs whose role is unchanged; start the others afresh.
        let old_pids = std::mem::take(&mut program.es_pids);
        for pid in old_pids {
            let unchanged = roles.iter().any(|&(p, t)| {
                p == pid
                    && self
                        .pids
                        .get(&pid)
                        .is_some_and(|state| role_stream_type(&state.role) == Some(t))
            });
            if !unchanged {
                self.pids.remove(&pid);
            }
        }
        for &(pid, kind) in &roles {
            if self.pids.contains_key(&pid) {
                continue;
            }
            let role = match kind {
                stream_type::H264 => PidRole::Video(
                    PesAssembler::default(),
                    Box::new(AvcAssembler::new(VideoCodec::H264)),
                ),
                stream_type::HEVC => PidRole::Video(
                    PesAssembler::default(),
                    Box::new(AvcAssembler::new(VideoCodec::Hevc)),
                ),
                stream_type::AAC_ADTS => PidRole::Audio(
                    PesAssembler::default(),
                    AudioFrameAssembler::new(FrameSyntax::Adts),
                ),
                stream_type::MPEG1_AUDIO | stream_type::MPEG2_AUDIO => PidRole::Audio(
                    PesAssembler::default(),
                    AudioFrameAssembler::new(FrameSyntax::MpegAudio),
                ),
                stream_type::AC3 => PidRole::Audio(
                    PesAssembler::default(),
                    AudioFrameAssembler::new(FrameSyntax::Ac3),
                ),
                _ => PidRole::Scte35(SectionAssembler::default()),
            };
            self.pids.insert(pid, PidState::new(role));
        }
        program.es_pids = roles.iter().map(|&(pid, _)| pid).collect();
        self.events.push_back(TsEvent::Program(info));
        true
    }

    fn handle_scte35(&mut self, pid: u16, section: Vec<u8>) -> bool {
        // splice_info_section (SCTE 35 §9.6): table_id 0xfc, then a CRC_32 over it all.
        if section.first() != Some(&psi::TABLE_SCTE35)
            || section.len() < 15
            || media::crc32_mpeg2(&section) != 0
        {
            return false;
        }
        self.counters.scte35_sections += 1;
        self.events.push_back(TsEvent::Scte35 {
            pid,
            section: Bytes::from(section),
            pts_context: self.last_pts,
        });
        true
    }
}

/// The stream_type behind a PID's role, to tell whether a new PMT changed it.
fn role_stream_type(role: &PidRole) -> Option<u8> {
    match role {
        PidRole::Video(_, video) => Some(match video.codec() {
            VideoCodec::H264 => stream_type::H264,
            VideoCodec::Hevc => stream_type::HEVC,
        }),
        // 0x04 is taken as 0x03 and 0x06 + AC-3 descriptor as 0x81 (see handle_pmt).
        PidRole::Audio(_, frames) => Some(match frames.syntax() {
            FrameSyntax::Adts => stream_type::AAC_ADTS,
            FrameSyntax::MpegAudio => stream_type::MPEG1_AUDIO,
            FrameSyntax::Ac3 => stream_type::AC3,
        }),
        PidRole::Scte35(_) => Some(stream_type::SCTE35),
        PidRole::Pat(_) | PidRole::Pmt(_) => None,
    }
}

/// Takes one packet's payload of a PES PID; completed PES go to `deliver` with their
/// (pts, dts), unwrapped.
fn feed_pes(
    pes: &mut PesAssembler,
    payload_unit_start: bool,
    payload: &[u8],
    clock: &mut TimestampUnwrapper,
    last_pts: &mut Option<i64>,
    counters: &mut TsCounters,
    mut deliver: impl FnMut(Option<(i64, i64)>, &[u8], &mut TsCounters),
) {
    let progress = if payload_unit_start {
        if pes.in_progress() {
            complete_pes(pes, clock, last_pts, counters, &mut deliver);
        }
        // The newest PTS is known as soon as a PES starts (for SCTE-35's context), not only
        // when the PES completes with the next one's start.
        if let Ok(PesHeader { pts: Some(pts), .. }) = parse_pes_header(payload) {
            *last_pts = Some(clock.peek(pts));
        }
        pes.start(payload)
    } else {
        pes.append(payload)
    };
    match progress {
        PesProgress::Pending => {}
        PesProgress::Complete => complete_pes(pes, clock, last_pts, counters, deliver),
        PesProgress::Oversized => counters.bad_pes += 1,
    }
}

fn complete_pes(
    pes: &mut PesAssembler,
    clock: &mut TimestampUnwrapper,
    last_pts: &mut Option<i64>,
    counters: &mut TsCounters,
    mut deliver: impl FnMut(Option<(i64, i64)>, &[u8], &mut TsCounters),
) {
    let data = pes.completed();
    let header = match parse_pes_header(data) {
        Ok(header) if !pes.short() => header,
        _ => {
            counters.bad_pes += 1;
            pes.consume();
            return;
        }
    };
    let time = header.pts.map(|pts| {
        let pts = clock.unwrap(pts);
        let dts = header.dts.map_or(pts, |dts| clock.unwrap(dts));
        *last_pts = Some(pts);
        (pts, dts)
    });
    deliver(
        time,
        data.get(header.payload_offset..).unwrap_or_default(),
        counters,
    );
    pes.consume();
}
