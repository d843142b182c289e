//! The client side of a [`Ring`]: outgoing connections on direct descriptors and the recv
//! variants a client needs (corecast-bench's simulated viewers use them).
//!
//! - A socket made elsewhere ([`tcp_client_socket`](crate::tcp_client_socket)) is installed
//!   in a slot of the file table (`IORING_REGISTER_FILES_UPDATE`) and its fd closed at once:
//!   the connection then costs no process fd, so one ring holds up to `RLIMIT_NOFILE` of them.
//! - `CONNECT` reads the peer address from the slot's own `sockaddr_storage` here.
//! - One-shot recv into the ring's provided buffer ring (the completion carries a
//!   [`RecvBuf`](crate::RecvBuf), as multishot recv does).
//! - One-shot recv appended to the slot's receive buffer (a `Vec<u8>` the caller reads and
//!   clears between recvs, [`Ring::received_mut`]).
//! - Recv with `MSG_TRUNC`: on TCP the kernel consumes the payload without copying it to user
//!   space (tcp_recvmsg skips the copy under `MSG_TRUNC`); the result is how many bytes went.
//!
//! The ownership rule of the crate holds here too: the peer address and the receive buffer of
//! a slot are not touched while the op naming them is in flight, the `MSG_TRUNC` scratch is
//! never read, and all of it is leaked rather than freed if a dropping ring cannot drain.
//! The table is made on first use, so a server ring pays nothing for it.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};

use io_uring::opcode;
use io_uring::squeue;
use io_uring::types::Fixed;

use crate::net::socket_address;
use crate::{OpKind, Ring, Token, UringError};

/// Bytes one `MSG_TRUNC` recv may consume: the kernel checks that the range is mapped but (for
/// TCP) writes nothing into it.
pub(crate) const DISCARD_BYTES: usize = 1 << 20;

struct ClientSlot {
    peer: libc::sockaddr_storage,
    connect_in_flight: bool,
    received: Vec<u8>,
    recv_in_flight: bool,
    /// Bytes the in-flight `RecvInto` may write (the completion's result can not exceed it).
    recv_requested: u32,
}

impl ClientSlot {
    fn new() -> ClientSlot {
        ClientSlot {
            // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (unspecified)
            // address.
            peer: unsafe { std::mem::zeroed() },
            connect_in_flight: false,
            received: Vec::new(),
            recv_in_flight: false,
            recv_requested: 0,
        }
    }

    fn busy(&self) -> bool {
        self.connect_in_flight || self.recv_in_flight
    }
}

/// Per-slot client memory; never resized once made (the addresses must not move).
#[derive(Default)]
pub(crate) struct ClientTable {
    slots: Option<Box<[ClientSlot]>>,
    discard: Option<Box<[u8]>>,
}

impl ClientTable {
    fn slot_mut(&mut self, files: u32, slot: u32) -> Option<&mut ClientSlot> {
        if slot >= files {
            return None;
        }
        let slots = self
            .slots
            .get_or_insert_with(|| (0..files).map(|_| ClientSlot::new()).collect());
        slots.get_mut(slot as usize)
    }

    pub(crate) fn slot_busy(&self, slot: u32) -> bool {
        self.slots
            .as_ref()
            .and_then(|slots| slots.get(slot as usize))
            .is_some_and(ClientSlot::busy)
    }

    /// Bookkeeping at an op's completion: releases the memory it named.
    pub(crate) fn complete(&mut self, token: Token, result: i32) {
        let Some(state) = self
            .slots
            .as_mut()
            .and_then(|slots| slots.get_mut(token.slot() as usize))
        else {
            return;
        };
        match token.op() {
            Some(OpKind::Connect) => state.connect_in_flight = false,
            Some(OpKind::RecvInto) if state.recv_in_flight => {
                state.recv_in_flight = false;
                let written = u32::try_from(result).unwrap_or(0).min(state.recv_requested);
                let len = state.received.len() + written as usize;
                if len <= state.received.capacity() {
                    // SAFETY: the kernel initialised `written` bytes of the spare capacity this
                    // recv was given (a recv never writes more than it was asked for, and
                    // `recv_requested` was at most the spare capacity).
                    unsafe { state.received.set_len(len) };
                }
            }
            _ => {}
        }
    }
}

