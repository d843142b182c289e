//! Program-specific information: sections carried in packets with a pointer_field
//! (ISO/IEC 13818-1 §2.4.4.1, §2.4.4.2), the program association table (§2.4.4.3) and the
//! program map table (§2.4.4.8). SCTE-35 splice_info_sections (SCTE 35 §9.2) travel the same
//! way and use the same assembler.

use media::crc32_mpeg2;

/// A private section may be 4096 bytes long in all (section_length up to 4093, §2.4.4.11);
/// PAT and PMT sections are at most 1024.
const MAX_SECTION_BYTES: usize = 4096;

/// Reassembles the sections of one PID from packet payloads.
#[derive(Debug, Default)]
pub struct SectionAssembler {
    buf: Vec<u8>,
    /// A section has started and not yet ended.
    active: bool,
}

/// What one payload produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SectionOutput {
    /// Whole sections, header to CRC, not yet checked.
    pub sections: Vec<Vec<u8>>,
    /// Sections that could not be assembled: a pointer_field past the payload, a section
    /// longer than allowed, or one cut short by the start of the next.
    pub malformed: u32,
}

impl SectionAssembler {
    /// Forgets a section in progress (after a continuity error).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
    }

    /// Takes one packet's payload.
    pub fn push(&mut self, payload_unit_start: bool, payload: &[u8], out: &mut SectionOutput) {
        let mut data = payload;
        if payload_unit_start {
            let Some((&pointer, rest)) = data.split_first() else {
                out.malformed += 1;
                self.reset();
                return;
            };
            let Some((tail, head)) = rest.split_at_checked(usize::from(pointer)) else {
                out.malformed += 1;
                self.reset();
                return;
            };
            if self.active {
                self.extend(tail, out);
                if self.active && !self.buf.is_empty() {
                    // The previous section had not ended when the next one began.
                    out.malformed += 1;
                }
            }
            self.buf.clear();
            self.active = true;
            data = head;
        } else if !self.active {
            return;
        }
        self.extend(data, out);
    }

    fn extend(&mut self, data: &[u8], out: &mut SectionOutput) {
        // alloc: PSI is a few sections a second per PID; the buffer is reused.
        self.buf.extend_from_slice(data);
        loop {
            let Some(&[table_id, length_hi, length_lo]) = self.buf.first_chunk::<3>() else {
                return;
            };
            if table_id == 0xff {
                // Stuffing (§2.4.4.2): nothing more in this packet.
                self.reset();
                return;
            }
            let total = 3 + ((usize::from(length_hi & 0x0f) << 8) | usize::from(length_lo));
            if total > MAX_SECTION_BYTES {
                out.malformed += 1;
                self.reset();
                return;
            }
            if self.buf.len() < total {
                return;
            }
            out.sections.push(self.buf[..total].to_vec());
            self.buf.drain(..total);
            if self.buf.is_empty() {
                self.active = false;
                return;
            }
        }
    }
}

/// The syntax common to long-form sections (§2.4.4.10, Table 2-30): what PAT and PMT share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LongSection<'a> {
    pub table_id: u8,
    /// transport_stream_id in a PAT, program_number in a PMT.
    pub id: u16,
    pub version: u8,
    pub current: bool,
    /// The table's data between the 8-byte header and the CRC.
    pub body: &'a [u8],
    pub crc: u32,
}

/// Checks the CRC and splits a long-form section.
pub fn parse_long_section(section: &[u8]) -> Result<LongSection<'_>, String> {
    if section.len() < 12 {
        return Err(format!(
            "{} bytes, shorter than a long section",
            section.len()
        ));
    }
    if section[1] & 0x80 == 0 {
        return Err("section_syntax_indicator 0 in a PSI table".into());
    }
    if crc32_mpeg2(section) != 0 {
        return Err(format!("CRC_32 mismatch (table_id 0x{:02x})", section[0]));
    }
    let crc_at = section.len() - 4;
    Ok(LongSection {
        table_id: section[0],
        id: u16::from_be_bytes([section[3], section[4]]),
        version: (section[5] >> 1) & 0x1f,
        current: section[5] & 0x01 != 0,
        body: &section[8..crc_at],
        crc: u32::from_be_bytes([
            section[crc_at],
            section[crc_at + 1],
            section[crc_at + 2],
            section[crc_at + 3],
        ]),
    })
}

