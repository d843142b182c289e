//! The TOML configuration file. Every key is optional and has the default documented in
//! docs/configuration.md; unknown keys are an error so a typo never passes silently.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use engine::ladder::{RungConfig, x264_preset, x264_profile};
use engine::{
    DeliveryConfig, DemoConfig, EngineConfig, HubConfig, RtmpConfig, SourceConfig, SrtConfig,
    SrtSourceConfig, SrtStreamConfig, TranscodeConfig, UdpSourceConfig,
};
use serde::Deserialize;
use transcode::{DecoderChoice, GpuFallback, NvencPreset, RungCodec, RungEncoder};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: String, message: String },
}

/// The file's shape. Field names are the config keys.
#[derive(Debug, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    pub http: Option<SocketAddr>,
    pub rtmp: Option<SocketAddr>,
    /// SRT listener (UDP), default 0.0.0.0:9000.
    pub srt: Option<SocketAddr>,
    pub api: Option<SocketAddr>,
    pub demo: DemoSection,
    pub packaging: PackagingSection,
    pub delivery: DeliverySection,
    pub ingest: IngestSection,
    /// `[[source]]`: inputs the engine opens by itself.
    #[serde(rename = "source")]
    pub sources: Vec<SourceSection>,
    /// `[[srt_stream]]`: per-stream SRT settings (passphrase, latency, own port).
    #[serde(rename = "srt_stream")]
    pub srt_streams: Vec<SrtStreamSection>,
    pub transcode: TranscodeSection,
}

/// `[transcode]`: the ABR ladder (docs/transcode.md).
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscodeSection {
    pub enabled: bool,
    pub rungs: Vec<RungSection>,
    /// Streams that stay passthrough: names, or prefixes ending in `*`.
    pub passthrough_streams: Vec<String>,
    pub decoder_threads: u32,
    /// `auto` (NVDEC when available, else the CPU), `cpu`, or `nvdec` (NVDEC or no ladder).
    pub decoder: String,
    pub encoder_threads: u32,
    pub queue_frames: usize,
    /// Transcode worker threads (0: automatic, from the core plan).
    pub workers: usize,
}

impl Default for TranscodeSection {
    fn default() -> Self {
        let t = TranscodeConfig::default();
        TranscodeSection {
            enabled: t.enabled,
            rungs: t
                .rungs
                .iter()
                .map(|r| RungSection {
                    name: r.name.clone(),
                    height: r.height,
                    bitrate_kbps: r.bitrate_kbps,
                    maxrate_kbps: r.maxrate_kbps,
                    vbv_buffer_kbits: Some(r.vbv_buffer_kbits),
                    preset: r.preset.name().to_owned(),
                    profile: r.profile.name().to_owned(),
                    codec: Some(r.encoder.codec().name().to_owned()),
                    encoder: Some(r.encoder.name().to_owned()),
                    av1_preset: None,
                    nvenc_preset: r.nvenc_preset.name().to_owned(),
                    fallback: r.fallback.name().to_owned(),
                })
                .collect(),
            passthrough_streams: t.passthrough_streams,
            decoder_threads: t.decoder_threads,
            decoder: t.decoder.name().to_owned(),
            encoder_threads: t.encoder_threads,
            queue_frames: t.queue_frames,
            workers: t.workers,
        }
    }
}

/// One `[[transcode.rungs]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RungSection {
    pub name: String,
    pub height: u32,
    pub bitrate_kbps: u32,
    pub maxrate_kbps: u32,
    /// Default: two seconds at `maxrate_kbps`.
    pub vbv_buffer_kbits: Option<u32>,
    #[serde(default = "default_preset")]
    pub preset: String,
    #[serde(default = "default_profile")]
    pub profile: String,
    /// `h264` (default), `hevc` (docs/transcode.md, "HEVC rungs") or `av1` ("AV1 rungs").
    pub codec: Option<String>,
    /// `x264` or `nvenc` for H.264 (docs/transcode.md, "GPU rungs"), `x265` or `nvenc` for
    /// HEVC, `rav1e` or `svt-av1` for AV1 (`nvenc` for AV1 always falls back: FFmpeg 5.1 has
    /// no av1_nvenc). Default: x264 for H.264, x265 for HEVC, the measured default AV1
    /// encoder for AV1.
    pub encoder: Option<String>,
    /// AV1 speed: rav1e `0..=10`, SVT-AV1 `0..=13` (higher is faster). Default: rav1e 10,
    /// SVT-AV1 12.
    pub av1_preset: Option<u8>,
    /// `p1` … `p7`, used when the rung runs on NVENC.
    #[serde(default = "default_nvenc_preset")]
    pub nvenc_preset: String,
    /// An `nvenc` rung where NVENC is unavailable: `cpu` (the codec's CPU encoder: x264, x265
    /// or SVT-AV1; warn) or `fail` (no ladder).
    #[serde(default = "default_fallback")]
    pub fallback: String,
}

