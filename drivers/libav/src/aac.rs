//! AAC-LC encoding with FFmpeg's native `aac` encoder.
//!
//! Input is planar f32 (FFmpeg's FLTP, the encoder's only sample format) of any length; it is
//! gathered into 1024-sample frames (ISO/IEC 14496-3 §4.5.2.1: one raw_data_block per frame) in
//! one reused `AVFrame`. Output units are raw AAC frames (no ADTS), pts on the sample-rate
//! clock, 1024 apart. The AudioSpecificConfig comes from the encoder's extradata
//! (`AV_CODEC_FLAG_GLOBAL_HEADER`), so the track config is known before the first frame.
//!
//! Priming: the encoder emits one frame more than it is given and stamps its packets
//! `initial_padding` (1024) samples early, so the first packet is the MDCT priming frame at
//! -1024. We shift every packet by that delay: units start at the first input pts and never go
//! negative (a `tfdt` cannot), at the cost of the decoded audio starting
//! [`AacEncoder::priming_samples`] (21.3 ms at 48 kHz) late, as in most live encoders that do
//! not write an edit list.

use std::collections::VecDeque;
use std::fmt;

use bytes::Bytes;
use ffmpeg_next::format::Sample;
use ffmpeg_next::format::sample::Type as SampleType;
use ffmpeg_next::{ChannelLayout, codec, encoder, frame};
use media::encode::{AudioEncoder, RawAudioFrame};
use media::{AacConfig, AccessUnit, Codec, TrackConfig};

use crate::{LibavError, ffmpeg_error, quiet_logging};

/// Samples per AAC-LC frame.
const FRAME_SAMPLES: usize = 1024;

/// How to open the AAC encoder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AacSettings {
    /// One of the AAC sampling frequencies (ISO/IEC 14496-3 Table 1.18), e.g. 48000.
    pub sample_rate: u32,
    /// 1 (mono) or 2 (stereo).
    pub channels: u8,
    pub bitrate_kbps: u32,
}

impl Default for AacSettings {
    fn default() -> Self {
        AacSettings {
            sample_rate: 48_000,
            channels: 2,
            bitrate_kbps: 128,
        }
    }
}

/// An open AAC-LC encoder. See the module docs for framing and timestamps.
pub struct AacEncoder {
    encoder: encoder::Audio,
    settings: AacSettings,
    config: AacConfig,
    /// The frame being filled; reused for every frame.
    staging: frame::Audio,
    /// Samples per channel already in `staging`.
    filled: usize,
    /// The pts of the first sample in `staging`, once known.
    staging_pts: Option<i64>,
    /// Reused for every `avcodec_receive_packet`.
    packet: ffmpeg_next::Packet,
    /// Samples the encoder's packet timestamps lag their input by (`initial_padding`).
    priming: i64,
    ready: VecDeque<AccessUnit>,
    flushing: bool,
}

impl fmt::Debug for AacEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AacEncoder")
            .field("settings", &self.settings)
            .field("filled", &self.filled)
            .field("staging_pts", &self.staging_pts)
            .field("ready", &self.ready.len())
            .field("flushing", &self.flushing)
            .finish_non_exhaustive()
    }
}

