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
    /// CUDA device of NVDEC, GPU scaling and NVENC rungs.
    pub gpu: u32,
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
            gpu: t.gpu,
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
        if self.gpu > 63 {
            return Err(invalid(format!(
                "transcode.gpu = {}: must be a CUDA device number 0..=63 (nvidia-smi lists them)",
                self.gpu
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
            gpu: self.gpu,
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
#[path = "config_tests.rs"]
mod tests;