impl Ring {
    fn slot_error(slot: u32, what: &'static str) -> UringError {
        UringError::SlotMisuse { slot, what }
    }

    /// The slot's client memory (made on first use), unless `in_flight` says the op that
    /// names it is still out.
    fn idle_client_slot(
        &mut self,
        slot: u32,
        in_flight: fn(&ClientSlot) -> bool,
        busy: &'static str,
    ) -> Result<&mut ClientSlot, UringError> {
        let state = self
            .client
            .slot_mut(self.report.files, slot)
            .ok_or(Self::slot_error(slot, "outside the file table"))?;
        if in_flight(state) {
            return Err(Self::slot_error(slot, busy));
        }
        Ok(state)
    }

    /// Pushes an op that names the slot's client memory, which the caller has marked in
    /// flight; `release` clears that mark if the op never reaches the queue.
    ///
    /// # Safety
    /// As [`Ring::push`]: the memory `entry` names stays valid and unchanged until the op's
    /// completion is reaped.
    unsafe fn push_claimed(
        &mut self,
        slot: u32,
        entry: &squeue::Entry,
        release: fn(&mut ClientSlot),
    ) -> Result<(), UringError> {
        // SAFETY: forwarded from this function's contract.
        let pushed = unsafe { self.push(entry) };
        if pushed.is_err()
            && let Some(state) = self.client.slot_mut(self.report.files, slot)
        {
            release(state);
        }
        pushed
    }

    /// Installs `socket` in `slot` of the file table (replacing what was there) and closes the
    /// fd: the connection lives on as a direct descriptor. Refused while the driver knows of
    /// an op in flight on the slot.
    pub fn install_socket(&mut self, slot: u32, socket: OwnedFd) -> Result<(), UringError> {
        if slot >= self.report.files {
            return Err(Self::slot_error(slot, "outside the file table"));
        }
        if self.send_in_flight(slot) || self.client.slot_busy(slot) {
            return Err(Self::slot_error(slot, "install while an op is in flight"));
        }
        self.uring
            .submitter()
            .register_files_update(slot, &[socket.as_raw_fd()])
            .map_err(|source| UringError::Install { slot, source })?;
        // The table holds its own reference to the socket; our fd goes now.
        drop(socket);
        Ok(())
    }

    /// Connects the socket in `slot` to `peer`. The completion's result is 0 or a negated
    /// errno. `token` must be an [`OpKind::Connect`] token of `slot`.
    pub fn connect(&mut self, slot: u32, peer: SocketAddr, token: Token) -> Result<(), UringError> {
        expect_token(token, OpKind::Connect, Some(slot))?;
        let state = self.idle_client_slot(
            slot,
            |state| state.connect_in_flight,
            "a connect is already in flight",
        )?;
        let (storage, len) = socket_address(peer);
        state.peer = storage;
        let entry = opcode::Connect::new(
            Fixed(slot),
            (&state.peer as *const libc::sockaddr_storage).cast(),
            len,
        )
        .build()
        .user_data(token.user_data());
        state.connect_in_flight = true;
        // SAFETY: the address lives in the slot's entry of a boxed slice that never moves and
        // is not written while `connect_in_flight` is set (checked above), which only `reap`
        // clears, at the completion; `Drop` drains the ring or leaks the table.
        unsafe { self.push_claimed(slot, &entry, |state| state.connect_in_flight = false) }
    }

