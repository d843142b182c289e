//! AC-3 frame headers: syncinfo and the start of bsi (ATSC A/52:2018 §5.3.1, §5.3.2, §5.4.1,
//! frame sizes from Table 5.18).
//!
//! Only what framing and a decoder set-up need: the frame length, the sampling frequency and
//! the channel count (full-bandwidth channels from `acmod`, plus the LFE channel). Every AC-3
//! frame holds 1536 samples (6 audio blocks of 256). E-AC-3 (bsid 11 to 16, A/52 Annex E) has a
//! different syncinfo and is refused by its bsid.

/// Samples per channel in every AC-3 frame.
pub const FRAME_SAMPLES: u32 = 1536;

/// Bytes of syncinfo plus the bsi fields read here, up to lfeon.
pub const HEADER_BYTES: usize = 7;

/// One parsed AC-3 frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ac3Header {
    pub sample_rate: u32,
    /// Full-bandwidth channels plus the LFE channel: 1 to 6.
    pub channels: u8,
    pub bitrate_kbps: u32,
    /// The whole frame, syncinfo included.
    pub frame_bytes: usize,
    /// Bit stream identification: 8 for A/52 AC-3, 6 (Annex D alternate syntax) and below.
    pub bsid: u8,
}

/// Nominal bit rates of frmsizecod / 2 (Table 5.18).
const BITRATES: [u32; 19] = [
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640,
];

/// Full-bandwidth channels of each acmod (Table 5.8): 1+1, 1/0, 2/0, 3/0, 2/1, 3/1, 2/2, 3/2.
const FULL_CHANNELS: [u8; 8] = [2, 1, 2, 3, 3, 4, 4, 5];

impl Ac3Header {
    /// Parses the header at the start of `data`: `Ok(None)` when fewer than
    /// [`HEADER_BYTES`] bytes are there, `Err` with the reason when they are not an AC-3
    /// frame header we can use.
    pub fn parse(data: &[u8]) -> Result<Option<Self>, String> {
        let Some(&[s0, s1, _crc0, _crc1, b4, b5, b6]) = data.first_chunk::<HEADER_BYTES>() else {
            return Ok(None);
        };
        if [s0, s1] != [0x0b, 0x77] {
            return Err("no AC-3 syncword".into());
        }
        let bsid = b5 >> 3;
        if bsid > 10 {
            return Err(format!("bsid {bsid} (E-AC-3 is not AC-3)"));
        }
        let fscod = b4 >> 6;
        let frmsizecod = usize::from(b4 & 0x3f);
        let bitrate_kbps = *BITRATES
            .get(frmsizecod / 2)
            .ok_or_else(|| format!("reserved frmsizecod {frmsizecod}"))?;
        // Frame sizes in 16-bit words (Table 5.18): the 44.1 kHz column rounds down and
        // odd frmsizecods add the one word it lost.
        let words = match fscod {
            0 => 2 * bitrate_kbps as usize,
            1 => bitrate_kbps as usize * 320 / 147 + (frmsizecod & 1),
            2 => 3 * bitrate_kbps as usize,
            _ => return Err("reserved fscod 3".into()),
        };
        let sample_rate = [48_000, 44_100, 32_000][usize::from(fscod)];
        // bsi after bsid (5 bits) and bsmod (3 bits): acmod (3), then cmixlev (2) when there
        // are three front channels, surmixlev (2) when there is a surround channel, dsurmod
        // (2) for 2/0, then lfeon (1).
        let acmod = b6 >> 5;
        let mut bit = 3;
        if acmod & 0x01 != 0 && acmod != 1 {
            bit += 2;
        }
        if acmod & 0x04 != 0 {
            bit += 2;
        }
        if acmod == 2 {
            bit += 2;
        }
        // acmod and the optional fields take at most 7 bits, so lfeon is always in this byte.
        let lfe = (b6 >> (7 - bit)) & 0x01;
        Ok(Some(Ac3Header {
            sample_rate,
            channels: FULL_CHANNELS[usize::from(acmod)] + lfe,
            bitrate_kbps,
            frame_bytes: words * 2,
            bsid,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpeg_frame_headers_parse() {
        // ffmpeg's ac3 encoder, 48 kHz stereo 192 kbit/s (frmsizecod 20: 384 words).
        let stereo = [0x0b, 0x77, 0xfe, 0x95, 0x14, 0x40, 0x43];
        assert_eq!(
            Ac3Header::parse(&stereo).unwrap().unwrap(),
            Ac3Header {
                sample_rate: 48_000,
                channels: 2,
                bitrate_kbps: 192,
                frame_bytes: 768,
                bsid: 8,
            }
        );
        // 5.1 at 384 kbit/s: acmod 3/2, both mix levels, then lfeon 1 as the byte's last bit.
        let surround = [0x0b, 0x77, 0x94, 0x12, 0x1c, 0x40, 0xeb];
        let header = Ac3Header::parse(&surround).unwrap().unwrap();
        assert_eq!((header.channels, header.frame_bytes), (6, 1536));
        // 44.1 kHz, frmsizecod 0 and 1: 69 and 70 words (Table 5.18).
        let even = [0x0b, 0x77, 0, 0, 0x40, 0x40, 0x40];
        let odd = [0x0b, 0x77, 0, 0, 0x41, 0x40, 0x40];
        assert_eq!(Ac3Header::parse(&even).unwrap().unwrap().frame_bytes, 138);
        assert_eq!(Ac3Header::parse(&odd).unwrap().unwrap().frame_bytes, 140);
        // 44.1 kHz 640 kbit/s: 1393 / 1394 words; 32 kHz 640 kbit/s: 1920 words.
        let top = [0x0b, 0x77, 0, 0, 0x65, 0x40, 0x40];
        assert_eq!(Ac3Header::parse(&top).unwrap().unwrap().frame_bytes, 2788);
        let low_rate = [0x0b, 0x77, 0, 0, 0xa5, 0x40, 0x20];
        assert_eq!(
            Ac3Header::parse(&low_rate).unwrap().unwrap(),
            Ac3Header {
                sample_rate: 32_000,
                channels: 1,
                bitrate_kbps: 640,
                frame_bytes: 3840,
                bsid: 8,
            }
        );
    }

    #[test]
    fn short_input_needs_more_and_bad_headers_say_why() {
        assert_eq!(Ac3Header::parse(&[0x0b, 0x77, 0, 0, 0x14, 0x40]), Ok(None));
        for (bytes, reason) in [
            ([0x0b, 0x78, 0, 0, 0x14, 0x40, 0x43], "syncword"),
            ([0x0b, 0x77, 0, 0, 0x14, 0x80, 0x43], "bsid 16"),
            ([0x0b, 0x77, 0, 0, 0x26, 0x40, 0x43], "frmsizecod 38"),
            ([0x0b, 0x77, 0, 0, 0xd4, 0x40, 0x43], "fscod 3"),
        ] {
            let err = Ac3Header::parse(&bytes).unwrap_err();
            assert!(err.contains(reason), "{bytes:02x?}: {err}");
        }
    }

    #[test]
    fn every_header_value_parses_or_fails_without_panicking() {
        for b4 in 0..=0xffu8 {
            for b6 in 0..=0xffu8 {
                if let Ok(Some(header)) = Ac3Header::parse(&[0x0b, 0x77, 0, 0, b4, 0x40, b6]) {
                    assert!(header.frame_bytes >= 128 && (1..=6).contains(&header.channels));
                }
            }
        }
    }
}