impl AacEncoder {
    pub fn new(settings: AacSettings) -> Result<Self, LibavError> {
        quiet_logging();
        let layout = match settings.channels {
            1 => ChannelLayout::MONO,
            2 => ChannelLayout::STEREO,
            other => {
                return Err(LibavError::InvalidSettings {
                    setting: "channels",
                    reason: format!("{other} (1 or 2 supported)"),
                });
            }
        };
        if !(8..=512).contains(&settings.bitrate_kbps) {
            return Err(LibavError::InvalidSettings {
                setting: "bitrate_kbps",
                reason: format!("{} is not in 8..=512", settings.bitrate_kbps),
            });
        }
        let rate =
            i32::try_from(settings.sample_rate).map_err(|_| LibavError::InvalidSettings {
                setting: "sample_rate",
                reason: settings.sample_rate.to_string(),
            })?;
        let aac = encoder::find(codec::Id::AAC).ok_or(LibavError::EncoderNotFound("aac"))?;
        let mut audio = codec::context::Context::new_with_codec(aac)
            .encoder()
            .audio()
            .map_err(ffmpeg_error("avcodec_alloc_context3"))?;
        let format = Sample::F32(SampleType::Planar);
        audio.set_rate(rate);
        audio.set_format(format);
        audio.set_channel_layout(layout);
        audio.set_channels(i32::from(settings.channels));
        audio.set_bit_rate(settings.bitrate_kbps as usize * 1000);
        audio.set_time_base((1, rate));
        audio.set_flags(codec::Flags::GLOBAL_HEADER);
        let encoder = audio
            .open_as(aac)
            .map_err(ffmpeg_error("avcodec_open2 (aac)"))?;
        if encoder.frame_size() as usize != FRAME_SAMPLES {
            return Err(LibavError::InvalidSettings {
                setting: "frame_size",
                reason: format!("encoder uses {} samples per frame", encoder.frame_size()),
            });
        }
        // SAFETY: the context is open; avcodec_open2 set `extradata` to `extradata_size` bytes
        // (or left it null), owned by the context, which outlives this borrow.
        let (asc, priming) = unsafe {
            let context = &*encoder.as_ptr();
            let asc = match (
                context.extradata.is_null(),
                usize::try_from(context.extradata_size),
            ) {
                (false, Ok(len)) => std::slice::from_raw_parts(context.extradata, len).to_vec(),
                _ => Vec::new(),
            };
            (asc, i64::from(context.initial_padding))
        };
        let config = AacConfig::from_asc(&asc)?;

        let mut staging = frame::Audio::new(format, FRAME_SAMPLES, layout);
        staging.set_channels(u16::from(settings.channels));
        staging.set_rate(settings.sample_rate);
        Ok(AacEncoder {
            encoder,
            settings,
            config,
            staging,
            filled: 0,
            staging_pts: None,
            packet: ffmpeg_next::Packet::empty(),
            priming,
            ready: VecDeque::new(),
            flushing: false,
        })
    }

    pub fn settings(&self) -> &AacSettings {
        &self.settings
    }

    /// The AudioSpecificConfig the encoder wrote, parsed.
    pub fn aac_config(&self) -> &AacConfig {
        &self.config
    }

    /// How many samples the decoded audio of a unit lags its pts (see the module docs).
    pub fn priming_samples(&self) -> i64 {
        self.priming
    }

    /// Hands the full (or, at the end, padded) staging frame to the encoder and collects every
    /// packet it has ready.
    fn send_staging(&mut self) -> Result<(), LibavError> {
        let pts = self.staging_pts.unwrap_or(0);
        self.staging.set_pts(Some(pts));
        self.staging.set_samples(FRAME_SAMPLES);
        self.encoder
            .send_frame(&self.staging)
            .map_err(ffmpeg_error("avcodec_send_frame"))?;
        self.filled = 0;
        self.staging_pts = Some(pts + FRAME_SAMPLES as i64);
        self.receive()
    }

    fn receive(&mut self) -> Result<(), LibavError> {
        loop {
            match self.encoder.receive_packet(&mut self.packet) {
                Ok(()) => {
                    let pts = self.packet.pts().unwrap_or(0) + self.priming;
                    // alloc: one buffer per AAC frame (a few hundred bytes); the unit outlives
                    // the reused packet.
                    let payload = Bytes::copy_from_slice(self.packet.data().unwrap_or_default());
                    self.ready.push_back(AccessUnit {
                        codec: Codec::Aac,
                        pts,
                        dts: pts,
                        keyframe: true,
                        payload,
                    });
                }
                Err(ffmpeg_next::Error::Eof) => return Ok(()),
                Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::error::EAGAIN => {
                    return Ok(());
                }
                Err(source) => {
                    return Err(LibavError::Ffmpeg {
                        call: "avcodec_receive_packet",
                        source,
                    });
                }
            }
        }
    }

