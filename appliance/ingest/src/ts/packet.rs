//! Transport stream packets: the 4-byte header (ISO/IEC 13818-1 §2.4.3.2) and the adaptation
//! field (§2.4.3.4), of which only the length and the discontinuity_indicator matter here.

/// Every transport packet is 188 bytes (§2.4.3.2); 192-byte M2TS and 204-byte packets with
/// Reed-Solomon parity are not taken.
pub const PACKET_SIZE: usize = 188;
/// The first byte of every packet.
pub const SYNC_BYTE: u8 = 0x47;

/// The header of one transport packet, with what the adaptation field says about continuity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHeader {
    pub transport_error: bool,
    pub payload_unit_start: bool,
    pub pid: u16,
    /// transport_scrambling_control: non-zero means the payload is encrypted.
    pub scrambling: u8,
    pub continuity_counter: u8,
    /// adaptation_field_control says a payload follows.
    pub has_payload: bool,
    /// The adaptation field's discontinuity_indicator: the continuity counter (and the time
    /// base) may jump here without that being an error.
    pub discontinuity: bool,
}

/// Why a packet was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketDefect {
    /// Not 188 bytes or no sync byte (the caller's framing is wrong; a bug, not input).
    Framing,
    /// adaptation_field_control 00, reserved.
    ReservedAdaptationControl,
    /// An adaptation_field_length that does not fit the packet (§2.4.3.5: at most 183, and
    /// exactly 183 when no payload follows).
    AdaptationFieldLength(u8),
}

/// Splits one packet into its header and payload (empty when there is none).
pub fn parse_packet(packet: &[u8]) -> Result<(PacketHeader, &[u8]), PacketDefect> {
    let Some([sync, b1, b2, b3]) = packet.first_chunk::<4>().copied() else {
        return Err(PacketDefect::Framing);
    };
    if sync != SYNC_BYTE || packet.len() != PACKET_SIZE {
        return Err(PacketDefect::Framing);
    }
    let adaptation_control = (b3 >> 4) & 0x3;
    let mut header = PacketHeader {
        transport_error: b1 & 0x80 != 0,
        payload_unit_start: b1 & 0x40 != 0,
        pid: (u16::from(b1 & 0x1f) << 8) | u16::from(b2),
        scrambling: b3 >> 6,
        continuity_counter: b3 & 0x0f,
        has_payload: adaptation_control & 0x1 != 0,
        discontinuity: false,
    };
    let rest = &packet[4..];
    match adaptation_control {
        0 => Err(PacketDefect::ReservedAdaptationControl),
        1 => Ok((header, rest)),
        _ => {
            let Some((&length, field)) = rest.split_first() else {
                return Err(PacketDefect::Framing);
            };
            let fits = if header.has_payload {
                usize::from(length) <= field.len().saturating_sub(1)
            } else {
                usize::from(length) == field.len()
            };
            if !fits {
                return Err(PacketDefect::AdaptationFieldLength(length));
            }
            if length > 0 {
                header.discontinuity = field.first().is_some_and(|flags| flags & 0x80 != 0);
            }
            let payload = field.get(usize::from(length)..).unwrap_or_default();
            Ok((header, if header.has_payload { payload } else { &[] }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(header: [u8; 4], body: &[u8]) -> Vec<u8> {
        let mut p = header.to_vec();
        p.extend_from_slice(body);
        p.resize(PACKET_SIZE, 0xff);
        p
    }

    #[test]
    fn header_fields() {
        // ffmpeg's first PMT packet: PUSI, PID 0x1000, payload only, CC 0.
        let p = packet([0x47, 0x50, 0x00, 0x10], &[0x00, 0x02]);
        let (h, payload) = parse_packet(&p).unwrap();
        assert!(h.payload_unit_start && !h.transport_error && h.has_payload);
        assert_eq!((h.pid, h.continuity_counter, h.scrambling), (0x1000, 0, 0));
        assert_eq!(payload.len(), 184);
        assert_eq!(&payload[..2], &[0x00, 0x02]);
    }

    #[test]
    fn adaptation_field_and_discontinuity() {
        // AF of 7 bytes (PCR), discontinuity + PCR flags, then payload.
        let p = packet(
            [0x47, 0x01, 0x00, 0x3a],
            &[7, 0x90, 0, 0, 0, 0, 0x7e, 0, 0xaa],
        );
        let (h, payload) = parse_packet(&p).unwrap();
        assert!(h.discontinuity && h.has_payload);
        assert_eq!(h.continuity_counter, 0xa);
        assert_eq!(payload.len(), 184 - 8);
        assert_eq!(payload[0], 0xaa);
        // Adaptation field only: must fill the packet.
        let p = packet([0x47, 0x01, 0x00, 0x20], &[183, 0x00]);
        let (h, payload) = parse_packet(&p).unwrap();
        assert!(!h.has_payload && payload.is_empty());
        let p = packet([0x47, 0x01, 0x00, 0x20], &[100, 0x00]);
        assert_eq!(
            parse_packet(&p),
            Err(PacketDefect::AdaptationFieldLength(100))
        );
        let p = packet([0x47, 0x01, 0x00, 0x30], &[184]);
        assert_eq!(
            parse_packet(&p),
            Err(PacketDefect::AdaptationFieldLength(184))
        );
        let p = packet([0x47, 0x01, 0x00, 0x00], &[]);
        assert_eq!(
            parse_packet(&p),
            Err(PacketDefect::ReservedAdaptationControl)
        );
        assert_eq!(parse_packet(&p[..100]), Err(PacketDefect::Framing));
    }
}
