//! Audio that is not AAC, transcoded to AAC-LC: one libavcodec decoder (MP2, MP3, AC-3, G.711
//! µ-law / A-law), libswresample to the [`AacEncoder`]'s input (planar f32, at most two
//! channels, the same sample rate), and the [`AacEncoder`].
//!
//! Input: one compressed frame per [`AudioTranscoder::submit`] (an MPEG audio frame of
//! ISO/IEC 11172-3 / 13818-3, an AC-3 syncframe of ATSC A/52 §5.1, or any number of G.711
//! bytes of ITU-T G.711), with its pts on the source sample-rate clock.
//!
//! Output: raw AAC-LC frames as [`AccessUnit`]s and the [`AacConfig`] they need, known when
//! the transcoder opens. The AAC keeps the source's sample rate (every MPEG audio, AC-3 and
//! G.711 rate is an AAC rate, ISO/IEC 14496-3 Table 1.18), so pts stay on the source's clock
//! and no resampling delay enters the timeline. More than two channels (AC-3 5.1) are mixed
//! down to stereo by libswresample's default matrix.
//!
//! Timestamps: the first unit's pts anchors the output; after it the decoded samples are
//! counted, so AAC frames are exactly 1024 samples apart whatever the source's frame size or
//! timestamp jitter (RTMP's whole milliseconds). When a unit's pts and the count part by more
//! than [`REANCHOR_AFTER_SECONDS`] (a gap or jump in the source), the
//! count is re-anchored to the unit's pts and [`AudioTranscodeStats::reanchors`] counts it.
//! The AAC encoder's own priming shift is described in [`AacEncoder`]'s module docs.
//!
//! Broken input (STYLE.md rule 6): a unit libavcodec refuses is [`LibavError::CorruptUnit`],
//! counted in [`AudioTranscodeStats::corrupt_units`]; the transcoder carries on with the next.

use std::collections::VecDeque;
use std::fmt;
use std::ptr;

use ffmpeg_next::ffi;
use ffmpeg_next::{codec, decoder, frame};
use media::encode::{AudioEncoder, RawAudioFrame};
use media::{AacConfig, AccessUnit};

use crate::{AacEncoder, AacSettings, LibavError, ffmpeg_error_text, quiet_logging};

/// The source codecs the transcoder decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SourceAudioCodec {
    /// MPEG-1/2 audio layers I and II (libavcodec's `mp2` decoder takes layer I too).
    Mp2,
    /// MPEG-1/2/2.5 audio layer III.
    Mp3,
    /// ATSC A/52 AC-3.
    Ac3,
    /// ITU-T G.711 µ-law (RTP payload type 0, PCMU).
    G711MuLaw,
    /// ITU-T G.711 A-law (RTP payload type 8, PCMA).
    G711ALaw,
}

impl SourceAudioCodec {
    fn decoder(self) -> (codec::Id, &'static str) {
        match self {
            SourceAudioCodec::Mp2 => (codec::Id::MP2, "mp2"),
            SourceAudioCodec::Mp3 => (codec::Id::MP3, "mp3"),
            SourceAudioCodec::Ac3 => (codec::Id::AC3, "ac3"),
            SourceAudioCodec::G711MuLaw => (codec::Id::PCM_MULAW, "pcm_mulaw"),
            SourceAudioCodec::G711ALaw => (codec::Id::PCM_ALAW, "pcm_alaw"),
        }
    }

    /// libavcodec's name of the codec, as logs show it.
    pub fn name(self) -> &'static str {
        self.decoder().1
    }

    /// G.711 has no headers: its decoder must be told the rate and channels.
    fn headerless(self) -> bool {
        matches!(
            self,
            SourceAudioCodec::G711MuLaw | SourceAudioCodec::G711ALaw
        )
    }
}

/// How to open an [`AudioTranscoder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioTranscoderSettings {
    pub codec: SourceAudioCodec,
    /// The source's sample rate, which is also the AAC's (and the pts clock of both).
    pub sample_rate: u32,
    /// The source's channels (1 to 8); the AAC gets at most 2.
    pub channels: u8,
    /// Decoder extradata, for codecs that need it (none of the supported ones do today).
    pub extradata: Vec<u8>,
    /// AAC bitrate; `None` picks 64 kbit/s per channel, less at low sample rates.
    pub bitrate_kbps: Option<u32>,
}