pub const TABLE_PAT: u8 = 0x00;
pub const TABLE_PMT: u8 = 0x02;
/// splice_info_section's table_id (SCTE 35 §9.6).
pub const TABLE_SCTE35: u8 = 0xfc;

/// (program_number, program_map_PID) of each program of a PAT body; program 0 (the network
/// PID) is left out.
pub fn pat_programs(body: &[u8]) -> Vec<(u16, u16)> {
    body.chunks_exact(4)
        .map(|e| {
            (
                u16::from_be_bytes([e[0], e[1]]),
                u16::from_be_bytes([e[2] & 0x1f, e[3]]),
            )
        })
        .filter(|&(program, _)| program != 0)
        .collect()
}

/// One entry of a PMT's elementary stream loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmtStream {
    pub stream_type: u8,
    pub pid: u16,
    /// An ES descriptor marks the stream as AC-3: DVB's AC-3_descriptor (tag 0x6a, ETSI EN
    /// 300 468 Annex D) or a registration descriptor (tag 0x05, §2.6.8) with format_identifier
    /// "AC-3" (ATSC A/52 Annex A). Private PES (stream_type 0x06) is AC-3 only with one.
    pub ac3_descriptor: bool,
}

/// Descriptor tags read in ES_info.
const REGISTRATION_DESCRIPTOR: u8 = 0x05;
const DVB_AC3_DESCRIPTOR: u8 = 0x6a;

/// Whether a descriptor loop holds an AC-3 descriptor (see [`PmtStream::ac3_descriptor`]).
fn has_ac3_descriptor(mut descriptors: &[u8]) -> bool {
    while let [tag, length, rest @ ..] = descriptors {
        let Some(body) = rest.get(..usize::from(*length)) else {
            return false;
        };
        if *tag == DVB_AC3_DESCRIPTOR
            || (*tag == REGISTRATION_DESCRIPTOR && body.starts_with(b"AC-3"))
        {
            return true;
        }
        descriptors = &rest[usize::from(*length)..];
    }
    false
}

/// The elementary streams of a PMT body (after the 8-byte header, before the CRC).
pub fn pmt_streams(body: &[u8]) -> Result<Vec<PmtStream>, String> {
    let [_, _, info_hi, info_lo, rest @ ..] = body else {
        return Err(format!("PMT body of {} bytes", body.len()));
    };
    let program_info_length = (usize::from(info_hi & 0x0f) << 8) | usize::from(*info_lo);
    let mut entries = rest
        .get(program_info_length..)
        .ok_or_else(|| format!("program_info_length {program_info_length} past the section"))?;
    let mut streams = Vec::new();
    while !entries.is_empty() {
        let [stream_type, pid_hi, pid_lo, es_hi, es_lo, tail @ ..] = entries else {
            return Err(format!("{} stray bytes in the stream loop", entries.len()));
        };
        let es_info_length = (usize::from(es_hi & 0x0f) << 8) | usize::from(*es_lo);
        let (Some(descriptors), Some(next)) =
            (tail.get(..es_info_length), tail.get(es_info_length..))
        else {
            return Err(format!("ES_info_length {es_info_length} past the section"));
        };
        entries = next;
        streams.push(PmtStream {
            stream_type: *stream_type,
            pid: (u16::from(pid_hi & 0x1f) << 8) | u16::from(*pid_lo),
            ac3_descriptor: has_ac3_descriptor(descriptors),
        });
    }
    Ok(streams)
}

#[cfg(test)]
mod tests {
    use super::*;

    // ffmpeg 5.1's PAT section: program 1 on PMT PID 0x1000.
    pub const FFMPEG_PAT: [u8; 16] = [
        0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00, 0x2a, 0xb1, 0x04,
        0xb2,
    ];

    #[test]
    fn ffmpeg_pat_parses() {
        let section = parse_long_section(&FFMPEG_PAT).unwrap();
        assert_eq!((section.table_id, section.id, section.version), (0, 1, 0));
        assert!(section.current);
        assert_eq!(pat_programs(section.body), vec![(1, 0x1000)]);
        let mut broken = FFMPEG_PAT;
        broken[9] ^= 1;
        assert!(parse_long_section(&broken).unwrap_err().contains("CRC"));
        assert!(parse_long_section(&FFMPEG_PAT[..8]).is_err());
    }

