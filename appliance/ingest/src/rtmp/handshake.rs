//! The RTMP handshake, server side (RTMP 1.0 §5.2): C0+C1 in, S0+S1+S2 out, C2 in.
//!
//! We answer with the simple handshake: S1 is our time (0) and filler, S2 echoes C1. Clients
//! that send the digest-carrying "complex" C1 (ffmpeg, OBS, Flash-era encoders) accept it for
//! publishing: they only verify a server digest when S1 announces a server version, and ours is
//! zero.

use super::RtmpError;

/// C0/S0: the protocol version byte.
const RTMP_VERSION: u8 = 3;
/// C1, S1, C2 and S2 are each this long.
pub const PACKET_LEN: usize = 1536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    AwaitC0C1,
    AwaitC2,
    Done,
}

impl Handshake {
    /// Consumes what the current step needs from `input`, appending our answer to `out`.
    /// Returns the bytes consumed: 0 when the step's bytes are not all there yet.
    pub fn advance(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, RtmpError> {
        match self {
            Handshake::AwaitC0C1 => {
                let Some(&version) = input.first() else {
                    return Ok(0);
                };
                if version != RTMP_VERSION {
                    // 6 is RTMPE (encrypted), refused; anything else is not RTMP at all.
                    return Err(RtmpError::Handshake(format!(
                        "C0 version {version}, only 3 (plain RTMP) is supported"
                    )));
                }
                let Some(c1) = input.get(1..1 + PACKET_LEN) else {
                    return Ok(0);
                };
                out.push(RTMP_VERSION);
                // S1: time 0, zero, then filler. The filler only has to be there: no client
                // checks it in the simple handshake.
                out.extend_from_slice(&[0; 8]);
                out.extend((0..PACKET_LEN - 8).map(|i| (i * 7 + 13) as u8));
                out.extend_from_slice(c1);
                *self = Handshake::AwaitC2;
                Ok(1 + PACKET_LEN)
            }
            Handshake::AwaitC2 => {
                if input.len() < PACKET_LEN {
                    return Ok(0);
                }
                *self = Handshake::Done;
                Ok(PACKET_LEN)
            }
            Handshake::Done => Ok(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_c0_c1_with_s0_s1_s2_echoing_c1() {
        let mut handshake = Handshake::AwaitC0C1;
        let mut input = vec![3];
        input.extend((0..PACKET_LEN).map(|i| (i % 251) as u8));
        let mut out = Vec::new();
        assert_eq!(handshake.advance(&input[..100], &mut out).unwrap(), 0);
        assert!(out.is_empty());
        assert_eq!(handshake.advance(&input, &mut out).unwrap(), 1 + PACKET_LEN);
        assert_eq!(out.len(), 1 + 2 * PACKET_LEN);
        assert_eq!(out[0], 3);
        assert_eq!(out[1..9], [0; 8]);
        assert_eq!(out[1 + PACKET_LEN..], input[1..]);
        assert_eq!(handshake, Handshake::AwaitC2);
        assert_eq!(handshake.advance(&[0; 1000], &mut out).unwrap(), 0);
        assert_eq!(handshake.advance(&[0; 1600], &mut out).unwrap(), PACKET_LEN);
        assert_eq!(handshake, Handshake::Done);
    }

    #[test]
    fn other_versions_are_refused() {
        for version in [0u8, 6, b'G'] {
            let err = Handshake::AwaitC0C1
                .advance(&[version], &mut Vec::new())
                .unwrap_err();
            assert!(
                err.to_string().contains(&format!("version {version}")),
                "{err}"
            );
        }
    }
}
