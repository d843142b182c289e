//! The client side of io_uring that the load generator needs and `corecast-uring` (a server
//! reactor) does not offer: outgoing connections as direct descriptors, one-shot recv from a
//! provided buffer ring (for response heads), recv with `MSG_TRUNC` (the kernel discards TCP
//! payload without copying it to user space: tcp_recvmsg skips the copy under MSG_TRUNC), recv
//! appended to a per-slot buffer, and plain sends of shared request bytes.
//!
//! Sockets are made with socket(2) and bind(2) (so each can take its own source address),
//! installed in the ring's sparse file table, and their fd closed at once: a connection then
//! costs no process fd, and one ring holds up to `RLIMIT_NOFILE` of them.
//!
//! Ownership rule (as in `corecast-uring`): memory an in-flight op names belongs to the kernel
//! until its completion is reaped. Here that memory is the request bytes (an `Rc` kept in the
//! slot until the send completes), the per-slot receive buffer (not touched while its recv is
//! in flight), the scratch buffer and the provided buffers (owned by the ring and leaked if
//! a drop cannot drain the ring).

use std::io;
use std::mem::ManuallyDrop;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Fixed, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};

use crate::BenchError;

const HEAD_GROUP: u16 = 7;
/// The `MSG_TRUNC` scratch: the kernel checks the range but writes nothing into it.
const SCRATCH_BYTES: usize = 1 << 20;

/// What a completion was for (the low byte of `user_data`; the slot is above it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Connect = 1,
    Send = 2,
    RecvHead = 3,
    RecvAppend = 4,
    RecvDiscard = 5,
    Cancel = 6,
    Close = 7,
    Drain = 8,
}

impl Op {
    fn from_byte(b: u8) -> Option<Op> {
        Some(match b {
            1 => Op::Connect,
            2 => Op::Send,
            3 => Op::RecvHead,
            4 => Op::RecvAppend,
            5 => Op::RecvDiscard,
            6 => Op::Cancel,
            7 => Op::Close,
            8 => Op::Drain,
            _ => return None,
        })
    }
}

fn user_data(slot: u32, op: Op) -> u64 {
    (u64::from(slot) << 8) | op as u64
}

/// One decoded completion.
#[derive(Debug)]
pub struct Completion {
    pub slot: u32,
    pub op: Op,
    pub result: i32,
    /// For `RecvHead`: the provided buffer holding the bytes (give it back with `recycle`).
    pub buffer: Option<u16>,
}

/// Provided buffers for response heads (io_uring_register_buf_ring(3)).
struct HeadBuffers {
    entries: *mut u8,
    entries_len: usize,
    data: *mut u8,
    data_len: usize,
    count: u16,
    size: u32,
    tail: u16,
}

fn map_anonymous(len: usize) -> io::Result<*mut u8> {
    // SAFETY: anonymous private mapping with no fd; the result is checked against MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(p.cast())
    }
}

impl HeadBuffers {
    fn new(count: u16, size: u32) -> io::Result<HeadBuffers> {
        let entries_len = usize::from(count) * 16;
        let data_len = usize::from(count) * size as usize;
        let entries = map_anonymous(entries_len)?;
        let data = map_anonymous(data_len)?;
        let mut buffers = HeadBuffers {
            entries,
            entries_len,
            data,
            data_len,
            count,
            size,
            tail: 0,
        };
        for bid in 0..count {
            buffers.write_entry(bid);
        }
        buffers.publish();
        Ok(buffers)
    }

    /// Writes `struct io_uring_buf { u64 addr; u32 len; u16 bid; u16 resv; }` at the tail.
    fn write_entry(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: `index < count`, so the 16-byte entry lies inside `entries`; `bid < count`,
        // so the address lies inside `data`. Entry 0's `resv` (the kernel-read tail) is not
        // written here, and an entry past the published tail is not read by the kernel.
        unsafe {
            let entry = self.entries.add(index * 16);
            let addr = self.data.add(usize::from(bid) * self.size as usize) as u64;
            entry.cast::<u64>().write(addr);
            entry.add(8).cast::<u32>().write(self.size);
            entry.add(12).cast::<u16>().write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: entry 0's `resv` is an aligned u16 inside the mapping (offset 14); the
        // kernel reads it with an acquire load and we only write it through this atomic.
        let tail = unsafe { AtomicU16::from_ptr(self.entries.add(14).cast::<u16>()) };
        tail.store(self.tail, Ordering::Release);
    }

    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        if bid >= self.count {
            return &[];
        }
        let len = len.min(self.size as usize);
        // SAFETY: `bid < count`, `len <= size`: inside `data`; the kernel finished writing
        // this buffer before posting the completion that named it, and does not reuse it
        // until `recycle` puts it back.
        unsafe {
            std::slice::from_raw_parts(self.data.add(usize::from(bid) * self.size as usize), len)
        }
    }
}

