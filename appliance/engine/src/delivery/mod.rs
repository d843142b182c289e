//! HTTP delivery: one pinned thread and io_uring ring per delivery core, serving the
//! [`SegmentStore`](crate::store::SegmentStore) over HTTP/1.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::store::SegmentStore;

/// Settings of the delivery workers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Address of the playback port; every worker binds it with SO_REUSEPORT.
    pub listen: SocketAddr,
    /// Connections one worker holds (its ring's registered file table size).
    pub max_connections_per_worker: u32,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// A request whose headers take longer than this to arrive is answered 408 and closed.
    pub header_timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            max_connections_per_worker: 16_384,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
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
}

/// A running delivery worker.
#[derive(Debug)]
pub struct DeliveryWorker {}

impl DeliveryWorker {
    /// Binds the listener and starts the worker thread, pinned to `core` when given.
    /// Returns once the socket listens, so a caller may connect right away.
    pub fn spawn(
        index: usize,
        core: Option<core_affinity::CoreId>,
        config: DeliveryConfig,
        store: Arc<SegmentStore>,
    ) -> Result<DeliveryWorker, DeliveryError> {
        let _ = (index, core, config, store);
        unimplemented!()
    }

    /// Asks the worker to stop and waits for it.
    pub fn stop(self) {
        unimplemented!()
    }
}
