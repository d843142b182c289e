//! The I/O driver the end-to-end tests put around the pure session: a std `TcpListener` on
//! 127.0.0.1 that takes one publisher connection, feeds what it sends to an `RtmpSession`,
//! writes back what the session answers, accepts the publish request and collects the events.
//!
//! Set `CORECAST_RTMP_CAPTURE=path` to write the first 64 KiB the publisher sent to `path`; that
//! is how the replay captures in tests/data/ are made.
// Shared by several test binaries, each of which uses a different part of it.
#![allow(dead_code)]

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use corecast_ingest::rtmp::{PublishRejection, RtmpEvent, RtmpSession};
use media::{AacConfig, AccessUnit, AvcConfig, Codec};

/// How much of the publisher's bytes a capture keeps.
pub const CAPTURE_LEN: usize = 64 * 1024;

/// What one publisher connection produced.
pub struct Publication {
    pub events: Vec<RtmpEvent>,
    /// The first [`CAPTURE_LEN`] bytes the publisher sent.
    pub captured: Vec<u8>,
    /// Why the connection ended early: the session's error, or a socket error or timeout.
    pub failure: Option<String>,
}

impl Publication {
    pub fn video_config(&self) -> Option<&AvcConfig> {
        self.events.iter().find_map(|event| match event {
            RtmpEvent::VideoConfig(media::TrackConfig::Avc(config)) => Some(config),
            _ => None,
        })
    }

    pub fn audio_config(&self) -> Option<&AacConfig> {
        self.events.iter().find_map(|event| match event {
            RtmpEvent::AudioConfig(config) => Some(config),
            _ => None,
        })
    }

    pub fn units(&self, codec: Codec) -> Vec<&AccessUnit> {
        self.events
            .iter()
            .filter_map(|event| match event {
                RtmpEvent::Media(unit) if unit.codec == codec => Some(unit),
                _ => None,
            })
            .collect()
    }

    /// Writes the capture where `CORECAST_RTMP_CAPTURE` says, if it is set.
    pub fn write_capture_if_asked(&self) {
        if let Some(path) = std::env::var_os("CORECAST_RTMP_CAPTURE") {
            std::fs::write(&path, &self.captured)
                .unwrap_or_else(|err| panic!("writing the capture to {path:?}: {err}"));
        }
    }
}

/// A listening socket for one publisher.
pub struct RtmpListener {
    listener: TcpListener,
}

impl RtmpListener {
    pub fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        RtmpListener { listener }
    }

    pub fn url(&self, app: &str, stream_key: &str) -> String {
        let port = self.listener.local_addr().expect("local address").port();
        format!("rtmp://127.0.0.1:{port}/{app}/{stream_key}")
    }

    /// Accepts one connection from `publisher`, accepts its publish request, and runs until the
    /// publisher closes, the session fails or `limit` has passed. Gives up waiting for the
    /// connection when the publisher exits first, so a publisher that fails to start is
    /// reported with its own message rather than as a hang.
    pub fn serve_one(&self, publisher: &mut Child, limit: Duration) -> Publication {
        self.serve_one_answering(publisher, limit, None)
    }

    /// [`RtmpListener::serve_one`], answering the publish request with `rejection` if given.
    pub fn serve_one_answering(
        &self,
        publisher: &mut Child,
        limit: Duration,
        rejection: Option<PublishRejection>,
    ) -> Publication {
        let deadline = Instant::now() + limit;
        let mut publication = Publication {
            events: Vec::new(),
            captured: Vec::new(),
            failure: None,
        };
        match self.accept(publisher, deadline) {
            Ok(socket) => serve(socket, deadline, rejection, &mut publication),
            Err(failure) => publication.failure = Some(failure),
        }
        publication
    }

    fn accept(&self, publisher: &mut Child, deadline: Instant) -> Result<TcpStream, String> {
        self.listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        loop {
            match self.listener.accept() {
                Ok((socket, _)) => {
                    socket.set_nonblocking(false).expect("blocking socket");
                    return Ok(socket);
                }
                Err(err) if err.kind() == ErrorKind::WouldBlock => {}
                Err(err) => return Err(format!("accept: {err}")),
            }
            if let Ok(Some(status)) = publisher.try_wait() {
                return Err(format!("the publisher exited ({status}) before connecting"));
            }
            if Instant::now() >= deadline {
                return Err("no connection before the time limit".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn serve(
    mut socket: TcpStream,
    deadline: Instant,
    rejection: Option<PublishRejection>,
    publication: &mut Publication,
) {
    let mut session = RtmpSession::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            publication.failure = Some("the publisher was still sending at the time limit".into());
            return;
        }
        socket.set_read_timeout(Some(left)).expect("read timeout");
        let len = match socket.read(&mut buf) {
            Ok(0) => return,
            Ok(len) => len,
            Err(err) if err.kind() == ErrorKind::ConnectionReset => return,
            Err(err) => {
                publication.failure = Some(format!("reading from the publisher: {err}"));
                return;
            }
        };
        let data = &buf[..len];
        let room = CAPTURE_LEN.saturating_sub(publication.captured.len());
        publication
            .captured
            .extend_from_slice(&data[..len.min(room)]);
        if let Err(err) = session.handle_bytes(Instant::now(), data) {
            publication.failure = Some(format!("the session failed: {err}"));
            return;
        }
        loop {
            out.clear();
            while session.poll_transmit(&mut out).is_some() {}
            if !out.is_empty() {
                // The publisher may close first at the end; what we failed to send no longer
                // matters then.
                let _ = socket.write_all(&out);
            }
            let mut answered = false;
            while let Some(event) = session.poll_event() {
                if matches!(event, RtmpEvent::PublishRequested { .. }) {
                    match rejection {
                        None => session.accept_publish(),
                        Some(why) => session.reject_publish(why),
                    }
                    answered = true;
                }
                publication.events.push(event);
            }
            if !answered {
                break;
            }
        }
    }
}

/// Whether `program` runs (`program arg` exits 0).
pub fn tool_present(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Waits for the publisher to exit (killing it after `grace`, e.g. when the session failed
/// and it hangs on) and returns its exit status and stderr.
pub fn finish(mut publisher: Child, grace: Duration) -> (std::process::ExitStatus, String) {
    let deadline = Instant::now() + grace;
    while matches!(publisher.try_wait(), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Fails only when it has exited meanwhile, which is what we want anyway.
    let _ = publisher.kill();
    let output = publisher
        .wait_with_output()
        .expect("waiting for the publisher");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