impl Drop for HeadBuffers {
    fn drop(&mut self) {
        // SAFETY: mappings made in `new` with these lengths; the ring that used them has been
        // drained (or this value was leaked instead of dropped).
        unsafe {
            libc::munmap(self.entries.cast(), self.entries_len);
            libc::munmap(self.data.cast(), self.data_len);
        }
    }
}

/// Per-slot memory that in-flight ops point into.
#[derive(Default)]
struct SlotMemory {
    request: Option<Rc<[u8]>>,
    /// Bytes received by `recv_append` (heads split over recvs, playlists, sampled bodies).
    received: Vec<u8>,
    append_in_flight: bool,
}

/// One client ring: a sparse table of `slots` direct descriptors.
pub struct ClientRing {
    uring: IoUring,
    heads: ManuallyDrop<HeadBuffers>,
    scratch: ManuallyDrop<Box<[u8]>>,
    target: ManuallyDrop<Box<libc::sockaddr_in>>,
    slots: ManuallyDrop<Vec<SlotMemory>>,
    in_flight: usize,
    cqes: Vec<Completion>,
}

impl std::fmt::Debug for ClientRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRing")
            .field("slots", &self.slots.len())
            .field("in_flight", &self.in_flight)
            .finish()
    }
}

fn setup_error(what: &'static str) -> impl FnOnce(io::Error) -> BenchError {
    move |source| BenchError::Ring { what, source }
}