/// Counters of one transcoder since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudioTranscodeStats {
    /// Units submitted (corrupt ones included).
    pub units: u64,
    /// Units libavcodec refused or that decoded to nothing usable; each was skipped.
    pub corrupt_units: u64,
    /// Samples (per channel) handed to the AAC encoder.
    pub samples: u64,
    /// AAC frames out.
    pub aac_frames: u64,
    /// Times the sample count was re-anchored to a source pts.
    pub reanchors: u64,
}

/// Seconds a unit's pts and the sample count may part by before the count is re-anchored.
pub const REANCHOR_AFTER_SECONDS: i64 = 1;

/// An open decoder + resampler + AAC encoder. See the module docs.
pub struct AudioTranscoder {
    settings: AudioTranscoderSettings,
    decoder: decoder::Audio,
    /// Reused by every `avcodec_receive_frame`.
    frame: frame::Audio,
    resampler: Option<Resampler>,
    encoder: AacEncoder,
    /// The pts of the next decoded sample, on the sample-rate clock.
    next_pts: Option<i64>,
    /// Planar f32 samples of the current decoded frame, one Vec per output channel (reused).
    planes: Vec<Vec<f32>>,
    ready: VecDeque<AccessUnit>,
    stats: AudioTranscodeStats,
    flushed: bool,
}

impl fmt::Debug for AudioTranscoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AudioTranscoder")
            .field("settings", &self.settings)
            .field("next_pts", &self.next_pts)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn ffmpeg_call(call: &'static str, code: i32) -> LibavError {
    LibavError::Ffmpeg {
        call,
        source: ffmpeg_next::Error::from(code),
    }
}

/// The default AAC bitrate: 64 kbit/s per channel at 32 kHz and up, down to 16 at 8 kHz (an
/// AAC frame holds at most 6144 bits per channel, ISO/IEC 14496-3 §4.5.3.2, so low rates
/// cannot take more).
fn default_bitrate_kbps(sample_rate: u32, channels: u8) -> u32 {
    let per_channel = (sample_rate / 500).clamp(16, 64);
    per_channel * u32::from(channels)
}

impl AudioTranscoder {
    /// Opens the decoder for `settings.codec` and an AAC-LC encoder at the source's sample
    /// rate with `min(channels, 2)` channels.
    pub fn new(settings: AudioTranscoderSettings) -> Result<Self, LibavError> {
        quiet_logging();
        if !(1..=8).contains(&settings.channels) {
            return Err(LibavError::InvalidSettings {
                setting: "channels",
                reason: format!("{} (1 to 8 supported)", settings.channels),
            });
        }
        let rate = i32::try_from(settings.sample_rate)
            .ok()
            .filter(|&rate| rate > 0)
            .ok_or_else(|| LibavError::InvalidSettings {
                setting: "sample_rate",
                reason: settings.sample_rate.to_string(),
            })?;
        let out_channels = settings.channels.min(2);
        let encoder = AacEncoder::new(AacSettings {
            sample_rate: settings.sample_rate,
            channels: out_channels,
            bitrate_kbps: settings
                .bitrate_kbps
                .unwrap_or_else(|| default_bitrate_kbps(settings.sample_rate, out_channels)),
        })?;

        let (id, name) = settings.codec.decoder();
        let found = decoder::find(id).ok_or(LibavError::DecoderNotFound(name))?;
        let mut context = codec::context::Context::new_with_codec(found);
        set_extradata(&mut context, &settings.extradata)?;
        if settings.codec.headerless() {
            // SAFETY: the context is fresh and not open; these are plain fields the decoder
            // reads at avcodec_open2, and av_channel_layout_default only writes the layout.
            unsafe {
                let raw = context.as_mut_ptr();
                (*raw).sample_rate = rate;
                ffi::av_channel_layout_default(&mut (*raw).ch_layout, i32::from(settings.channels));
            }
        }
        let mut audio = context
            .decoder()
            .audio()
            .map_err(|source| LibavError::Ffmpeg {
                call: "avcodec_open2 (audio decoder)",
                source,
            })?;
        audio.set_packet_time_base((1, rate));
        Ok(AudioTranscoder {
            planes: vec![Vec::new(); usize::from(out_channels)],
            settings,
            decoder: audio,
            frame: frame::Audio::empty(),
            resampler: None,
            encoder,
            next_pts: None,
            ready: VecDeque::new(),
            stats: AudioTranscodeStats::default(),
            flushed: false,
        })
    }

