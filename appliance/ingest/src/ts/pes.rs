//! PES packets (ISO/IEC 13818-1 §2.4.3.6, §2.4.3.7): reassembly from transport packets, the
//! header with its 33-bit PTS and DTS, and the unwrapping of those onto one i64 timeline.

/// Largest PES we reassemble: far above a 4K keyframe (around 2 MiB), low enough that a feed
/// that never ends its PES cannot exhaust memory.
pub const MAX_PES_BYTES: usize = 8 << 20;

/// PTS and DTS are 33-bit counts of 90 kHz ticks (§2.4.3.7).
pub const TIMESTAMP_BITS: u32 = 33;
const TIMESTAMP_MASK: u64 = (1 << TIMESTAMP_BITS) - 1;

/// Reassembles the PES packets of one PID. A PES ends when its PES_packet_length is reached,
/// or, for video's unbounded PES (length 0), when the next one starts.
#[derive(Debug, Default)]
pub struct PesAssembler {
    buf: Vec<u8>,
    active: bool,
    /// 6 + PES_packet_length, when the header said so.
    expected: Option<usize>,
}

/// What pushing a payload did.
#[derive(Debug, PartialEq, Eq)]
pub enum PesProgress {
    /// Nothing complete.
    Pending,
    /// A PES is complete: read it with [`PesAssembler::completed`], then call
    /// [`PesAssembler::consume`].
    Complete,
    /// The PES in progress grew past [`MAX_PES_BYTES`] and was dropped.
    Oversized,
}

impl PesAssembler {
    /// Forgets a PES in progress; true when there was one.
    pub fn reset(&mut self) -> bool {
        let had = self.active;
        self.buf.clear();
        self.active = false;
        self.expected = None;
        had
    }

    /// True when a PES has started and has not been handed out.
    pub fn in_progress(&self) -> bool {
        self.active
    }

    /// Starts a new PES with this payload. A PES still in progress must have been taken with
    /// [`Self::completed`] first (the caller does that when `in_progress()`).
    pub fn start(&mut self, payload: &[u8]) -> PesProgress {
        self.reset();
        self.active = true;
        self.append(payload)
    }

    /// Continues the PES in progress; a payload with no PES started is ignored.
    pub fn append(&mut self, payload: &[u8]) -> PesProgress {
        if !self.active {
            return PesProgress::Pending;
        }
        if self.buf.len() + payload.len() > MAX_PES_BYTES {
            self.reset();
            return PesProgress::Oversized;
        }
        // alloc: the buffer grows to the largest PES once and is reused.
        self.buf.extend_from_slice(payload);
        if self.expected.is_none()
            && let Some(&[_, _, _, _, hi, lo]) = self.buf.first_chunk::<6>()
        {
            let length = usize::from(u16::from_be_bytes([hi, lo]));
            self.expected = (length > 0).then_some(6 + length);
        }
        match self.expected {
            Some(total) if self.buf.len() >= total => {
                // Bytes past the announced length are stuffing or garbage.
                self.buf.truncate(total);
                PesProgress::Complete
            }
            _ => PesProgress::Pending,
        }
    }

    /// The PES in progress as it stands (complete, or ended by the next one's start).
    pub fn completed(&self) -> &[u8] {
        &self.buf
    }

    /// Whether the PES in progress fell short of its PES_packet_length.
    pub fn short(&self) -> bool {
        self.expected.is_some_and(|total| self.buf.len() < total)
    }

    /// Done with the completed PES.
    pub fn consume(&mut self) {
        self.reset();
    }
}

/// The parts of a PES header we use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PesHeader {
    pub stream_id: u8,
    /// Raw 33-bit values.
    pub pts: Option<u64>,
    pub dts: Option<u64>,
    /// Where the elementary stream data starts in the PES.
    pub payload_offset: usize,
}

