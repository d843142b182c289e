//! `read:live/NAME`: a live stream played back out over SRT as MPEG-TS (rack-to-rack relay).
//!
//! The source of the bytes is the stream's MPEG-TS rendition in the segment store (`ts/N.ts`,
//! written by the packager's TS muxer), followed through its playlist `ts/index.m3u8`: the
//! hub has no per-unit subscription for consumers outside it yet, and the store serves any
//! stream however it was published (RTMP, SRT, WHIP, sources). The price is latency: a
//! segment is sent once it is complete, so a reader is about one segment duration plus the SRT
//! latency behind the publisher. Each segment is sent in 1316-byte messages (7 × 188), paced
//! evenly over its duration so the receiver sees a live rate rather than a burst; a reader
//! that falls behind by more than [`MAX_QUEUED_SEGMENTS`] skips to the newest.
//!
//! The TS muxer restarts nothing between segments, but a reader that joins, skips or crosses
//! a publisher's restart would see continuity-counter jumps; [`ContinuityRewriter`] keeps each
//! PID's counter continuous on the way out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::store::SegmentStore;

/// TS packets per SRT message (libsrt's default live payload: 1316 bytes).
pub const PACKETS_PER_MESSAGE: usize = 7;
const TS_PACKET: usize = 188;
/// Segments a reader may have waiting before it skips to the newest.
pub const MAX_QUEUED_SEGMENTS: usize = 3;

/// One media playlist as the reader needs it.
#[derive(Debug, Default, PartialEq)]
pub struct TsPlaylist {
    /// (segment number, duration) in order.
    pub segments: Vec<(u64, Duration)>,
    pub ended: bool,
}

impl TsPlaylist {
    /// Reads the packager's TS playlist (`#EXTINF:D,` then `N.ts`). Lines it does not know
    /// are skipped; a malformed duration counts as zero.
    pub fn parse(text: &str) -> TsPlaylist {
        let mut playlist = TsPlaylist::default();
        let mut duration = Duration::ZERO;
        for line in text.lines().map(str::trim) {
            if let Some(value) = line.strip_prefix("#EXTINF:") {
                let seconds: f64 = value
                    .split(',')
                    .next()
                    .and_then(|d| d.trim().parse().ok())
                    .filter(|d: &f64| d.is_finite() && *d >= 0.0 && *d < 3600.0)
                    .unwrap_or(0.0);
                duration = Duration::from_secs_f64(seconds);
            } else if line == "#EXT-X-ENDLIST" {
                playlist.ended = true;
            } else if let Some(number) = line.strip_suffix(".ts").and_then(|n| n.parse().ok()) {
                playlist.segments.push((number, duration));
                duration = Duration::ZERO;
            }
        }
        playlist
    }
}

/// Rewrites the 4-bit continuity counter of every packet that carries payload so each PID
/// counts on without a gap (ISO/IEC 13818-1 §2.4.3.3).
#[derive(Debug)]
pub struct ContinuityRewriter {
    next: Box<[u8; 8192]>,
}

impl Default for ContinuityRewriter {
    fn default() -> Self {
        ContinuityRewriter {
            next: Box::new([0; 8192]),
        }
    }
}

impl ContinuityRewriter {
    /// Rewrites whole 188-byte packets in place; bytes that are not a synced packet are left.
    pub fn rewrite(&mut self, packets: &mut [u8]) {
        for packet in packets.chunks_exact_mut(TS_PACKET) {
            let [sync, b1, b2, b3, ..] = *packet else {
                continue;
            };
            if sync != 0x47 {
                continue;
            }
            let pid = (usize::from(b1 & 0x1f) << 8) | usize::from(b2);
            let has_payload = b3 & 0x10 != 0;
            if !has_payload {
                continue;
            }
            let Some(next) = self.next.get_mut(pid) else {
                continue;
            };
            if let Some(byte) = packet.get_mut(3) {
                *byte = (b3 & 0xf0) | (*next & 0x0f);
            }
            *next = next.wrapping_add(1) & 0x0f;
        }
    }
}

/// A segment being sent.
#[derive(Debug)]
struct Sending {
    body: Bytes,
    offset: usize,
    started: Instant,
    duration: Duration,
}

/// Follows one stream's TS rendition and hands out the next message when it is due.
#[derive(Debug)]
pub struct StoreReader {
    stream: String,
    /// The last segment queued; `None` until the first look.
    last_number: Option<u64>,
    /// The playlist version last read (its etag), to parse only on change.
    playlist_etag: Option<u64>,
    queue: VecDeque<(u64, Duration)>,
    sending: Option<Sending>,
    ended: bool,
    rewriter: ContinuityRewriter,
    message: Vec<u8>,
    pub segments_sent: u64,
    pub segments_skipped: u64,
}

/// What [`StoreReader::poll`] has for the connection.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadPoll<'a> {
    /// Send these bytes now.
    Message(&'a [u8]),
    /// Nothing before this time.
    WaitUntil(Instant),
    /// Nothing until the store changes.
    Idle,
    /// The stream ended (or is gone) and everything was sent.
    Finished,
}