    /// One recv into the ring's provided buffers; the completion carries the bytes as a
    /// [`RecvBuf`](crate::RecvBuf) (`-ENOBUFS` when every buffer is lent out). `token` must be
    /// an [`OpKind::Recv`] token.
    pub fn recv_provided(&mut self, slot: u32, token: Token) -> Result<(), UringError> {
        expect_token(token, OpKind::Recv, None)?;
        let entry = opcode::Recv::new(Fixed(slot), std::ptr::null_mut(), 0)
            .buf_group(crate::ring::RECV_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(token.user_data());
        // SAFETY: the kernel writes only into provided buffers, which the ring's pool owns and
        // keeps mapped until every recv is reaped (see `Ring`'s `Drop`).
        unsafe { self.push(&entry) }
    }

    /// One recv of up to `max_len` bytes appended to the slot's receive buffer (which grows to
    /// make room). `token` must be an [`OpKind::RecvInto`] token of `slot`.
    pub fn recv_into(&mut self, slot: u32, max_len: usize, token: Token) -> Result<(), UringError> {
        expect_token(token, OpKind::RecvInto, Some(slot))?;
        let state = self.idle_client_slot(
            slot,
            |state| state.recv_in_flight,
            "a recv into its buffer is in flight",
        )?;
        // alloc: grows to the largest body a caller keeps once, then is reused.
        state.received.reserve(max_len);
        let spare = state.received.spare_capacity_mut();
        let len = u32::try_from(max_len.min(spare.len())).unwrap_or(u32::MAX);
        let entry = opcode::Recv::new(Fixed(slot), spare.as_mut_ptr().cast(), len)
            .build()
            .user_data(token.user_data());
        state.recv_in_flight = true;
        state.recv_requested = len;
        // SAFETY: the vector is neither touched nor reallocated while `recv_in_flight` is set
        // (`received_mut` refuses), which only `reap` clears, at the completion; `Drop` drains
        // the ring or leaks the table.
        unsafe { self.push_claimed(slot, &entry, |state| state.recv_in_flight = false) }
    }

    /// The slot's receive buffer, or `None` while a recv into it is in flight (or for a slot
    /// outside the table).
    pub fn received_mut(&mut self, slot: u32) -> Option<&mut Vec<u8>> {
        let files = self.report.files;
        let state = self.client.slot_mut(files, slot)?;
        (!state.recv_in_flight).then_some(&mut state.received)
    }

    /// Consumes up to `len` bytes (at most 1 MiB per op) with `MSG_TRUNC`, without copying
    /// them; the completion's result is how many went. Returns the byte count asked for.
    /// `token` must be an [`OpKind::RecvDiscard`] token.
    ///
    /// Never with `MSG_WAITALL`: io_uring retries a short recv while the iterator still has
    /// room, and under `MSG_TRUNC` TCP never advances the iterator, so the retry waits for the
    /// whole length again and hangs once the peer's last bytes are in (measured with
    /// corecast-bench: 10 of 1,000 viewers stuck per 40 s run on kernel 6.18).
    pub fn recv_discard(&mut self, slot: u32, len: u64, token: Token) -> Result<u32, UringError> {
        expect_token(token, OpKind::RecvDiscard, None)?;
        let len = len.min(DISCARD_BYTES as u64) as u32;
        let scratch = self
            .client
            .discard
            .get_or_insert_with(|| vec![0u8; DISCARD_BYTES].into_boxed_slice());
        let entry = opcode::Recv::new(Fixed(slot), scratch.as_mut_ptr(), len)
            .flags(libc::MSG_TRUNC)
            .build()
            .user_data(token.user_data());
        // SAFETY: the scratch is boxed, made once and kept until the ring is drained (or
        // leaked); nothing reads it, so concurrent recvs naming it (even if one wrote, as
        // MSG_TRUNC does on a datagram socket) break nothing.
        unsafe { self.push(&entry) }?;
        Ok(len)
    }
}

/// Each op takes a token of its own kind, and ops on per-slot memory a token of that slot:
/// `reap` releases memory by the token's kind and slot, so a mislabelled token would release
/// memory the kernel still uses.
pub(crate) fn expect_token(token: Token, op: OpKind, slot: Option<u32>) -> Result<(), UringError> {
    if token.op() != Some(op) {
        return Err(UringError::TokenMismatch {
            expected: op,
            token,
        });
    }
    match slot {
        Some(slot) if token.slot() != slot => Err(UringError::TokenMismatch {
            expected: op,
            token,
        }),
        _ => Ok(()),
    }
}
