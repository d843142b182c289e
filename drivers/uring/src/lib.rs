//! corecast's io_uring reactor: the one place in the workspace with unsafe io_uring code.
//!
//! A [`Ring`] is one io_uring instance owned by one thread (set up with `SINGLE_ISSUER` and
//! `DEFER_TASKRUN` where the kernel allows). It carries:
//! - a sparse registered file table, so accepted connections live as *direct descriptors*
//!   (slots in the table, not process fds: the process fd limit does not bound viewers; the
//!   kernel caps each table at `RLIMIT_NOFILE`, see [`fd_limit`]);
//! - multishot accept into that table (`IORING_FILE_INDEX_ALLOC`);
//! - one provided buffer ring for multishot recv; a received buffer is a [`RecvBuf`] that goes
//!   back to the kernel when dropped;
//! - a per-slot send state: a reusable head buffer plus one `Bytes` body, sent with one
//!   `SENDMSG` (two iovecs, no copy of the body in user space) or `SENDMSG_ZC`;
//! - cancel and close of direct descriptors, and a wait with a timeout;
//! - the client side (module `client`): a socket made by [`tcp_client_socket`] installed in a
//!   slot ([`Ring::install_socket`]), `CONNECT`, one-shot recv into the buffer ring, recv
//!   appended to a per-slot buffer, and recv with `MSG_TRUNC` (bytes counted, not copied).
//!
//! The ownership rule (as in monoio, see io_uring_enter(2)): memory named by an in-flight
//! operation belongs to the kernel until that operation's last completion is reaped, even if the
//! connection it served is gone. This crate enforces it by owning every such buffer itself: the
//! send state of a slot cannot be changed while its send is in flight, received buffers are
//! lent out only after the kernel has finished with them, and dropping a [`Ring`] cancels and
//! drains what is in flight (or leaks the memory, never frees it under the kernel).
//!
//! Operations carry a [`Token`] in `user_data`: slot, generation and [`OpKind`]. Each op takes
//! a token of its own kind (checked: completions release memory by kind and slot).
//!
//! Users: the engine's HTTP delivery (server side) and corecast-bench's viewers (client side).
//!
//! Kernel requirements: 6.0 or newer (multishot recv with provided buffer rings, cancel by
//! fixed fd). Missing support is a typed [`UringError`], never a panic.
//!
//! Not done here: registered (fixed) send buffers, recv bundles, `MSG_RING` between rings.

mod bufring;
mod client;
#[cfg(test)]
mod client_tests;
mod net;
mod ring;
#[cfg(test)]
mod ring_tests;
mod send;
mod token;

pub use bufring::RecvBuf;
pub use net::{Waker, fd_limit, listen_reuseport, tcp_client_socket};
pub use ring::{Completion, Ring, RingConfig, RingCounters, SetupReport, probe};
pub use token::{OpKind, Token};

/// Errors of the io_uring driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UringError {
    /// The kernel or a sandbox (seccomp, `io_uring_disabled` sysctl) refuses io_uring.
    #[error("io_uring is unavailable ({reason}): {source}")]
    Unavailable {
        reason: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The kernel has io_uring but lacks a feature this crate needs.
    #[error("io_uring lacks {what}; corecast needs Linux {needs} or newer")]
    Unsupported {
        what: &'static str,
        needs: &'static str,
    },
    /// A setup step (registration, mapping) failed.
    #[error("io_uring setup, {what}: {source}")]
    Setup {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The sparse file table could not be registered at the requested size.
    #[error(
        "registering {requested} direct-descriptor slots failed (the kernel caps a table at \
         RLIMIT_NOFILE, now {limit}): {source}"
    )]
    FileTable {
        requested: u32,
        limit: u64,
        #[source]
        source: std::io::Error,
    },
    /// Creating, binding or listening on a socket failed.
    #[error("listener {addr}, {what}: {source}")]
    Socket {
        addr: std::net::SocketAddr,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// `io_uring_enter` failed in a way a retry does not fix.
    #[error("io_uring_enter: {source}")]
    Enter {
        #[source]
        source: std::io::Error,
    },
    /// The submission queue stayed full after a submit.
    #[error("submission queue full after submitting")]
    QueueFull,
    /// Installing a socket in a slot of the file table failed.
    #[error("installing a socket in direct-descriptor slot {slot}: {source}")]
    Install {
        slot: u32,
        #[source]
        source: std::io::Error,
    },
    /// An op was given a token of another kind (or, for ops on per-slot memory, of another
    /// slot).
    #[error("op {expected:?} given the token {token:?}")]
    TokenMismatch { expected: OpKind, token: Token },
    /// A send was started on a slot whose previous send is still in flight, or whose send
    /// state is empty, or a slot outside the table.
    #[error("slot {slot}: {what}")]
    SlotMisuse { slot: u32, what: &'static str },
}
