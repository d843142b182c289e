//! HTTP delivery: one pinned thread and io_uring ring per delivery core, serving the
//! [`SegmentStore`](crate::store::SegmentStore) over HTTP/1.1.
//!
//! Each [`DeliveryWorker`] binds its own `SO_REUSEPORT` listener on the playback address, so
//! the kernel spreads connections over the workers, and runs the loop in [`worker`] on its
//! ring (drivers/uring). Requests are parsed and answered by the sans-IO [`http`] layer; bodies
//! go out as views of the store's bytes. docs/delivery.md describes the loop, the token layout,
//! buffer ownership, timeouts and limits.

pub mod http;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::store::SegmentStore;

/// Settings of the delivery workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Address of the playback port; every worker binds it with SO_REUSEPORT.
    pub listen: SocketAddr,
    /// Connections one worker holds (its ring's registered file table size). Clamped to
    /// RLIMIT_NOFILE, which the kernel imposes on each table.
    pub max_connections_per_worker: u32,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// A request whose headers take longer than this to arrive is answered 408 and closed.
    pub header_timeout: Duration,
    /// A send op that makes no progress for this long (a client that stopped reading) closes
    /// the connection. Each op carries at most `max_send_bytes`.
    pub send_timeout: Duration,
    /// A response still being sent this long after it started belongs to a viewer that has
    /// fallen a whole playlist window behind: the connection is dropped rather than kept
    /// trickling (a slow reader that keeps making progress never trips `send_timeout`).
    /// `None`: the engine sets it to the playlist window (segments × target duration).
    pub lagging_after: Option<Duration>,
    /// Longest request head accepted; longer is answered 431.
    pub max_request_head: usize,
    /// Largest number of bytes one send op carries. Larger ops cost less: on this box a 1 MB
    /// response in 256 KiB ops took 13–22 % more of the worker's CPU than in one op
    /// (docs/capacity.md). The op size only sets how slow a reader may be before
    /// `send_timeout` drops it (4 MiB in 30 s is about 140 KB/s, far below what a stream with
    /// 4 MiB segments needs).
    pub max_send_bytes: usize,
    /// Send responses of at least this many bytes with SEND_ZC. `None` (the default): never.
    /// On loopback the kernel copies anyway and SEND_ZC is slower (docs/delivery.md).
    pub send_zero_copy_min: Option<usize>,
    /// Provided recv buffers per worker (a power of two, at most 32,768) and their size.
    pub recv_buffers: u16,
    pub recv_buffer_size: u32,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_connections_per_worker: 16_384,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(30),
            lagging_after: None,
            max_request_head: 8192,
            max_send_bytes: 4 * 1024 * 1024,
            send_zero_copy_min: None,
            recv_buffers: 4096,
            recv_buffer_size: 2048,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    #[error("delivery worker {worker}: {context}: {source}")]
    Io {
        worker: usize,
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("delivery worker {worker}: {source}")]
    Uring {
        worker: usize,
        #[source]
        source: uring::UringError,
    },
    #[error("delivery worker {worker}: its thread ended during setup")]
    ThreadLost { worker: usize },
}

/// Counters of one worker, written by its thread and readable from any other (relaxed
/// atomics: each value is exact, a set of them is not a consistent snapshot).
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Connections open now.
    pub connections: AtomicU64,
    pub accepted: AtomicU64,
    pub requests: AtomicU64,
    /// Requests refused with 400 or 431.
    pub bad_requests: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub sends: AtomicU64,
    pub short_sends: AtomicU64,
    pub zc_sends: AtomicU64,
    pub zc_copied: AtomicU64,
    /// Multishot recv ran out of provided buffers.
    pub enobufs: AtomicU64,
    /// Accepts refused because the registered file table was full (the kernel closed them).
    pub enfile: AtomicU64,
    /// Other accept failures.
    pub accept_errors: AtomicU64,
    pub idle_timeouts: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub send_timeouts: AtomicU64,
    /// Connections dropped for falling a playlist window behind (`lagging_after`).
    pub lagging_drops: AtomicU64,
}

/// Plain copy of [`DeliveryStats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryStatsSnapshot {
    pub connections: u64,
    pub accepted: u64,
    pub requests: u64,
    pub bad_requests: u64,
    pub bytes_sent: u64,
    pub sends: u64,
    pub short_sends: u64,
    pub zc_sends: u64,
    pub zc_copied: u64,
    pub enobufs: u64,
    pub enfile: u64,
    pub accept_errors: u64,
    pub idle_timeouts: u64,
    pub header_timeouts: u64,
    pub send_timeouts: u64,
    pub lagging_drops: u64,
}

/// Sums the counters of several workers (the API's totals).
impl std::ops::Add for DeliveryStatsSnapshot {
    type Output = DeliveryStatsSnapshot;

