//! Audio that is not AAC (MP3 over RTMP; MPEG-1/2 audio and AC-3 in MPEG-TS feeds over UDP or
//! SRT; G.711 from RTSP cameras) becomes AAC-LC here, once per stream, before the hub sees it: so the hub, the ladder
//! and every rendition (HLS-TS, CMAF, DASH) share one AAC track and never learn what the
//! source sent.
//!
//! It runs where the units arrive: on the ingest core, inside the session that received them
//! (`rtmp.rs`, `ts_feed.rs`, `rtsp.rs`). Decoding MP2/MP3/AC-3 and encoding AAC-LC at 128 kbit/s costs
//! about 1 % of a core per stream, less than a hop to a transcode worker would be worth.
//!
//! The AAC keeps the source's sample rate and clock (see [`libav::AudioTranscoder`]), so the
//! source's pts carry through and audio stays in sync with video.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use libav::{AudioTranscodeStats, AudioTranscoder, AudioTranscoderSettings, SourceAudioCodec};
use media::{AacConfig, AccessUnit, AudioFormat, Codec};

/// What a stream's audio was before it was transcoded, for its status: the description
/// (`mp3 44100 Hz 2 ch`) and the units the transcoder skipped as corrupt so far (updated by
/// the ingest session, read by the hub).
#[derive(Clone, Debug)]
pub struct AudioSource {
    pub description: String,
    pub corrupt_units: Arc<AtomicU64>,
}

impl AudioSource {
    pub fn corrupt_units(&self) -> u64 {
        self.corrupt_units.load(Ordering::Relaxed)
    }
}

/// Whether units of `codec` must be transcoded before the hub takes them.
pub fn needs_transcode(codec: Codec) -> bool {
    matches!(codec, Codec::Mp2 | Codec::Mp3 | Codec::Ac3)
}

/// What a transcoder was opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SourceFormat {
    codec: SourceAudioCodec,
    sample_rate: u32,
    channels: u8,
}

/// The transcoder of one publisher's audio, while its audio is not AAC.
#[derive(Debug)]
pub struct SourceAudioTranscoder {
    stream: String,
    /// The source format the transcoder was opened for.
    format: Option<SourceFormat>,
    transcoder: Option<AudioTranscoder>,
    /// Corrupt units already logged (logging stops doubling after the first few).
    logged_corrupt: u64,
    /// The open transcoder's corrupt units, shared with the stream's status.
    corrupt_units: Arc<AtomicU64>,
}

