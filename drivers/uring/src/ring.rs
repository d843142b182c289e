//! [`Ring`]: setup with fallback, the operations corecast uses, and completion reaping.

use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::types::{CancelBuilder, Fd, Fixed, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue};

use crate::bufring::{BufPool, RecvBuf};
use crate::client::{ClientTable, expect_token};
use crate::send::{SendState, SendTable};
use crate::{OpKind, Token, UringError, Waker};

/// The one provided-buffer group of a ring.
pub(crate) const RECV_GROUP: u16 = 0;
/// `IORING_SEND_ZC_REPORT_USAGE` (include/uapi/linux/io_uring.h).
const SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: the kernel copied the "zero-copy" send after all.
const NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;
const SEND_FLAGS: i32 = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;

/// Sizes of a ring and its tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingConfig {
    /// Submission queue entries (the kernel rounds up to a power of two).
    pub sq_entries: u32,
    /// Completion queue entries; larger than `sq_entries` because multishot ops post many.
    pub cq_entries: u32,
    /// Slots of the sparse registered file table (direct descriptors); at most `fd_limit()`.
    pub files: u32,
    /// Provided buffers for recv: a power of two, at most 32,768.
    pub recv_buffers: u16,
    pub recv_buffer_size: u32,
    /// Largest number of bytes one send op carries; a longer response takes several ops.
    pub max_send_bytes: usize,
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            sq_entries: 4096,
            cq_entries: 16384,
            files: 4096,
            recv_buffers: 4096,
            recv_buffer_size: 2048,
            max_send_bytes: 4 * 1024 * 1024,
        }
    }
}

/// How the ring was actually set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupReport {
    /// `SINGLE_ISSUER | DEFER_TASKRUN | SUBMIT_ALL` were accepted.
    pub defer_taskrun: bool,
    /// Why the preferred flags were refused, when they were.
    pub fallback_reason: Option<String>,
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub files: u32,
    /// The kernel knows `SENDMSG_ZC`.
    pub send_zc: bool,
}

/// Counts the ring keeps about its own sends; plain numbers, read on the ring's thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RingCounters {
    pub sends: u64,
    /// Sends that completed with fewer bytes than asked (despite `MSG_WAITALL`).
    pub short_sends: u64,
    pub zc_sends: u64,
    /// Zero-copy sends whose notification says the kernel copied anyway (always on loopback).
    pub zc_copied: u64,
}

/// One completion, decoded.
#[derive(Debug)]
pub struct Completion {
    pub token: Token,
    /// The op's result: bytes, a slot index (accept), or a negated errno.
    pub result: i32,
    /// The op stays armed and will post more completions (multishot).
    pub more: bool,
    /// The received bytes of a recv completion; dropping it gives the buffer back.
    pub buffer: Option<RecvBuf>,
    /// For a zero-copy send: whether the kernel copied after all.
    pub zc_copied: Option<bool>,
}

impl Completion {
    /// The errno of a failed op.
    pub fn error(&self) -> Option<i32> {
        (self.result < 0).then_some(-self.result)
    }
}

/// One io_uring instance and everything its operations point into. See the crate docs.
///
/// Not `Send`: it lives and dies on the thread that made it (`SINGLE_ISSUER`).
pub struct Ring {
    // Declared first so it is dropped first: the ring fd closes before any memory goes.
    pub(crate) uring: IoUring,
    sends: ManuallyDrop<SendTable>,
    pub(crate) client: ManuallyDrop<ClientTable>,
    pool: Rc<BufPool>,
    wake_buf: ManuallyDrop<Box<u64>>,
    wake_armed: bool,
    /// Ops pushed whose last completion has not been reaped yet.
    in_flight: usize,
    pub(crate) report: SetupReport,
    counters: RingCounters,
    max_send_bytes: usize,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("report", &self.report)
            .field("in_flight", &self.in_flight)
            .field("counters", &self.counters)
            .finish()
    }
}

