//! MPEG-TS wire pieces (ISO/IEC 13818-1): 188-byte transport packets with adaptation fields
//! (§2.4.3.2–§2.4.3.5), PSI sections with their CRC (§2.4.4, Annex A), PES headers (§2.4.3.6).

/// Every transport packet is this long (§2.4.3.2).
pub const PACKET_SIZE: usize = 188;
const SYNC_BYTE: u8 = 0x47;
const HEADER_SIZE: usize = 4;
const PAYLOAD_ROOM: usize = PACKET_SIZE - HEADER_SIZE;

/// 2^33: PTS, DTS and the PCR base are 33-bit counters of the 90 kHz clock (§2.4.3.7).
pub const TIMESTAMP_MODULUS: i64 = 1 << 33;

/// The 4-bit continuity_counter of one PID (§2.4.3.3): it advances on every packet that
/// carries payload, and runs on across segments so that concatenated segments stay continuous.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Continuity(u8);

impl Continuity {
    fn next(&mut self) -> u8 {
        let value = self.0;
        self.0 = (self.0 + 1) & 0x0f;
        value
    }
}

/// What goes into the adaptation field of the first packet of a payload unit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FirstPacket {
    /// random_access_indicator: the PES starts at a point a decoder can start from.
    pub random_access: bool,
    /// program_clock_reference_base in 90 kHz ticks (the 27 MHz extension is written as 0).
    pub pcr: Option<i64>,
}

/// Splits `payload` (a PES packet or a pointer field + PSI section) into transport packets on
/// `pid`, with payload_unit_start_indicator on the first. The last packet is filled up with
/// adaptation-field stuffing (§2.4.3.5), never with bytes after the payload, as PES requires.
pub(crate) fn write_packets(
    out: &mut Vec<u8>,
    pid: u16,
    continuity: &mut Continuity,
    first: FirstPacket,
    payload: &[u8],
) {
    let mut rest = payload;
    let mut is_first = true;
    while is_first || !rest.is_empty() {
        let (random_access, pcr) = if is_first {
            (first.random_access, first.pcr)
        } else {
            (false, None)
        };
        // The adaptation field: its length byte, then the flags byte and the PCR if any.
        let mut field_len = 0;
        if random_access || pcr.is_some() {
            field_len = 2 + if pcr.is_some() { 6 } else { 0 };
        }
        let take = rest.len().min(PAYLOAD_ROOM - field_len);
        // A short last packet grows its adaptation field: one byte (length 0) when a single byte
        // is missing, else a flags byte and 0xff stuffing.
        let field_len = field_len.max(PAYLOAD_ROOM - take);
        let (chunk, after) = rest.split_at(take);

        let start = out.len();
        let adaptation_field_control = if field_len > 0 { 0b11 } else { 0b01 };
        out.push(SYNC_BYTE);
        out.push(if is_first { 0x40 } else { 0 } | ((pid >> 8) as u8 & 0x1f));
        out.push(pid as u8);
        out.push((adaptation_field_control << 4) | continuity.next());
        if field_len > 0 {
            out.push((field_len - 1) as u8);
            if field_len > 1 {
                let flags =
                    if random_access { 0x40 } else { 0 } | if pcr.is_some() { 0x10 } else { 0 };
                out.push(flags);
                if let Some(pcr) = pcr {
                    out.extend_from_slice(&pcr_bytes(pcr));
                }
                out.resize(start + HEADER_SIZE + field_len, 0xff);
            }
        }
        out.extend_from_slice(chunk);
        debug_assert_eq!(out.len() - start, PACKET_SIZE);
        rest = after;
        is_first = false;
    }
}

/// The 6-byte PCR field (§2.4.3.5): 33-bit base, 6 reserved bits, 9-bit extension (0).
fn pcr_bytes(base: i64) -> [u8; 6] {
    let base = base.rem_euclid(TIMESTAMP_MODULUS) as u64;
    [
        (base >> 25) as u8,
        (base >> 17) as u8,
        (base >> 9) as u8,
        (base >> 1) as u8,
        (((base & 1) as u8) << 7) | 0x7e,
        0,
    ]
}

/// Writes a PTS or DTS field (§2.4.3.7): a 4-bit prefix, then the 33 bits in three pieces,
/// each followed by a marker bit.
pub(crate) fn put_timestamp(out: &mut Vec<u8>, prefix: u8, ticks: i64) {
    let ticks = ticks.rem_euclid(TIMESTAMP_MODULUS) as u64;
    out.push((prefix << 4) | (((ticks >> 30) as u8 & 0x07) << 1) | 1);
    out.push((ticks >> 22) as u8);
    out.push((((ticks >> 15) as u8) << 1) | 1);
    out.push((ticks >> 7) as u8);
    out.push(((ticks as u8) << 1) | 1);
}

/// Writes a PES header (§2.4.3.6, Table 2-21) with PTS, and DTS when it differs from PTS.
/// `payload_len` is the size of what follows the header; a PES_packet_length that does not
/// fit 16 bits (or any video PES, §2.4.3.7) is written as 0, "unbounded".
pub(crate) fn put_pes_header(
    out: &mut Vec<u8>,
    stream_id: u8,
    pts: i64,
    dts: Option<i64>,
    payload_len: Option<usize>,
) {
    let header_data_len: u8 = if dts.is_some() { 10 } else { 5 };
    let packet_len = payload_len
        .and_then(|len| u16::try_from(len + 3 + usize::from(header_data_len)).ok())
        .unwrap_or(0);
    out.extend_from_slice(&[0, 0, 1, stream_id]);
    out.extend_from_slice(&packet_len.to_be_bytes());
    // '10', not scrambled, not priority, data_alignment_indicator: each PES starts an access unit.
    out.push(0x84);
    out.push(if dts.is_some() { 0xc0 } else { 0x80 });
    out.push(header_data_len);
    match dts {
        Some(dts) => {
            put_timestamp(out, 0b0011, pts);
            put_timestamp(out, 0b0001, dts);
        }
        None => put_timestamp(out, 0b0010, pts),
    }
}

/// Writes one PSI section (table_id through the field before CRC_32; at most 179 bytes, which
/// our PAT and PMT are far below) as a packet: pointer_field 0, the section, its CRC_32, then
/// 0xff stuffing up to 188 bytes (§2.4.4: bytes after the last section are stuffing).
pub(crate) fn write_section(
    out: &mut Vec<u8>,
    pid: u16,
    continuity: &mut Continuity,
    section: &[u8],
) {
    let start = out.len();
    out.push(SYNC_BYTE);
    out.push(0x40 | ((pid >> 8) as u8 & 0x1f));
    out.push(pid as u8);
    out.push(0x10 | continuity.next());
    out.push(0); // pointer_field: the section starts right after it
    let section = section.get(..PAYLOAD_ROOM - 5).unwrap_or(section);
    out.extend_from_slice(section);
    out.extend_from_slice(&crc32_mpeg2(section).to_be_bytes());
    out.resize(start + PACKET_SIZE, 0xff);
}

/// Lives in `media` now, beside the demuxer's users of it; re-exported for the muxer's API.
pub use media::crc::crc32_mpeg2;