impl SourceAudioTranscoder {
    pub fn new(stream: &str) -> Self {
        SourceAudioTranscoder {
            stream: stream.to_owned(),
            format: None,
            transcoder: None,
            logged_corrupt: 0,
            corrupt_units: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Names the stream in logs (RTMP learns it at publish).
    pub fn set_stream(&mut self, stream: &str) {
        stream.clone_into(&mut self.stream);
    }

    /// The source's audio is (now) `format`: opens a transcoder for it, unless one is open for
    /// the same format, and returns the AAC config the stream's audio track gets.
    pub fn set_format(&mut self, format: AudioFormat) -> Result<AacConfig, String> {
        let codec = match format.codec {
            Codec::Mp2 => SourceAudioCodec::Mp2,
            Codec::Mp3 => SourceAudioCodec::Mp3,
            Codec::Ac3 => SourceAudioCodec::Ac3,
            other => return Err(format!("no transcoder for {other:?} audio")),
        };
        self.open(codec, format.sample_rate, format.channels)
    }

    /// As [`Self::set_format`] for a codec `media` has no [`Codec`] for (G.711 from RTP).
    pub fn open(
        &mut self,
        codec: SourceAudioCodec,
        sample_rate: u32,
        channels: u8,
    ) -> Result<AacConfig, String> {
        let format = SourceFormat {
            codec,
            sample_rate,
            channels,
        };
        if let (Some(open), Some(transcoder)) = (self.format, &self.transcoder)
            && open == format
        {
            return Ok(transcoder.aac_config().clone());
        }
        self.reset();
        let transcoder = AudioTranscoder::new(AudioTranscoderSettings {
            codec,
            sample_rate,
            channels,
            extradata: Vec::new(),
            bitrate_kbps: None,
        })
        .map_err(|e| {
            format!(
                "cannot transcode {} {sample_rate} Hz {channels} ch audio: {e}",
                codec.name()
            )
        })?;
        let config = transcoder.aac_config().clone();
        tracing::info!(
            stream = %self.stream,
            "audio {} {sample_rate} Hz {channels} ch -> transcoded to AAC-LC {} Hz {} ch ({})",
            codec.name(),
            config.sample_rate,
            config.channels,
            config.codec_string(),
        );
        self.format = Some(format);
        self.transcoder = Some(transcoder);
        // A new counter per transcoder: a status still holding the old one keeps its figure.
        self.corrupt_units = Arc::new(AtomicU64::new(0));
        self.logged_corrupt = 0;
        Ok(config)
    }

    /// The source's audio is AAC again, or the publisher left: closes the transcoder.
    pub fn reset(&mut self) {
        if let Some(transcoder) = self.transcoder.take() {
            let stats = transcoder.stats();
            tracing::debug!(stream = %self.stream, ?stats, "audio transcoder closed");
        }
        self.format = None;
    }

    /// What the open transcoder takes (`mp3 44100 Hz 2 ch`) and its corrupt-unit counter, for
    /// the stream's status.
    pub fn source(&self) -> Option<AudioSource> {
        self.transcoder
            .as_ref()
            .and(self.format)
            .map(|f| AudioSource {
                description: format!("{} {} Hz {} ch", f.codec.name(), f.sample_rate, f.channels),
                corrupt_units: self.corrupt_units.clone(),
            })
    }

    pub fn is_open(&self) -> bool {
        self.transcoder.is_some()
    }

    pub fn stats(&self) -> Option<AudioTranscodeStats> {
        self.transcoder.as_ref().map(AudioTranscoder::stats)
    }

    /// Transcodes one source unit (pts on its sample rate); the AAC units it completes are
    /// appended to `out`. A unit of another codec than the open format's, or with no
    /// transcoder open, is dropped; a corrupt one is dropped and counted.
    pub fn transcode(&mut self, unit: &AccessUnit, out: &mut Vec<AccessUnit>) {
        let open = self.format.map(|f| f.codec);
        let matches = matches!(
            (unit.codec, open),
            (Codec::Mp2, Some(SourceAudioCodec::Mp2))
                | (Codec::Mp3, Some(SourceAudioCodec::Mp3))
                | (Codec::Ac3, Some(SourceAudioCodec::Ac3))
        );
        if matches {
            self.transcode_payload(unit.pts, &unit.payload, out);
        }
    }

    /// As [`Self::transcode`] for a payload of the open codec with its pts.
    pub fn transcode_payload(&mut self, pts: i64, payload: &[u8], out: &mut Vec<AccessUnit>) {
        let Some(transcoder) = self.transcoder.as_mut() else {
            return;
        };
        if let Err(error) = transcoder.submit(pts, payload) {
            let corrupt = transcoder.stats().corrupt_units;
            self.corrupt_units.store(corrupt, Ordering::Relaxed);
            // Logged at 1, 2, 4, 8, ... so a broken source cannot flood the log.
            if corrupt.is_power_of_two() && corrupt > self.logged_corrupt {
                self.logged_corrupt = corrupt;
                tracing::warn!(stream = %self.stream, corrupt, %error, "audio unit not transcoded");
            }
        }
        out.extend(std::iter::from_fn(|| transcoder.poll_unit()));
    }

    /// The source ended: the AAC frames still inside the encoder are appended to `out`.
    pub fn flush(&mut self, out: &mut Vec<AccessUnit>) {
        if let Some(transcoder) = self.transcoder.as_mut() {
            if let Err(error) = transcoder.flush() {
                tracing::debug!(stream = %self.stream, %error, "audio transcoder flush");
            }
            out.extend(std::iter::from_fn(|| transcoder.poll_unit()));
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    /// One second of a tone in MPEG-1 layer II, made by the ffmpeg CLI's mp2 encoder (48 kHz
    /// stereo 192 kbit/s: every frame 576 bytes).
    fn mp2_frames() -> Vec<Bytes> {
        // One file per test thread: tests run in parallel in one process.
        let path = std::env::temp_dir().join(format!(
            "corecast-engine-{}-{:?}.mp2",
            std::process::id(),
            std::thread::current().id()
        ));
        let status = std::process::Command::new("ffmpeg")
            .args([
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "sine=f=440:r=48000:d=1",
            ])
            .args(["-ac", "2", "-c:a", "mp2", "-b:a", "192k", "-f", "mp2"])
            .arg(&path)
            .status()
            .expect("ffmpeg not found: run scripts/install-deps.sh --test");
        assert!(status.success());
        let bytes = Bytes::from(std::fs::read(&path).unwrap());
        let _ = std::fs::remove_file(&path);
        bytes.chunks(576).map(Bytes::copy_from_slice).collect()
    }

    #[test]
    fn mp2_units_become_aac_on_the_same_clock() {
        let mut stage = SourceAudioTranscoder::new("test");
        let format = AudioFormat {
            codec: Codec::Mp2,
            sample_rate: 48_000,
            channels: 2,
        };
        let config = stage.set_format(format).unwrap();
        assert_eq!((config.sample_rate, config.channels), (48_000, 2));
        // The same format again keeps the open transcoder.
        assert_eq!(stage.set_format(format).unwrap(), config);
        let mut out = Vec::new();
        let start = 90_000;
        for (index, payload) in mp2_frames().into_iter().enumerate() {
            let pts = start + index as i64 * 1152;
            let unit = AccessUnit {
                codec: Codec::Mp2,
                pts,
                dts: pts,
                keyframe: true,
                payload,
            };
            stage.transcode(&unit, &mut out);
        }
        // A unit of another codec is not for this transcoder.
        let stray = AccessUnit {
            codec: Codec::Ac3,
            pts: 0,
            dts: 0,
            keyframe: true,
            payload: Bytes::from_static(&[0x0b, 0x77]),
        };
        stage.transcode(&stray, &mut out);
        stage.flush(&mut out);
        assert!(out.len() >= 47, "{} AAC units", out.len());
        for (index, unit) in out.iter().enumerate() {
            assert_eq!(unit.codec, Codec::Aac);
            assert_eq!(unit.pts, start + index as i64 * 1024);
        }
        assert_eq!(stage.stats().unwrap().corrupt_units, 0);
        stage.reset();
        assert!(!stage.is_open());
        assert!(
            stage
                .set_format(AudioFormat {
                    codec: Codec::H264,
                    ..format
                })
                .is_err()
        );
    }

    #[test]
    fn corrupt_units_are_skipped_and_counted_for_the_status() {
        let mut stage = SourceAudioTranscoder::new("test");
        stage
            .set_format(AudioFormat {
                codec: Codec::Mp2,
                sample_rate: 48_000,
                channels: 2,
            })
            .unwrap();
        let source = stage.source().expect("open");
        assert_eq!(source.description, "mp2 48000 Hz 2 ch");
        assert_eq!(source.corrupt_units(), 0);
        let mut out = Vec::new();
        let frames = mp2_frames();
        for (index, payload) in frames.iter().enumerate() {
            // Every fifth unit is garbage of the same length (no MPEG audio sync word).
            let payload = if index % 5 == 2 {
                Bytes::from(vec![0x5a; payload.len()])
            } else {
                payload.clone()
            };
            let pts = index as i64 * 1152;
            stage.transcode_payload(pts, &payload, &mut out);
        }
        stage.flush(&mut out);
        let corrupt = stage.stats().unwrap().corrupt_units;
        assert!(corrupt > 0, "garbage units were counted");
        // The status's handle, taken before, sees the same figure.
        assert_eq!(source.corrupt_units(), corrupt);
        assert!(
            out.len() > 30,
            "the good units still became AAC: {}",
            out.len()
        );
    }
}
