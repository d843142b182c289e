//! The provided buffer ring behind multishot recv (io_uring_register_buf_ring(3)).
//!
//! Two anonymous mappings: the ring of `{addr, len, bid}` entries the kernel consumes, and the
//! buffers themselves (`count × size` bytes, touched lazily). The kernel picks a buffer per recv
//! completion and names it by id in the CQE; from then until we put it back at the tail, the
//! buffer is ours. [`RecvBuf`] is that loan: it derefs to the received bytes and puts the buffer
//! back when dropped, so a buffer can not be forgotten (which would starve the ring into ENOBUFS).

use std::cell::Cell;
use std::io;
use std::ops::Deref;
use std::ptr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU16, Ordering};

/// Mirrors `struct io_uring_buf`. Entry 0's `resv` field is the ring's tail.
#[repr(C)]
struct RawBuf {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

pub(crate) struct BufPool {
    entries: *mut RawBuf,
    entries_len: usize,
    data: *mut u8,
    data_len: usize,
    count: u16,
    size: u32,
    tail: Cell<u16>,
}

impl std::fmt::Debug for BufPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufPool")
            .field("count", &self.count)
            .field("size", &self.size)
            .finish()
    }
}

fn map_anonymous(len: usize) -> io::Result<*mut u8> {
    // SAFETY: anonymous private mapping, no fd; the result is checked against MAP_FAILED.
    let ptr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(ptr.cast())
    }
}

impl BufPool {
    /// `count` must be a power of two (checked by the caller).
    pub(crate) fn new(count: u16, size: u32) -> io::Result<BufPool> {
        let entries_len = usize::from(count) * std::mem::size_of::<RawBuf>();
        let data_len = usize::from(count) * size as usize;
        let entries = map_anonymous(entries_len)?.cast::<RawBuf>();
        let data = match map_anonymous(data_len) {
            Ok(data) => data,
            Err(e) => {
                // SAFETY: unmapping the mapping made just above, not yet shared with anyone.
                unsafe { libc::munmap(entries.cast(), entries_len) };
                return Err(e);
            }
        };
        let pool = BufPool {
            entries,
            entries_len,
            data,
            data_len,
            count,
            size,
            tail: Cell::new(0),
        };
        for bid in 0..count {
            pool.write_entry(bid);
        }
        pool.publish_tail();
        Ok(pool)
    }

    pub(crate) fn ring_addr(&self) -> u64 {
        self.entries as u64
    }

    pub(crate) fn count(&self) -> u16 {
        self.count
    }

    /// Writes buffer `bid` at the local tail without publishing it to the kernel.
    fn write_entry(&self, bid: u16) {
        let tail = self.tail.get();
        let index = usize::from(tail & (self.count - 1));
        // SAFETY: `index < count`, so the entry lies inside the `entries` mapping, and `bid <
        // count`, so the address lies inside `data`. Raw field writes (no reference) leave
        // entry 0's `resv` (the tail the kernel reads) untouched. The entry at the tail is not
        // visible to the kernel until the tail is published.
        unsafe {
            let entry = self.entries.add(index);
            ptr::addr_of_mut!((*entry).addr)
                .write(self.data.add(usize::from(bid) * self.size as usize) as u64);
            ptr::addr_of_mut!((*entry).len).write(self.size);
            ptr::addr_of_mut!((*entry).bid).write(bid);
        }
        self.tail.set(tail.wrapping_add(1));
    }

    fn publish_tail(&self) {
        // SAFETY: entry 0's `resv` is a naturally aligned u16 inside the mapping; the kernel
        // reads it with an acquire load, we write it only through this atomic.
        let tail = unsafe { AtomicU16::from_ptr(ptr::addr_of_mut!((*self.entries).resv)) };
        tail.store(self.tail.get(), Ordering::Release);
    }

    fn recycle(&self, bid: u16) {
        self.write_entry(bid);
        self.publish_tail();
    }
}

impl Drop for BufPool {
    fn drop(&mut self) {
        // SAFETY: both mappings were made in `new` with these lengths, and the last owner is
        // going away: the ring that registered them is gone or drained of recv ops (see
        // `Ring::drop`), so the kernel no longer reads or writes them.
        unsafe {
            libc::munmap(self.entries.cast(), self.entries_len);
            libc::munmap(self.data.cast(), self.data_len);
        }
    }
}

/// Bytes the kernel received into a provided buffer. Dropping it gives the buffer back to the
/// kernel. Holding many for long starves multishot recv (it ends with ENOBUFS).
pub struct RecvBuf {
    pool: Rc<BufPool>,
    bid: u16,
    len: u32,
}

impl RecvBuf {
    /// `None` if the kernel named a buffer id or length outside the pool.
    pub(crate) fn new(pool: &Rc<BufPool>, bid: u16, len: u32) -> Option<RecvBuf> {
        if bid >= pool.count || len > pool.size {
            return None;
        }
        Some(RecvBuf {
            pool: pool.clone(),
            bid,
            len,
        })
    }

    pub fn buffer_id(&self) -> u16 {
        self.bid
    }
}

impl Deref for RecvBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        // SAFETY: `bid < count` and `len <= size` (checked in `new`), so the range lies in the
        // data mapping, which the `Rc` keeps alive. The kernel wrote these bytes before posting
        // the CQE and will not touch the buffer again until `drop` puts it back on the ring.
        unsafe {
            std::slice::from_raw_parts(
                self.pool
                    .data
                    .add(usize::from(self.bid) * self.pool.size as usize),
                self.len as usize,
            )
        }
    }
}

impl Drop for RecvBuf {
    fn drop(&mut self) {
        self.pool.recycle(self.bid);
    }
}

impl std::fmt::Debug for RecvBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBuf")
            .field("bid", &self.bid)
            .field("len", &self.len)
            .finish()
    }
}