fn default_nvenc_preset() -> String {
    "p4".into()
}

fn default_fallback() -> String {
    "cpu".into()
}

/// The encoder of a `[[transcode.rungs]]` entry from its `codec`, `encoder` and `av1_preset`
/// keys; `Err` says which key is wrong and what to write instead.
fn rung_encoder(rung: &RungSection) -> Result<RungEncoder, String> {
    let codec = match rung.codec.as_deref() {
        None => None,
        Some(name) => Some(
            RungCodec::from_name(name)
                .ok_or_else(|| format!("codec = {name:?}: use h264, hevc or av1"))?,
        ),
    };
    let encoder = match rung.encoder.as_deref() {
        None => codec.unwrap_or(RungCodec::H264).default_encoder(),
        Some(name) => {
            let named = RungEncoder::from_name(name).ok_or_else(|| {
                format!(
                    "encoder = {name:?}: use x264 or nvenc (h264), x265 or nvenc (hevc), rav1e \
                     or svt-av1 (av1)"
                )
            })?;
            // `nvenc` takes the rung's codec; other names fix theirs (checked below).
            codec
                .and_then(|codec| RungEncoder::for_codec(codec, name))
                .unwrap_or(named)
        }
    };
    if let Some(codec) = codec.filter(|&codec| codec != encoder.codec()) {
        return Err(format!(
            "encoder = {:?} encodes {}, not codec = {:?}",
            encoder.name(),
            encoder.codec().name(),
            codec.name()
        ));
    }
    match rung.av1_preset {
        None => Ok(encoder),
        Some(preset) => encoder.with_av1_preset(preset).ok_or_else(|| {
            format!(
                "av1_preset = {preset}: only for AV1 rungs, rav1e 0..=10 or svt-av1 0..=13 \
                 (encoder = {:?})",
                encoder.name()
            )
        }),
    }
}

fn default_preset() -> String {
    "veryfast".into()
}

fn default_profile() -> String {
    "high".into()
}

/// One `[[source]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSection {
    /// The stream name it publishes as.
    pub name: String,
    /// Where it comes from; the scheme picks the protocol (`udp://`).
    pub url: String,
    /// No media for this long and the source counts as gone.
    #[serde(default = "default_source_timeout")]
    pub timeout_seconds: f64,
    /// `rtsp://` only: how RTP comes, `tcp` (interleaved, the default) or `udp`.
    pub transport: Option<String>,
}