    fn add(self, o: DeliveryStatsSnapshot) -> DeliveryStatsSnapshot {
        DeliveryStatsSnapshot {
            connections: self.connections + o.connections,
            accepted: self.accepted + o.accepted,
            requests: self.requests + o.requests,
            bad_requests: self.bad_requests + o.bad_requests,
            bytes_sent: self.bytes_sent + o.bytes_sent,
            sends: self.sends + o.sends,
            short_sends: self.short_sends + o.short_sends,
            zc_sends: self.zc_sends + o.zc_sends,
            zc_copied: self.zc_copied + o.zc_copied,
            enobufs: self.enobufs + o.enobufs,
            enfile: self.enfile + o.enfile,
            accept_errors: self.accept_errors + o.accept_errors,
            idle_timeouts: self.idle_timeouts + o.idle_timeouts,
            header_timeouts: self.header_timeouts + o.header_timeouts,
            send_timeouts: self.send_timeouts + o.send_timeouts,
            lagging_drops: self.lagging_drops + o.lagging_drops,
        }
    }
}

impl DeliveryStats {
    pub fn snapshot(&self) -> DeliveryStatsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        DeliveryStatsSnapshot {
            connections: read(&self.connections),
            accepted: read(&self.accepted),
            requests: read(&self.requests),
            bad_requests: read(&self.bad_requests),
            bytes_sent: read(&self.bytes_sent),
            sends: read(&self.sends),
            short_sends: read(&self.short_sends),
            zc_sends: read(&self.zc_sends),
            zc_copied: read(&self.zc_copied),
            enobufs: read(&self.enobufs),
            enfile: read(&self.enfile),
            accept_errors: read(&self.accept_errors),
            idle_timeouts: read(&self.idle_timeouts),
            header_timeouts: read(&self.header_timeouts),
            send_timeouts: read(&self.send_timeouts),
            lagging_drops: read(&self.lagging_drops),
        }
    }
}

/// A running delivery worker.
#[derive(Debug)]
pub struct DeliveryWorker {
    index: usize,
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: uring::Waker,
    stats: Arc<DeliveryStats>,
    thread: Option<JoinHandle<()>>,
}

impl DeliveryWorker {
    /// Binds the listener and starts the worker thread, pinned to `core` when given.
    /// Returns once the socket listens and the ring is set up, so a caller may connect right
    /// away. To run several workers on one port, spawn the first (it may bind port 0), then
    /// the others with `listen` set to its [`local_addr`](Self::local_addr).
    pub fn spawn(
        index: usize,
        core: Option<core_affinity::CoreId>,
        config: DeliveryConfig,
        store: Arc<SegmentStore>,
    ) -> Result<DeliveryWorker, DeliveryError> {
        let listener = uring::listen_reuseport(config.listen, 4096).map_err(|source| {
            DeliveryError::Uring {
                worker: index,
                source,
            }
        })?;
        let local_addr = listener.local_addr().map_err(|source| DeliveryError::Io {
            worker: index,
            context: "reading the listener's address",
            source,
        })?;
        let waker = uring::Waker::new().map_err(|source| DeliveryError::Io {
            worker: index,
            context: "creating the wake-up eventfd",
            source,
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(DeliveryStats::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let shared = worker::Shared {
            index,
            stop: stop.clone(),
            waker: waker.clone(),
            stats: stats.clone(),
            store,
        };
        let thread = std::thread::Builder::new()
            .name(format!("delivery-{index}"))
            .spawn(move || {
                #[cfg(feature = "count-allocations")]
                crate::alloc_count::mark_delivery_worker(index);
                if let Some(core) = core
                    && !core_affinity::set_for_current(core)
                {
                    tracing::warn!(
                        worker = index,
                        core = core.id,
                        "could not pin delivery thread"
                    );
                }
                // The ring is made on this thread: SINGLE_ISSUER ties it to its creator.
                match worker::Worker::new(shared, config, listener) {
                    Ok(worker) => {
                        let _ = ready_tx.send(Ok(()));
                        worker.run();
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|source| DeliveryError::Io {
                worker: index,
                context: "spawning the thread",
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(DeliveryWorker {
                index,
                local_addr,
                stop,
                waker,
                stats,
                thread: Some(thread),
            }),
            Ok(Err(source)) => {
                let _ = thread.join();
                Err(DeliveryError::Uring {
                    worker: index,
                    source,
                })
            }
            Err(_) => {
                let _ = thread.join();
                Err(DeliveryError::ThreadLost { worker: index })
            }
        }
    }

    /// The address this worker listens on (the resolved port when it bound port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// This worker's counters; cheap to clone and read from any thread.
    pub fn stats(&self) -> Arc<DeliveryStats> {
        self.stats.clone()
    }

    /// Asks the worker to stop and waits for it: it stops accepting, closes its connections
    /// (a send in flight is cancelled) and drains its ring, within about two seconds.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.waker.wake();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(worker = self.index, "delivery thread panicked");
        }
    }
}

impl Drop for DeliveryWorker {
    fn drop(&mut self) {
        self.shutdown();
    }
}
