//! The built-in `demo` stream: a moving test pattern with a burnt-in wall clock and frame
//! counter, plus a tone, encoded in real time with x264 and AAC (docs/demo.md).
//!
//! The source never reads a clock: the caller says how much media time has passed and what the
//! wall clock reads, and gets every unit due by then. Video is H.264 from [`X264Encoder`]
//! (zerolatency, so one unit per picture, dts = pts) with an IDR forced every
//! `keyframe_interval` counted in frames, so segments cut on them are exactly that long. Audio is
//! AAC-LC from [`AacEncoder`], 48 kHz stereo.

mod font;
mod pattern;
mod tone;

use std::time::{Duration, SystemTime};

use libav::{AacEncoder, AacSettings};
use media::encode::{AudioEncoder, RawAudioFrame, VideoEncoder};
use media::{AacConfig, AccessUnit, AvcConfig, VIDEO_TIMESCALE};
use x264::{X264Encoder, X264Preset, X264Settings};

use crate::TranscodeError;

use pattern::TestPattern;
use tone::Tone;

/// The demo's audio clock and format.
pub const DEMO_SAMPLE_RATE: u32 = 48_000;
const AUDIO_CHANNELS: u8 = 2;
const AAC_FRAME: usize = 1024;

/// Settings of the demo source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DemoConfig {
    /// Picture size; both even and at least 16.
    pub width: u32,
    pub height: u32,
    /// Frames per second, 1..=120.
    pub fps: u32,
    pub video_kbps: u32,
    pub audio_kbps: u32,
    /// Every `keyframe_interval` there is an IDR (segments are cut on them). Must be a whole
    /// number of frames.
    pub keyframe_interval: Duration,
}

impl Default for DemoConfig {
    /// 720p30 at 2 Mbit/s with IDRs every 2 s: real time on well under one core of the
    /// reference 2-core box in a release build (docs/demo.md has the measurements).
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

impl DemoConfig {
    /// The keyframe interval in frames, or why the config cannot run.
    fn keyframe_frames(&self) -> Result<u64, TranscodeError> {
        let invalid = |setting, reason: String| Err(TranscodeError::DemoConfig { setting, reason });
        if self.width < 64
            || self.height < 64
            || !self.width.is_multiple_of(2)
            || !self.height.is_multiple_of(2)
        {
            let size = format!(
                "{}x{} is not even and at least 16x16",
                self.width, self.height
            );
            return invalid("size", size);
        }
        if !(1..=120).contains(&self.fps) {
            return invalid("fps", format!("{} is not in 1..=120", self.fps));
        }
        let frame_nanos = u128::from(self.fps) * self.keyframe_interval.as_nanos();
        if frame_nanos == 0 || !frame_nanos.is_multiple_of(1_000_000_000) {
            let reason = format!(
                "{:?} is not a whole number of frames at {} fps",
                self.keyframe_interval, self.fps
            );
            return invalid("keyframe_interval", reason);
        }
        u64::try_from(frame_nanos / 1_000_000_000)
            .or_else(|_| invalid("keyframe_interval", format!("{:?}", self.keyframe_interval)))
    }
}

/// Renders and encodes the demo stream. The caller paces it: `produce(media_time, now)` encodes
/// every video and audio frame due up to `media_time` since the start.
///
/// "Due" is inclusive: a unit whose pts equals `media_time` is returned, so `produce(0, now)`
/// yields the first picture at once. Video pts is `frame * 90000 / fps`; audio pts counts
/// samples at 48 kHz, 1024 per unit. A call renders every picture it is behind by, so a caller
/// that stalls catches up in one burst rather than leaving a gap in the timestamps.
#[derive(Debug)]
pub struct DemoSource {
    config: DemoConfig,
    keyframe_frames: u64,
    video: X264Encoder,
    audio: AacEncoder,
    video_config: AvcConfig,
    audio_config: AacConfig,
    pattern: TestPattern,
    tone: Tone,
    /// Index of the next picture to render.
    next_frame: u64,
    /// Index of the next picture to come out of x264 (in order: no B-frames).
    next_encoded: u64,
    /// Absolute index of the next audio sample to hand the encoder.
    next_sample: u64,
    /// Audio units returned so far (the encoder emits one per frame, one frame late).
    audio_units: u64,
    /// Scratch, reused: one AAC frame of each channel, and the units of one call per track.
    left: Vec<f32>,
    right: Vec<f32>,
    video_out: Vec<AccessUnit>,
    audio_out: Vec<AccessUnit>,
}

impl DemoSource {
    pub fn new(config: DemoConfig) -> Result<Self, TranscodeError> {
        let keyframe_frames = config.keyframe_frames()?;
        let video = X264Encoder::new(X264Settings {
            width: config.width,
            height: config.height,
            fps_num: config.fps,
            fps_den: 1,
            bitrate_kbps: config.video_kbps,
            preset: X264Preset::Veryfast,
            // IDRs come only from the frame count below, never from x264 itself.
            keyint_max: None,
            threads: 1,
            ..X264Settings::default()
        })
        .map_err(TranscodeError::DemoVideo)?;
        let audio = AacEncoder::new(AacSettings {
            sample_rate: DEMO_SAMPLE_RATE,
            channels: AUDIO_CHANNELS,
            bitrate_kbps: config.audio_kbps,
        })
        .map_err(TranscodeError::DemoAudio)?;
        Ok(DemoSource {
            keyframe_frames,
            video_config: video.avc_config().clone(),
            audio_config: audio.aac_config().clone(),
            video,
            audio,
            pattern: TestPattern::new(config.width as usize, config.height as usize, config.fps),
            tone: Tone::new(DEMO_SAMPLE_RATE),
            next_frame: 0,
            next_encoded: 0,
            next_sample: 0,
            audio_units: 0,
            left: vec![0.0; AAC_FRAME],
            right: vec![0.0; AAC_FRAME],
            video_out: Vec::new(),
            audio_out: Vec::new(),
            config,
        })
    }