    pub fn settings(&self) -> &AudioTranscoderSettings {
        &self.settings
    }

    /// The AAC track's parameters (the encoder's AudioSpecificConfig).
    pub fn aac_config(&self) -> &AacConfig {
        self.encoder.aac_config()
    }

    pub fn stats(&self) -> AudioTranscodeStats {
        self.stats
    }

    /// Decodes one source unit (`pts` on the source sample-rate clock) and encodes what it
    /// held; drain [`Self::poll_unit`] after it. [`LibavError::CorruptUnit`] means the unit was
    /// skipped and counted, and the transcoder is still usable.
    pub fn submit(&mut self, pts: i64, payload: &[u8]) -> Result<(), LibavError> {
        if self.flushed {
            return Err(LibavError::SubmitAfterFlush);
        }
        self.stats.units += 1;
        let corrupt = |stats: &mut AudioTranscodeStats, reason: String| {
            stats.corrupt_units += 1;
            LibavError::CorruptUnit { pts, reason }
        };
        if payload.is_empty() {
            return Err(corrupt(&mut self.stats, "empty unit".into()));
        }
        let Ok(size) = i32::try_from(payload.len()) else {
            return Err(corrupt(
                &mut self.stats,
                format!("{} bytes is too large for a packet", payload.len()),
            ));
        };
        self.anchor(pts);
        // SAFETY: an all-zero AVPacket is a valid blank packet (what av_packet_unref leaves).
        let mut packet: ffi::AVPacket = unsafe { std::mem::zeroed() };
        packet.data = payload.as_ptr().cast_mut();
        packet.size = size;
        packet.pts = pts;
        packet.dts = pts;
        packet.pos = -1;
        // SAFETY: the context is open. The packet has no `buf`, so libavcodec copies `size`
        // bytes from `data` (alive for this call) into its own padded buffer before returning
        // and never writes through `data`.
        let code = unsafe { ffi::avcodec_send_packet(self.decoder.as_mut_ptr(), &packet) };
        if code < 0 {
            return Err(corrupt(
                &mut self.stats,
                format!(
                    "libavcodec {}: {}",
                    self.settings.codec.name(),
                    ffmpeg_error_text(code.into())
                ),
            ));
        }
        match self.receive_frames() {
            Ok(()) => Ok(()),
            Err(LibavError::CorruptUnit { reason, .. }) => Err(corrupt(&mut self.stats, reason)),
            Err(other) => Err(other),
        }
    }

    /// The next AAC frame, `None` when none is ready.
    pub fn poll_unit(&mut self) -> Option<AccessUnit> {
        self.ready.pop_front()
    }

    /// The source ended: drains the decoder and the encoder (the last AAC frame is padded with
    /// silence). Later submits are errors.
    pub fn flush(&mut self) -> Result<(), LibavError> {
        if self.flushed {
            return Ok(());
        }
        self.flushed = true;
        // SAFETY: the context is open; a null packet enters draining mode.
        let code = unsafe { ffi::avcodec_send_packet(self.decoder.as_mut_ptr(), ptr::null()) };
        if code >= 0 {
            // A unit that only now fails to decode is the source's last; what decoded is kept.
            let _ = self.receive_frames();
        }
        self.encoder.flush()?;
        self.collect()
    }

    /// Sets the pts of the samples this unit decodes to: the running count, or the unit's own
    /// pts at the start and after a jump.
    fn anchor(&mut self, pts: i64) {
        let limit = i64::from(self.settings.sample_rate) * REANCHOR_AFTER_SECONDS;
        match self.next_pts {
            Some(next) if (pts - next).abs() <= limit => {}
            Some(_) => {
                self.stats.reanchors += 1;
                self.next_pts = Some(pts);
            }
            None => self.next_pts = Some(pts),
        }
    }