/// Parses the header of a whole PES (§2.4.3.7, Table 2-21).
pub fn parse_pes_header(pes: &[u8]) -> Result<PesHeader, String> {
    let Some(&[0x00, 0x00, 0x01, stream_id, _, _]) = pes.first_chunk::<6>() else {
        return Err(format!(
            "no packet_start_code_prefix: starts {:02x?}",
            &pes[..pes.len().min(6)]
        ));
    };
    // Streams without the optional header: program_stream_map, padding, private_stream_2,
    // ECM, EMM, program_stream_directory, DSMCC, H.222.1 type E.
    if matches!(
        stream_id,
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xff | 0xf2 | 0xf8
    ) {
        return Ok(PesHeader {
            stream_id,
            pts: None,
            dts: None,
            payload_offset: 6,
        });
    }
    let Some(&[flags1, flags2, header_length]) = pes.get(6..9).and_then(|s| s.first_chunk()) else {
        return Err(format!(
            "stream_id 0x{stream_id:02x}: header cut at {} bytes",
            pes.len()
        ));
    };
    if flags1 >> 6 != 0b10 {
        return Err(format!(
            "stream_id 0x{stream_id:02x}: optional header marker {:02b}, expected 10",
            flags1 >> 6
        ));
    }
    let payload_offset = 9 + usize::from(header_length);
    if payload_offset > pes.len() {
        return Err(format!(
            "stream_id 0x{stream_id:02x}: PES_header_data_length {header_length} past the \
             {}-byte PES",
            pes.len()
        ));
    }
    let optional = &pes[9..payload_offset];
    let timestamp = |at: usize| optional.get(at..at + 5).map(read_timestamp);
    let missing = || format!("stream_id 0x{stream_id:02x}: PTS/DTS past the header");
    let (pts, dts) = match flags2 >> 6 {
        0b10 => (Some(timestamp(0).ok_or_else(missing)?), None),
        0b11 => (
            Some(timestamp(0).ok_or_else(missing)?),
            Some(timestamp(5).ok_or_else(missing)?),
        ),
        0b00 => (None, None),
        _ => {
            return Err(format!(
                "stream_id 0x{stream_id:02x}: PTS_DTS_flags 01 (forbidden)"
            ));
        }
    };
    Ok(PesHeader {
        stream_id,
        pts,
        dts,
        payload_offset,
    })
}

/// A 5-byte PTS or DTS field: 3 + 15 + 15 bits between marker bits. Marker bits are not
/// checked: encoders that get them wrong still have the right time.
fn read_timestamp(b: &[u8]) -> u64 {
    let byte = |i: usize| u64::from(b.get(i).copied().unwrap_or(0));
    ((byte(0) >> 1) & 0x07) << 30
        | byte(1) << 22
        | (byte(2) >> 1) << 15
        | byte(3) << 7
        | byte(4) >> 1
}

/// Maps 33-bit timestamps onto a continuous i64 timeline: each value is taken as the one
/// nearest to the previous value (of any stream of the program: audio and video are close
/// together), so the wrap every 26.5 hours continues upwards and a step back stays a step back.
#[derive(Clone, Copy, Debug, Default)]
pub struct TimestampUnwrapper {
    last: Option<(u64, i64)>,
}

impl TimestampUnwrapper {
    pub fn unwrap(&mut self, raw: u64) -> i64 {
        let value = self.peek(raw);
        self.last = Some((raw & TIMESTAMP_MASK, value));
        value
    }