    pub fn config(&self) -> &DemoConfig {
        &self.config
    }

    pub fn video_config(&self) -> &AvcConfig {
        &self.video_config
    }

    pub fn audio_config(&self) -> &AacConfig {
        &self.audio_config
    }

    /// Encodes all frames due up to `media_time`; `wall_clock` is burnt into the picture.
    pub fn produce(
        &mut self,
        media_time: Duration,
        wall_clock: SystemTime,
    ) -> Result<Vec<AccessUnit>, TranscodeError> {
        // alloc: one Vec per call for the caller to own; `produce_into` avoids it.
        let mut out = Vec::new();
        self.produce_into(media_time, wall_clock, &mut out)?;
        Ok(out)
    }

    /// As [`DemoSource::produce`], appending to `out` (in dts order, video before audio at
    /// equal times).
    pub fn produce_into(
        &mut self,
        media_time: Duration,
        wall_clock: SystemTime,
        out: &mut Vec<AccessUnit>,
    ) -> Result<(), TranscodeError> {
        self.produce_video(media_time, wall_clock)?;
        self.produce_audio(media_time)?;
        merge_by_time(&mut self.video_out, &mut self.audio_out, out);
        Ok(())
    }

    fn frame_pts(&self, frame: u64) -> i64 {
        (u128::from(frame) * u128::from(VIDEO_TIMESCALE) / u128::from(self.config.fps)) as i64
    }