    fn receive_frames(&mut self) -> Result<(), LibavError> {
        loop {
            match self.decoder.receive_frame(&mut self.frame) {
                Ok(()) => {}
                Err(ffmpeg_next::Error::Eof) => return Ok(()),
                Err(ffmpeg_next::Error::Other { errno }) if errno == ffmpeg_next::error::EAGAIN => {
                    return Ok(());
                }
                Err(source) => {
                    return Err(LibavError::CorruptUnit {
                        pts: -1,
                        reason: format!("libavcodec {}: {source}", self.settings.codec.name()),
                    });
                }
            }
            let samples = self.convert_frame()?;
            if samples == 0 {
                continue;
            }
            let pts = self.next_pts.unwrap_or(0);
            // At most two planes (the output is mono or stereo): no allocation per frame.
            let plane = |i: usize| self.planes.get(i).and_then(|p| p.get(..samples));
            let both = [plane(0).unwrap_or_default(), plane(1).unwrap_or_default()];
            let channels = both.get(..self.planes.len().min(2)).unwrap_or_default();
            self.encoder.submit(&RawAudioFrame { pts, channels })?;
            self.stats.samples += samples as u64;
            self.next_pts = Some(pts + samples as i64);
            self.collect()?;
        }
    }

    fn collect(&mut self) -> Result<(), LibavError> {
        while let Some(unit) = self.encoder.poll_packet()? {
            self.stats.aac_frames += 1;
            self.ready.push_back(unit);
        }
        Ok(())
    }

    /// Converts the decoded frame into `planes`; returns the samples per channel written.
    fn convert_frame(&mut self) -> Result<usize, LibavError> {
        // SAFETY: receive_frame succeeded, so the frame is a valid decoded AVFrame.
        let (format, rate, layout, in_samples) = unsafe {
            let raw = &*self.frame.as_ptr();
            (raw.format, raw.sample_rate, raw.ch_layout, raw.nb_samples)
        };
        if in_samples <= 0 {
            return Ok(0);
        }
        let input = InputShape {
            format,
            rate,
            channels: layout.nb_channels,
            mask: if layout.order == ffi::AVChannelOrder::AV_CHANNEL_ORDER_NATIVE {
                // SAFETY: a native-order layout stores its channels in `mask`.
                unsafe { layout.u.mask }
            } else {
                0
            },
        };
        if self.resampler.as_ref().map(|r| r.input) != Some(input) {
            self.resampler = Some(Resampler::new(
                input,
                self.settings.sample_rate,
                self.planes.len(),
            )?);
        }
        let Some(resampler) = self.resampler.as_mut() else {
            return Ok(0);
        };
        resampler.convert(&self.frame, in_samples, &mut self.planes)
    }
}

/// What a decoded frame looks like; a change rebuilds the resampler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct InputShape {
    format: i32,
    rate: i32,
    channels: i32,
    /// The native channel mask, 0 when the decoder gave none (a default layout is used).
    mask: u64,
}

/// A libswresample context from one [`InputShape`] to planar f32 at the encoder's rate.
struct Resampler {
    context: *mut ffi::SwrContext,
    input: InputShape,
}

// SAFETY: the SwrContext is owned by this value alone and libswresample keeps no thread-local
// state, so moving it to another thread is sound (ffmpeg-next does the same for its Context).
unsafe impl Send for Resampler {}

impl Resampler {
    fn new(input: InputShape, out_rate: u32, out_channels: usize) -> Result<Self, LibavError> {
        let out_rate = i32::try_from(out_rate).map_err(|_| LibavError::InvalidSettings {
            setting: "sample_rate",
            reason: out_rate.to_string(),
        })?;
        let mut context: *mut ffi::SwrContext = ptr::null_mut();
        // SAFETY: the layouts are plain values built here and only read by
        // swr_alloc_set_opts2, which allocates `context` (or leaves it null on failure);
        // the sample formats come from a decoded frame or are FLTP.
        let code = unsafe {
            let mut in_layout: ffi::AVChannelLayout = std::mem::zeroed();
            if input.mask != 0 {
                ffi::av_channel_layout_from_mask(&mut in_layout, input.mask);
            } else {
                ffi::av_channel_layout_default(&mut in_layout, input.channels);
            }
            let mut out_layout: ffi::AVChannelLayout = std::mem::zeroed();
            ffi::av_channel_layout_default(&mut out_layout, out_channels as i32);
            ffi::swr_alloc_set_opts2(
                &mut context,
                &mut out_layout,
                ffi::AVSampleFormat::AV_SAMPLE_FMT_FLTP,
                out_rate,
                &mut in_layout,
                std::mem::transmute::<i32, ffi::AVSampleFormat>(input.format),
                input.rate,
                0,
                ptr::null_mut(),
            )
        };
        if code < 0 || context.is_null() {
            return Err(ffmpeg_call("swr_alloc_set_opts2", code));
        }
        let resampler = Resampler { context, input };
        // SAFETY: `context` was allocated above and is not initialised yet.
        let code = unsafe { ffi::swr_init(resampler.context) };
        if code < 0 {
            return Err(ffmpeg_call("swr_init", code));
        }
        Ok(resampler)
    }

