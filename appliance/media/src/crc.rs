//! CRC-32/MPEG-2 (ISO/IEC 13818-1 Annex A), the checksum of every PSI section (PAT, PMT) and of
//! SCTE-35 splice_info_sections. Here, below both the TS muxer (`package`) and the TS demuxer
//! (`ingest`), so there is one implementation.

/// CRC-32/MPEG-2 (Annex A): polynomial 0x04c11db7, initial value 0xffffffff, no reflection,
/// no final xor. A section followed by its CRC checks to 0.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    data.iter().fold(0xffff_ffff, |crc, &byte| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ byte)]
    })
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut index = 0;
    while index < 256 {
        let mut crc = (index as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[index] = crc;
        index += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_check_value() {
        // The CRC catalogue's check value for CRC-32/MPEG-2.
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
        assert_eq!(crc32_mpeg2(&[]), 0xffff_ffff);
    }
}