    /// What [`Self::unwrap`] would return, without moving the reference.
    pub fn peek(&self, raw: u64) -> i64 {
        let raw = raw & TIMESTAMP_MASK;
        match self.last {
            None => raw as i64,
            Some((last_raw, last)) => {
                let diff = raw.wrapping_sub(last_raw) & TIMESTAMP_MASK;
                let half = 1u64 << (TIMESTAMP_BITS - 1);
                // Both fit easily: diff < 2^33.
                let signed = if diff >= half {
                    diff as i64 - (1i64 << TIMESTAMP_BITS)
                } else {
                    diff as i64
                };
                last + signed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a 5-byte PTS/DTS field with prefix nibble `prefix`.
    pub fn timestamp_field(prefix: u8, value: u64) -> [u8; 5] {
        [
            (prefix << 4) | (((value >> 30) as u8 & 0x07) << 1) | 1,
            (value >> 22) as u8,
            (((value >> 15) as u8) << 1) | 1,
            (value >> 7) as u8,
            ((value as u8) << 1) | 1,
        ]
    }

    #[test]
    fn header_with_pts_and_dts() {
        // ffmpeg's video PES header: stream 0xe0, unbounded, PTS 0x1_0000_0001, DTS 126000.
        let mut pes = vec![0, 0, 1, 0xe0, 0, 0, 0x80, 0xc0, 10];
        pes.extend_from_slice(&timestamp_field(3, 0x1_0000_0001));
        pes.extend_from_slice(&timestamp_field(1, 126_000));
        pes.extend_from_slice(&[0, 0, 0, 1, 9, 0xf0]);
        let header = parse_pes_header(&pes).unwrap();
        assert_eq!(header.stream_id, 0xe0);
        assert_eq!(header.pts, Some(0x1_0000_0001));
        assert_eq!(header.dts, Some(126_000));
        assert_eq!(header.payload_offset, 19);
        // PTS only.
        let mut pes = vec![0, 0, 1, 0xc0, 0, 0, 0x80, 0x80, 5];
        pes.extend_from_slice(&timestamp_field(2, TIMESTAMP_MASK));
        let header = parse_pes_header(&pes).unwrap();
        assert_eq!((header.pts, header.dts), (Some(TIMESTAMP_MASK), None));
    }

    #[test]
    fn malformed_headers_are_described() {
        let cases: [(&[u8], &str); 5] = [
            (&[0, 0, 2, 0xe0, 0, 0], "packet_start_code_prefix"),
            (&[0, 0, 1, 0xe0, 0, 0, 0x80], "cut"),
            (&[0, 0, 1, 0xe0, 0, 0, 0x40, 0x00, 0], "marker"),
            (&[0, 0, 1, 0xe0, 0, 0, 0x80, 0x80, 9, 1], "past"),
            (&[0, 0, 1, 0xe0, 0, 0, 0x80, 0x40, 0], "forbidden"),
        ];
        for (pes, expected) in cases {
            let err = parse_pes_header(pes).unwrap_err();
            assert!(err.contains(expected), "{pes:02x?}: {err}");
        }
        assert_eq!(
            parse_pes_header(&[0, 0, 1, 0xbe, 0, 0])
                .unwrap()
                .payload_offset,
            6
        );
    }

    #[test]
    fn unwrapping_crosses_the_33_bit_wrap_both_ways() {
        let mut clock = TimestampUnwrapper::default();
        let top = TIMESTAMP_MASK;
        assert_eq!(clock.unwrap(top - 3000), (top - 3000) as i64);
        assert_eq!(clock.unwrap(1000), (1i64 << 33) + 1000);
        assert_eq!(clock.peek(top), top as i64, "a small step back stays back");
        assert_eq!(clock.unwrap(4000), (1i64 << 33) + 4000);
        // Far jumps (less than half the range) are taken at face value, in either direction.
        assert_eq!(
            clock.unwrap(4000 + (1 << 31)),
            (1i64 << 33) + 4000 + (1 << 31)
        );
        assert_eq!(clock.unwrap(4000), (1i64 << 33) + 4000);
    }

    #[test]
    fn bounded_and_unbounded_pes() {
        let mut assembler = PesAssembler::default();
        // PES_packet_length 5: header bytes 6 + 5.
        assert_eq!(
            assembler.start(&[0, 0, 1, 0xc0, 0, 5, 0x80, 0]),
            PesProgress::Pending
        );
        assert!(assembler.short());
        assert_eq!(
            assembler.append(&[0, 1, 2, 0xff, 0xff]),
            PesProgress::Complete
        );
        assert_eq!(
            assembler.completed(),
            &[0, 0, 1, 0xc0, 0, 5, 0x80, 0, 0, 1, 2]
        );
        assembler.consume();
        assert!(!assembler.in_progress());
        assert_eq!(assembler.append(&[1, 2, 3]), PesProgress::Pending);
        // Unbounded: only the next start ends it.
        assembler.start(&[0, 0, 1, 0xe0, 0, 0, 0x80, 0, 0]);
        assembler.append(&[7; 100]);
        assert!(assembler.in_progress() && !assembler.short());
        assert_eq!(assembler.completed().len(), 109);
        // Oversized.
        let big = vec![0u8; MAX_PES_BYTES];
        assert_eq!(assembler.append(&big), PesProgress::Oversized);
        assert!(!assembler.in_progress());
    }
}
