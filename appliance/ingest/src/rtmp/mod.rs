//! RTMP publisher sessions (server side): handshake, chunk stream, AMF0 commands and FLV
//! audio/video tags, turned into [`media::AccessUnit`]s.
//!
//! Specs: Adobe RTMP 1.0 (handshake §5.2, chunk stream §5.3, messages §6, commands §7),
//! AMF0 (Adobe AMF0 spec), FLV tag bodies (Adobe Video File Format Spec v10.1, E.4.2/E.4.3).

use std::time::Instant;

use media::{AacConfig, AccessUnit, AvcConfig};

/// Errors that end one RTMP session. Each says what was wrong and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtmpError {
    #[error("RTMP protocol: {0}")]
    Protocol(String),
}

/// Why a publish request was refused; decides the status sent to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishRejection {
    /// The stream name is live already (`NetStream.Publish.BadName`).
    NameInUse,
    /// The app or name is not one we serve (`NetStream.Publish.BadName`).
    BadName,
}

/// What a session reports to the engine.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RtmpEvent {
    /// The client asked to publish `stream_key` under `app` (e.g. app `live`, key `demo`).
    /// The engine answers with [`RtmpSession::accept_publish`] or
    /// [`RtmpSession::reject_publish`]; media before that answer is not reported.
    PublishRequested { app: String, stream_key: String },
    VideoConfig(AvcConfig),
    AudioConfig(AacConfig),
    Media(AccessUnit),
    /// The client stopped publishing (FCUnpublish / deleteStream / closeStream).
    Unpublished,
}

/// One RTMP connection, server side. No sockets, no clock.
/// After any `handle_*` or `accept_*`/`reject_*` call: drain `poll_transmit` until `None`,
/// then `poll_event` until `None`.
#[derive(Debug)]
pub struct RtmpSession {}

impl Default for RtmpSession {
    fn default() -> Self {
        Self::new()
    }
}

impl RtmpSession {
    pub fn new() -> Self {
        unimplemented!()
    }

    /// Feeds received bytes; returns how many were consumed (all of them unless an error).
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) -> Result<usize, RtmpError> {
        let _ = (now, data);
        unimplemented!()
    }

    /// Appends bytes to send to `out`; returns how many were appended, `None` when nothing waits.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<usize> {
        let _ = out;
        unimplemented!()
    }

    pub fn poll_event(&mut self) -> Option<RtmpEvent> {
        unimplemented!()
    }

    pub fn accept_publish(&mut self) {
        unimplemented!()
    }

    pub fn reject_publish(&mut self, why: PublishRejection) {
        let _ = why;
        unimplemented!()
    }
}
