//! H.264 / HEVC Annex B byte streams (ITU-T H.264 Annex B.1, H.265 Annex B.2: NAL units after
//! `00 00 01` start codes) and their conversion to the length-prefixed NAL units our
//! [`crate::AccessUnit`]s carry (ISO/IEC 14496-15 §5.3.4.2, 4-byte lengths).
//!
//! Two places need this: the MPEG-TS demuxer (ingest, Annex B in PES packets) and encoders that
//! can only write Annex B (NVENC through libavcodec). Pure functions over byte slices; input from
//! outside never panics.

/// The NAL units of an Annex B byte stream, without start codes or trailing zero bytes.
/// Bytes before the first start code are skipped.
pub fn nal_units(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = match find_start_code(data) {
        Some(at) => &data[at + 3..],
        None => &[][..],
    };
    std::iter::from_fn(move || {
        while !rest.is_empty() {
            let (nal, next) = match find_start_code(rest) {
                Some(at) => (&rest[..at], &rest[at + 3..]),
                None => (rest, &[][..]),
            };
            rest = next;
            // trailing_zero_8bits and the leading zero of a 4-byte start code.
            let end = nal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            if end > 0 {
                return Some(&nal[..end]);
            }
        }
        None
    })
}

/// Offset of the next `00 00 01`.
pub fn find_start_code(data: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(window) = data.get(i..i + 3) {
        match window {
            [0, 0, 1] => return Some(i),
            // The third byte is not zero: no start code can begin before it.
            [_, _, b] if *b > 1 => i += 3,
            [_, 0, _] => i += 1,
            _ => i += 2,
        }
    }
    None
}

/// Appends every NAL unit of the Annex B stream `annex_b` to `out` with a 4-byte big-endian
/// length in front (the `avc1` / `hvc1` sample format), skipping those for which `keep` returns
/// false (it sees the NAL unit, header byte first). Returns how many NAL units were appended.
pub fn append_length_prefixed(
    annex_b: &[u8],
    out: &mut Vec<u8>,
    mut keep: impl FnMut(&[u8]) -> bool,
) -> usize {
    let mut count = 0;
    for nal in nal_units(annex_b) {
        // A NAL unit of 4 GiB cannot come out of a real encoder; skipping it beats a wrong length.
        let Ok(length) = u32::try_from(nal.len()) else {
            continue;
        };
        if !keep(nal) {
            continue;
        }
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(nal);
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_splits_on_three_and_four_byte_start_codes() {
        let stream = [
            0xaa, 0, 0, 0, 1, 9, 0xf0, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 0, 0, 1, 0x68, 3, 0, 0, 1, 0,
            0, 1, 0x65, 0, 0, 3, 1,
        ];
        let nals: Vec<&[u8]> = nal_units(&stream).collect();
        assert_eq!(
            nals,
            vec![
                &[9, 0xf0][..],
                &[0x67, 1, 2],
                &[0x68, 3],
                &[0x65, 0, 0, 3, 1]
            ]
        );
        assert_eq!(nal_units(&[1, 2, 3, 0, 0]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 1]).count(), 0);
        assert_eq!(find_start_code(&[5, 0, 0, 0, 0, 1]), Some(3));
        assert_eq!(find_start_code(&[0, 0, 2, 0, 1]), None);
    }

    #[test]
    fn length_prefixed_output_keeps_the_chosen_nal_units() {
        // AUD, SEI, IDR slice; the AUD is filtered out.
        let stream = [
            0, 0, 0, 1, 9, 0x10, 0, 0, 1, 6, 5, 1, 0x80, 0, 0, 1, 0x65, 0x88, 0x84,
        ];
        let mut out = vec![0xee];
        let count = append_length_prefixed(&stream, &mut out, |nal| nal[0] & 0x1f != 9);
        assert_eq!(count, 2);
        assert_eq!(
            out,
            [
                0xee, 0, 0, 0, 4, 6, 5, 1, 0x80, 0, 0, 0, 3, 0x65, 0x88, 0x84
            ]
        );
        let mut empty = Vec::new();
        assert_eq!(append_length_prefixed(&[0, 0, 0], &mut empty, |_| true), 0);
        assert!(empty.is_empty());
    }
}
