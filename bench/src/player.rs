//! One simulated live HLS player, sans-IO: what to fetch next, when to poll the playlist, and
//! a playout clock that counts stalls. The worker owns the sockets and passes `now` in.
//!
//! Behaviour modelled on hls.js defaults (its `liveSyncDurationCount = 3`,
//! `maxBufferLength = 30`, and its playlist reload rule): start three segments behind the live
//! edge, fetch segments back to back while they are listed and the buffer is under 30 s, and
//! reload the playlist one target duration after the last load (half of it when the playlist
//! had not changed; RFC 8216 §6.3.4 allows that). Playback starts when the first segment has
//! arrived. A **stall** is a segment that arrives after the playback of everything before it
//! has ended; its stall time is how long the buffer stayed empty.

use std::time::{Duration, Instant};

/// What the player asks the worker to fetch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Playlist,
    /// The init segment with this catalogue id (`EXT-X-MAP`).
    Init {
        map: u32,
    },
    Segment {
        sequence: u64,
    },
}

/// What the worker knows about a listed segment (from the playlists it has parsed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SegmentInfo {
    pub duration: Duration,
    pub map: Option<u32>,
    pub gap: bool,
}

/// How a loaded playlist changed the player's plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaylistOutcome {
    Fine,
    /// The next segment had already left the playlist window: the player jumped ahead.
    FellBehind,
    /// `EXT-X-ENDLIST` and nothing more to fetch: the viewer is done.
    Ended,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlayerConfig {
    /// Segments behind the live edge to start at (hls.js: 3).
    pub start_behind: u32,
    /// Stop fetching ahead beyond this much buffered media (hls.js: 30 s).
    pub max_buffer: Duration,
}

impl Default for PlayerConfig {
    fn default() -> Self {
        PlayerConfig {
            start_behind: 3,
            max_buffer: Duration::from_secs(30),
        }
    }
}

/// Stall and startup figures of one viewer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Playout {
    pub stalls: u32,
    pub stall_time: Duration,
    /// From the first request to the end of the first segment, once playback started.
    pub startup: Option<Duration>,
    pub segments: u32,
}

#[derive(Debug)]
pub struct Player {
    config: PlayerConfig,
    joined: Instant,
    /// Extra delay, as a fraction of the target duration, before each viewer's second
    /// playlist poll: spreads viewers evenly in phase (0 for a flash crowd).
    phase: f64,
    target_duration: Duration,
    next_playlist_at: Instant,
    loaded_playlist: bool,
    last_listed: Option<u64>,
    next_sequence: Option<u64>,
    map_loaded: Option<u32>,
    busy: bool,
    ended: bool,
    play_start: Option<Instant>,
    /// Media time fetched since playback started.
    buffered: Duration,
    playout: Playout,
}

impl Player {
    /// A viewer that starts with a playlist request at `start`.
    pub fn new(config: PlayerConfig, start: Instant, phase: f64) -> Player {
        Player {
            config,
            joined: start,
            phase: phase.clamp(0.0, 1.0),
            target_duration: Duration::from_secs(2),
            next_playlist_at: start,
            loaded_playlist: false,
            last_listed: None,
            next_sequence: None,
            map_loaded: None,
            busy: false,
            ended: false,
            play_start: None,
            buffered: Duration::ZERO,
            playout: Playout::default(),
        }
    }

    /// When the buffer runs dry, once playing (playback position catches up with the end of
    /// what has been fetched).
    fn dry_at(&self) -> Option<Instant> {
        self.play_start
            .map(|start| start + self.buffered + self.playout.stall_time)
    }

    fn buffer_ahead(&self, now: Instant) -> Duration {
        self.dry_at()
            .map_or(Duration::ZERO, |dry| dry.saturating_duration_since(now))
    }