fn build_uring(config: &RingConfig) -> Result<(IoUring, Option<String>), UringError> {
    let preferred = IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_submit_all()
        .setup_cqsize(config.cq_entries)
        .build(config.sq_entries);
    let refused = match preferred {
        Ok(uring) => return Ok((uring, None)),
        Err(e) => e,
    };
    match refused.raw_os_error() {
        Some(libc::ENOSYS) => {
            return Err(UringError::Unavailable {
                reason: "the kernel has no io_uring",
                source: refused,
            });
        }
        Some(libc::EPERM) | Some(libc::EACCES) => {
            return Err(UringError::Unavailable {
                reason: "refused by the kernel or a seccomp filter (see sysctl kernel.io_uring_disabled)",
                source: refused,
            });
        }
        _ => {}
    }
    let reason =
        format!("SINGLE_ISSUER|DEFER_TASKRUN|SUBMIT_ALL refused ({refused}); using plain setup");
    let uring = IoUring::builder()
        .setup_cqsize(config.cq_entries)
        .build(config.sq_entries)
        .map_err(|source| UringError::Setup {
            what: "io_uring_setup with plain flags",
            source,
        })?;
    Ok((uring, Some(reason)))
}

impl Ring {
    pub fn new(config: &RingConfig) -> Result<Ring, UringError> {
        let invalid = |what| UringError::Setup {
            what,
            source: io::Error::from_raw_os_error(libc::EINVAL),
        };
        if config.recv_buffers == 0
            || !config.recv_buffers.is_power_of_two()
            || config.recv_buffers > 32768
        {
            return Err(invalid("recv_buffers must be a power of two up to 32768"));
        }
        if config.files == 0 || config.recv_buffer_size == 0 || config.max_send_bytes == 0 {
            return Err(invalid(
                "files, recv_buffer_size and max_send_bytes must be > 0",
            ));
        }
        let (uring, fallback_reason) = build_uring(config)?;
        if !uring.params().is_feature_ext_arg() {
            return Err(UringError::Unsupported {
                what: "IORING_FEAT_EXT_ARG (wait with a timeout)",
                needs: "5.11",
            });
        }
        let mut probe = Probe::new();
        uring
            .submitter()
            .register_probe(&mut probe)
            .map_err(|_| UringError::Unsupported {
                what: "IORING_REGISTER_PROBE",
                needs: "5.6",
            })?;
        for (code, what) in [
            (opcode::AcceptMulti::CODE, "IORING_OP_ACCEPT"),
            (opcode::RecvMulti::CODE, "IORING_OP_RECV"),
            (opcode::SendMsg::CODE, "IORING_OP_SENDMSG"),
            (opcode::AsyncCancel2::CODE, "IORING_OP_ASYNC_CANCEL"),
            (opcode::Close::CODE, "IORING_OP_CLOSE"),
            (opcode::Read::CODE, "IORING_OP_READ"),
            (opcode::Connect::CODE, "IORING_OP_CONNECT"),
        ] {
            if !probe.is_supported(code) {
                return Err(UringError::Unsupported { what, needs: "6.0" });
            }
        }
        let send_zc = probe.is_supported(opcode::SendMsgZc::CODE);
        uring
            .submitter()
            .register_files_sparse(config.files)
            .map_err(|source| UringError::FileTable {
                requested: config.files,
                limit: crate::fd_limit(),
                source,
            })?;
        let pool =
            BufPool::new(config.recv_buffers, config.recv_buffer_size).map_err(|source| {
                UringError::Setup {
                    what: "mapping the recv buffer pool",
                    source,
                }
            })?;
        // SAFETY: the entry ring lives in `pool`, which the ring keeps (via `Rc`) at least until
        // its own drop has drained every recv op, and leaks rather than frees otherwise.
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                pool.ring_addr(),
                pool.count(),
                RECV_GROUP,
                0,
            )
        }
        .map_err(|source| UringError::Setup {
            what: "registering the provided buffer ring (needs Linux 5.19)",
            source,
        })?;
        let report = SetupReport {
            defer_taskrun: fallback_reason.is_none(),
            fallback_reason,
            sq_entries: uring.params().sq_entries(),
            cq_entries: uring.params().cq_entries(),
            files: config.files,
            send_zc,
        };
        Ok(Ring {
            uring,
            sends: ManuallyDrop::new(SendTable::new(config.files)),
            client: ManuallyDrop::new(ClientTable::default()),
            pool: Rc::new(pool),
            wake_buf: ManuallyDrop::new(Box::new(0)),
            wake_armed: false,
            in_flight: 0,
            report,
            counters: RingCounters::default(),
            max_send_bytes: config.max_send_bytes,
        })
    }

    pub fn report(&self) -> &SetupReport {
        &self.report
    }

    pub fn counters(&self) -> RingCounters {
        self.counters
    }

    /// Ops pushed whose last completion has not been reaped.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues an entry, submitting first if the queue is full.
    ///
    /// # Safety
    /// Every buffer, iovec or msghdr the entry points to must stay valid and unchanged until
    /// the op's last completion has been reaped.
    pub(crate) unsafe fn push(&mut self, entry: &squeue::Entry) -> Result<(), UringError> {
        // SAFETY: forwarded from this function's contract.
        if unsafe { self.uring.submission().push(entry) }.is_err() {
            self.submit()?;
            // SAFETY: as above.
            unsafe { self.uring.submission().push(entry) }.map_err(|_| UringError::QueueFull)?;
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Hands queued entries to the kernel without waiting.
    pub fn submit(&mut self) -> Result<(), UringError> {
        match self.uring.submit() {
            Ok(_) => Ok(()),
            Err(e) if is_transient(&e) => Ok(()),
            Err(source) => Err(UringError::Enter { source }),
        }
    }

    /// Submits queued entries and waits until at least one completion is ready or `timeout`
    /// passes (no error on timeout).
    pub fn wait(&mut self, timeout: Duration) -> Result<(), UringError> {
        let ts = Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = SubmitArgs::new().timespec(&ts);
        match self.uring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e) if is_transient(&e) || e.raw_os_error() == Some(libc::ETIME) => Ok(()),
            Err(source) => Err(UringError::Enter { source }),
        }
    }

    /// Arms multishot accept on `listener`: each connection lands in a free slot of the file
    /// table; the completion's result is the slot, or `-ENFILE` when the table is full (the
    /// kernel then closes that connection). Re-arm when a completion has `more == false`.
    pub fn accept_multishot(&mut self, listener: RawFd, token: Token) -> Result<(), UringError> {
        expect_token(token, OpKind::Accept, None)?;
        let entry = opcode::AcceptMulti::new(Fd(listener))
            .allocate_file_index(true)
            .build()
            .user_data(token.user_data());
        // SAFETY: multishot accept names no user memory (it has no sockaddr out-pointer).
        unsafe { self.push(&entry) }
    }

    /// Arms multishot recv on a direct descriptor, into the ring's provided buffers.
    pub fn recv_multishot(&mut self, slot: u32, token: Token) -> Result<(), UringError> {
        expect_token(token, OpKind::Recv, None)?;
        let entry = opcode::RecvMulti::new(Fixed(slot), RECV_GROUP)
            .build()
            .user_data(token.user_data());
        // SAFETY: the kernel writes only into provided buffers, which `self.pool` owns and
        // keeps mapped until this ring has reaped every recv (see `Drop`).
        unsafe { self.push(&entry) }
    }

    /// The slot's head buffer, to write a response head into; `None` while its send is in
    /// flight or for a slot outside the table. Bytes already there and not yet sent stay.
    pub fn send_head(&mut self, slot: u32) -> Option<&mut Vec<u8>> {
        let state = self.sends.states.get_mut(slot as usize)?;
        (!state.in_flight).then_some(&mut state.head)
    }

    /// Sets the body sent after the head (a view of the store's bytes: no copy).
    pub fn set_send_body(&mut self, slot: u32, body: Bytes) -> Result<(), UringError> {
        self.idle_send_state(slot, "body set while a send is in flight")?
            .set_body(body);
        Ok(())
    }

    /// The send state of a slot with no send in flight; `busy` says what was refused if one is.
    fn idle_send_state(
        &mut self,
        slot: u32,
        busy: &'static str,
    ) -> Result<&mut SendState, UringError> {
        let state = self
            .sends
            .states
            .get_mut(slot as usize)
            .ok_or(UringError::SlotMisuse {
                slot,
                what: "outside the file table",
            })?;
        if state.in_flight {
            return Err(UringError::SlotMisuse { slot, what: busy });
        }
        Ok(state)
    }

    /// Bytes of head and body not sent yet.
    pub fn send_pending(&self, slot: u32) -> usize {
        self.sends
            .states
            .get(slot as usize)
            .map_or(0, |state| state.pending())
    }

    pub fn send_in_flight(&self, slot: u32) -> bool {
        self.sends
            .states
            .get(slot as usize)
            .is_some_and(|state| state.in_flight)
    }

    /// Forgets what a slot had left to send (the connection is closing). Returns false, and
    /// does nothing, while its send is in flight.
    pub fn discard_send(&mut self, slot: u32) -> bool {
        match self.sends.states.get_mut(slot as usize) {
            Some(state) if !state.in_flight => {
                state.reset();
                true
            }
            _ => false,
        }
    }

    /// Sends what the slot has pending (up to `max_send_bytes`) with one `SENDMSG`, or
    /// `SENDMSG_ZC` when `zero_copy` (the completion then arrives with the notification, once
    /// the kernel has let go of the pages). Returns the bytes asked for.
    pub fn send(&mut self, slot: u32, token: Token, zero_copy: bool) -> Result<usize, UringError> {
        expect_token(token, OpKind::Send, Some(slot))?;
        let max_send_bytes = self.max_send_bytes;
        let zero_copy = zero_copy && self.report.send_zc;
        let state = self.idle_send_state(slot, "a send is already in flight")?;
        let bytes = state.prepare(max_send_bytes);
        if bytes == 0 {
            return Err(UringError::SlotMisuse {
                slot,
                what: "nothing to send",
            });
        }
        let entry = if zero_copy {
            opcode::SendMsgZc::new(Fixed(slot), &state.msg)
                .flags(SEND_FLAGS as u32)
                .ioprio(SEND_ZC_REPORT_USAGE)
                .build()
        } else {
            opcode::SendMsg::new(Fixed(slot), &state.msg)
                .flags(SEND_FLAGS as u32)
                .build()
        }
        .user_data(token.user_data());
        state.in_flight = true;
        state.zero_copy = zero_copy;
        state.requested = u32::try_from(bytes).unwrap_or(u32::MAX);
        state.zc_result = 0;
        // SAFETY: the msghdr, its iovecs and the head and body bytes they point to live in
        // `self.sends` (a boxed slice that never moves) and stay unchanged while `in_flight`
        // is set: every mutator above checks it, `reap` clears it only at the op's last CQE,
        // and `Drop` drains the ring or leaks the table.
        let pushed = unsafe { self.push(&entry) };
        if let Err(e) = pushed {
            if let Some(state) = self.sends.states.get_mut(slot as usize) {
                state.in_flight = false;
            }
            return Err(e);
        }
        self.counters.sends += 1;
        if zero_copy {
            self.counters.zc_sends += 1;
        }
        Ok(bytes)
    }

    /// Cancels every op on a direct descriptor (its recv and send complete with `-ECANCELED`
    /// or their result); the memory stays owned until those completions are reaped.
    pub fn cancel_slot(&mut self, slot: u32, token: Token) -> Result<(), UringError> {
        expect_token(token, OpKind::Cancel, None)?;
        let entry = opcode::AsyncCancel2::new(CancelBuilder::fd(Fixed(slot)).all())
            .build()
            .user_data(token.user_data());
        // SAFETY: a cancel names no user memory.
        unsafe { self.push(&entry) }
    }

    /// Cancels every op whose `user_data` is `target` (e.g. a multishot accept).
    pub fn cancel_op(&mut self, target: Token, token: Token) -> Result<(), UringError> {
        expect_token(token, OpKind::Cancel, None)?;
        let entry = opcode::AsyncCancel2::new(CancelBuilder::user_data(target.user_data()).all())
            .build()
            .user_data(token.user_data());
        // SAFETY: a cancel names no user memory.
        unsafe { self.push(&entry) }
    }

    /// Closes a direct descriptor, freeing its slot for the next accept. Refused while the
    /// slot's send, connect or recv into its buffer is in flight (the next connection in that
    /// slot would find it busy).
    pub fn close_slot(&mut self, slot: u32, token: Token) -> Result<(), UringError> {
        expect_token(token, OpKind::Close, None)?;
        if self.send_in_flight(slot) {
            return Err(UringError::SlotMisuse {
                slot,
                what: "close while a send is in flight",
            });
        }
        if self.client.slot_busy(slot) {
            return Err(UringError::SlotMisuse {
                slot,
                what: "close while a connect or recv into its buffer is in flight",
            });
        }
        let entry = opcode::Close::new(Fixed(slot))
            .build()
            .user_data(token.user_data());
        // SAFETY: a close names no user memory.
        unsafe { self.push(&entry) }
    }

    /// Arms a read of the waker's eventfd (once; no-op while armed). Its completion is the
    /// wake-up; arm again after handling it.
    pub fn arm_wake(&mut self, waker: &Waker, token: Token) -> Result<(), UringError> {
        expect_token(token, OpKind::Wake, None)?;
        if self.wake_armed {
            return Ok(());
        }
        let buf: *mut u64 = &mut **self.wake_buf;
        let entry = opcode::Read::new(Fd(waker.raw_fd()), buf.cast(), 8)
            .build()
            .user_data(token.user_data());
        // SAFETY: `wake_buf` is boxed (its address is stable), nothing else touches it while
        // `wake_armed` is set, and `Drop` drains the ring or leaks the box.
        unsafe { self.push(&entry) }?;
        self.wake_armed = true;
        Ok(())
    }

    /// Moves every ready completion into `out` (appending). Send bookkeeping happens here: a
    /// send's slot is released at its last CQE, and a zero-copy send reports once, at its
    /// notification.
    pub fn reap(&mut self, out: &mut Vec<Completion>) {
        let sends = &mut self.sends.states;
        let pool = &self.pool;
        for cqe in self.uring.completion() {
            let token = Token::from_user_data(cqe.user_data());
            let flags = cqe.flags();
            let more = cqueue::more(flags);
            let mut result = cqe.result();
            if !more {
                self.in_flight = self.in_flight.saturating_sub(1);
            }
            let mut zc_copied = None;
            let mut buffer = None;
            match token.op() {
                Some(OpKind::Send) => {
                    let Some(state) = sends.get_mut(token.slot() as usize) else {
                        continue;
                    };
                    if state.zero_copy {
                        if cqueue::notif(flags) {
                            zc_copied = Some(result as u32 & NOTIF_USAGE_ZC_COPIED != 0);
                            if zc_copied == Some(true) {
                                self.counters.zc_copied += 1;
                            }
                            result = state.zc_result;
                        } else if more {
                            // The notification follows; report then.
                            state.zc_result = result;
                            continue;
                        }
                    }
                    state.in_flight = false;
                    if result >= 0 {
                        if (result as u32) < state.requested {
                            self.counters.short_sends += 1;
                        }
                        state.advance(result as usize);
                    } else {
                        state.reset();
                    }
                }
                Some(OpKind::Recv) => {
                    if let Some(bid) = cqueue::buffer_select(flags) {
                        buffer = RecvBuf::new(pool, bid, result.max(0) as u32);
                    }
                }
                Some(OpKind::Wake) => self.wake_armed = false,
                Some(OpKind::Connect) | Some(OpKind::RecvInto) => {
                    self.client.complete(token, result);
                }
                Some(OpKind::Drain) => continue,
                _ => {}
            }
            out.push(Completion {
                token,
                result,
                more,
                buffer,
                zc_copied,
            });
        }
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
    )
}

