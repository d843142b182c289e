//! What the control API shows of each stream ([`StreamStatus`]) and its renditions
//! ([`RenditionStatus`]), built by the hub from its streams' state.

use media::{AacConfig, TrackConfig};
use serde::Serialize;

use super::StreamLadder;
use crate::audio_transcode::AudioSource;

/// One stream as the control API shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StreamStatus {
    pub name: String,
    /// `live`, `reconnecting` (publisher gone, within the grace period) or `ended`.
    pub state: &'static str,
    /// Who publishes, e.g. `rtmp 127.0.0.1:50312` or `demo`.
    pub origin: String,
    /// Unix ms when the current publisher started.
    pub started_at_ms: i64,
    /// Input bitrate over the last few seconds, in kbit/s.
    pub input_kbps: u64,
    pub renditions: Vec<RenditionStatus>,
    /// While a ladder runs: source units its transcode worker had no room for (dropped before
    /// decoding, so every rung misses them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcode_dropped_units: Option<u64>,
}

/// One rendition (rung) of a stream.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RenditionStatus {
    pub name: String,
    pub codec: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
    /// Transcoded rungs: pictures encoded per second over the last second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encode_fps: Option<f64>,
    /// Transcoded rungs: pictures dropped because the encoder fell behind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_frames: Option<u64>,
    /// Transcoded rungs: how far the encoder is behind the decoder, ms of media.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag_ms: Option<u64>,
    /// Transcoded rungs: the encoder that runs the rung (`x264`, `nvenc`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoder: Option<&'static str>,
    /// The source, while a ladder runs: where it is decoded (`cpu`, `nvdec`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decoder: Option<&'static str>,
    /// The source, while a ladder runs: where its pictures are scaled to the rung sizes
    /// (`gpu` after NVDEC, else `cpu`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaler: Option<&'static str>,
    /// Transcoded rungs asking for NVENC that run on their CPU encoder, and a source asking for
    /// NVDEC (`decoder = "auto"` with an NVENC rung) that is decoded on the CPU, or decoded by NVDEC
    /// and scaled on the CPU: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// The audio rendition, when the source's audio was not AAC: what it was
    /// (`mp3 44100 Hz 2 ch`), transcoded once to this AAC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcoded_from: Option<String>,
    /// Units skipped as corrupt: on the source rendition while a ladder runs (video units its
    /// decoder refused), on a transcoded audio rendition (audio units its transcoder refused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrupt_units: Option<u64>,
    /// The source rendition while a ladder runs: pictures its decoder patched up (concealed
    /// errors), still encoded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concealed_frames: Option<u64>,
}

/// Why a ladder set up on NVDEC decodes in software now: the GPU failed mid-stream, or NVDEC
/// does not take the stream's format (libavcodec then decodes every picture itself).
fn off_the_gpu(ladder: &StreamLadder) -> Option<&'static str> {
    let stats = &ladder.ladder_stats;
    if stats.gpu_failovers > 0 {
        Some("the GPU failed mid-stream: decoding on the CPU since (see the log)")
    } else if ladder.decoder.0 == "nvdec"
        && stats.decoded_frames > 0
        && stats.gpu_decoded_frames == 0
    {
        Some(
            "NVDEC does not take this stream (10-bit, 4:2:2 or 4:4:4, or a profile it lacks): \
             libavcodec decodes it on the CPU",
        )
    } else {
        None
    }
}

impl RenditionStatus {
    pub(super) fn of(
        video: Option<&TrackConfig>,
        audio: Option<(&AacConfig, Option<&AudioSource>)>,
        ladder: Option<&StreamLadder>,
    ) -> Vec<RenditionStatus> {
        let mut out = Vec::new();
        if let Some(v) = video {
            out.push(RenditionStatus {
                name: "source".into(),
                codec: v.codec_string(),
                width: v.video_size().map(|(width, _)| width),
                height: v.video_size().map(|(_, height)| height),
                frame_rate: v
                    .frame_rate()
                    .filter(|(_, den)| *den > 0)
                    .map(|(num, den)| f64::from(num) / f64::from(den)),
                sample_rate: None,
                channels: None,
                encode_fps: None,
                dropped_frames: None,
                lag_ms: None,
                encoder: None,
                // Set up on the GPU but decoding in software now (a failure mid-stream, or a
                // format NVDEC does not take): what runs, and why.
                decoder: ladder.map(|l| off_the_gpu(l).map_or(l.decoder.0, |_| "cpu")),
                scaler: ladder.map(|l| off_the_gpu(l).map_or(l.decoder.1, |_| "cpu")),
                fallback_reason: ladder.and_then(|l| {
                    off_the_gpu(l)
                        .map(str::to_owned)
                        .or_else(|| l.decoder.2.clone())
                }),
                transcoded_from: None,
                corrupt_units: ladder.map(|l| l.ladder_stats.corrupt_units),
                concealed_frames: ladder.map(|l| l.ladder_stats.concealed_frames),
            });
        }
        for (index, rung) in ladder.map_or(&[][..], |l| &l.rungs[..]).iter().enumerate() {
            let stats = ladder
                .and_then(|l| l.stats.get(index))
                .copied()
                .unwrap_or_default();
            let (encoder, fallback_reason) = ladder
                .and_then(|l| l.encoders.get(index))
                .map_or((None, None), |(e, why)| (Some(*e), why.clone()));
            out.push(RenditionStatus {
                name: rung.name.clone(),
                codec: rung.track.codec_string(),
                width: rung.track.video_size().map(|(w, _)| w),
                height: rung.track.video_size().map(|(_, h)| h),
                frame_rate: rung
                    .track
                    .frame_rate()
                    .filter(|(_, den)| *den > 0)
                    .map(|(num, den)| f64::from(num) / f64::from(den)),
                sample_rate: None,
                channels: None,
                // Two decimals are plenty for an operator, and keep the JSON short.
                encode_fps: Some((stats.encoded_fps * 100.0).round() / 100.0),
                dropped_frames: Some(stats.dropped_frames),
                lag_ms: Some(u64::try_from(stats.lag_ticks.max(0) / 90).unwrap_or(0)),
                encoder,
                decoder: None,
                scaler: None,
                fallback_reason,
                transcoded_from: None,
                corrupt_units: None,
                concealed_frames: None,
            });
        }
        if let Some((a, source)) = audio {
            out.push(RenditionStatus {
                name: "audio".into(),
                codec: a.codec_string(),
                width: None,
                height: None,
                frame_rate: None,
                sample_rate: Some(a.sample_rate),
                channels: Some(a.channels),
                encode_fps: None,
                dropped_frames: None,
                lag_ms: None,
                encoder: None,
                decoder: None,
                scaler: None,
                fallback_reason: None,
                transcoded_from: source.map(|s| s.description.clone()),
                corrupt_units: source.map(AudioSource::corrupt_units),
                concealed_frames: None,
            });
        }
        out
    }
}