    fn produce_video(
        &mut self,
        media_time: Duration,
        wall_clock: SystemTime,
    ) -> Result<(), TranscodeError> {
        let due = ticks(media_time, VIDEO_TIMESCALE);
        loop {
            let frame = self.next_frame;
            let pts = self.frame_pts(frame);
            if pts > due {
                return Ok(());
            }
            // The wall clock belongs to `media_time`; earlier frames of a catch-up burst show
            // the time they were due, so the burnt-in clock runs smoothly.
            let frame_time = Duration::from_nanos(
                (u128::from(frame) * 1_000_000_000 / u128::from(self.config.fps)) as u64,
            );
            let shown = wall_clock
                .checked_sub(media_time.saturating_sub(frame_time))
                .unwrap_or(wall_clock);
            let force_idr = frame.is_multiple_of(self.keyframe_frames);
            let picture = self.pattern.render(frame, shown);
            self.video
                .submit(&picture.as_raw_frame(pts), force_idr)
                .map_err(TranscodeError::DemoVideo)?;
            self.next_frame += 1;
            while let Some(unit) = self
                .video
                .poll_packet()
                .map_err(TranscodeError::DemoVideo)?
            {
                let expect_idr = self.next_encoded.is_multiple_of(self.keyframe_frames);
                if unit.keyframe != expect_idr || unit.pts != self.frame_pts(self.next_encoded) {
                    return Err(TranscodeError::DemoEncoder(format!(
                        "x264 returned pts {} keyframe={} for frame {} (keyframe={expect_idr})",
                        unit.pts, unit.keyframe, self.next_encoded
                    )));
                }
                self.next_encoded += 1;
                // alloc: grows to one call's worth of units once, then is reused.
                self.video_out.push(unit);
            }
        }
    }

    fn produce_audio(&mut self, media_time: Duration) -> Result<(), TranscodeError> {
        let due = ticks(media_time, DEMO_SAMPLE_RATE);
        while self.audio_units * AAC_FRAME as u64 <= due as u64 {
            self.tone.fill(self.next_sample, &mut self.left);
            self.right.copy_from_slice(&self.left);
            let channels = [&self.left[..], &self.right[..]];
            self.audio
                .submit(&RawAudioFrame {
                    pts: self.next_sample as i64,
                    channels: &channels,
                })
                .map_err(TranscodeError::DemoAudio)?;
            self.next_sample += AAC_FRAME as u64;
            while let Some(unit) = self
                .audio
                .poll_packet()
                .map_err(TranscodeError::DemoAudio)?
            {
                self.audio_units += 1;
                // alloc: grows to one call's worth of units once, then is reused.
                self.audio_out.push(unit);
            }
            // The encoder holds back one frame; more than a few means it has stopped emitting.
            if self.next_sample / AAC_FRAME as u64 > self.audio_units + 4 {
                return Err(TranscodeError::DemoEncoder(format!(
                    "AAC encoder returned {} units for {} frames",
                    self.audio_units,
                    self.next_sample / AAC_FRAME as u64
                )));
            }
        }
        Ok(())
    }
}

/// `time` in ticks of a `timescale` clock, rounded down.
fn ticks(time: Duration, timescale: u32) -> i64 {
    (time.as_nanos() * u128::from(timescale) / 1_000_000_000).min(i64::MAX as u128) as i64
}

/// Moves the units of both tracks into `out` ordered by decode time (video first at equal
/// times), leaving both inputs empty with their capacity.
fn merge_by_time(
    video: &mut Vec<AccessUnit>,
    audio: &mut Vec<AccessUnit>,
    out: &mut Vec<AccessUnit>,
) {
    out.reserve(video.len() + audio.len());
    let mut video_units = video.drain(..).peekable();
    let mut audio_units = audio.drain(..).peekable();
    loop {
        let take_video = match (video_units.peek(), audio_units.peek()) {
            (Some(v), Some(a)) => {
                // Cross-multiplied: v.dts / 90000 <= a.dts / 48000, exactly.
                i128::from(v.dts) * i128::from(DEMO_SAMPLE_RATE)
                    <= i128::from(a.dts) * i128::from(VIDEO_TIMESCALE)
            }
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return,
        };
        let next = if take_video {
            video_units.next()
        } else {
            audio_units.next()
        };
        out.extend(next);
    }
}

#[cfg(test)]
mod tests;