    /// Makes the staging frame's buffers ours alone before writing into them: the encoder may
    /// still hold a reference to the frame it was last given.
    fn make_staging_writable(&mut self) -> Result<(), LibavError> {
        // SAFETY: `staging` owns a valid AVFrame with allocated buffers; av_frame_make_writable
        // only replaces its buffers with private copies when they are shared.
        let code = unsafe { ffmpeg_next::ffi::av_frame_make_writable(self.staging.as_mut_ptr()) };
        if code < 0 {
            return Err(LibavError::Ffmpeg {
                call: "av_frame_make_writable",
                source: ffmpeg_next::Error::from(code),
            });
        }
        Ok(())
    }
}

impl AudioEncoder for AacEncoder {
    type Error = LibavError;

    fn submit(&mut self, frame: &RawAudioFrame<'_>) -> Result<(), LibavError> {
        if self.flushing {
            return Err(LibavError::SubmitAfterFlush);
        }
        let channels = usize::from(self.settings.channels);
        if frame.channels.len() != channels {
            return Err(LibavError::ChannelCount {
                expected: channels,
                got: frame.channels.len(),
            });
        }
        let samples = frame.channels.first().map_or(0, |c| c.len());
        for (channel, data) in frame.channels.iter().enumerate() {
            if data.len() != samples {
                return Err(LibavError::ChannelLength {
                    channel,
                    len: data.len(),
                    expected: samples,
                });
            }
        }
        let mut offset = 0;
        while offset < samples {
            if self.filled == 0 {
                // A new frame starts here, so it takes this input's timestamp: a caller that
                // submits whole frames gets exactly its own pts back.
                self.staging_pts = Some(frame.pts + offset as i64);
                self.make_staging_writable()?;
            }
            let take = (FRAME_SAMPLES - self.filled).min(samples - offset);
            for (channel, data) in frame.channels.iter().enumerate() {
                let plane = self.staging.plane_mut::<f32>(channel);
                plane[self.filled..self.filled + take]
                    .copy_from_slice(&data[offset..offset + take]);
            }
            self.filled += take;
            offset += take;
            if self.filled == FRAME_SAMPLES {
                self.send_staging()?;
            }
        }
        Ok(())
    }

    fn poll_packet(&mut self) -> Result<Option<AccessUnit>, LibavError> {
        Ok(self.ready.pop_front())
    }

    fn flush(&mut self) -> Result<(), LibavError> {
        if self.flushing {
            return Ok(());
        }
        self.flushing = true;
        if self.filled > 0 {
            for channel in 0..usize::from(self.settings.channels) {
                self.staging.plane_mut::<f32>(channel)[self.filled..].fill(0.0);
            }
            self.send_staging()?;
        }
        self.encoder
            .send_eof()
            .map_err(ffmpeg_error("avcodec_send_frame (eof)"))?;
        self.receive()
    }

    fn track_config(&self) -> TrackConfig {
        TrackConfig::Aac(self.config.clone())
    }
}

