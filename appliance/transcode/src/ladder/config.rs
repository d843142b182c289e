//! Ladder settings: the rungs and how the ladder runs them.

use std::time::Duration;

use libav::ScaleFilter;
use nvenc::NvencPreset;
use x264::{X264Preset, X264Profile};

use crate::TranscodeError;

/// One rendition of the ladder: H.264 (x264, NVENC), HEVC (x265, NVENC) or AV1 (rav1e,
/// SVT-AV1) by its [`RungEncoder`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RungConfig {
    /// Names the rendition in paths and logs (`720p`).
    pub name: String,
    /// Picture height in pixels (even). The width follows the source's aspect ratio.
    pub height: u32,
    /// Average bitrate, kbit/s (x264 ABR, rav1e's target, SVT-AV1's CBR rate).
    pub bitrate_kbps: u32,
    /// VBV peak rate, kbit/s: what HLS BANDWIDTH advertises.
    pub maxrate_kbps: u32,
    /// VBV buffer, kbit (SVT-AV1: its rate-control buffer; rav1e has none to set).
    pub vbv_buffer_kbits: u32,
    /// x264 preset: for an x264 rung, and for an NVENC rung that falls back to x264.
    pub preset: X264Preset,
    pub profile: X264Profile,
    /// Which encoder the rung asks for, and so its codec.
    pub encoder: RungEncoder,
    /// NVENC preset (`p1` fastest … `p7` best) when the rung runs on NVENC.
    pub nvenc_preset: NvencPreset,
    /// What an NVENC rung does when NVENC is unavailable here.
    pub fallback: GpuFallback,
}

/// The encoder a rung asks for (`encoder = "x264" | "x265" | "nvenc" | "rav1e" | "svt-av1"`),
/// which also fixes the rung's codec ([`RungEncoder::codec`]). The AV1 encoders carry their
/// speed setting (the rung's `av1_preset` key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RungEncoder {
    X264,
    /// HEVC with x265 through libavcodec's `libx265` (drivers/libav).
    X265,
    /// NVIDIA NVENC through libavcodec (drivers/nvenc), on GPU 0: `h264_nvenc` or `hevc_nvenc`
    /// by `codec`. AV1 is never available with Debian's FFmpeg 5.1 (no `av1_nvenc`), so such a
    /// rung always takes its fallback.
    Nvenc {
        codec: RungCodec,
    },
    /// AV1 with rav1e (drivers/rav1e): `speed` 0 (slowest) ..= 10 (fastest).
    Rav1e {
        speed: u8,
    },
    /// AV1 with SVT-AV1 through libavcodec (drivers/libav): `preset` 0 (slowest) ..= 13.
    SvtAv1 {
        preset: u8,
    },
}

/// The codec of a rung's output (`codec = "h264" | "hevc" | "av1"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RungCodec {
    H264,
    Hevc,
    Av1,
}

impl RungCodec {
    pub fn name(self) -> &'static str {
        match self {
            RungCodec::H264 => "h264",
            RungCodec::Hevc => "hevc",
            RungCodec::Av1 => "av1",
        }
    }

    pub fn from_name(name: &str) -> Option<RungCodec> {
        [RungCodec::H264, RungCodec::Hevc, RungCodec::Av1]
            .into_iter()
            .find(|c| c.name() == name)
    }

    /// The encoder a rung of this codec gets when it names none, and what an NVENC rung of it
    /// falls back to: x264 for H.264, x265 for HEVC, and for AV1 the encoder that was faster at
    /// equal quality in docs/transcode.md ("AV1 encoders").
    pub fn default_encoder(self) -> RungEncoder {
        match self {
            RungCodec::H264 => RungEncoder::X264,
            RungCodec::Hevc => RungEncoder::X265,
            RungCodec::Av1 => DEFAULT_AV1_ENCODER,
        }
    }
}

/// See [`RungCodec::default_encoder`].
pub const DEFAULT_AV1_ENCODER: RungEncoder = RungEncoder::SvtAv1 {
    preset: DEFAULT_SVT_AV1_PRESET,
};
/// rav1e's fastest speed: the only one near real time at 360p on one core.
pub const DEFAULT_RAV1E_SPEED: u8 = 10;
/// SVT-AV1's preset 12: see docs/transcode.md for its speed and quality against rav1e.
pub const DEFAULT_SVT_AV1_PRESET: u8 = 12;