fn default_source_timeout() -> f64 {
    10.0
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoSection {
    pub enabled: bool,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub video_kbps: u32,
    pub audio_kbps: u32,
}

impl Default for DemoSection {
    fn default() -> Self {
        let d = DemoConfig::default();
        DemoSection {
            enabled: true,
            width: d.width,
            height: d.height,
            fps: d.fps,
            video_kbps: d.video_kbps,
            audio_kbps: d.audio_kbps,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PackagingSection {
    pub segment_seconds: f64,
    pub window: usize,
    pub grace_period_seconds: f64,
    pub ended_retention_seconds: f64,
}

impl Default for PackagingSection {
    fn default() -> Self {
        let hub = HubConfig::default();
        PackagingSection {
            segment_seconds: hub.packaging.target_duration.as_secs_f64(),
            window: hub.packaging.window,
            grace_period_seconds: hub.grace_period.as_secs_f64(),
            ended_retention_seconds: hub.ended_retention.as_secs_f64(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliverySection {
    /// 0 = one worker per delivery core of the core plan.
    pub workers: usize,
    pub max_connections_per_worker: u32,
    pub idle_timeout_seconds: f64,
    pub header_timeout_seconds: f64,
    pub send_timeout_seconds: f64,
    /// Drop a viewer whose response is still being sent this long after it began; unset: the
    /// playlist window (`packaging.window` × target duration).
    pub lagging_after_seconds: Option<f64>,
}

impl Default for DeliverySection {
    fn default() -> Self {
        let d = DeliveryConfig::default();
        DeliverySection {
            workers: 0,
            max_connections_per_worker: d.max_connections_per_worker,
            idle_timeout_seconds: d.idle_timeout.as_secs_f64(),
            header_timeout_seconds: d.header_timeout.as_secs_f64(),
            send_timeout_seconds: d.send_timeout.as_secs_f64(),
            lagging_after_seconds: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSection {
    /// The app of RTMP URLs and of SRT stream ids (`publish:<app>/<name>`).
    pub rtmp_app: String,
    pub read_timeout_seconds: f64,
    /// SRT latency of streams without their own `[[srt_stream]]` latency.
    pub srt_latency_ms: u64,
    /// An SRT publisher that sends no media for this long is dropped.
    pub srt_timeout_seconds: f64,
}

impl Default for IngestSection {
    fn default() -> Self {
        let r = RtmpConfig::default();
        let s = SrtConfig::default();
        IngestSection {
            rtmp_app: r.app,
            read_timeout_seconds: r.read_timeout.as_secs_f64(),
            srt_latency_ms: s.latency.as_millis() as u64,
            srt_timeout_seconds: s.timeout.as_secs_f64(),
        }
    }
}

/// One `[[srt_stream]]` entry (docs/srt.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SrtStreamSection {
    pub name: String,
    /// Callers of this stream must use it (10 to 79 characters); unset: unencrypted.
    pub passphrase: Option<String>,
    /// AES key bytes (16, 24, 32) announced when corecast sends (read connections).
    pub key_length: Option<u8>,
    /// Default: `ingest.srt_latency_ms`.
    pub latency_ms: Option<u64>,
    /// A listener of its own on this UDP port: callers without a stream id publish here.
    pub port: Option<u16>,
}

impl TranscodeSection {
    fn engine_config(
        &self,
        invalid: &dyn Fn(String) -> ConfigError,
    ) -> Result<TranscodeConfig, ConfigError> {
        let mut rungs: Vec<RungConfig> = Vec::with_capacity(self.rungs.len());
        for (index, rung) in self.rungs.iter().enumerate() {
            let label = format!("transcode.rungs[{index}] (name {:?})", rung.name);
            // The name becomes a folder under the stream: the packager's rule.
            if !engine::ladder::valid_rendition_name(&rung.name) {
                return Err(invalid(format!(
                    "{label}: the name is a folder: use letters, digits, '-', '_' and '.', \
                     not source, audio or ts"
                )));
            }
            if rungs.iter().any(|r| r.name == rung.name) {
                return Err(invalid(format!("{label}: two rungs with the same name")));
            }
            if rung.height < 16 || !rung.height.is_multiple_of(2) || rung.height > 4320 {
                return Err(invalid(format!(
                    "{label}: height = {}: must be even, 16..=4320",
                    rung.height
                )));
            }
            if rung.bitrate_kbps < 16 || rung.maxrate_kbps < rung.bitrate_kbps {
                return Err(invalid(format!(
                    "{label}: bitrate_kbps = {}, maxrate_kbps = {}: need 16 <= bitrate <= maxrate",
                    rung.bitrate_kbps, rung.maxrate_kbps
                )));
            }
            let preset = x264_preset(&rung.preset).ok_or_else(|| {
                invalid(format!(
                    "{label}: preset = {:?}: use ultrafast, superfast, veryfast, faster, fast, \
                     medium or slow",
                    rung.preset
                ))
            })?;
            let profile = x264_profile(&rung.profile).ok_or_else(|| {
                invalid(format!(
                    "{label}: profile = {:?}: use baseline, main or high",
                    rung.profile
                ))
            })?;
            let encoder =
                rung_encoder(rung).map_err(|reason| invalid(format!("{label}: {reason}")))?;
            let nvenc_preset = NvencPreset::from_name(&rung.nvenc_preset).ok_or_else(|| {
                invalid(format!(
                    "{label}: nvenc_preset = {:?}: use p1 (fastest) … p7 (best)",
                    rung.nvenc_preset
                ))
            })?;
            let fallback = GpuFallback::from_name(&rung.fallback).ok_or_else(|| {
                invalid(format!(
                    "{label}: fallback = {:?}: use cpu (x264 instead) or fail (no ladder)",
                    rung.fallback
                ))
            })?;
            rungs.push(RungConfig {
                name: rung.name.clone(),
                height: rung.height,
                bitrate_kbps: rung.bitrate_kbps,
                maxrate_kbps: rung.maxrate_kbps,
                vbv_buffer_kbits: rung
                    .vbv_buffer_kbits
                    .unwrap_or(rung.maxrate_kbps.saturating_mul(2)),
                preset,
                profile,
                encoder,
                nvenc_preset,
                fallback,
            });
        }
        if self.enabled && rungs.is_empty() {
            return Err(invalid(
                "transcode.enabled = true with no rungs: add [[transcode.rungs]]".into(),
            ));
        }
        for (key, value) in [
            ("decoder_threads", self.decoder_threads),
            ("encoder_threads", self.encoder_threads),
        ] {
            if !(1..=16).contains(&value) {
                return Err(invalid(format!(
                    "transcode.{key} = {value}: must be 1..=16"
                )));
            }
        }
        if self.workers > 256 {
            return Err(invalid(format!(
                "transcode.workers = {}: must be 0 (automatic) ..= 256",
                self.workers
            )));
        }
        if !(2..=120).contains(&self.queue_frames) {
            return Err(invalid(format!(
                "transcode.queue_frames = {}: must be 2..=120",
                self.queue_frames
            )));
        }
        let decoder = DecoderChoice::from_name(&self.decoder).ok_or_else(|| {
            invalid(format!(
                "transcode.decoder = {:?}: use auto, cpu or nvdec",
                self.decoder
            ))
        })?;
        Ok(TranscodeConfig {
            enabled: self.enabled,
            rungs,
            passthrough_streams: self.passthrough_streams.clone(),
            decoder_threads: self.decoder_threads,
            decoder,
            encoder_threads: self.encoder_threads,
            queue_frames: self.queue_frames,
            workers: self.workers,
            ..TranscodeConfig::default()
        })
    }
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: name.clone(),
            source,
        })?;
        Self::parse(&text, &name)
    }

    pub fn parse(text: &str, name: &str) -> Result<ConfigFile, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: name.to_owned(),
            source,
        })
    }

    /// The engine configuration this file describes. `name` labels errors.
    pub fn into_engine_config(self, name: &str) -> Result<EngineConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: name.to_owned(),
            message,
        };
        let seconds = |key: &str, value: f64, min: f64| -> Result<Duration, ConfigError> {
            if !value.is_finite() || value < min || value > 86_400.0 {
                return Err(invalid(format!(
                    "{key} = {value}: must be between {min} and 86400 seconds"
                )));
            }
            Ok(Duration::from_secs_f64(value))
        };
        let defaults = EngineConfig::default();
        let p = &self.packaging;
        let target_duration = seconds("packaging.segment_seconds", p.segment_seconds, 0.5)?;
        if p.window < 2 {
            return Err(invalid(format!(
                "packaging.window = {}: a live playlist needs at least 2 segments",
                p.window
            )));
        }
        let mut hub = HubConfig {
            grace_period: seconds(
                "packaging.grace_period_seconds",
                p.grace_period_seconds,
                0.0,
            )?,
            ended_retention: seconds(
                "packaging.ended_retention_seconds",
                p.ended_retention_seconds,
                0.0,
            )?,
            ..defaults.hub
        };
        hub.packaging.target_duration = target_duration;
        hub.packaging.window = p.window;
        hub.transcode = self.transcode.engine_config(&invalid)?;

        let d = &self.delivery;
        if !(64..=1_000_000).contains(&d.max_connections_per_worker) {
            return Err(invalid(format!(
                "delivery.max_connections_per_worker = {}: must be between 64 and 1000000",
                d.max_connections_per_worker
            )));
        }
        let delivery = DeliveryConfig {
            listen: self.http.unwrap_or(defaults.delivery.listen),
            max_connections_per_worker: d.max_connections_per_worker,
            idle_timeout: seconds("delivery.idle_timeout_seconds", d.idle_timeout_seconds, 0.1)?,
            header_timeout: seconds(
                "delivery.header_timeout_seconds",
                d.header_timeout_seconds,
                0.1,
            )?,
            send_timeout: seconds("delivery.send_timeout_seconds", d.send_timeout_seconds, 0.1)?,
            lagging_after: d
                .lagging_after_seconds
                .map(|s| seconds("delivery.lagging_after_seconds", s, 0.1))
                .transpose()?,
            ..defaults.delivery
        };

        let rtmp = RtmpConfig {
            listen: self.rtmp.unwrap_or(defaults.rtmp.listen),
            app: self.ingest.rtmp_app.clone(),
            read_timeout: seconds(
                "ingest.read_timeout_seconds",
                self.ingest.read_timeout_seconds,
                1.0,
            )?,
        };
        if rtmp.app.is_empty() || !engine::hub::valid_stream_name(&rtmp.app) {
            return Err(invalid(format!(
                "ingest.rtmp_app = {:?}: use letters, digits, '-', '_' and '.'",
                rtmp.app
            )));
        }

        let m = &self.demo;
        let demo = if m.enabled {
            if m.width < 16
                || m.height < 16
                || !m.width.is_multiple_of(2)
                || !m.height.is_multiple_of(2)
            {
                return Err(invalid(format!(
                    "demo size {}x{}: width and height must be even and at least 16",
                    m.width, m.height
                )));
            }
            if !(1..=120).contains(&m.fps) {
                return Err(invalid(format!("demo.fps = {}: must be 1..=120", m.fps)));
            }
            Some(DemoConfig {
                width: m.width,
                height: m.height,
                fps: m.fps,
                video_kbps: m.video_kbps.max(50),
                audio_kbps: m.audio_kbps.max(16),
                // The demo's IDRs fall exactly on segment boundaries.
                keyframe_interval: target_duration,
            })
        } else {
            None
        };

        let mut sources = Vec::with_capacity(self.sources.len());
        for (index, source) in self.sources.iter().enumerate() {
            let label = format!("source[{index}] (name {:?})", source.name);
            if !engine::hub::valid_stream_name(&source.name) {
                return Err(invalid(format!(
                    "{label}: the name is a stream name: use letters, digits, '-', '_' and '.'"
                )));
            }
            if self.sources[..index].iter().any(|s| s.name == source.name) {
                return Err(invalid(format!("{label}: two sources with the same name")));
            }
            let timeout = seconds(
                &format!("{label}: timeout_seconds"),
                source.timeout_seconds,
                0.5,
            )?;
            let scheme = source
                .url
                .split_once("://")
                .map_or("", |(scheme, _)| scheme);
            if source.transport.is_some() && scheme != "rtsp" {
                return Err(invalid(format!(
                    "{label}: transport is an option of rtsp:// sources"
                )));
            }
            sources.push(match scheme {
                "udp" => SourceConfig::Udp(
                    UdpSourceConfig::from_url(&source.name, &source.url, timeout).map_err(
                        |reason| invalid(format!("{label}: url {:?}: {reason}", source.url)),
                    )?,
                ),
                "rtsp" => {
                    let transport = match &source.transport {
                        Some(text) => text
                            .parse()
                            .map_err(|reason| invalid(format!("{label}: {reason}")))?,
                        None => engine::rtsp::RtspTransport::default(),
                    };
                    SourceConfig::Rtsp(
                        engine::RtspSourceConfig::from_url(
                            &source.name,
                            &source.url,
                            transport,
                            timeout,
                        )
                        .map_err(|reason| {
                            invalid(format!("{label}: url {:?}: {reason}", source.url))
                        })?,
                    )
                }
                "srt" => SourceConfig::Srt(
                    SrtSourceConfig::from_url(&source.name, &source.url, timeout).map_err(
                        |reason| {
                            invalid(format!(
                                "{label}: url {:?}: {reason}",
                                engine::sources::redact_url(&source.url)
                            ))
                        },
                    )?,
                ),
                _ => {
                    return Err(invalid(format!(
                        "{label}: url {:?}: unsupported scheme (supported: udp://, rtsp://, srt://)",
                        engine::sources::redact_url(&source.url)
                    )));
                }
            });
        }
        let srt = self.srt_config(&rtmp.app, &seconds, &invalid)?;

        Ok(EngineConfig {
            sources,
            delivery,
            delivery_workers: (d.workers > 0).then_some(d.workers),
            rtmp,
            api: self.api.unwrap_or(defaults.api),
            hub,
            demo,
            srt,
        })
    }

    /// The SRT listener and `[[srt_stream]]` entries.
    fn srt_config(
        &self,
        app: &str,
        seconds: &dyn Fn(&str, f64, f64) -> Result<Duration, ConfigError>,
        invalid: &dyn Fn(String) -> ConfigError,
    ) -> Result<SrtConfig, ConfigError> {
        let defaults = SrtConfig::default();
        let latency = Duration::from_millis(self.ingest.srt_latency_ms);
        let streams = self
            .srt_streams
            .iter()
            .map(|s| SrtStreamConfig {
                name: s.name.clone(),
                passphrase: s.passphrase.clone(),
                key_length: s.key_length,
                latency: s.latency_ms.map_or(latency, Duration::from_millis),
                port: s.port,
            })
            .collect();
        let config = SrtConfig {
            listen: self.srt.unwrap_or(defaults.listen),
            app: app.to_owned(),
            latency,
            streams,
            timeout: seconds(
                "ingest.srt_timeout_seconds",
                self.ingest.srt_timeout_seconds,
                1.0,
            )?,
        };
        config.validate().map_err(|message| {
            invalid(message.replace("srt_latency_ms", "ingest.srt_latency_ms"))
        })?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let config = ConfigFile::parse("", "t")
            .and_then(|c| c.into_engine_config("t"))
            .expect("defaults are valid");
        assert_eq!(config.delivery.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.rtmp.listen, "0.0.0.0:1935".parse().unwrap());
        assert_eq!(config.api, "127.0.0.1:8081".parse().unwrap());
        assert_eq!(config.hub.packaging.target_duration, Duration::from_secs(2));
        assert_eq!(config.hub.packaging.window, 6);
        assert_eq!(config.hub.grace_period, Duration::from_secs(10));
        assert_eq!(config.rtmp.app, "live");
        let demo = config.demo.expect("demo on by default");
        assert_eq!(demo.keyframe_interval, Duration::from_secs(2));
        assert!(config.sources.is_empty());
    }

    #[test]
    fn rtsp_sources_are_read_and_checked() {
        let text = r#"
            [[source]]
            name = "cam1"
            url = "rtsp://admin:secret@10.0.0.5:554/stream1"
            [[source]]
            name = "cam2"
            url = "rtsp://10.0.0.6/live"
            transport = "udp"
            timeout_seconds = 4
        "#;
        let c = ConfigFile::parse(text, "t")
            .and_then(|c| c.into_engine_config("t"))
            .expect("valid");
        let [SourceConfig::Rtsp(cam1), SourceConfig::Rtsp(cam2)] = &c.sources[..] else {
            panic!("{:?}", c.sources);
        };
        assert_eq!(cam1.url.as_str(), "rtsp://10.0.0.5:554/stream1");
        assert_eq!(cam1.credentials, Some(("admin".into(), "secret".into())));
        assert_eq!(cam1.transport, engine::rtsp::RtspTransport::Tcp);
        assert_eq!(cam1.timeout, Duration::from_secs(10));
        assert_eq!(cam2.transport, engine::rtsp::RtspTransport::Udp);
        assert_eq!(cam2.timeout, Duration::from_secs(4));
        for (body, expected) in [
            ("url = \"rtsp://h/x\"\ntransport = \"http\"", "tcp or udp"),
            (
                "url = \"udp://0.0.0.0:1\"\ntransport = \"tcp\"",
                "option of rtsp",
            ),
            ("url = \"rtsp:///x\"", "host"),
        ] {
            let err = ConfigFile::parse(&format!("[[source]]\nname = \"a\"\n{body}"), "c.toml")
                .and_then(|c| c.into_engine_config("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn sources_are_read_and_checked() {
        let text = r#"
            [[source]]
            name = "feed1"
            url = "udp://239.1.1.1:5000?interface=lo"
            [[source]]
            name = "feed2"
            url = "udp://0.0.0.0:5001"
            timeout_seconds = 2.5
        "#;
        let c = ConfigFile::parse(text, "t")
            .and_then(|c| c.into_engine_config("t"))
            .expect("valid");
        let [SourceConfig::Udp(feed1), SourceConfig::Udp(feed2)] = &c.sources[..] else {
            panic!("{:?}", c.sources);
        };
        assert_eq!(feed1.name, "feed1");
        assert_eq!(feed1.bind, "239.1.1.1:5000".parse().unwrap());
        assert_eq!(
            feed1.multicast_interface,
            Some(engine::udp::MulticastInterface::Name("lo".into()))
        );
        assert_eq!(feed1.timeout, Duration::from_secs(10));
        assert_eq!(feed2.multicast_interface, None);
        assert_eq!(feed2.timeout, Duration::from_millis(2500));

        let cases = [
            ("name = \"a b\"\nurl = \"udp://0.0.0.0:1\"", "stream name"),
            ("name = \"a\"\nurl = \"srtx://h:1\"", "unsupported scheme"),
            ("name = \"a\"\nurl = \"udp://h:1\"", "IPV4:PORT"),
            (
                "name = \"a\"\nurl = \"udp://0.0.0.0:1\"\ntimeout_seconds = 0",
                "timeout_seconds",
            ),
        ];
        for (body, expected) in cases {
            let err = ConfigFile::parse(&format!("[[source]]\n{body}"), "c.toml")
                .and_then(|c| c.into_engine_config("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected) && err.contains("source[0]"),
                "{body}: {err}"
            );
        }
        let twice = "[[source]]\nname = \"a\"\nurl = \"udp://0.0.0.0:1\"\n[[source]]\nname = \"a\"\nurl = \"udp://0.0.0.0:2\"";
        let err = ConfigFile::parse(twice, "c")
            .and_then(|c| c.into_engine_config("c"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source[1]") && err.contains("same name"),
            "{err}"
        );
        let err = ConfigFile::parse(
            "[[source]]\nname = \"a\"\nurl = \"udp://0.0.0.0:1\"\nttl = 1",
            "c",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("ttl"), "{err}");
    }

    #[test]
    fn every_section_is_read() {
        let text = r#"
            http = "127.0.0.1:9080"
            rtmp = "127.0.0.1:9935"
            api = "127.0.0.1:9081"
            [demo]
            enabled = true
            width = 640
            height = 360
            fps = 25
            video_kbps = 300
            audio_kbps = 64
            [packaging]
            segment_seconds = 4
            window = 5
            grace_period_seconds = 3
            ended_retention_seconds = 60
            [delivery]
            workers = 3
            max_connections_per_worker = 20000
            idle_timeout_seconds = 30
            header_timeout_seconds = 5
            send_timeout_seconds = 7
            lagging_after_seconds = 9
            [ingest]
            rtmp_app = "app"
            read_timeout_seconds = 10
        "#;
        let c = ConfigFile::parse(text, "t")
            .and_then(|c| c.into_engine_config("t"))
            .expect("valid");
        assert_eq!(c.delivery.listen.port(), 9080);
        assert_eq!(c.rtmp.listen.port(), 9935);
        assert_eq!(c.api.port(), 9081);
        assert_eq!(c.delivery_workers, Some(3));
        assert_eq!(c.delivery.max_connections_per_worker, 20000);
        assert_eq!(c.delivery.idle_timeout, Duration::from_secs(30));
        assert_eq!(c.delivery.send_timeout, Duration::from_secs(7));
        assert_eq!(c.delivery.lagging_after, Some(Duration::from_secs(9)));
        assert_eq!(c.hub.packaging.window, 5);
        assert_eq!(c.hub.grace_period, Duration::from_secs(3));
        assert_eq!(c.rtmp.app, "app");
        let demo = c.demo.expect("on");
        assert_eq!((demo.width, demo.height, demo.fps), (640, 360, 25));
        assert_eq!(demo.keyframe_interval, Duration::from_secs(4));
    }

    #[test]
    fn transcode_section_is_read_and_checked() {
        let defaults = ConfigFile::parse("", "t")
            .and_then(|c| c.into_engine_config("t"))
            .expect("valid");
        assert!(!defaults.hub.transcode.enabled, "off by default");
        let names: Vec<&str> = defaults
            .hub
            .transcode
            .rungs
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(names, ["1080p", "720p", "480p", "360p"]);
        assert_eq!(defaults.hub.transcode.rungs[1].vbv_buffer_kbits, 5600);

        let text = r#"
            [transcode]
            enabled = true
            passthrough_streams = ["cam-*"]
            encoder_threads = 2
            workers = 3
            [[transcode.rungs]]
            name = "240p"
            height = 240
            bitrate_kbps = 400
            maxrate_kbps = 500
            preset = "ultrafast"
            [[transcode.rungs]]
            name = "180p"
            height = 180
            bitrate_kbps = 200
            maxrate_kbps = 250
            vbv_buffer_kbits = 300
            profile = "main"
            encoder = "nvenc"
            nvenc_preset = "p2"
            fallback = "fail"
        "#;
        let t = ConfigFile::parse(text, "t")
            .and_then(|c| c.into_engine_config("t"))
            .expect("valid")
            .hub
            .transcode;
        assert!(t.enabled && t.transcodes("event") && !t.transcodes("cam-1"));
        assert_eq!(t.encoder_threads, 2);
        assert_eq!(t.workers, 3);
        assert_eq!(t.rungs.len(), 2);
        assert_eq!(t.rungs[0].preset, engine::ladder::X264Preset::Ultrafast);
        assert_eq!(t.rungs[0].vbv_buffer_kbits, 1000);
        assert_eq!(t.rungs[1].preset, engine::ladder::X264Preset::Veryfast);
        assert_eq!(t.rungs[1].profile, engine::ladder::X264Profile::Main);
        assert_eq!(t.rungs[1].vbv_buffer_kbits, 300);
        assert_eq!(
            (
                t.rungs[0].encoder,
                t.rungs[0].nvenc_preset,
                t.rungs[0].fallback
            ),
            (RungEncoder::X264, NvencPreset::P4, GpuFallback::Cpu),
            "defaults"
        );
        assert_eq!(
            (
                t.rungs[1].encoder,
                t.rungs[1].nvenc_preset,
                t.rungs[1].fallback
            ),
            (
                RungEncoder::Nvenc {
                    codec: RungCodec::H264
                },
                NvencPreset::P2,
                GpuFallback::Fail
            )
        );

        let rung = |body: &str| {
            format!(
                "[transcode]\n[[transcode.rungs]]\nname = \"r\"\nheight = 240\nbitrate_kbps = 400\nmaxrate_kbps = 500\n{body}"
            )
        };
        let cases = [
            (rung("preset = \"turbo\""), "preset"),
            (rung("profile = \"high10\""), "profile"),
            (
                rung("encoder = \"qsv\""),
                "encoder = \"qsv\": use x264 or nvenc",
            ),
            (
                rung("codec = \"vp9\""),
                "codec = \"vp9\": use h264, hevc or av1",
            ),
            (
                rung("codec = \"hevc\"\nencoder = \"x264\""),
                "encoder = \"x264\" encodes h264, not codec = \"hevc\"",
            ),
            (
                "[transcode]\ndecoder = \"gpu\"".to_owned(),
                "transcode.decoder = \"gpu\": use auto, cpu or nvdec",
            ),
            (
                rung("codec = \"av1\"\nencoder = \"x264\""),
                "encoder = \"x264\" encodes h264, not codec = \"av1\"",
            ),
            (
                rung("encoder = \"rav1e\"\nav1_preset = 11"),
                "av1_preset = 11",
            ),
            (rung("av1_preset = 5"), "only for AV1 rungs"),
            (rung("nvenc_preset = \"slow\""), "nvenc_preset"),
            (rung("fallback = \"gpu\""), "fallback = \"gpu\""),
            (rung("").replace("height = 240", "height = 241"), "height"),
            (
                rung("").replace("maxrate_kbps = 500", "maxrate_kbps = 300"),
                "maxrate",
            ),
            (rung("").replace("\"r\"", "\"source\""), "folder"),
            (
                "[transcode]\nenabled = true\nrungs = []".to_owned(),
                "no rungs",
            ),
            ("[transcode]\nqueue_frames = 1".to_owned(), "queue_frames"),
        ];
        for (text, expected) in cases {
            let err = ConfigFile::parse(&text, "c.toml")
                .and_then(|c| c.into_engine_config("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let av1 = |body: &str| {
            let text = rung(body);
            ConfigFile::parse(&text, "c")
                .and_then(|c| c.into_engine_config("c"))
                .unwrap_or_else(|e| panic!("{text}: {e}"))
                .hub
                .transcode
                .rungs[0]
                .encoder
        };
        assert_eq!(av1("codec = \"av1\""), transcode::DEFAULT_AV1_ENCODER);
        assert_eq!(av1("codec = \"hevc\""), RungEncoder::X265);
        assert_eq!(av1("encoder = \"x265\""), RungEncoder::X265);
        assert_eq!(
            av1("codec = \"hevc\"\nencoder = \"nvenc\""),
            RungEncoder::Nvenc {
                codec: RungCodec::Hevc
            }
        );
        assert_eq!(
            av1("codec = \"av1\"\nencoder = \"nvenc\""),
            RungEncoder::Nvenc {
                codec: RungCodec::Av1
            }
        );
        assert_eq!(defaults.hub.transcode.decoder, DecoderChoice::Auto);
        let nvdec = ConfigFile::parse("[transcode]\ndecoder = \"nvdec\"", "c")
            .and_then(|c| c.into_engine_config("c"))
            .expect("valid");
        assert_eq!(nvdec.hub.transcode.decoder, DecoderChoice::Nvdec);
        assert_eq!(
            av1("codec = \"av1\"\nencoder = \"rav1e\"\nav1_preset = 8"),
            RungEncoder::Rav1e { speed: 8 }
        );
        assert_eq!(
            av1("encoder = \"svt-av1\""),
            RungEncoder::SvtAv1 { preset: 12 }
        );
        let twice = format!("{}\n{}", rung(""), rung("").replace("[transcode]\n", ""));
        let err = ConfigFile::parse(&twice, "c")
            .and_then(|c| c.into_engine_config("c"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("same name"), "{err}");
    }

    #[test]
    fn mistakes_are_reported_with_the_key() {
        let err = ConfigFile::parse("htp = \"1.2.3.4:5\"", "c.toml").unwrap_err();
        assert!(err.to_string().contains("c.toml"), "{err}");
        assert!(err.to_string().contains("htp"), "{err}");
        let err = ConfigFile::parse("[packaging]\nwindow = 1", "c.toml")
            .and_then(|c| c.into_engine_config("c.toml"))
            .unwrap_err();
        assert!(err.to_string().contains("packaging.window"), "{err}");
        let err = ConfigFile::parse("[demo]\nwidth = 641", "c.toml")
            .and_then(|c| c.into_engine_config("c.toml"))
            .unwrap_err();
        assert!(err.to_string().contains("641x"), "{err}");
        assert!(
            ConfigFile::parse("[demo]\nenabled = false", "c")
                .and_then(|c| c.into_engine_config("c"))
                .expect("valid")
                .demo
                .is_none()
        );
    }
}

#[cfg(test)]
mod srt_tests {
    use super::*;

    fn engine_config(text: &str) -> Result<EngineConfig, ConfigError> {
        ConfigFile::parse(text, "t").and_then(|c| c.into_engine_config("t"))
    }

    #[test]
    fn srt_defaults_streams_and_pulls() {
        let config = engine_config("").unwrap();
        assert_eq!(config.srt.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(config.srt.latency, Duration::from_millis(120));
        assert_eq!(config.srt.app, "live");
        assert!(config.srt.streams.is_empty());

        let config = engine_config(
            r#"
            srt = "127.0.0.1:9100"
            [ingest]
            srt_latency_ms = 200
            [[srt_stream]]
            name = "cam"
            passphrase = "0123456789abc"
            port = 9101
            [[srt_stream]]
            name = "studio"
            latency_ms = 400
            key_length = 32
            [[source]]
            name = "relay"
            url = "srt://10.0.0.9:9000?streamid=read:live/x&passphrase=abcdefghijk"
            "#,
        )
        .unwrap();
        assert_eq!(config.srt.listen, "127.0.0.1:9100".parse().unwrap());
        let cam = config.srt.stream("cam").unwrap();
        assert_eq!(cam.passphrase.as_deref(), Some("0123456789abc"));
        assert_eq!(cam.latency, Duration::from_millis(200));
        assert_eq!(cam.port, Some(9101));
        let studio = config.srt.stream("studio").unwrap();
        assert_eq!(studio.latency, Duration::from_millis(400));
        assert_eq!(studio.key_length, Some(32));
        let [SourceConfig::Srt(relay)] = &config.sources[..] else {
            panic!("{:?}", config.sources);
        };
        assert_eq!(relay.stream_id.as_deref(), Some("read:live/x"));

        for (text, expected) in [
            (
                "[[srt_stream]]\nname = \"a\"\npassphrase = \"short\"",
                "10 to 79",
            ),
            (
                "[[srt_stream]]\nname = \"a\"\nkey_length = 20",
                "16, 24 or 32",
            ),
            ("[ingest]\nsrt_latency_ms = 5", "ingest.srt_latency_ms"),
            (
                "[[source]]\nname = \"r\"\nurl = \"srt://h:1?passphrase=tiny\"",
                "passphrase=***",
            ),
        ] {
            let err = engine_config(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
