//! The listener's access hook and the bookkeeping that reports refused handshakes (see the
//! module docs of `srt`): libsrt calls [`Access`] on its receive thread for each caller,
//! before the key exchange; libsrt's own refusals (passphrase) come back through its log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ingest::srt::{SrtMode, StreamRequest, parse_stream_id};
use libsrt::{ConnectionRequest, KeyLength, RejectCode, SocketId};

use super::SrtConfig;
use crate::hub::{HubHandle, valid_stream_name};
use crate::store::SegmentStore;

/// What the access hook learnt about a caller, until `accept` (or libsrt's refusal).
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) peer: Option<SocketAddr>,
    pub(super) request: StreamRequest,
    pub(super) listener: SocketAddr,
    pub(super) at: Instant,
}

/// State shared between the loop and libsrt's threads (the hook, the log sink). Touched once
/// per handshake, never per packet.
#[derive(Debug, Default)]
pub(super) struct Handshakes {
    pub(super) pending: HashMap<SocketId, Pending>,
    /// Refusals libsrt logged, by socket id.
    pub(super) refused: HashMap<SocketId, String>,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps: a panic elsewhere leaves them usable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Everything the hook needs, shared by every listener.
#[derive(Debug)]
pub(super) struct AccessShared {
    pub(super) config: SrtConfig,
    pub(super) hub: HubHandle,
    pub(super) store: Arc<SegmentStore>,
    pub(super) handshakes: Arc<Mutex<Handshakes>>,
}

/// The access hook of one listener.
#[derive(Debug)]
pub(super) struct Access {
    pub(super) shared: Arc<AccessShared>,
    pub(super) listener: SocketAddr,
    /// The stream callers without a stream id publish (per-stream listeners).
    pub(super) port_stream: Option<String>,
}

impl libsrt::ListenHook for Access {
    fn on_request(&self, request: &ConnectionRequest<'_>) -> Result<(), RejectCode> {
        let peer = request.peer();
        let peer_text = peer.map_or_else(|| "?".to_owned(), |p| p.to_string());
        let refuse = |code: RejectCode, why: &str| {
            tracing::warn!(peer = %peer_text, listener = %self.listener, stream_id = request.stream_id(), status = code.0, "SRT caller refused: {why}");
            Err(code)
        };
        let parsed = match parse_stream_id(request.stream_id()) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => match &self.port_stream {
                Some(name) => StreamRequest {
                    mode: SrtMode::Publish,
                    app: None,
                    name: name.clone(),
                    user: None,
                },
                None => {
                    return refuse(
                        RejectCode::BAD_REQUEST,
                        "no stream id, and this port maps to no stream (srt_stream.port)",
                    );
                }
            },
            Err(e) => return refuse(RejectCode::BAD_REQUEST, &e.to_string()),
        };
        let shared = &self.shared;
        if let Some(app) = &parsed.app
            && *app != shared.config.app
        {
            return refuse(
                RejectCode::NOT_FOUND,
                &format!("app {app:?} is not {:?}", shared.config.app),
            );
        }
        if !valid_stream_name(&parsed.name) {
            return refuse(
                RejectCode::BAD_REQUEST,
                &format!("stream name {:?} is not allowed", parsed.name),
            );
        }
        match parsed.mode {
            SrtMode::Publish => {
                let status = shared.hub.status();
                if status
                    .iter()
                    .any(|s| s.name == parsed.name && s.state == "live")
                {
                    return refuse(
                        RejectCode::CONFLICT,
                        &format!("stream {:?} already has a publisher", parsed.name),
                    );
                }
            }
            SrtMode::Read => {
                if shared
                    .store
                    .lookup_in(&parsed.name, "ts/index.m3u8")
                    .is_none()
                {
                    return refuse(
                        RejectCode::NOT_FOUND,
                        &format!("read of unknown stream {:?}", parsed.name),
                    );
                }
            }
        }
        let settings = shared.config.stream(&parsed.name);
        let latency = settings.map_or(shared.config.latency, |s| s.latency);
        if request.set_latency(latency).is_err() {
            return refuse(RejectCode(500), "latency not set");
        }
        if let Some(passphrase) = settings.and_then(|s| s.passphrase.as_deref()) {
            if request.set_passphrase(passphrase).is_err() {
                return refuse(RejectCode(500), "passphrase not set");
            }
            let key = settings
                .and_then(|s| s.key_length)
                .and_then(|k| KeyLength::from_bytes(u32::from(k)));
            if let Some(key) = key
                && request.set_key_length(key).is_err()
            {
                return refuse(RejectCode(500), "key length not set");
            }
        }
        tracing::debug!(peer = %peer_text, stream = %parsed.name, mode = ?parsed.mode, user = ?parsed.user, "SRT handshake let through");
        lock(&shared.handshakes).pending.insert(
            request.socket_id(),
            Pending {
                peer,
                request: parsed,
                listener: self.listener,
                at: Instant::now(),
            },
        );
        Ok(())
    }
}

/// libsrt's log lines: warnings and errors to ours; refusals remembered by socket id.
pub(super) fn install_log_sink(handshakes: &Arc<Mutex<Handshakes>>) {
    let handshakes = Arc::downgrade(handshakes);
    libsrt::set_log_sink(libsrt::LogLevel::Warning, move |level, area, message| {
        // accept() until it would block: libsrt logs the last, empty one as an error.
        if message.contains("no pending connection") {
            return;
        }
        if let Some(reason) = refusal_reason(message)
            && let Some(id) = socket_id_in(message)
            && let Some(handshakes) = handshakes.upgrade()
        {
            lock(&handshakes).refused.insert(id, reason.to_owned());
            // The loop logs it with the caller's address.
            return;
        }
        match level {
            libsrt::LogLevel::Critical | libsrt::LogLevel::Error => {
                tracing::warn!(target: "libsrt", area, "{message}")
            }
            _ => tracing::debug!(target: "libsrt", area, "{message}"),
        }
    });
}

/// The refusal a libsrt log line reports (`... rejected due to: ... ERROR:BADSECRET`).
fn refusal_reason(message: &str) -> Option<&'static str> {
    if !message.contains("reject") {
        return None;
    }
    if message.contains("BADSECRET") {
        Some("wrong passphrase")
    } else if message.contains("UNSECURE") {
        Some("encryption mismatch: a passphrase on one side only")
    } else {
        None
    }
}

/// The first `@<digits>` of a libsrt log line (its socket id prefix, `@123456:`).
fn socket_id_in(message: &str) -> Option<SocketId> {
    let at = message.find('@')?;
    let digits: String = message
        .get(at + 1..)?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libsrt_refusal_lines() {
        let line = "@528392719:newConnection: connection rejected due to: INTERNAL REJECTION - ERROR:BADSECRET";
        assert_eq!(refusal_reason(line), Some("wrong passphrase"));
        assert_eq!(socket_id_in(line), Some(528392719));
        assert!(refusal_reason("... rejected ... ERROR:UNSECURE").is_some());
        assert_eq!(refusal_reason("something else @12"), None);
        assert_eq!(socket_id_in("no id"), None);
        assert_eq!(socket_id_in("@x"), None);
    }
}
