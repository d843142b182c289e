//! Writing ISO-BMFF boxes (ISO/IEC 14496-12 §4.2) into a byte vector: a box is written header
//! first with a placeholder size, then its body, then the size is patched in. This keeps every
//! box's code a straight sequence of field writes with no size arithmetic to get wrong.

/// A four-character code.
pub(crate) type FourCc = [u8; 4];

/// Writes a box: the header, whatever `body` appends, then the patched 32-bit size.
pub(crate) fn write_box(out: &mut Vec<u8>, kind: &FourCc, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(kind);
    body(out);
    patch_size(out, start);
}

/// Writes a FullBox (§4.2.2): a box whose body starts with a version byte and 24 bits of flags.
pub(crate) fn write_full_box(
    out: &mut Vec<u8>,
    kind: &FourCc,
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut Vec<u8>),
) {
    write_box(out, kind, |out| {
        out.push(version);
        out.extend_from_slice(&flags.to_be_bytes()[1..]);
        body(out);
    });
}

fn patch_size(out: &mut [u8], start: usize) {
    // Every box other than `mdat` holds headers and sample tables of one segment: kilobytes. A
    // box of 4 GiB here would be a bug in the caller, not input we can meet.
    let size = u32::try_from(out.len() - start).expect("an ISO-BMFF header box over 4 GiB");
    if let Some(field) = out.get_mut(start..start + 4) {
        field.copy_from_slice(&size.to_be_bytes());
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, value: u16) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_be_bytes());
}

pub(crate) fn put_zeros(out: &mut Vec<u8>, count: usize) {
    out.resize(out.len() + count, 0);
}

/// The unity transformation matrix of `mvhd` and `tkhd` (§8.2.2.3: 16.16 and 2.30 fixed point).
pub(crate) fn put_unity_matrix(out: &mut Vec<u8>) {
    for value in [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000u32] {
        put_u32(out, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_boxes_carry_their_own_sizes() {
        let mut out = Vec::new();
        write_box(&mut out, b"moov", |out| {
            write_full_box(out, b"mfhd", 1, 0x02_0001, |out| put_u32(out, 7));
            write_box(out, b"free", |_| {});
        });
        assert_eq!(
            out,
            [
                0, 0, 0, 32, b'm', b'o', b'o', b'v', // moov: 8 + 16 + 8
                0, 0, 0, 16, b'm', b'f', b'h', b'd', 1, 2, 0, 1, 0, 0, 0, 7, // mfhd
                0, 0, 0, 8, b'f', b'r', b'e', b'e', // empty box
            ]
        );
    }
}