impl Drop for AacEncoder {
    fn drop(&mut self) {
        // Draining first keeps FFmpeg from warning "frames left in the queue on closing" each
        // time a live encoder is shut down; what comes out is discarded.
        if !self.flushing {
            let _ = self.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::f32::consts::TAU;
    use std::process::Command;

    use super::*;

    fn encode_sine(encoder: &mut AacEncoder, seconds: f32, chunk: usize) -> Vec<AccessUnit> {
        let rate = encoder.settings().sample_rate as f32;
        let total = (seconds * rate) as usize;
        let left: Vec<f32> = (0..total)
            .map(|i| 0.5 * (TAU * 440.0 * i as f32 / rate).sin())
            .collect();
        let right: Vec<f32> = left.iter().map(|s| -s).collect();
        let mut units = Vec::new();
        for start in (0..total).step_by(chunk) {
            let end = (start + chunk).min(total);
            let channels = [&left[start..end], &right[start..end]];
            let frame = RawAudioFrame {
                pts: start as i64,
                channels: &channels,
            };
            encoder.submit(&frame).unwrap();
            while let Some(unit) = encoder.poll_packet().unwrap() {
                units.push(unit);
            }
        }
        encoder.flush().unwrap();
        while let Some(unit) = encoder.poll_packet().unwrap() {
            units.push(unit);
        }
        units
    }

    #[test]
    fn one_second_of_sine_gives_contiguous_frames_and_a_parsed_config() {
        let mut encoder = AacEncoder::new(AacSettings::default()).unwrap();
        let config = encoder.aac_config().clone();
        assert_eq!(
            (config.object_type, config.sample_rate, config.channels),
            (2, 48_000, 2)
        );
        assert_eq!(encoder.priming_samples(), 1024);
        // Odd chunk sizes exercise the gathering into 1024-sample frames.
        let units = encode_sine(&mut encoder, 1.0, 700);
        // 48000 samples = 46.875 frames -> 47 frames in, plus the priming frame out.
        assert_eq!(units.len(), 48);
        for (index, unit) in units.iter().enumerate() {
            assert_eq!(unit.codec, Codec::Aac);
            assert_eq!(unit.pts, index as i64 * 1024);
            assert_eq!(unit.dts, unit.pts);
            assert!(unit.keyframe);
            // A raw frame, not ADTS (which would start with the 0xFFF syncword).
            assert!(unit.payload.len() > 4 && unit.payload[..2] != [0xff, 0xf1]);
        }
        let bytes: usize = units.iter().map(|u| u.payload.len()).sum();
        let kbps = bytes as f64 * 8.0 / 1024.0 / (units.len() as f64 * 1024.0 / 48_000.0);
        assert!((90.0..170.0).contains(&kbps), "{kbps} kbit/s for 128 asked");
    }

    #[test]
    fn ffprobe_reads_the_adts_dump() {
        let mut encoder = AacEncoder::new(AacSettings::default()).unwrap();
        let units = encode_sine(&mut encoder, 1.0, 1024);
        let config = encoder.aac_config();
        let mut stream = Vec::new();
        for unit in &units {
            stream.extend_from_slice(&config.adts_header(unit.payload.len()));
            stream.extend_from_slice(&unit.payload);
        }
        let path =
            std::env::temp_dir().join(format!("corecast-libav-{}-probe.aac", std::process::id()));
        std::fs::write(&path, &stream).unwrap();
        let output = Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "a:0"])
            .args([
                "-show_entries",
                "stream=codec_name,profile,sample_rate,channels,nb_read_frames",
            ])
            .args(["-of", "default=noprint_wrappers=1"])
            .arg(&path)
            .output()
            .expect("ffprobe not found: run scripts/install-deps.sh --test");
        let _ = std::fs::remove_file(&path);
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "{output:?}"
        );
        for line in [
            "codec_name=aac",
            "profile=LC",
            "sample_rate=48000",
            "channels=2",
            "nb_read_frames=48",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line} in:\n{text}"
            );
        }
    }

    #[test]
    fn mismatched_channels_are_typed_errors() {
        let mut encoder = AacEncoder::new(AacSettings::default()).unwrap();
        let mono = [&[0.0f32; 10][..]];
        let frame = RawAudioFrame {
            pts: 0,
            channels: &mono,
        };
        assert!(matches!(
            encoder.submit(&frame),
            Err(LibavError::ChannelCount {
                expected: 2,
                got: 1
            })
        ));
        let uneven = [&[0.0f32; 10][..], &[0.0f32; 9][..]];
        let frame = RawAudioFrame {
            pts: 0,
            channels: &uneven,
        };
        assert!(matches!(
            encoder.submit(&frame),
            Err(LibavError::ChannelLength { channel: 1, .. })
        ));
        assert!(matches!(
            AacEncoder::new(AacSettings {
                channels: 6,
                ..AacSettings::default()
            }),
            Err(LibavError::InvalidSettings {
                setting: "channels",
                ..
            })
        ));
    }

    #[test]
    fn encoder_moves_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<AacEncoder>();
    }
}