impl RungEncoder {
    /// The config-file name (`x264`, `x265`, `nvenc`, `rav1e`, `svt-av1`).
    pub fn name(self) -> &'static str {
        match self {
            RungEncoder::X264 => "x264",
            RungEncoder::X265 => "x265",
            RungEncoder::Nvenc { .. } => "nvenc",
            RungEncoder::Rav1e { .. } => "rav1e",
            RungEncoder::SvtAv1 { .. } => "svt-av1",
        }
    }

    /// The encoder named `name`, AV1 encoders at their default speed, `nvenc` for H.264 (see
    /// [`Self::for_codec`]).
    pub fn from_name(name: &str) -> Option<RungEncoder> {
        [
            RungEncoder::X264,
            RungEncoder::X265,
            RungEncoder::Nvenc {
                codec: RungCodec::H264,
            },
            RungEncoder::Rav1e {
                speed: DEFAULT_RAV1E_SPEED,
            },
            RungEncoder::SvtAv1 {
                preset: DEFAULT_SVT_AV1_PRESET,
            },
        ]
        .into_iter()
        .find(|e| e.name() == name)
    }

    /// The encoder named `name` for a rung of `codec` (`codec` and `encoder` keys): `nvenc`
    /// encodes any codec (HEVC with `hevc_nvenc`; AV1 always falls back), the others only their
    /// own, so `None` means the two keys disagree or the name is unknown.
    pub fn for_codec(codec: RungCodec, name: &str) -> Option<RungEncoder> {
        match RungEncoder::from_name(name)? {
            RungEncoder::Nvenc { .. } => Some(RungEncoder::Nvenc { codec }),
            other if other.codec() == codec => Some(other),
            _ => None,
        }
    }

    pub fn codec(self) -> RungCodec {
        match self {
            RungEncoder::X264 => RungCodec::H264,
            RungEncoder::X265 => RungCodec::Hevc,
            RungEncoder::Nvenc { codec } => codec,
            RungEncoder::Rav1e { .. } | RungEncoder::SvtAv1 { .. } => RungCodec::Av1,
        }
    }

    /// Whether the rung asks for the GPU (and so has a `fallback` rule).
    pub fn is_gpu(self) -> bool {
        matches!(self, RungEncoder::Nvenc { .. })
    }

    /// This AV1 encoder with its speed setting replaced (`av1_preset`); `None` when `preset`
    /// is out of the encoder's range or the encoder is not an AV1 one.
    pub fn with_av1_preset(self, preset: u8) -> Option<RungEncoder> {
        match self {
            RungEncoder::Rav1e { .. } if preset <= corecast_rav1e::FASTEST_SPEED => {
                Some(RungEncoder::Rav1e { speed: preset })
            }
            RungEncoder::SvtAv1 { .. } if preset <= libav::SVT_AV1_FASTEST_PRESET => {
                Some(RungEncoder::SvtAv1 { preset })
            }
            _ => None,
        }
    }
}

/// What a rung that asks for NVENC does where NVENC is unavailable (`fallback = "cpu" | "fail"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuFallback {
    /// Encode the rung on the CPU with the codec's [`RungCodec::default_encoder`] (x264, x265,
    /// SVT-AV1) and the same size, rates and profile; warn once per reason.
    Cpu,
    /// Refuse to build the stream's ladder ([`TranscodeError::GpuUnavailable`]).
    Fail,
}

/// Where the ladder decodes its source (`[transcode] decoder = "auto" | "cpu" | "nvdec"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecoderChoice {
    /// NVDEC (and GPU scaling) where it can be set up, else libavcodec on the CPU (the reason
    /// logged once, and reported as a fallback for a ladder with an NVENC rung, which asked
    /// for the GPU; for a ladder of CPU encoders on a box without a GPU the CPU is simply the
    /// place).
    Auto,
    Cpu,
    /// NVDEC or no ladder ([`TranscodeError::GpuDecoderUnavailable`]), like an NVENC rung with
    /// `fallback = "fail"`.
    Nvdec,
}

impl DecoderChoice {
    pub fn name(self) -> &'static str {
        match self {
            DecoderChoice::Auto => "auto",
            DecoderChoice::Cpu => "cpu",
            DecoderChoice::Nvdec => "nvdec",
        }
    }

    pub fn from_name(name: &str) -> Option<DecoderChoice> {
        [
            DecoderChoice::Auto,
            DecoderChoice::Cpu,
            DecoderChoice::Nvdec,
        ]
        .into_iter()
        .find(|d| d.name() == name)
    }
}

impl GpuFallback {
    pub fn name(self) -> &'static str {
        match self {
            GpuFallback::Cpu => "cpu",
            GpuFallback::Fail => "fail",
        }
    }

    pub fn from_name(name: &str) -> Option<GpuFallback> {
        [GpuFallback::Cpu, GpuFallback::Fail]
            .into_iter()
            .find(|f| f.name() == name)
    }
}