    /// Converts `in_samples` of `frame` into the front of `planes`; returns the samples
    /// written per channel.
    fn convert(
        &mut self,
        frame: &frame::Audio,
        in_samples: i32,
        planes: &mut [Vec<f32>],
    ) -> Result<usize, LibavError> {
        // SAFETY: the context is initialised; swr_get_out_samples only reads it.
        let capacity = unsafe { ffi::swr_get_out_samples(self.context, in_samples) };
        let capacity = usize::try_from(capacity)
            .map_err(|_| ffmpeg_call("swr_get_out_samples", capacity))?
            .max(1);
        let mut outputs: [*mut u8; 8] = [ptr::null_mut(); 8];
        for (plane, output) in planes.iter_mut().zip(outputs.iter_mut()) {
            if plane.len() < capacity {
                // alloc: only while the frames grow (once per stream in practice).
                plane.resize(capacity, 0.0);
            }
            *output = plane.as_mut_ptr().cast();
        }
        let out_count = i32::try_from(capacity).unwrap_or(i32::MAX);
        // SAFETY: `outputs` holds one pointer per output channel, each to at least `capacity`
        // f32s; `extended_data` of a decoded frame points to its planes (or its one packed
        // buffer), each holding `in_samples` samples of the format the context was made for
        // (the resampler is rebuilt whenever the frame's shape changes).
        let written = unsafe {
            ffi::swr_convert(
                self.context,
                outputs.as_mut_ptr(),
                out_count,
                (*frame.as_ptr()).extended_data as *mut *const u8,
                in_samples,
            )
        };
        usize::try_from(written).map_err(|_| LibavError::CorruptUnit {
            pts: -1,
            reason: format!("swr_convert: {}", ffmpeg_error_text(written.into())),
        })
    }
}

impl Drop for Resampler {
    fn drop(&mut self) {
        // SAFETY: `context` came from swr_alloc_set_opts2 and is freed only here.
        unsafe { ffi::swr_free(&mut self.context) };
    }
}

