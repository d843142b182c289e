//! A UDP relay that loses datagrams on purpose, for tests of protocols that must recover from
//! loss (SRT's ARQ). It needs no root and no netem (this kernel has no `sch_netem`): the peer
//! under test sends to the relay's address, the relay forwards to the target from one socket of
//! its own and sends the target's answers back to the last peer it heard from, dropping a fixed
//! share of datagrams each way with a seeded generator, so a run is repeatable.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// Datagrams seen and dropped in one direction.
#[derive(Debug, Default)]
pub struct RelayCounters {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
}

/// A running relay; stops when dropped.
#[derive(Debug)]
pub struct LossyRelay {
    /// Where the peer under test sends.
    pub addr: SocketAddr,
    /// Peer -> target.
    pub upstream: Arc<RelayCounters>,
    /// Target -> peer.
    pub downstream: Arc<RelayCounters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LossyRelay {
    /// Relays between a peer and `target`, dropping `loss` (0.0 to 1.0) of the datagrams in
    /// each direction.
    pub fn start(target: SocketAddr, loss: f64) -> LossyRelay {
        let front = UdpSocket::bind("127.0.0.1:0").expect("bind relay front");
        let back = UdpSocket::bind("127.0.0.1:0").expect("bind relay back");
        let addr = front.local_addr().expect("relay address");
        // Short timeouts: one thread serves both sockets by polling them in turn.
        front
            .set_read_timeout(Some(Duration::from_millis(1)))
            .expect("timeout");
        back.set_read_timeout(Some(Duration::from_millis(1)))
            .expect("timeout");
        let upstream = Arc::new(RelayCounters::default());
        let downstream = Arc::new(RelayCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (upstream, downstream, stop) = (upstream.clone(), downstream.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut random = XorShift(0x9e37_79b9_7f4a_7c15);
                let threshold = (loss.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u32;
                let mut peer: Option<SocketAddr> = None;
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    // Drain each side until it has nothing, so a burst is not paced by the
                    // other side's timeout.
                    while let Ok((len, from)) = front.recv_from(&mut buf) {
                        peer = Some(from);
                        if random.next() < threshold {
                            upstream.dropped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            upstream.forwarded.fetch_add(1, Ordering::Relaxed);
                            let _ = back.send_to(&buf[..len], target);
                        }
                    }
                    while let Ok((len, _)) = back.recv_from(&mut buf) {
                        let Some(peer) = peer else { continue };
                        if random.next() < threshold {
                            downstream.dropped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            downstream.forwarded.fetch_add(1, Ordering::Relaxed);
                            let _ = front.send_to(&buf[..len], peer);
                        }
                    }
                }
            })
        };
        LossyRelay {
            addr,
            upstream,
            downstream,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Marsaglia's xorshift64: plenty for choosing which datagrams to lose.
#[derive(Debug)]
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
    }
}
