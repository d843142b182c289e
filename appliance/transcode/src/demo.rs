//! The built-in `demo` stream: a moving test pattern with a burnt-in wall clock and frame
//! counter, plus a tone, encoded in real time with x264 and AAC.

use std::time::{Duration, SystemTime};

use media::{AacConfig, AccessUnit, AvcConfig};

/// Settings of the demo source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoConfig {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub video_kbps: u32,
    pub audio_kbps: u32,
    /// Every `keyframe_interval` there is an IDR (segments are cut on them).
    pub keyframe_interval: Duration,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            width: 1280,
            height: 720,
            fps: 30,
            video_kbps: 2000,
            audio_kbps: 128,
            keyframe_interval: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    #[error("demo encoder: {0}")]
    Encoder(String),
}

/// Renders and encodes the demo stream. The caller paces it: `produce(media_time, now)` encodes
/// every video and audio frame due up to `media_time` since the start.
#[derive(Debug)]
pub struct DemoSource {}

impl DemoSource {
    pub fn new(config: DemoConfig) -> Result<Self, DemoError> {
        let _ = config;
        unimplemented!()
    }

    pub fn video_config(&self) -> &AvcConfig {
        unimplemented!()
    }

    pub fn audio_config(&self) -> &AacConfig {
        unimplemented!()
    }

    /// Encodes all frames due up to `media_time`; `wall_clock` is burnt into the picture.
    pub fn produce(
        &mut self,
        media_time: Duration,
        wall_clock: SystemTime,
    ) -> Result<Vec<AccessUnit>, DemoError> {
        let _ = (media_time, wall_clock);
        unimplemented!()
    }
}