    pub fn is_busy(&self) -> bool {
        self.busy
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The next request to make now, if any; marks the player busy until the matching
    /// `*_loaded` or `request_failed`. `segment` looks up a listed segment.
    pub fn next_request(
        &mut self,
        now: Instant,
        segment: impl Fn(u64) -> Option<SegmentInfo>,
    ) -> Option<Want> {
        if self.busy || self.ended {
            return None;
        }
        while let (Some(next), Some(last)) = (self.next_sequence, self.last_listed) {
            if next > last {
                break;
            }
            let Some(info) = segment(next) else {
                break;
            };
            if info.gap {
                // No media for this segment: the player plays over the gap.
                self.buffered += info.duration;
                self.next_sequence = Some(next + 1);
                continue;
            }
            if let Some(map) = info.map
                && self.map_loaded != Some(map)
            {
                self.busy = true;
                return Some(Want::Init { map });
            }
            if self.buffer_ahead(now) < self.config.max_buffer {
                self.busy = true;
                return Some(Want::Segment { sequence: next });
            }
            break;
        }
        if now >= self.next_playlist_at {
            self.busy = true;
            return Some(Want::Playlist);
        }
        None
    }

    /// The earliest time `next_request` may have something new without a response arriving.
    pub fn wake_at(&self) -> Instant {
        self.next_playlist_at
    }

    /// A playlist arrived: `first..=last` are listed.
    pub fn playlist_loaded(
        &mut self,
        now: Instant,
        target_duration: Duration,
        listed: Option<(u64, u64)>,
        ended: bool,
    ) -> PlaylistOutcome {
        self.busy = false;
        self.target_duration = target_duration;
        let changed = listed.map(|(_, last)| last) != self.last_listed;
        let mut reload = if changed || !self.loaded_playlist {
            target_duration
        } else {
            target_duration / 2
        };
        if !self.loaded_playlist {
            reload += target_duration.mul_f64(self.phase);
        }
        self.loaded_playlist = true;
        self.next_playlist_at = now + reload;
        let mut outcome = PlaylistOutcome::Fine;
        if let Some((first, last)) = listed {
            self.last_listed = Some(last);
            match self.next_sequence {
                None => {
                    let behind = u64::from(self.config.start_behind.max(1)) - 1;
                    self.next_sequence = Some(last.saturating_sub(behind).max(first));
                }
                Some(next) if next < first => {
                    self.next_sequence = Some(first);
                    outcome = PlaylistOutcome::FellBehind;
                }
                Some(_) => {}
            }
        }
        if ended && self.next_sequence > self.last_listed {
            self.ended = true;
            return PlaylistOutcome::Ended;
        }
        outcome
    }

    pub fn init_loaded(&mut self, map: u32) {
        self.busy = false;
        self.map_loaded = Some(map);
    }

    /// A segment finished downloading at `now`.
    pub fn segment_loaded(&mut self, now: Instant, sequence: u64, duration: Duration) {
        self.busy = false;
        self.next_sequence = Some(sequence + 1);
        self.playout.segments += 1;
        match self.dry_at() {
            None => {
                self.play_start = Some(now);
                self.playout.startup = Some(now.saturating_duration_since(self.joined));
            }
            Some(dry) if now > dry => {
                self.playout.stalls += 1;
                self.playout.stall_time += now - dry;
            }
            Some(_) => {}
        }
        self.buffered += duration;
    }

    /// A request failed: a segment is skipped, a playlist is polled again soon.
    pub fn request_failed(&mut self, now: Instant, want: Want) {
        self.busy = false;
        match want {
            Want::Segment { sequence } => self.next_sequence = Some(sequence + 1),
            Want::Init { map } => self.map_loaded = Some(map),
            Want::Playlist => self.next_playlist_at = now + self.target_duration / 2,
        }
    }

    /// A new connection after a failure: start over like a player that reloads.
    pub fn restart(&mut self, now: Instant) {
        self.busy = false;
        self.next_playlist_at = now;
    }

    /// The figures at the end of the run; a buffer that is empty now counts as one more stall.
    pub fn finish(&self, now: Instant) -> Playout {
        let mut playout = self.playout;
        if !self.ended
            && let Some(dry) = self.dry_at()
            && now > dry
        {
            playout.stalls += 1;
            playout.stall_time += now - dry;
        }
        playout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD: Duration = Duration::from_secs(2);

    fn info(_: u64) -> Option<SegmentInfo> {
        Some(SegmentInfo {
            duration: TD,
            map: Some(0),
            gap: false,
        })
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn starts_three_behind_the_edge_after_the_init_segment() {
        let t0 = Instant::now();
        let mut p = Player::new(PlayerConfig::default(), t0, 0.0);
        assert_eq!(p.next_request(t0, info), Some(Want::Playlist));
        assert_eq!(p.next_request(t0, info), None, "busy");
        p.playlist_loaded(t0 + ms(5), TD, Some((10, 15)), false);
        assert_eq!(p.next_request(t0, info), Some(Want::Init { map: 0 }));
        p.init_loaded(0);
        assert_eq!(
            p.next_request(t0, info),
            Some(Want::Segment { sequence: 13 })
        );
        p.segment_loaded(t0 + ms(20), 13, TD);
        assert_eq!(
            p.next_request(t0, info),
            Some(Want::Segment { sequence: 14 })
        );
        p.segment_loaded(t0 + ms(30), 14, TD);
        p.next_request(t0, info);
        p.segment_loaded(t0 + ms(40), 15, TD);
        // Caught up with the edge: nothing until the playlist is due again.
        assert_eq!(p.next_request(t0 + ms(100), info), None);
        assert_eq!(p.wake_at(), t0 + ms(5) + TD);
        assert_eq!(p.next_request(p.wake_at(), info), Some(Want::Playlist));
        let out = p.finish(t0 + ms(20) + 3 * TD);
        assert_eq!(out.stalls, 0);
        assert_eq!(out.startup, Some(ms(20)));
        assert_eq!(out.segments, 3);
    }

    #[test]
    fn a_late_segment_is_a_stall_with_its_time() {
        let t0 = Instant::now();
        let config = PlayerConfig {
            start_behind: 1,
            ..PlayerConfig::default()
        };
        let mut p = Player::new(config, t0, 0.0);
        p.next_request(t0, info);
        p.playlist_loaded(t0, TD, Some((1, 1)), false);
        p.next_request(t0, info);
        p.init_loaded(0);
        p.next_request(t0, info);
        p.segment_loaded(t0, 1, TD);
        // Segment 2 arrives 500 ms after segment 1 finished playing.
        p.playlist_loaded(t0 + TD, TD, Some((1, 2)), false);
        assert_eq!(
            p.next_request(t0 + TD, info),
            Some(Want::Segment { sequence: 2 })
        );
        p.segment_loaded(t0 + TD + ms(500), 2, TD);
        let out = p.finish(t0 + TD + ms(600));
        assert_eq!((out.stalls, out.stall_time), (1, ms(500)));
        // Playback resumed at 2.5 s with 2 s of media: dry again at 4.5 s.
        let out = p.finish(t0 + ms(4700));
        assert_eq!((out.stalls, out.stall_time), (2, ms(700)));
    }

    #[test]
    fn unchanged_playlist_reloads_at_half_target_and_phase_spreads_the_second_poll() {
        let t0 = Instant::now();
        let mut p = Player::new(PlayerConfig::default(), t0, 0.5);
        p.next_request(t0, info);
        p.playlist_loaded(t0, TD, Some((1, 3)), false);
        assert_eq!(
            p.wake_at(),
            t0 + TD + TD / 2,
            "phase 0.5 delays the second poll"
        );
        p.request_failed(t0, Want::Init { map: 0 });
        let t1 = p.wake_at();
        while let Some(Want::Segment { sequence }) = p.next_request(t1, info) {
            p.segment_loaded(t1, sequence, TD);
        }
        p.playlist_loaded(t1, TD, Some((1, 3)), false);
        assert_eq!(p.wake_at(), t1 + TD / 2);
    }

    #[test]
    fn falls_behind_the_window_and_jumps() {
        let t0 = Instant::now();
        let mut p = Player::new(PlayerConfig::default(), t0, 0.0);
        p.next_request(t0, info);
        p.playlist_loaded(t0, TD, Some((1, 5)), false);
        assert_eq!(
            p.playlist_loaded(t0, TD, Some((9, 14)), false),
            PlaylistOutcome::FellBehind
        );
        p.next_request(t0, info);
        p.init_loaded(0);
        assert_eq!(
            p.next_request(t0, info),
            Some(Want::Segment { sequence: 9 })
        );
    }

    #[test]
    fn gaps_are_skipped_and_endlist_ends() {
        let t0 = Instant::now();
        let mut p = Player::new(PlayerConfig::default(), t0, 0.0);
        let gaps = |seq: u64| {
            Some(SegmentInfo {
                duration: TD,
                map: None,
                gap: seq == 2,
            })
        };
        p.next_request(t0, gaps);
        p.playlist_loaded(t0, TD, Some((1, 3)), false);
        assert_eq!(
            p.next_request(t0, gaps),
            Some(Want::Segment { sequence: 1 })
        );
        p.segment_loaded(t0, 1, TD);
        assert_eq!(
            p.next_request(t0, gaps),
            Some(Want::Segment { sequence: 3 })
        );
        p.segment_loaded(t0, 3, TD);
        assert_eq!(
            p.playlist_loaded(t0, TD, Some((1, 3)), true),
            PlaylistOutcome::Ended
        );
        assert!(p.is_ended());
        assert_eq!(
            p.finish(t0 + 10 * TD).stalls,
            0,
            "an ended stream is no stall"
        );
    }
}