impl RungConfig {
    fn new(name: &str, height: u32, bitrate_kbps: u32, maxrate_kbps: u32) -> Self {
        RungConfig {
            name: name.to_owned(),
            height,
            bitrate_kbps,
            maxrate_kbps,
            // Two seconds at the peak rate: one segment, so the rate cap holds per segment.
            vbv_buffer_kbits: maxrate_kbps * 2,
            preset: X264Preset::Veryfast,
            profile: X264Profile::High,
            encoder: RungEncoder::X264,
            nvenc_preset: NvencPreset::P4,
            fallback: GpuFallback::Cpu,
        }
    }
}

/// How a ladder is built. `Default` is the default ladder (1080p, 720p, 480p, 360p)
/// with a 2 s segment target, one decoder thread and one x264 thread per rung.
#[derive(Clone, Debug, PartialEq)]
pub struct LadderConfig {
    /// Highest first is conventional; rungs taller than the source are skipped.
    pub rungs: Vec<RungConfig>,
    /// Must equal the packager's `target_duration`: IDRs are forced where it cuts.
    pub segment_target: Duration,
    /// libavcodec frame threads for the one decoder.
    pub decoder_threads: u32,
    /// Where the source is decoded.
    pub decoder: DecoderChoice,
    /// The CUDA device (ordinal, as `nvidia-smi` numbers them) of NVDEC, the GPU scaler and
    /// every NVENC rung of the ladder.
    pub gpu: u32,
    /// x264 threads per rung.
    pub encoder_threads: u32,
    /// x264 `tune=zerolatency` (no B-frames, no lookahead): one unit out per picture in.
    pub zerolatency: bool,
    pub scale_filter: ScaleFilter,
    /// Scaled pictures a rung may hold waiting for its encoder; past this, frames are dropped
    /// (never a segment's first). At least 2.
    pub queue_frames: usize,
    /// Frame rate for rate control when the source SPS carries no timing.
    pub fallback_fps: (u32, u32),
}

impl Default for LadderConfig {
    fn default() -> Self {
        LadderConfig {
            rungs: vec![
                RungConfig::new("1080p", 1080, 4500, 5000),
                RungConfig::new("720p", 720, 2500, 2800),
                RungConfig::new("480p", 480, 1200, 1400),
                RungConfig::new("360p", 360, 700, 800),
            ],
            segment_target: Duration::from_secs(2),
            decoder_threads: 1,
            decoder: DecoderChoice::Auto,
            gpu: 0,
            encoder_threads: 1,
            zerolatency: true,
            scale_filter: ScaleFilter::Bicubic,
            queue_frames: 8,
            fallback_fps: (30, 1),
        }
    }
}

impl LadderConfig {
    pub(super) fn check(&self) -> Result<(), TranscodeError> {
        let invalid = |setting: &'static str, reason: String| {
            Err(TranscodeError::LadderConfig { setting, reason })
        };
        for rung in &self.rungs {
            if rung.height < 2 || !rung.height.is_multiple_of(2) {
                return invalid(
                    "height",
                    format!("rung {}: {} is not even", rung.name, rung.height),
                );
            }
            // An AV1 NVENC rung always falls back to SVT-AV1 (no av1_nvenc in FFmpeg 5.1).
            let svt_av1 = matches!(
                rung.encoder,
                RungEncoder::SvtAv1 { .. }
                    | RungEncoder::Nvenc {
                        codec: RungCodec::Av1
                    }
            );
            if svt_av1 && rung.height < 64 {
                return invalid(
                    "height",
                    format!(
                        "rung {}: {} is below SVT-AV1's 64-pixel minimum",
                        rung.name, rung.height
                    ),
                );
            }
            if rung.bitrate_kbps == 0 || rung.maxrate_kbps < rung.bitrate_kbps {
                return invalid(
                    "maxrate_kbps",
                    format!(
                        "rung {}: {} kbit/s peak below {} kbit/s average",
                        rung.name, rung.maxrate_kbps, rung.bitrate_kbps
                    ),
                );
            }
        }
        if self.segment_target < Duration::from_millis(100) {
            return invalid("segment_target", format!("{:?}", self.segment_target));
        }
        if self.queue_frames < 2 {
            return invalid(
                "queue_frames",
                format!("{} (at least 2)", self.queue_frames),
            );
        }
        if self.fallback_fps.0 == 0 || self.fallback_fps.1 == 0 {
            return invalid("fallback_fps", format!("{:?}", self.fallback_fps));
        }
        Ok(())
    }
}