impl Drop for Ring {
    fn drop(&mut self) {
        if self.in_flight > 0 {
            let entry = opcode::AsyncCancel2::new(CancelBuilder::any())
                .build()
                .user_data(Token::new(OpKind::Drain, 0, 0).user_data());
            // SAFETY: a cancel names no user memory.
            let _ = unsafe { self.push(&entry) };
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut scratch = Vec::new();
            while self.in_flight > 0 && Instant::now() < deadline {
                if self.wait(Duration::from_millis(10)).is_err() {
                    break;
                }
                self.reap(&mut scratch);
                scratch.clear();
            }
        }
        if self.in_flight > 0 {
            // The kernel may still use this memory: leak it rather than free it under it.
            std::mem::forget(self.pool.clone());
            return;
        }
        // SAFETY: no op is in flight, so the kernel holds no pointer into these; neither field
        // is used again (this is drop).
        unsafe {
            ManuallyDrop::drop(&mut self.sends);
            ManuallyDrop::drop(&mut self.client);
            ManuallyDrop::drop(&mut self.wake_buf);
        }
    }
}

/// Sets up a small ring to find out whether io_uring works here, and how.
pub fn probe() -> Result<SetupReport, UringError> {
    let ring = Ring::new(&RingConfig {
        sq_entries: 8,
        cq_entries: 16,
        files: 8,
        recv_buffers: 8,
        recv_buffer_size: 64,
        max_send_bytes: 64,
    })?;
    Ok(ring.report().clone())
}