impl ClientRing {
    pub fn new(slots: u32, head_buffers: u16, target: SocketAddrV4) -> Result<Self, BenchError> {
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize((slots * 4).clamp(4096, 1 << 17))
            .build(4096)
            .or_else(|_| IoUring::builder().build(4096))
            .map_err(setup_error("io_uring_setup"))?;
        uring
            .submitter()
            .register_files_sparse(slots)
            .map_err(setup_error(
                "registering the direct-descriptor table (capped at RLIMIT_NOFILE per ring)",
            ))?;
        let heads = HeadBuffers::new(head_buffers, 2048).map_err(setup_error("mmap"))?;
        // SAFETY: the entry ring stays mapped until the ring is drained at drop (or leaked).
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                heads.entries as u64,
                heads.count,
                HEAD_GROUP,
                0,
            )
        }
        .map_err(setup_error("registering the provided buffer ring"))?;
        let sockaddr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: target.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*target.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        Ok(ClientRing {
            uring,
            heads: ManuallyDrop::new(heads),
            scratch: ManuallyDrop::new(vec![0u8; SCRATCH_BYTES].into_boxed_slice()),
            target: ManuallyDrop::new(Box::new(sockaddr)),
            slots: ManuallyDrop::new((0..slots).map(|_| SlotMemory::default()).collect()),
            in_flight: 0,
            cqes: Vec::with_capacity(4096),
        })
    }

    /// Opens a TCP socket bound to `source` (port chosen at connect, so many connections can
    /// share one source address) and installs it in `slot`. Costs an fd only for a moment.
    pub fn open_socket(&mut self, slot: u32, source: Option<Ipv4Addr>) -> io::Result<()> {
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let result = self.install(fd, slot, source);
        // SAFETY: `fd` is ours; the table keeps its own reference to the socket.
        unsafe { libc::close(fd) };
        result
    }

    fn install(&mut self, fd: RawFd, slot: u32, source: Option<Ipv4Addr>) -> io::Result<()> {
        set_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY)?;
        if let Some(ip) = source {
            set_option(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT)?;
            let addr = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: 0,
                sin_addr: libc::in_addr {
                    s_addr: u32::from(ip).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `addr` is an initialised sockaddr_in of the length passed.
            let rc = unsafe {
                libc::bind(
                    fd,
                    (&addr as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        self.uring.submitter().register_files_update(slot, &[fd])?;
        Ok(())
    }

    /// # Safety
    /// Every pointer in `entry` must stay valid until the op's completion is reaped.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> Result<(), BenchError> {
        // SAFETY: forwarded from this function's contract.
        if unsafe { self.uring.submission().push(entry) }.is_err() {
            self.submit()?;
            // SAFETY: as above.
            unsafe { self.uring.submission().push(entry) }.map_err(|_| BenchError::QueueFull)?;
        }
        self.in_flight += 1;
        Ok(())
    }

    pub fn connect(&mut self, slot: u32) -> Result<(), BenchError> {
        let addr: *const libc::sockaddr_in = &**self.target;
        let entry = opcode::Connect::new(
            Fixed(slot),
            addr.cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
        .build()
        .user_data(user_data(slot, Op::Connect));
        // SAFETY: `target` is boxed (stable address) and lives until the ring is drained.
        unsafe { self.push(&entry) }
    }

    /// Sends `request` whole (`MSG_WAITALL`); the slot keeps the bytes until the completion.
    pub fn send(&mut self, slot: u32, request: Rc<[u8]>) -> Result<(), BenchError> {
        let memory = self
            .slots
            .get_mut(slot as usize)
            .ok_or(BenchError::Slot(slot))?;
        let entry = opcode::Send::new(Fixed(slot), request.as_ptr(), request.len() as u32)
            .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL)
            .build()
            .user_data(user_data(slot, Op::Send));
        memory.request = Some(request);
        // SAFETY: the bytes are kept alive by the `Rc` stored in the slot until the send's
        // completion is reaped (see `reap`); an `Rc<[u8]>` never moves its contents.
        unsafe { self.push(&entry) }
    }

    /// Receives the start of a response into a provided buffer.
    pub fn recv_head(&mut self, slot: u32) -> Result<(), BenchError> {
        let entry = opcode::Recv::new(Fixed(slot), ptr::null_mut(), 0)
            .buf_group(HEAD_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(user_data(slot, Op::RecvHead));
        // SAFETY: the kernel writes only into provided buffers, mapped until drained.
        unsafe { self.push(&entry) }
    }

    /// Consumes up to `len` bytes without copying them (`MSG_TRUNC` on TCP); the result is
    /// how many were consumed.
    ///
    /// Not with `MSG_WAITALL`: io_uring retries a short recv while the iterator still has
    /// room, and under `MSG_TRUNC` TCP never advances the iterator, so the retry waits for
    /// the whole length again and hangs once the response's last bytes are in (measured:
    /// 10 of 1,000 viewers stuck per 40 s run on kernel 6.18).
    pub fn recv_discard(&mut self, slot: u32, len: u64) -> Result<(), BenchError> {
        let len = len.min(SCRATCH_BYTES as u64) as u32;
        let entry = opcode::Recv::new(Fixed(slot), self.scratch.as_mut_ptr(), len)
            .flags(libc::MSG_TRUNC)
            .build()
            .user_data(user_data(slot, Op::RecvDiscard));
        // SAFETY: `scratch` is boxed and lives until the ring is drained; nothing reads it,
        // so concurrent recvs naming it (even if they wrote) cannot break anything we rely on.
        unsafe { self.push(&entry) }
    }

    /// Receives up to `len` more bytes at the end of the slot's receive buffer.
    pub fn recv_append(&mut self, slot: u32, len: usize) -> Result<(), BenchError> {
        let memory = self
            .slots
            .get_mut(slot as usize)
            .ok_or(BenchError::Slot(slot))?;
        if memory.append_in_flight {
            return Err(BenchError::Slot(slot));
        }
        // alloc: grows to the largest playlist or sampled body once, then is reused.
        memory.received.reserve(len);
        let spare = memory.received.spare_capacity_mut();
        let len = len.min(spare.len()) as u32;
        let entry = opcode::Recv::new(Fixed(slot), spare.as_mut_ptr().cast(), len)
            .build()
            .user_data(user_data(slot, Op::RecvAppend));
        memory.append_in_flight = true;
        // SAFETY: the vector is neither touched nor reallocated while `append_in_flight` is
        // set (`received_mut` refuses), which `reap` clears at the completion.
        unsafe { self.push(&entry) }
    }

    /// The slot's receive buffer, or `None` while a recv into it is in flight.
    pub fn received_mut(&mut self, slot: u32) -> Option<&mut Vec<u8>> {
        let memory = self.slots.get_mut(slot as usize)?;
        (!memory.append_in_flight).then_some(&mut memory.received)
    }

    /// Bytes of a provided buffer named by a `RecvHead` completion.
    pub fn head_bytes(&self, bid: u16, len: usize) -> &[u8] {
        self.heads.bytes(bid, len)
    }

    /// Gives a provided buffer back to the kernel.
    pub fn recycle(&mut self, bid: u16) {
        if bid < self.heads.count {
            self.heads.write_entry(bid);
            self.heads.publish();
        }
    }

    pub fn cancel_slot(&mut self, slot: u32) -> Result<(), BenchError> {
        let entry = opcode::AsyncCancel2::new(CancelBuilder::fd(Fixed(slot)).all())
            .build()
            .user_data(user_data(slot, Op::Cancel));
        // SAFETY: a cancel names no memory.
        unsafe { self.push(&entry) }
    }

    pub fn close_slot(&mut self, slot: u32) -> Result<(), BenchError> {
        let entry = opcode::Close::new(Fixed(slot))
            .build()
            .user_data(user_data(slot, Op::Close));
        // SAFETY: a close names no memory.
        unsafe { self.push(&entry) }
    }

    pub fn submit(&mut self) -> Result<(), BenchError> {
        match self.uring.submit() {
            Ok(_) => Ok(()),
            Err(e) if transient(&e) => Ok(()),
            Err(source) => Err(BenchError::Ring {
                what: "io_uring_enter",
                source,
            }),
        }
    }

    /// Submits and waits for a completion or `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<(), BenchError> {
        let ts = Timespec::new()
            .sec(timeout.as_secs())
            .nsec(timeout.subsec_nanos());
        let args = SubmitArgs::new().timespec(&ts);
        match self.uring.submitter().submit_with_args(1, &args) {
            Ok(_) => Ok(()),
            Err(e) if transient(&e) || e.raw_os_error() == Some(libc::ETIME) => Ok(()),
            Err(source) => Err(BenchError::Ring {
                what: "io_uring_enter",
                source,
            }),
        }
    }

    /// Takes every ready completion (the returned vector is reused: give it back with
    /// `restore`). Per-slot memory is released here, at the op's completion.
    pub fn reap(&mut self) -> Vec<Completion> {
        let mut out = std::mem::take(&mut self.cqes);
        for cqe in self.uring.completion() {
            let data = cqe.user_data();
            let Some(op) = Op::from_byte(data as u8) else {
                continue;
            };
            self.in_flight = self.in_flight.saturating_sub(1);
            let slot = (data >> 8) as u32;
            let result = cqe.result();
            let mut buffer = None;
            match op {
                Op::Send => {
                    if let Some(memory) = self.slots.get_mut(slot as usize) {
                        memory.request = None;
                    }
                }
                Op::RecvAppend => {
                    if let Some(memory) = self.slots.get_mut(slot as usize) {
                        memory.append_in_flight = false;
                        if result > 0 {
                            let len = memory.received.len() + result as usize;
                            // SAFETY: the kernel initialised `result` bytes of the spare
                            // capacity this recv was given (result <= the length asked).
                            unsafe { memory.received.set_len(len) };
                        }
                    }
                }
                Op::RecvHead => buffer = cqueue::buffer_select(cqe.flags()),
                Op::Drain => continue,
                _ => {}
            }
            out.push(Completion {
                slot,
                op,
                result,
                buffer,
            });
        }
        out
    }

    pub fn restore(&mut self, mut cqes: Vec<Completion>) {
        cqes.clear();
        self.cqes = cqes;
    }
}

fn set_option(fd: RawFd, level: i32, name: i32) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: `one` is a c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::EBUSY)
    )
}

impl Drop for ClientRing {
    fn drop(&mut self) {
        if self.in_flight > 0 {
            let entry = opcode::AsyncCancel2::new(CancelBuilder::any())
                .build()
                .user_data(Op::Drain as u64);
            // SAFETY: a cancel names no memory.
            let _ = unsafe { self.push(&entry) };
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.in_flight > 0 && Instant::now() < deadline {
                if self.wait(Duration::from_millis(10)).is_err() {
                    break;
                }
                let cqes = self.reap();
                for c in &cqes {
                    if let Some(bid) = c.buffer {
                        self.recycle(bid);
                    }
                }
                self.restore(cqes);
            }
        }
        if self.in_flight > 0 {
            // The kernel may still point into this memory: leak it rather than free it.
            return;
        }
        // SAFETY: nothing is in flight, so the kernel holds no pointer into these fields, and
        // none is used again (this is drop).
        unsafe {
            ManuallyDrop::drop(&mut self.heads);
            ManuallyDrop::drop(&mut self.scratch);
            ManuallyDrop::drop(&mut self.target);
            ManuallyDrop::drop(&mut self.slots);
        }
    }
}
