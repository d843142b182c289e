//! The live packager of one stream: cuts segments on keyframes, muxes them as CMAF (one track
//! per rendition path) and MPEG-TS, and renders the HLS playlists and the DASH MPD after every
//! change. Pure: wall-clock time comes in as an argument.
//!
//! Object paths (relative to `/live/<stream>/`):
//! `index.m3u8`, `index.mpd`, `source/index.m3u8`, `source/init.mp4`, `source/N.m4s`,
//! `audio/index.m3u8`, `audio/init.mp4`, `audio/N.m4s`, `ts/index.m3u8`, `ts/N.ts`.

use std::time::Duration;

use media::{AacConfig, AccessUnit, AvcConfig};

/// Settings of a stream's packager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PackagerConfig {
    /// Segments are cut on the first keyframe at or after this much media time.
    pub target_duration: Duration,
    /// Segments listed in a live playlist (older ones are removed from the store).
    pub window: usize,
}

impl Default for PackagerConfig {
    fn default() -> Self {
        PackagerConfig {
            target_duration: Duration::from_secs(2),
            window: 6,
        }
    }
}

/// What an output object is, so the engine can pick its content type and cache policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// HLS playlist, multivariant or media; changes as the stream advances.
    Playlist,
    /// DASH MPD; changes as the stream advances.
    Mpd,
    /// A playlist or MPD of an ended stream: it will not change again.
    FinalPlaylist,
    FinalMpd,
    VideoInit,
    AudioInit,
    VideoSegment,
    AudioSegment,
    TsSegment,
}

/// One change to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackagerOutput {
    Put {
        path: String,
        kind: ObjectKind,
        body: bytes::Bytes,
    },
    Remove {
        path: String,
    },
    /// The end of one consistent batch: publish everything before it together.
    Commit,
}

/// See the module docs.
#[derive(Debug)]
pub struct LivePackager {}

impl LivePackager {
    pub fn new(config: PackagerConfig) -> Self {
        let _ = config;
        unimplemented!()
    }

    /// A publisher (re)starts with these tracks. `wall_clock_ms` is Unix time in ms. The first
    /// call starts the stream; a later one (a publisher back within the grace period) continues
    /// the same playlists after a discontinuity.
    pub fn handle_start(
        &mut self,
        wall_clock_ms: i64,
        video: Option<AvcConfig>,
        audio: Option<AacConfig>,
    ) {
        let _ = (wall_clock_ms, video, audio);
        unimplemented!()
    }

    /// One access unit of the current publisher. `wall_clock_ms` is when it arrived.
    pub fn handle_unit(&mut self, wall_clock_ms: i64, unit: AccessUnit) {
        let _ = (wall_clock_ms, unit);
        unimplemented!()
    }

    /// The publisher went away: the segment in progress is closed and published.
    pub fn handle_publisher_gone(&mut self, wall_clock_ms: i64) {
        let _ = wall_clock_ms;
        unimplemented!()
    }

    /// The grace period passed: playlists get EXT-X-ENDLIST and the MPD becomes static.
    pub fn handle_end(&mut self, wall_clock_ms: i64) {
        let _ = wall_clock_ms;
        unimplemented!()
    }

    pub fn poll_output(&mut self) -> Option<PackagerOutput> {
        unimplemented!()
    }
}
