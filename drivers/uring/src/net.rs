//! Sockets and fds the ring works with: the SO_REUSEPORT listener, the eventfd waker, and the
//! process fd limit (which also caps each registered file table).

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use crate::UringError;

/// Binds a TCP listener with `SO_REUSEADDR`, `SO_REUSEPORT` and `TCP_NODELAY`.
///
/// Several listeners (one per ring) may bind the same address; the kernel spreads incoming
/// connections over them. `TCP_NODELAY` is set here because accepted sockets inherit it, and a
/// direct descriptor has no fd to call `setsockopt` on later.
pub fn listen_reuseport(addr: SocketAddr, backlog: i32) -> Result<TcpListener, UringError> {
    let socket_error = |what, source| UringError::Socket { addr, what, source };
    let owned = tcp_socket(addr, libc::SOCK_CLOEXEC).map_err(|e| socket_error("socket", e))?;
    for (level, name, what) in [
        (libc::SOL_SOCKET, libc::SO_REUSEADDR, "SO_REUSEADDR"),
        (libc::SOL_SOCKET, libc::SO_REUSEPORT, "SO_REUSEPORT"),
        (libc::IPPROTO_TCP, libc::TCP_NODELAY, "TCP_NODELAY"),
    ] {
        set_int_option(owned.as_raw_fd(), level, name, 1).map_err(|e| socket_error(what, e))?;
    }
    if let SocketAddr::V6(_) = addr {
        // Same behaviour on every distribution regardless of net.ipv6.bindv6only.
        set_int_option(owned.as_raw_fd(), libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)
            .map_err(|e| socket_error("IPV6_V6ONLY", e))?;
    }
    bind(&owned, addr).map_err(|e| socket_error("bind", e))?;
    // SAFETY: plain syscall on a socket we own.
    if unsafe { libc::listen(owned.as_raw_fd(), backlog) } != 0 {
        return Err(socket_error("listen", io::Error::last_os_error()));
    }
    Ok(TcpListener::from(owned))
}

/// Makes a TCP socket for an outgoing connection to a peer of `peer`'s family, to be installed
/// in a ring's file table ([`Ring::install_socket`](crate::Ring::install_socket)) and
/// connected there ([`Ring::connect`](crate::Ring::connect)).
///
/// The socket is non-blocking (io_uring waits for readiness itself) and has `TCP_NODELAY`
/// (requests are small and must leave at once). With a `source`, it is bound to that address
/// with `IP_BIND_ADDRESS_NO_PORT`, so the port is chosen at connect time from the whole
/// (source, destination) tuple space: many connections can share one source address.
pub fn tcp_client_socket(peer: SocketAddr, source: Option<IpAddr>) -> io::Result<OwnedFd> {
    let owned = tcp_socket(peer, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
    set_int_option(owned.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)?;
    if let Some(ip) = source {
        set_int_option(
            owned.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            1,
        )?;
        bind(&owned, SocketAddr::new(ip, 0))?;
    }
    Ok(owned)
}

/// A TCP socket of `addr`'s family; `flags` are `SOCK_*` flags.
fn tcp_socket(addr: SocketAddr, flags: i32) -> io::Result<OwnedFd> {
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain syscall with integer arguments; the result is checked below.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | flags, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bind(socket: &OwnedFd, addr: SocketAddr) -> io::Result<()> {
    let (storage, len) = socket_address(addr);
    // SAFETY: `storage` is a properly initialised sockaddr of length `len` for this family.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_int_option(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: `value` lives for the call and its size is passed alongside.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub(crate) fn socket_address(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (unspecified) value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    match addr {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(v4.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            (storage, std::mem::size_of::<libc::sockaddr_in>() as _)
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: v6.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            (storage, std::mem::size_of::<libc::sockaddr_in6>() as _)
        }
    }
}

/// The soft `RLIMIT_NOFILE`: the process fd limit, and also the largest registered file table
/// the kernel accepts for one ring.
pub fn fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to write into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur
}

/// Wakes a ring from another thread: an eventfd that the ring keeps a read armed on
/// ([`Ring::arm_wake`](crate::Ring::arm_wake)). Cheap to clone; `wake` from any thread.
#[derive(Clone, Debug)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // Blocking on purpose: io_uring honours O_NONBLOCK and would complete the armed read
        // with EAGAIN instead of waiting. A write blocks only if the counter would overflow.
        // SAFETY: plain syscall; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Waker {
            // SAFETY: `fd` was just returned by eventfd(2) and nothing else owns it.
            fd: Arc::new(unsafe { OwnedFd::from_raw_fd(fd) }),
        })
    }

    /// Makes the ring's armed read complete (several wakes before it runs fold into one).
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