fn set_extradata(context: &mut codec::context::Context, data: &[u8]) -> Result<(), LibavError> {
    if data.is_empty() {
        return Ok(());
    }
    let size = i32::try_from(data.len()).map_err(|_| LibavError::InvalidSettings {
        setting: "extradata",
        reason: format!("{} bytes", data.len()),
    })?;
    let padded = data.len() + ffi::AV_INPUT_BUFFER_PADDING_SIZE as usize;
    // SAFETY: av_mallocz returns null or `padded` zeroed bytes.
    let buffer = unsafe { ffi::av_mallocz(padded) }.cast::<u8>();
    if buffer.is_null() {
        return Err(ffmpeg_call(
            "av_mallocz (extradata)",
            ffi::AVERROR(ffi::ENOMEM),
        ));
    }
    // SAFETY: `buffer` holds at least `data.len()` bytes and does not overlap `data`; the
    // context is fresh (no extradata yet), so nothing leaks, and avcodec_free_context frees it.
    unsafe {
        ptr::copy_nonoverlapping(data.as_ptr(), buffer, data.len());
        let raw = context.as_mut_ptr();
        (*raw).extradata = buffer;
        (*raw).extradata_size = size;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::process::Command;
    use std::sync::atomic::{AtomicU32, Ordering};

    use media::ac3::Ac3Header;
    use media::mpeg_audio::MpegAudioHeader;

    use super::*;

    /// A file name no other test of this process uses (tests run in parallel).
    fn temp_path(name: &str) -> PathBuf {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        std::env::temp_dir().join(format!(
            "corecast-libav-{}-{unique}-{name}",
            std::process::id()
        ))
    }

    /// A 440 Hz tone (ffmpeg's `sine` source, amplitude 1/8) of `seconds`, encoded by the
    /// ffmpeg CLI with `codec_args` into the raw format `format`.
    fn ffmpeg_tone(rate: u32, seconds: f32, codec_args: &[&str], format: &str) -> Vec<u8> {
        let path = temp_path(&format!("tone-{format}-{rate}"));
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
            .arg(format!("sine=f=440:r={rate}:d={seconds}"))
            .args(codec_args)
            .args(["-f", format])
            .arg(&path)
            .status()
            .expect("ffmpeg not found: run scripts/install-deps.sh --test");
        assert!(status.success());
        let bytes = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        bytes
    }

    /// Cuts a stream into frames with a header parser that returns the frame length.
    fn frames(stream: &[u8], frame_len: impl Fn(&[u8]) -> usize) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let len = frame_len(rest).min(rest.len());
            out.push(&rest[..len]);
            rest = &rest[len..];
        }
        out
    }

    fn mpeg_frames(stream: &[u8]) -> Vec<&[u8]> {
        frames(stream, |data| {
            MpegAudioHeader::parse(data).unwrap().unwrap().frame_bytes
        })
    }

    fn ac3_frames(stream: &[u8]) -> Vec<&[u8]> {
        frames(stream, |data| {
            Ac3Header::parse(data).unwrap().unwrap().frame_bytes
        })
    }

    /// Submits each frame with a pts `samples` after the last, starting at `first_pts`;
    /// returns the AAC units after a flush.
    fn transcode(
        transcoder: &mut AudioTranscoder,
        units: &[&[u8]],
        first_pts: i64,
        samples: i64,
    ) -> Vec<AccessUnit> {
        let mut out = Vec::new();
        for (index, unit) in units.iter().enumerate() {
            transcoder
                .submit(first_pts + index as i64 * samples, unit)
                .unwrap();
            out.extend(std::iter::from_fn(|| transcoder.poll_unit()));
        }
        transcoder.flush().unwrap();
        out.extend(std::iter::from_fn(|| transcoder.poll_unit()));
        out
    }

    /// Decodes AAC units with the ffmpeg CLI (from ADTS) to mono f32 samples.
    fn decode_aac(config: &AacConfig, units: &[AccessUnit]) -> Vec<f32> {
        let mut adts = Vec::new();
        for unit in units {
            adts.extend_from_slice(&config.adts_header(unit.payload.len()));
            adts.extend_from_slice(&unit.payload);
        }
        let path = temp_path("decode.aac");
        std::fs::write(&path, &adts).unwrap();
        let output = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&path)
            .args(["-ac", "1", "-f", "f32le", "-"])
            .output()
            .expect("ffmpeg not found");
        let _ = std::fs::remove_file(&path);
        assert!(output.status.success(), "{output:?}");
        output
            .stdout
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    /// RMS level and zero-crossing frequency of the middle half of `samples`.
    fn level_and_frequency(samples: &[f32], rate: u32) -> (f32, f32) {
        let middle = &samples[samples.len() / 4..samples.len() * 3 / 4];
        let rms = (middle.iter().map(|s| s * s).sum::<f32>() / middle.len() as f32).sqrt();
        let crossings = middle
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        let frequency = crossings as f32 / 2.0 / (middle.len() as f32 / rate as f32);
        (rms, frequency)
    }

    /// The tone's level: amplitude 1/8, RMS 1/(8 sqrt 2).
    const TONE_RMS: f32 = 0.088;

    fn check_units(units: &[AccessUnit], first_pts: i64, stats: AudioTranscodeStats) {
        // Every decoded sample went in; the encoder adds its priming frame and pads the last.
        let expected = stats.samples.div_ceil(1024) + 1;
        assert_eq!(units.len() as u64, expected, "{stats:?}");
        assert_eq!(stats.aac_frames, expected);
        for (index, unit) in units.iter().enumerate() {
            assert_eq!(unit.codec, media::Codec::Aac);
            assert_eq!(unit.pts, first_pts + index as i64 * 1024, "unit {index}");
            assert_eq!(unit.dts, unit.pts);
        }
    }

    #[test]
    fn mp2_stereo_becomes_aac_at_its_rate_and_timeline() {
        let stream = ffmpeg_tone(
            48_000,
            2.0,
            &["-ac", "2", "-c:a", "mp2", "-b:a", "192k"],
            "mp2",
        );
        let units = mpeg_frames(&stream);
        let mut transcoder = AudioTranscoder::new(AudioTranscoderSettings {
            codec: SourceAudioCodec::Mp2,
            sample_rate: 48_000,
            channels: 2,
            extradata: Vec::new(),
            bitrate_kbps: None,
        })
        .unwrap();
        let config = transcoder.aac_config().clone();
        assert_eq!(
            (config.object_type, config.sample_rate, config.channels),
            (2, 48_000, 2)
        );
        // A start far from zero: the output continues the input's timeline.
        let first_pts = 48_000 * 3600;
        let aac = transcode(&mut transcoder, &units, first_pts, 1152);
        let stats = transcoder.stats();
        assert_eq!(stats.units, units.len() as u64);
        assert_eq!((stats.corrupt_units, stats.reanchors), (0, 0));
        assert_eq!(stats.samples, units.len() as u64 * 1152);
        check_units(&aac, first_pts, stats);

        let decoded = decode_aac(&config, &aac);
        let seconds = decoded.len() as f32 / 48_000.0;
        assert!((2.0..2.2).contains(&seconds), "{seconds} s decoded");
        let (rms, frequency) = level_and_frequency(&decoded, 48_000);
        assert!((rms - TONE_RMS).abs() < 0.015, "rms {rms}");
        assert!((frequency - 440.0).abs() < 5.0, "{frequency} Hz");
    }

    #[test]
    fn mp3_with_jittery_millisecond_pts_stays_contiguous_and_reanchors_on_a_jump() {
        let stream = ffmpeg_tone(
            44_100,
            2.0,
            &[
                "-ac",
                "1",
                "-c:a",
                "libmp3lame",
                "-b:a",
                "64k",
                "-write_xing",
                "0",
                "-id3v2_version",
                "0",
            ],
            "mp3",
        );
        let units = mpeg_frames(&stream);
        let mut transcoder = AudioTranscoder::new(AudioTranscoderSettings {
            codec: SourceAudioCodec::Mp3,
            sample_rate: 44_100,
            channels: 1,
            extradata: Vec::new(),
            bitrate_kbps: None,
        })
        .unwrap();
        assert_eq!(transcoder.aac_config().channels, 1);
        let mut aac = Vec::new();
        let half = units.len() / 2;
        for (index, unit) in units.iter().enumerate() {
            // RTMP-style times: whole milliseconds, rescaled; after half the units the source
            // jumps 10 s ahead.
            let ms = (index as i64 * 1152 * 1000) / 44_100 + if index >= half { 10_000 } else { 0 };
            transcoder.submit(ms * 44_100 / 1000, unit).unwrap();
            aac.extend(std::iter::from_fn(|| transcoder.poll_unit()));
        }
        transcoder.flush().unwrap();
        aac.extend(std::iter::from_fn(|| transcoder.poll_unit()));
        let stats = transcoder.stats();
        assert_eq!((stats.corrupt_units, stats.reanchors), (0, 1), "{stats:?}");
        let steps: Vec<i64> = aac.windows(2).map(|w| w[1].pts - w[0].pts).collect();
        let jumps: Vec<&i64> = steps.iter().filter(|&&step| step != 1024).collect();
        assert_eq!(jumps.len(), 1, "{jumps:?}");
        assert!(
            (441_000 - 2048..441_000 + 2048).contains(jumps[0]),
            "{jumps:?}"
        );
        let decoded = decode_aac(transcoder.aac_config(), &aac);
        let (rms, frequency) = level_and_frequency(&decoded, 44_100);
        assert!((rms - TONE_RMS).abs() < 0.015, "rms {rms}");
        assert!((frequency - 440.0).abs() < 5.0, "{frequency} Hz");
    }

    #[test]
    fn ac3_five_one_is_mixed_down_to_stereo() {
        let stream = ffmpeg_tone(
            48_000,
            1.0,
            &[
                "-af",
                "pan=5.1|c0=c0|c1=c0|c2=c0|c3=c0|c4=c0|c5=c0",
                "-c:a",
                "ac3",
                "-b:a",
                "384k",
            ],
            "ac3",
        );
        let units = ac3_frames(&stream);
        assert_eq!(Ac3Header::parse(units[0]).unwrap().unwrap().channels, 6);
        let mut transcoder = AudioTranscoder::new(AudioTranscoderSettings {
            codec: SourceAudioCodec::Ac3,
            sample_rate: 48_000,
            channels: 6,
            extradata: Vec::new(),
            bitrate_kbps: None,
        })
        .unwrap();
        assert_eq!(transcoder.aac_config().channels, 2);
        let aac = transcode(&mut transcoder, &units, 0, 1536);
        let stats = transcoder.stats();
        assert_eq!(stats.samples, units.len() as u64 * 1536);
        check_units(&aac, 0, stats);
        let decoded = decode_aac(transcoder.aac_config(), &aac);
        let seconds = decoded.len() as f32 / 48_000.0;
        assert!((1.0..1.2).contains(&seconds), "{seconds} s decoded");
        // The downmix keeps the tone audible (its exact gain is libswresample's matrix).
        let (rms, frequency) = level_and_frequency(&decoded, 48_000);
        assert!(rms > 0.03, "rms {rms}");
        assert!((frequency - 440.0).abs() < 5.0, "{frequency} Hz");
    }

    #[test]
    fn g711_mu_law_at_8_khz_becomes_mono_aac() {
        let stream = ffmpeg_tone(8_000, 1.0, &["-c:a", "pcm_mulaw"], "mulaw");
        assert_eq!(stream.len(), 8_000);
        // RTP-sized packets of 20 ms.
        let units: Vec<&[u8]> = stream.chunks(160).collect();
        let mut transcoder = AudioTranscoder::new(AudioTranscoderSettings {
            codec: SourceAudioCodec::G711MuLaw,
            sample_rate: 8_000,
            channels: 1,
            extradata: Vec::new(),
            bitrate_kbps: None,
        })
        .unwrap();
        let aac = transcode(&mut transcoder, &units, 160, 160);
        let stats = transcoder.stats();
        assert_eq!(stats.samples, 8_000);
        check_units(&aac, 160, stats);
        let decoded = decode_aac(transcoder.aac_config(), &aac);
        let (rms, frequency) = level_and_frequency(&decoded, 8_000);
        assert!((rms - TONE_RMS).abs() < 0.02, "rms {rms}");
        assert!((frequency - 440.0).abs() < 10.0, "{frequency} Hz");
    }

    #[test]
    fn corrupt_units_are_skipped_and_counted() {
        let stream = ffmpeg_tone(48_000, 1.0, &["-ac", "2", "-c:a", "mp2"], "mp2");
        let good = mpeg_frames(&stream);
        let mut transcoder = AudioTranscoder::new(AudioTranscoderSettings {
            codec: SourceAudioCodec::Mp2,
            sample_rate: 48_000,
            channels: 2,
            extradata: Vec::new(),
            bitrate_kbps: Some(96),
        })
        .unwrap();
        let garbage: Vec<u8> = (0..400u32).map(|i| (i * 37 % 251) as u8).collect();
        let truncated = &good[3][..3];
        let mut corrupt = 0;
        for (index, unit) in good.iter().enumerate() {
            for bad in [&garbage[..], truncated, &[][..]] {
                if index % 10 == 5 {
                    match transcoder.submit(index as i64 * 1152, bad) {
                        Err(LibavError::CorruptUnit { .. }) => corrupt += 1,
                        Ok(()) => {}
                        Err(other) => panic!("{other}"),
                    }
                }
            }
            transcoder.submit(index as i64 * 1152, unit).unwrap();
            while transcoder.poll_unit().is_some() {}
        }
        let stats = transcoder.stats();
        assert!(corrupt >= good.len() / 10, "{corrupt} refused, {stats:?}");
        assert_eq!(stats.corrupt_units, corrupt as u64);
        // Every good frame still decoded to its 1152 samples.
        assert!(stats.samples >= good.len() as u64 * 1152, "{stats:?}");
        transcoder.flush().unwrap();
        assert!(matches!(
            transcoder.submit(0, good[0]),
            Err(LibavError::SubmitAfterFlush)
        ));
    }

    #[test]
    fn bad_settings_are_typed_errors() {
        let settings = AudioTranscoderSettings {
            codec: SourceAudioCodec::Mp3,
            sample_rate: 44_100,
            channels: 0,
            extradata: Vec::new(),
            bitrate_kbps: None,
        };
        assert!(matches!(
            AudioTranscoder::new(settings.clone()),
            Err(LibavError::InvalidSettings {
                setting: "channels",
                ..
            })
        ));
        assert!(matches!(
            AudioTranscoder::new(AudioTranscoderSettings {
                channels: 2,
                sample_rate: 0,
                ..settings
            }),
            Err(LibavError::InvalidSettings {
                setting: "sample_rate",
                ..
            })
        ));
    }

    #[test]
    fn transcoder_moves_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<AudioTranscoder>();
    }
}
