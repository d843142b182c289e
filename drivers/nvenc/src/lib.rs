//! GPU H.264 encoding with NVIDIA NVENC behind [`media::encode::VideoEncoder`], through
//! libavcodec's `h264_nvenc` (ffmpeg-next over Debian's FFmpeg 5.1).
//!
//! Why libavcodec and not our own shim over the NVENC API (docs/drivers.md has the long form):
//! Debian's FFmpeg already carries `h264_nvenc` / `hevc_nvenc`, built on nv-codec-headers, which
//! `dlopen` `libcuda.so.1` and `libnvidia-encode.so.1` at run time. So this crate builds, links
//! and passes its tests on machines with no NVIDIA driver, needs no CUDA toolkit or Video Codec
//! SDK at build time (the `nvidia-video-codec-sdk` crate needs both), and reuses FFmpeg's
//! tested session, rate-control and surface handling, which a shim would have to rewrite.
//!
//! Before the encoder is opened, [`check_gpu`] loads the driver libraries itself and asks the
//! CUDA driver about the GPU, so a missing driver, a machine with no GPU, or a GPU without an
//! NVENC engine (data-centre parts such as the A100 and H100 have none) is
//! [`NvencError::Unavailable`] with a reason an operator can act on, never a panic. The ladder
//! falls back to x264 on that error, or refuses the stream's ladder, as configured.
//!
//! Output: the encoder is opened with `AV_CODEC_FLAG_GLOBAL_HEADER`, so SPS and PPS come once in
//! the extradata (Annex B) and go into the track's [`AvcConfig`] (ITU-T H.264 §7.3.2.1,
//! §7.3.2.2); packets (Annex B, ITU-T H.264 Annex B.1) are rewritten as 4-byte length-prefixed
//! NAL units (ISO/IEC 14496-15 §5.3.4.2) with [`media::annex_b`], dropping AUDs and any repeated
//! parameter sets. IDRs: the GOP is as long as FFmpeg allows (2^31 − 1 frames) and scene-cut
//! detection is off, so IDRs come only where the caller forces them (`pict_type = I` with
//! `forced-idr=1`). No B-frames and `zerolatency=1`, so dts = pts and units come out in order.
//!
//! HEVC: [`NvencEncoder::with_codec`] with [`NvencCodec::Hevc`] opens `hevc_nvenc` (HEVC Main)
//! with the same rules; VPS, SPS and PPS go into the track's [`media::HevcConfig`] (ITU-T H.265
//! §7.3.2, ISO/IEC 14496-15 §8.3.3).
//!
//! Not done: AV1 (Debian's FFmpeg 5.1 has no `av1_nvenc`: [`NvencCodec::Av1`] is always
//! unavailable, with that reason), keeping frames on the GPU between decode, scale and encode
//! (frames are uploaded from system memory by libavcodec), several GPUs chosen by load.

mod driver;
mod encoder;
mod log_capture;

pub use driver::{DriverLibraries, FFMPEG_NVENC_API, GpuInfo, check_gpu, check_gpu_with};
pub use encoder::NvencEncoder;

use media::MediaError;
use media::encode::{Vbv, check_frame_rate, check_in_range, check_picture_size};

/// Errors from the NVENC driver. [`NvencError::Unavailable`] means "no usable NVENC here"
/// (fall back or refuse); the others are mistakes in settings or input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NvencError {
    #[error("NVENC unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("NVENC setting {setting}: {reason}")]
    InvalidSettings {
        setting: &'static str,
        reason: String,
    },
    #[error("FFmpeg {call} failed in NVENC: {}", ffmpeg_error_text(*source))]
    Ffmpeg {
        call: &'static str,
        source: ffmpeg_next::Error,
    },
    #[error("NVENC parameter sets do not parse: {0}")]
    Config(#[from] MediaError),
    #[error("NVENC got a {got_width}x{got_height} picture, it was opened for {width}x{height}")]
    FrameSize {
        width: u32,
        height: u32,
        got_width: u32,
        got_height: u32,
    },
    #[error("NVENC picture plane {plane} is shorter than its rows at its stride")]
    PlaneTooSmall { plane: usize },
    #[error("NVENC picture submitted after flush")]
    SubmitAfterFlush,
    /// A system-memory picture for an encoder opened for CUDA frames, or the other way round.
    #[error("NVENC was opened for {opened} pictures and got {got} ones")]
    InputKind {
        opened: &'static str,
        got: &'static str,
    },
}

media::impl_encoder_error_from!(NvencError);