/// The picture size of a rung `height` pixels tall for a `source` (width, height): the source's
/// aspect ratio (square pixels assumed), width rounded to the nearest even number. `None` when
/// the rung is taller than the source (never upscale) or the source has no size.
pub fn rung_size(source: (u32, u32), height: u32) -> Option<(u32, u32)> {
    let (source_width, source_height) = (u64::from(source.0), u64::from(source.1));
    if source_width == 0 || source_height == 0 || u64::from(height) > source_height {
        return None;
    }
    // round(w * h / H / 2) * 2, in integers.
    let half = (source_width * u64::from(height) + source_height) / (2 * source_height);
    let width = u32::try_from(half * 2).ok()?.max(2);
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rung_sizes_keep_the_aspect_ratio_with_even_widths() {
        assert_eq!(rung_size((1920, 1080), 1080), Some((1920, 1080)));
        assert_eq!(rung_size((1920, 1080), 720), Some((1280, 720)));
        assert_eq!(rung_size((1920, 1080), 480), Some((854, 480)));
        assert_eq!(rung_size((1920, 1080), 360), Some((640, 360)));
        assert_eq!(rung_size((1280, 720), 180), Some((320, 180)));
        // 4:3 and portrait sources.
        assert_eq!(rung_size((640, 480), 360), Some((480, 360)));
        assert_eq!(rung_size((1080, 1920), 720), Some((406, 720)));
        // Never upscale.
        assert_eq!(rung_size((1280, 720), 1080), None);
        assert_eq!(rung_size((0, 0), 360), None);
    }

    #[test]
    fn encoder_names_round_trip_and_fix_the_codec() {
        for encoder in [
            RungEncoder::X264,
            RungEncoder::X265,
            RungEncoder::Nvenc {
                codec: RungCodec::H264,
            },
            RungEncoder::Rav1e { speed: 10 },
            RungEncoder::SvtAv1 { preset: 12 },
        ] {
            assert_eq!(RungEncoder::from_name(encoder.name()), Some(encoder));
            assert_eq!(
                RungEncoder::for_codec(encoder.codec(), encoder.name()),
                Some(encoder)
            );
        }
        assert_eq!(
            RungEncoder::for_codec(RungCodec::Hevc, "nvenc"),
            Some(RungEncoder::Nvenc {
                codec: RungCodec::Hevc
            })
        );
        assert_eq!(RungEncoder::for_codec(RungCodec::Hevc, "x264"), None);
        assert_eq!(
            RungCodec::Hevc.default_encoder().codec(),
            RungCodec::Hevc,
            "an HEVC NVENC rung falls back to an HEVC encoder"
        );
        for choice in [
            DecoderChoice::Auto,
            DecoderChoice::Cpu,
            DecoderChoice::Nvdec,
        ] {
            assert_eq!(DecoderChoice::from_name(choice.name()), Some(choice));
        }
        assert_eq!(LadderConfig::default().decoder, DecoderChoice::Auto);
        assert_eq!(
            RungEncoder::from_name("svt-av1").map(RungEncoder::codec),
            Some(RungCodec::Av1)
        );
        assert_eq!(
            RungEncoder::from_name("nvenc").map(RungEncoder::codec),
            Some(RungCodec::H264)
        );
        assert_eq!(RungCodec::Av1.default_encoder().codec(), RungCodec::Av1);
        assert_eq!(RungCodec::from_name("av1"), Some(RungCodec::Av1));
        assert_eq!(
            RungEncoder::Rav1e { speed: 10 }.with_av1_preset(6),
            Some(RungEncoder::Rav1e { speed: 6 })
        );
        assert_eq!(RungEncoder::Rav1e { speed: 10 }.with_av1_preset(11), None);
        assert_eq!(
            RungEncoder::SvtAv1 { preset: 12 }.with_av1_preset(13),
            Some(RungEncoder::SvtAv1 { preset: 13 })
        );
        assert_eq!(RungEncoder::X264.with_av1_preset(5), None);
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(LadderConfig::default().check().is_ok());
        let mut odd = LadderConfig::default();
        odd.rungs[0].height = 1081;
        assert!(matches!(
            odd.check(),
            Err(TranscodeError::LadderConfig {
                setting: "height",
                ..
            })
        ));
        let mut peak = LadderConfig::default();
        peak.rungs[1].maxrate_kbps = 100;
        assert!(matches!(
            peak.check(),
            Err(TranscodeError::LadderConfig {
                setting: "maxrate_kbps",
                ..
            })
        ));
        let mut tiny_svt = LadderConfig::default();
        tiny_svt.rungs[3].height = 36;
        tiny_svt.rungs[3].encoder = RungEncoder::SvtAv1 { preset: 12 };
        assert!(matches!(
            tiny_svt.check(),
            Err(TranscodeError::LadderConfig {
                setting: "height",
                ..
            })
        ));
        let queue = LadderConfig {
            queue_frames: 1,
            ..LadderConfig::default()
        };
        assert!(queue.check().is_err());
    }
}
