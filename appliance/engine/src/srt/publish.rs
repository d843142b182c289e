//! One SRT publisher's MPEG-TS: a [`TsFeed`] (the demuxer's H.264, HEVC and AAC tracks into
//! the hub, as for UDP feeds) with the SRT connection as the session: a taken stream name
//! ends the connection, and the claim ends when the connection does.

use std::time::Instant;

use ingest::ts::TsCounters;

use crate::hub::{ClaimError, HubHandle};
use crate::sources::SourceHandle;
use crate::ts_feed::{ClaimPolicy, TsFeed};

/// The demuxer and hub side of one SRT connection that publishes.
#[derive(Debug)]
pub struct TsPublisher {
    feed: TsFeed,
    /// Last time a message arrived.
    pub last_input: Instant,
}

/// Why a publisher cannot go on.
#[derive(Debug)]
pub enum PublishError {
    /// The name has another publisher (RTMP, another SRT connection, a configured source).
    Claim(ClaimError),
}

impl std::fmt::Display for PublishError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PublishError::Claim(e) => write!(f, "{e}"),
        }
    }
}

impl TsPublisher {
    pub fn new(
        stream: &str,
        origin: String,
        hub: HubHandle,
        board: SourceHandle,
        now: Instant,
    ) -> Self {
        TsPublisher {
            feed: TsFeed::new(
                stream,
                origin,
                "SRT publisher",
                hub,
                board,
                ClaimPolicy::Fail,
            ),
            last_input: now,
        }
    }

    pub fn stream(&self) -> &str {
        self.feed.stream()
    }

    pub fn is_live(&self) -> bool {
        self.feed.is_live()
    }

    /// One SRT message (whole TS packets, usually seven).
    pub fn handle_message(&mut self, now: Instant, data: &[u8]) -> Result<(), PublishError> {
        self.last_input = now;
        self.feed
            .handle_bytes(now, data)
            .map_err(PublishError::Claim)
    }

    /// The connection ended: hand out what the demuxer holds and end the claim.
    pub fn finish(&mut self, now: Instant, reason: &str) {
        self.feed.finish(now, reason);
    }

    /// Demuxer counters since the connection began.
    pub fn counters(&self) -> &TsCounters {
        self.feed.counters()
    }
}