impl NvencError {
    /// The reason NVENC cannot be used here, for errors that mean exactly that.
    pub fn unavailable_reason(&self) -> Option<&str> {
        match self {
            NvencError::Unavailable { reason } => Some(reason),
            _ => None,
        }
    }
}

/// The NVENC codecs. Debian's FFmpeg 5.1 has `h264_nvenc` and `hevc_nvenc`; `av1_nvenc`
/// arrived in FFmpeg 6.0, so an AV1 encoder is always [`NvencError::Unavailable`] here (and
/// corecast does not drive it yet where FFmpeg has it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvencCodec {
    H264,
    Hevc,
    Av1,
}

impl NvencCodec {
    /// The libavcodec encoder name.
    pub fn ffmpeg_name(self) -> &'static str {
        match self {
            NvencCodec::H264 => "h264_nvenc",
            NvencCodec::Hevc => "hevc_nvenc",
            NvencCodec::Av1 => "av1_nvenc",
        }
    }
}

/// NVENC presets, fastest (`p1`) to best quality (`p7`), as in Video Codec SDK 10+.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NvencPreset {
    P1,
    P2,
    P3,
    P4,
    P5,
    P6,
    P7,
}

impl NvencPreset {
    pub const ALL: [NvencPreset; 7] = [
        NvencPreset::P1,
        NvencPreset::P2,
        NvencPreset::P3,
        NvencPreset::P4,
        NvencPreset::P5,
        NvencPreset::P6,
        NvencPreset::P7,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NvencPreset::P1 => "p1",
            NvencPreset::P2 => "p2",
            NvencPreset::P3 => "p3",
            NvencPreset::P4 => "p4",
            NvencPreset::P5 => "p5",
            NvencPreset::P6 => "p6",
            NvencPreset::P7 => "p7",
        }
    }

    /// `p1` … `p7`.
    pub fn from_name(name: &str) -> Option<NvencPreset> {
        NvencPreset::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// NVENC tuning (FFmpeg's `tune`): what the preset optimises for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvencTune {
    HighQuality,
    /// `ll`: no look-ahead, bounded frame delay; what live streaming wants.
    LowLatency,
    /// `ull`: lowest delay, some quality lost.
    UltraLowLatency,
}

impl NvencTune {
    pub fn name(self) -> &'static str {
        match self {
            NvencTune::HighQuality => "hq",
            NvencTune::LowLatency => "ll",
            NvencTune::UltraLowLatency => "ull",
        }
    }
}

/// H.264 profiles (ITU-T H.264 Annex A.2) NVENC can be held to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NvencProfile {
    Baseline,
    Main,
    High,
}

impl NvencProfile {
    pub fn name(self) -> &'static str {
        match self {
            NvencProfile::Baseline => "baseline",
            NvencProfile::Main => "main",
            NvencProfile::High => "high",
        }
    }
}

/// How to open the encoder; mirrors `x264::X264Settings` so a ladder rung can be given to
/// either. Rate control is VBR with a VBV cap (what HLS BANDWIDTH advertises).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvencSettings {
    /// Picture size in pixels; both even (4:2:0 chroma).
    pub width: u32,
    pub height: u32,
    pub fps_num: u32,
    pub fps_den: u32,
    /// Average bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// VBV peak rate in kbit/s; 0 means the average bitrate.
    pub vbv_max_kbps: u32,
    /// VBV buffer in kbit; 0 means one second at the peak rate.
    pub vbv_buffer_kbits: u32,
    pub preset: NvencPreset,
    pub tune: NvencTune,
    pub profile: NvencProfile,
    /// CUDA device ordinal of the GPU to encode on.
    pub gpu: u32,
}

impl Default for NvencSettings {
    fn default() -> Self {
        NvencSettings {
            width: 1280,
            height: 720,
            fps_num: 30,
            fps_den: 1,
            bitrate_kbps: 2000,
            vbv_max_kbps: 0,
            vbv_buffer_kbits: 0,
            preset: NvencPreset::P4,
            tune: NvencTune::LowLatency,
            profile: NvencProfile::High,
            gpu: 0,
        }
    }
}

impl NvencSettings {
    fn check(&self) -> Result<(), NvencError> {
        // NVENC's H.264 limit is 4096 pixels a side on every GPU generation so far.
        check_picture_size(self.width, self.height, 2, 4096)?;
        check_frame_rate(self.fps_num, self.fps_den)?;
        self.vbv().check()?;
        check_in_range("gpu", self.gpu, 0..=63)?;
        Ok(())
    }

    /// The rate control's bitrate, peak rate and buffer.
    pub(crate) fn vbv(&self) -> Vbv {
        Vbv {
            bitrate_kbps: self.bitrate_kbps,
            max_kbps: self.vbv_max_kbps,
            buffer_kbits: self.vbv_buffer_kbits,
        }
    }
}