    #[test]
    fn pmt_stream_loop() {
        // PCR PID 0x100, program info 6 bytes (registration "CUEI"), then H.264 on 0x100 with
        // no descriptors and AAC on 0x101 with a 2-byte descriptor.
        let body = [
            0xe1, 0x00, 0xf0, 0x06, 0x05, 0x04, b'C', b'U', b'E', b'I', 0x1b, 0xe1, 0x00, 0xf0,
            0x00, 0x0f, 0xe1, 0x01, 0xf0, 0x02, 0x0a, 0x00,
        ];
        assert_eq!(
            pmt_streams(&body).unwrap(),
            vec![
                PmtStream {
                    stream_type: 0x1b,
                    pid: 0x100,
                    ac3_descriptor: false,
                },
                PmtStream {
                    stream_type: 0x0f,
                    pid: 0x101,
                    ac3_descriptor: false,
                }
            ]
        );
        assert!(pmt_streams(&body[..body.len() - 1]).is_err());
        assert!(pmt_streams(&body[..12]).is_err());
        assert!(pmt_streams(&[0xe1, 0x00, 0xf0, 0x09]).is_err());
    }

    #[test]
    fn ac3_descriptors_mark_private_pes_as_ac3() {
        // ffmpeg -mpegts_flags system_b: private PES on 0x101 with a 3-byte DVB AC-3
        // descriptor after an ISO 639 language descriptor; then ATSC's registration form on
        // 0x102, and a registration of something else on 0x103.
        let body = [
            0xe1, 0x00, 0xf0, 0x00, //
            0x06, 0xe1, 0x01, 0xf0, 0x0b, 0x0a, 0x04, b'e', b'n', b'g', 0, 0x6a, 0x01, 0x00, 0x00,
            0x00, //
            0x06, 0xe1, 0x02, 0xf0, 0x06, 0x05, 0x04, b'A', b'C', b'-', b'3', //
            0x06, 0xe1, 0x03, 0xf0, 0x06, 0x05, 0x04, b'O', b'p', b'u', b's',
        ];
        let marked: Vec<(u16, bool)> = pmt_streams(&body)
            .unwrap()
            .iter()
            .map(|s| (s.pid, s.ac3_descriptor))
            .collect();
        assert_eq!(marked, [(0x101, true), (0x102, true), (0x103, false)]);
        // A descriptor whose length runs past its loop is no match, and no panic.
        assert!(!has_ac3_descriptor(&[0x0a, 0x09, 0x6a]));
    }

    #[test]
    fn sections_across_packets_with_pointer_field() {
        let mut assembler = SectionAssembler::default();
        let mut out = SectionOutput::default();
        // Packet 1: pointer 2 (two bytes of an unknown earlier section), the PAT's first 10.
        let mut p1 = vec![2, 0xaa, 0xbb];
        p1.extend_from_slice(&FFMPEG_PAT[..10]);
        assembler.push(true, &p1, &mut out);
        assert!(out.sections.is_empty());
        // Packet 2: the rest, then stuffing.
        let mut p2 = FFMPEG_PAT[10..].to_vec();
        p2.extend_from_slice(&[0xff; 20]);
        assembler.push(false, &p2, &mut out);
        assert_eq!(out.sections, vec![FFMPEG_PAT.to_vec()]);
        assert_eq!(out.malformed, 0);
        // Two sections back to back in one packet.
        let mut out = SectionOutput::default();
        let mut p = vec![0];
        p.extend_from_slice(&FFMPEG_PAT);
        p.extend_from_slice(&FFMPEG_PAT);
        p.push(0xff);
        assembler.push(true, &p, &mut out);
        assert_eq!(out.sections.len(), 2);
        // A pointer past the payload, and a section cut short by the next one.
        let mut out = SectionOutput::default();
        assembler.push(true, &[50, 0, 0], &mut out);
        assert_eq!(out.malformed, 1);
        assembler.push(true, &[0, 0x00, 0xb0, 0x0d, 0x00], &mut out);
        let mut p = vec![0];
        p.extend_from_slice(&FFMPEG_PAT);
        assembler.push(true, &p, &mut out);
        assert_eq!(out.malformed, 2);
        assert_eq!(out.sections.len(), 1);
        // Payload without a start is ignored until a start arrives.
        let mut fresh = SectionAssembler::default();
        let mut out = SectionOutput::default();
        fresh.push(false, &FFMPEG_PAT, &mut out);
        assert_eq!(out, SectionOutput::default());
    }
}
