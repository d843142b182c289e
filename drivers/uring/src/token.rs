//! `user_data` layout: `slot (32 bits) | generation (24 bits) | op kind (8 bits)`.
//!
//! The slot is the direct-descriptor index (or another index the caller chooses for ops that
//! are not per connection); the generation lets a late completion of a closed connection be told
//! apart from the slot's next connection.

/// What kind of operation a completion belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum OpKind {
    Accept = 1,
    Recv = 2,
    /// `SENDMSG` or `SENDMSG_ZC` (the driver folds a zero-copy notification into one completion).
    Send = 3,
    Cancel = 4,
    Close = 5,
    /// Read of a [`Waker`](crate::Waker)'s eventfd.
    Wake = 6,
    /// Internal: the cancel-everything op a dropping ring submits.
    Drain = 7,
    /// An outgoing `CONNECT` on a direct descriptor.
    Connect = 8,
    /// A one-shot recv appended to the slot's own receive buffer.
    RecvInto = 9,
    /// A recv with `MSG_TRUNC`: TCP payload consumed without being copied.
    RecvDiscard = 10,
}

impl OpKind {
    fn from_bits(bits: u8) -> Option<OpKind> {
        Some(match bits {
            1 => OpKind::Accept,
            2 => OpKind::Recv,
            3 => OpKind::Send,
            4 => OpKind::Cancel,
            5 => OpKind::Close,
            6 => OpKind::Wake,
            7 => OpKind::Drain,
            8 => OpKind::Connect,
            9 => OpKind::RecvInto,
            10 => OpKind::RecvDiscard,
            _ => return None,
        })
    }
}

/// A decoded `user_data` value. See the module docs for the layout.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token(u64);

impl Token {
    /// Generations wrap at this many bits.
    pub const GENERATION_BITS: u32 = 24;
    const GENERATION_MASK: u32 = (1 << Self::GENERATION_BITS) - 1;

    /// `generation` is truncated to [`Self::GENERATION_BITS`].
    pub const fn new(op: OpKind, slot: u32, generation: u32) -> Token {
        Token(
            ((slot as u64) << 32)
                | (((generation & Self::GENERATION_MASK) as u64) << 8)
                | op as u8 as u64,
        )
    }

    /// `None` for a `user_data` this crate did not make.
    pub fn op(self) -> Option<OpKind> {
        OpKind::from_bits(self.0 as u8)
    }

    pub const fn slot(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub const fn generation(self) -> u32 {
        (self.0 >> 8) as u32 & Self::GENERATION_MASK
    }

    /// The next generation after `generation`, wrapping within [`Self::GENERATION_BITS`].
    pub const fn next_generation(generation: u32) -> u32 {
        generation.wrapping_add(1) & Self::GENERATION_MASK
    }

    pub const fn user_data(self) -> u64 {
        self.0
    }

    pub const fn from_user_data(user_data: u64) -> Token {
        Token(user_data)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("op", &self.op())
            .field("slot", &self.slot())
            .field("generation", &self.generation())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field() {
        let token = Token::new(OpKind::Send, 19_999, 0x00ab_cdef);
        let back = Token::from_user_data(token.user_data());
        assert_eq!(back.op(), Some(OpKind::Send));
        assert_eq!(back.slot(), 19_999);
        assert_eq!(back.generation(), 0x00ab_cdef);
        assert_eq!(token.user_data(), (19_999u64 << 32) | (0xab_cdef << 8) | 3);
    }

    #[test]
    fn generation_wraps_and_truncates() {
        assert_eq!(Token::next_generation(0x00ff_ffff), 0);
        let token = Token::new(OpKind::Recv, u32::MAX, 0x1ff_ffff);
        assert_eq!(token.generation(), 0xff_ffff);
        assert_eq!(token.slot(), u32::MAX);
        assert_eq!(token.op(), Some(OpKind::Recv));
    }

    #[test]
    fn foreign_user_data_has_no_op() {
        assert_eq!(Token::from_user_data(0).op(), None);
        assert_eq!(Token::from_user_data(0xff).op(), None);
        assert_eq!(Token::from_user_data(11).op(), None);
    }

    #[test]
    fn client_kinds_round_trip() {
        for op in [OpKind::Connect, OpKind::RecvInto, OpKind::RecvDiscard] {
            let token = Token::new(op, 3, 1);
            assert_eq!(Token::from_user_data(token.user_data()).op(), Some(op));
        }
    }
}