/// What [`probe`] found for one NVENC codec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvencProbe {
    pub codec: NvencCodec,
    /// The GPU the driver reported, when it got that far.
    pub gpu: Option<GpuInfo>,
    /// `None`: an encoder opened on GPU 0. `Some(reason)`: why not.
    pub unavailable: Option<String>,
}

/// Whether `codec` can encode on GPU 0 here: the driver checks of [`check_gpu`], then a real
/// open of a small encoder (the only way to know the GPU has an NVENC engine), dropped at once.
pub fn probe(codec: NvencCodec) -> NvencProbe {
    let settings = NvencSettings {
        width: 256,
        height: 144,
        bitrate_kbps: 200,
        ..NvencSettings::default()
    };
    let gpu = check_gpu(settings.gpu).ok();
    let unavailable = match encoder::open_context(codec, &settings) {
        Ok(_) => None,
        Err(NvencError::Unavailable { reason }) => Some(reason),
        Err(other) => Some(other.to_string()),
    };
    NvencProbe {
        codec,
        gpu,
        unavailable,
    }
}

/// Turns a failed `avcodec_open2` of an NVENC encoder into a reason. `log` is what FFmpeg
/// logged meanwhile; `gpu` is what [`check_gpu`] found before (so the driver and a device were
/// there). The texts are libavcodec/nvenc.c's (FFmpeg 5.1) and nv-codec-headers' loader's.
pub fn open_failure_reason(
    encoder: &str,
    error: ffmpeg_next::Error,
    log: &[String],
    gpu: Option<&GpuInfo>,
) -> String {
    let has = |needle: &str| log.iter().any(|line| line.contains(needle));
    let gpu_name = gpu.map_or_else(
        || "GPU 0".to_owned(),
        |g| format!("GPU {} ({})", g.index, g.name),
    );
    let details = log
        .iter()
        .map(|line| strip_log_prefix(line))
        .collect::<Vec<_>>()
        .join("; ");
    if has("Cannot load libcuda") {
        return format!("libcuda.so.1 not found (FFmpeg's loader: {details})");
    }
    if has("Cannot load libnvidia-encode") {
        return format!("libnvidia-encode.so.1 not found (FFmpeg's loader: {details})");
    }
    if has("No CUDA capable devices found") {
        return "no CUDA device (the driver sees no GPU)".to_owned();
    }
    // Every device failed nvenc_check_device: its session would not open ("unsupported device",
    // "no encode device") or it lacks the codec. On a GPU the driver accepted, with nothing
    // logged (no capture on this platform), the same AVERROR_EXTERNAL means the same.
    let no_engine = has("No capable devices found")
        || has("unsupported device")
        || has("no encode device")
        || (log.is_empty() && gpu.is_some() && error == ffmpeg_next::Error::External);
    if no_engine {
        return if details.is_empty() {
            format!("{gpu_name} has no NVENC engine")
        } else {
            format!("{gpu_name} has no NVENC engine ({details})")
        };
    }
    if has("Driver does not support the required nvenc API version") {
        return format!("NVIDIA driver too old for FFmpeg's {encoder}: {details}");
    }
    if details.is_empty() {
        format!("{encoder} did not open: {}", ffmpeg_error_text(error))
    } else {
        format!(
            "{encoder} did not open: {details} ({})",
            ffmpeg_error_text(error)
        )
    }
}

/// FFmpeg's words for an error code, from `av_strerror`: `ffmpeg_next::Error`'s `Display` reads
/// a table that only `ffmpeg_next::init` fills and printed nothing without it. (libav has the
/// same function; this driver does not depend on libav.)
fn ffmpeg_error_text(error: ffmpeg_next::Error) -> String {
    let mut text = [0 as std::ffi::c_char; ffmpeg_next::ffi::AV_ERROR_MAX_STRING_SIZE];
    // SAFETY: av_strerror writes at most `text.len()` bytes, NUL-terminated, into `text`.
    unsafe { ffmpeg_next::ffi::av_strerror(error.into(), text.as_mut_ptr(), text.len()) };
    // SAFETY: `text` is NUL-terminated (above, or all zeros from its initialiser).
    unsafe { std::ffi::CStr::from_ptr(text.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// `[h264_nvenc @ 0x55d0c2a0] No capable devices found` → `No capable devices found`.
fn strip_log_prefix(line: &str) -> &str {
    match line
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((_, message)) => message,
        None => line,
    }
}

#[cfg(test)]
mod tests;
