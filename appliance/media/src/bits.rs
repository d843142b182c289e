//! An MSB-first bit reader for the H.264, HEVC and AV1 headers: fixed-width fields, exp-Golomb
//! codes (H.264 §9.1, H.265 §9.2) and AV1's `uvlc()` (AV1 §4.10.3). Errors are plain strings
//! that say which field ran out or overflowed at which bit, for the caller to wrap in its
//! [`crate::MediaError`].

pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    bit: usize,
}

pub(crate) type BitResult<T> = Result<T, String>;

impl<'a> BitReader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        BitReader { data, bit: 0 }
    }

    pub(crate) fn flag(&mut self, what: &str) -> BitResult<bool> {
        Ok(self.bits(1, what)? == 1)
    }

    /// Reads `count` (at most 64) bits.
    pub(crate) fn bits(&mut self, count: u32, what: &str) -> BitResult<u64> {
        debug_assert!(count <= 64);
        let mut value: u64 = 0;
        for _ in 0..count {
            let byte = self
                .data
                .get(self.bit / 8)
                .ok_or_else(|| format!("truncated at bit {} while reading {what}", self.bit))?;
            let bit = (byte >> (7 - self.bit % 8)) & 1;
            value = (value << 1) | u64::from(bit);
            self.bit += 1;
        }
        Ok(value)
    }

    /// Reads `count` (at most 32) bits.
    pub(crate) fn bits32(&mut self, count: u32, what: &str) -> BitResult<u32> {
        debug_assert!(count <= 32);
        // At most 32 bits were shifted in.
        Ok(self.bits(count, what)? as u32)
    }

    pub(crate) fn skip(&mut self, count: usize, what: &str) -> BitResult<()> {
        let end = self.bit.saturating_add(count);
        if end > self.data.len() * 8 {
            return Err(format!(
                "truncated at bit {} while skipping {what}",
                self.bit
            ));
        }
        self.bit = end;
        Ok(())
    }

    /// ue(v), at most 32 bits of value.
    pub(crate) fn ue(&mut self, what: &str) -> BitResult<u32> {
        let start = self.bit;
        let mut leading_zeros = 0;
        while !self.flag(what)? {
            leading_zeros += 1;
            if leading_zeros > 31 {
                return Err(format!(
                    "{what} at bit {start}: exp-Golomb code longer than 32 bits"
                ));
            }
        }
        let suffix = self.bits(leading_zeros, what)?;
        let value = (1u64 << leading_zeros) - 1 + suffix;
        u32::try_from(value)
            .map_err(|_| format!("{what} at bit {start}: exp-Golomb value above 32 bits"))
    }

    pub(crate) fn ue_max(&mut self, what: &str, max: u32) -> BitResult<u32> {
        let start = self.bit;
        let value = self.ue(what)?;
        if value > max {
            return Err(format!(
                "{what} {value} at bit {start} is above its limit {max}"
            ));
        }
        Ok(value)
    }

    pub(crate) fn se(&mut self, what: &str) -> BitResult<i64> {
        let code = i64::from(self.ue(what)?);
        let magnitude = (code + 1) / 2;
        Ok(if code % 2 == 1 { magnitude } else { -magnitude })
    }

    /// AV1 `uvlc()` (§4.10.3): 32 leading zeros or more mean the maximum value.
    pub(crate) fn uvlc(&mut self, what: &str) -> BitResult<u32> {
        let mut leading_zeros = 0u32;
        while !self.flag(what)? {
            leading_zeros += 1;
            if leading_zeros > 40 {
                return Err(format!("{what}: uvlc code longer than 40 bits"));
            }
        }
        if leading_zeros >= 32 {
            return Ok(u32::MAX);
        }
        let suffix = self.bits(leading_zeros, what)?;
        Ok(u32::try_from((1u64 << leading_zeros) - 1 + suffix).unwrap_or(u32::MAX))
    }
}

/// Removes emulation prevention bytes (the 0x03 of each 00 00 03; H.265 §7.4.2).
pub(crate) fn remove_emulation_prevention(payload: &[u8]) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(payload.len());
    let mut zeros = 0;
    for &byte in payload {
        if zeros >= 2 && byte == 3 {
            zeros = 0;
            continue;
        }
        zeros = if byte == 0 { zeros + 1 } else { 0 };
        rbsp.push(byte);
    }
    rbsp
}

pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_golomb_and_uvlc() {
        // 101 | 00111 (ue 6) | 011 (se -1) | 1 (uvlc 0) | 010 (uvlc 1)
        let data = [0b1010_0111, 0b0111_0100];
        let mut r = BitReader::new(&data);
        assert_eq!(r.bits(3, "a").unwrap(), 5);
        assert_eq!(r.ue("b").unwrap(), 6);
        assert_eq!(r.se("c").unwrap(), -1);
        assert_eq!(r.uvlc("d").unwrap(), 0);
        assert_eq!(r.uvlc("e").unwrap(), 1);
        assert!(r.bits(2, "f").unwrap_err().contains("truncated at bit 16"));
        assert!(r.skip(2, "g").is_err());
        assert_eq!(
            remove_emulation_prevention(&[0, 0, 3, 1, 0, 0, 3]),
            [0, 0, 1, 0, 0]
        );
    }
}