impl StoreReader {
    pub fn new(stream: &str) -> Self {
        StoreReader {
            stream: stream.to_owned(),
            last_number: None,
            playlist_etag: None,
            queue: VecDeque::new(),
            sending: None,
            ended: false,
            rewriter: ContinuityRewriter::default(),
            // alloc: once per reader.
            message: Vec::with_capacity(PACKETS_PER_MESSAGE * TS_PACKET),
            segments_sent: 0,
            segments_skipped: 0,
        }
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Looks for new segments (cheap when the playlist has not changed).
    pub fn refresh(&mut self, store: &SegmentStore) {
        let Some(object) = store.lookup_in(&self.stream, "ts/index.m3u8") else {
            // The stream was removed: what is queued cannot be fetched any more.
            self.ended = true;
            self.queue.clear();
            return;
        };
        if self.playlist_etag == Some(object.etag) {
            return;
        }
        self.playlist_etag = Some(object.etag);
        let playlist = TsPlaylist::parse(&String::from_utf8_lossy(&object.body));
        self.ended = playlist.ended;
        let newest = playlist.segments.last().map(|(n, _)| *n);
        match self.last_number {
            // A reader starts at the newest complete segment: the live edge.
            None => {
                if let Some(&(number, duration)) = playlist.segments.last() {
                    self.queue.push_back((number, duration));
                    self.last_number = Some(number);
                }
            }
            Some(last) => {
                for &(number, duration) in &playlist.segments {
                    if number > last {
                        self.queue.push_back((number, duration));
                    }
                }
                self.last_number = newest.max(Some(last));
            }
        }
        while self.queue.len() > MAX_QUEUED_SEGMENTS {
            self.queue.pop_front();
            self.segments_skipped += 1;
        }
    }

    /// The next message due at `now`, or when to ask again.
    pub fn poll(&mut self, now: Instant, store: &SegmentStore) -> ReadPoll<'_> {
        loop {
            if self.sending.is_none() {
                let Some((number, duration)) = self.queue.pop_front() else {
                    return if self.ended {
                        ReadPoll::Finished
                    } else {
                        ReadPoll::Idle
                    };
                };
                let Some(object) = store.lookup_in(&self.stream, &format!("ts/{number}.ts")) else {
                    // Left the window before we got to it.
                    self.segments_skipped += 1;
                    continue;
                };
                self.sending = Some(Sending {
                    body: object.body,
                    offset: 0,
                    started: now,
                    duration,
                });
            }
            let Some(sending) = self.sending.as_mut() else {
                continue;
            };
            let total = sending.body.len();
            if sending.offset >= total {
                self.sending = None;
                self.segments_sent += 1;
                continue;
            }
            // Due when the share of the segment sent so far matches the share of its
            // duration gone by; with a backlog, send at once.
            let share = sending.offset as f64 / total.max(1) as f64;
            let due = sending.started + sending.duration.mul_f64(share);
            if due > now && self.queue.is_empty() {
                return ReadPoll::WaitUntil(due);
            }
            let end = (sending.offset + PACKETS_PER_MESSAGE * TS_PACKET).min(total);
            self.message.clear();
            self.message
                .extend_from_slice(sending.body.get(sending.offset..end).unwrap_or(&[]));
            sending.offset = end;
            self.rewriter.rewrite(&mut self.message);
            return ReadPoll::Message(&self.message);
        }
    }

    /// Puts the last message back (the send buffer was full): it is handed out again.
    pub fn unsend(&mut self) {
        if let Some(sending) = self.sending.as_mut() {
            sending.offset = sending.offset.saturating_sub(self.message.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playlist_lines() {
        let p = TsPlaylist::parse(
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:20\n\
             #EXT-X-DISCONTINUITY\n#EXTINF:2.000000,\n20.ts\n#EXTINF:bad,\n21.ts\n\
             #EXT-X-ENDLIST\n",
        );
        assert_eq!(
            p.segments,
            vec![(20, Duration::from_secs(2)), (21, Duration::ZERO)]
        );
        assert!(p.ended);
        assert_eq!(TsPlaylist::parse(""), TsPlaylist::default());
    }

    fn packet(pid: u16, cc: u8, payload: bool) -> [u8; 188] {
        let mut p = [0xffu8; 188];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8 & 0x1f;
        p[2] = pid as u8;
        p[3] = if payload { 0x10 } else { 0x20 } | cc;
        p
    }

    #[test]
    fn continuity_counters_count_on_per_pid() {
        let mut bytes = Vec::new();
        // PID 256 jumps 5 -> 9; PID 257 starts at 3; an adaptation-only packet keeps its CC.
        for p in [
            packet(256, 5, true),
            packet(257, 3, true),
            packet(256, 9, true),
            packet(256, 9, false),
        ] {
            bytes.extend_from_slice(&p);
        }
        bytes.extend_from_slice(&[0x47, 1, 2]); // a torn tail is left alone
        let mut rewriter = ContinuityRewriter::default();
        rewriter.rewrite(&mut bytes);
        let cc = |i: usize| bytes[i * 188 + 3] & 0x0f;
        assert_eq!([cc(0), cc(1), cc(2), cc(3)], [0, 0, 1, 9]);
        assert_eq!(bytes[3 * 188 + 3] & 0xf0, 0x20);
        let mut more = packet(256, 0, true).to_vec();
        rewriter.rewrite(&mut more);
        assert_eq!(more[3] & 0x0f, 2);
        // Garbage that is not packets is never touched and never panics.
        let mut junk = vec![0u8; 400];
        rewriter.rewrite(&mut junk);
        assert!(junk.iter().all(|&b| b == 0));
    }
}
