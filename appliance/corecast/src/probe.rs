//! `corecast probe`: what this box can really encode and decode with, and why each missing
//! encoder or GPU decoder is missing; plus the CPU count and io_uring. Each answer comes from trying the thing (loading
//! the driver, opening an encoder, setting up a ring), not from build flags.

use serde::Serialize;

/// One encoder's line.
#[derive(Debug, Serialize)]
pub struct EncoderStatus {
    /// What a config or an operator calls it (`x264`, `h264_nvenc`).
    pub name: &'static str,
    /// What it makes.
    pub codec: &'static str,
    /// How corecast reaches it.
    pub via: &'static str,
    pub available: bool,
    /// Version or device, when available.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Why not, when unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct IoUringStatus {
    pub available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Everything `corecast probe` reports.
#[derive(Debug, Serialize)]
pub struct ProbeReport {
    pub encoders: Vec<EncoderStatus>,
    /// The ladder's source decoders (same fields: `name` is the decoder, `via` how it runs).
    pub decoders: Vec<EncoderStatus>,
    /// CPUs this process may run on.
    pub cpus: usize,
    pub io_uring: IoUringStatus,
}

fn found(
    name: &'static str,
    codec: &'static str,
    via: &'static str,
    detail: String,
) -> EncoderStatus {
    EncoderStatus {
        name,
        codec,
        via,
        available: true,
        detail: Some(detail),
        reason: None,
    }
}

fn missing(
    name: &'static str,
    codec: &'static str,
    via: &'static str,
    reason: String,
) -> EncoderStatus {
    EncoderStatus {
        name,
        codec,
        via,
        available: false,
        detail: None,
        reason: Some(reason),
    }
}

fn libavcodec_version() -> String {
    let v = ffmpeg_next::codec::version();
    format!("libavcodec {}.{}.{}", v >> 16, (v >> 8) & 0xff, v & 0xff)
}

/// An encoder of the linked FFmpeg, by its libavcodec name.
fn ffmpeg_encoder(
    name: &'static str,
    codec: &'static str,
    via: &'static str,
    note: &str,
) -> EncoderStatus {
    match ffmpeg_next::encoder::find_by_name(name) {
        Some(_) => found(name, codec, via, format!("{}{note}", libavcodec_version())),
        None => missing(
            name,
            codec,
            via,
            format!("not in the linked FFmpeg ({})", libavcodec_version()),
        ),
    }
}

fn nvenc_encoder(codec: nvenc::NvencCodec, codec_name: &'static str, note: &str) -> EncoderStatus {
    let name = codec.ffmpeg_name();
    let via = "FFmpeg + NVIDIA driver (loaded at run time)";
    let probe = nvenc::probe(codec);
    match probe.unavailable {
        None => {
            let gpu = probe
                .gpu
                .map_or_else(|| "GPU 0".to_owned(), |gpu| gpu.describe());
            found(name, codec_name, via, format!("{gpu}{note}"))
        }
        Some(reason) => missing(name, codec_name, via, reason),
    }
}

/// libavcodec's native software decoder `name`.
fn cpu_decoder(name: &'static str, codec: &'static str) -> EncoderStatus {
    let via = "FFmpeg native decoder (CPU)";
    match ffmpeg_next::decoder::find_by_name(name) {
        Some(_) => found(name, codec, via, libavcodec_version()),
        None => missing(
            name,
            codec,
            via,
            format!("not in the linked FFmpeg ({})", libavcodec_version()),
        ),
    }
}

/// NVDEC through libavcodec's CUDA hwaccel on GPU 0: the driver libraries and a CUDA device.
/// Whether the GPU's NVDEC takes a stream's profile is only known at its first picture
/// (libavcodec decodes it in software if not), so that is not claimed here.
fn nvdec_decoder(codec: &'static str) -> EncoderStatus {
    let via = "FFmpeg CUDA hwaccel + NVIDIA driver (loaded at run time)";
    match libav::nvdec_check(0) {
        Ok(()) => found(
            "nvdec",
            codec,
            via,
            "GPU 0: CUDA device opened; decoder = \"auto\" or \"nvdec\" uses it".to_owned(),
        ),
        Err(reason) => missing("nvdec", codec, via, reason),
    }
}

/// GPU scaling of NVDEC's pictures (our CUDA kernel, JIT-compiled by the driver) on GPU 0.
fn gpu_scaler() -> EncoderStatus {
    let via = "corecast box-filter CUDA kernel (PTX, compiled by the NVIDIA driver)";
    match libav::gpu_scale_check(0) {
        Ok(()) => found(
            "gpu-scale",
            "I420",
            via,
            "GPU 0: kernels loaded; ladders decoding on NVDEC scale there".to_owned(),
        ),
        Err(reason) => missing("gpu-scale", "I420", via, reason),
    }
}

pub fn run_probe() -> ProbeReport {
    // Keep FFmpeg's own lines (the nvenc loader's "Cannot load libcuda.so.1") out of the report:
    // the reasons below carry them.
    ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Quiet);
    let encoders = vec![
        // x264 is linked, not loaded: if this binary runs, libx264 of this build is there.
        found(
            "x264",
            "H.264",
            "libx264 (linked)",
            format!("libx264 build {}", x264_sys::X264_BUILD),
        ),
        ffmpeg_encoder("aac", "AAC-LC", "FFmpeg native encoder", ""),
        nvenc_encoder(nvenc::NvencCodec::H264, "H.264", ""),
        nvenc_encoder(
            nvenc::NvencCodec::Hevc,
            "HEVC",
            "; HEVC rungs with encoder = \"nvenc\"",
        ),
        // Debian's FFmpeg 5.1 has no av1_nvenc: this line says so (AV1 NVENC rungs fall back).
        nvenc_encoder(nvenc::NvencCodec::Av1, "AV1", ""),
        ffmpeg_encoder(
            "libx265",
            "HEVC",
            "FFmpeg (x265)",
            "; HEVC rungs with encoder = \"x265\", and HEVC NVENC rungs that fall back",
        ),
        ffmpeg_encoder(
            "libsvtav1",
            "AV1",
            "FFmpeg (SVT-AV1)",
            "; the default encoder of AV1 rungs (encoder = \"svt-av1\")",
        ),
        ffmpeg_encoder(
            "librav1e",
            "AV1",
            "FFmpeg (rav1e)",
            "; not used: corecast links rav1e itself (below)",
        ),
        ffmpeg_encoder(
            "libaom-av1",
            "AV1",
            "FFmpeg (libaom)",
            "; not used by corecast (slower than SVT-AV1 live)",
        ),
        found(
            "rav1e",
            "AV1",
            "rav1e crate (drivers/rav1e, linked)",
            format!(
                "rav1e {}; AV1 rungs with encoder = \"rav1e\"",
                corecast_rav1e::rav1e_version()
            ),
        ),
    ];
    let decoders = vec![
        cpu_decoder("h264", "H.264"),
        cpu_decoder("hevc", "HEVC"),
        nvdec_decoder("H.264"),
        nvdec_decoder("HEVC"),
        gpu_scaler(),
    ];
    let io_uring = match uring::probe() {
        Ok(report) => IoUringStatus {
            available: true,
            detail: Some(format!(
                "{}{}",
                if report.defer_taskrun {
                    "SINGLE_ISSUER + DEFER_TASKRUN".to_owned()
                } else {
                    format!(
                        "without DEFER_TASKRUN ({})",
                        report.fallback_reason.as_deref().unwrap_or("refused")
                    )
                },
                if report.send_zc {
                    ", SEND_ZC"
                } else {
                    ", no SEND_ZC"
                }
            )),
            reason: None,
        },
        Err(e) => IoUringStatus {
            available: false,
            detail: None,
            reason: Some(e.to_string()),
        },
    };
    ProbeReport {
        encoders,
        decoders,
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        io_uring,
    }
}

impl ProbeReport {
    /// The human table.
    pub fn table(&self) -> String {
        let all = || self.encoders.iter().chain(&self.decoders);
        let name_width = all().map(|e| e.name.len()).max().unwrap_or(0);
        let via_width = all().map(|e| e.via.len()).max().unwrap_or(0);
        let mut out = format!(
            "{:name_width$}  {:6}  {:3}  {:via_width$}  details\n",
            "encoder", "codec", "ok", "via"
        );
        for e in &self.encoders {
            let (mark, text) = if e.available {
                ("yes", e.detail.as_deref().unwrap_or(""))
            } else {
                ("NO", e.reason.as_deref().unwrap_or(""))
            };
            out.push_str(&format!(
                "{:name_width$}  {:6}  {:3}  {:via_width$}  {}\n",
                e.name, e.codec, mark, e.via, text
            ));
        }
        out.push_str(&format!(
            "\n{:name_width$}  {:6}  {:3}  {:via_width$}  details\n",
            "decoder", "codec", "ok", "via"
        ));
        for d in &self.decoders {
            let (mark, text) = if d.available {
                ("yes", d.detail.as_deref().unwrap_or(""))
            } else {
                ("NO", d.reason.as_deref().unwrap_or(""))
            };
            out.push_str(&format!(
                "{:name_width$}  {:6}  {:3}  {:via_width$}  {}\n",
                d.name, d.codec, mark, d.via, text
            ));
        }
        out.push_str(&format!("\ncpus      {}\n", self.cpus));
        let uring = if self.io_uring.available {
            format!("yes: {}", self.io_uring.detail.as_deref().unwrap_or(""))
        } else {
            format!("NO: {}", self.io_uring.reason.as_deref().unwrap_or(""))
        };
        out.push_str(&format!("io_uring  {uring}\n"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoders_list_cpu_and_nvdec_with_the_reason_when_missing() {
        let report = run_probe();
        let codecs: Vec<(&str, &str)> = report.decoders.iter().map(|d| (d.name, d.codec)).collect();
        assert_eq!(
            codecs,
            [
                ("h264", "H.264"),
                ("hevc", "HEVC"),
                ("nvdec", "H.264"),
                ("nvdec", "HEVC"),
                ("gpu-scale", "I420")
            ]
        );
        assert!(report.decoders[..2].iter().all(|d| d.available));
        let nvdec = &report.decoders[2];
        let driver_here = std::path::Path::new("/proc/driver/nvidia/version").exists();
        if !driver_here {
            assert!(!nvdec.available);
            let reason = nvdec.reason.as_deref().unwrap_or("");
            assert!(reason.starts_with("libcuda.so.1 not found"), "{reason}");
            let scaler = &report.decoders[4];
            assert!(!scaler.available);
            let reason = scaler.reason.as_deref().unwrap_or("");
            assert!(reason.starts_with("libcuda.so.1 not found"), "{reason}");
        }
        let av1_nvenc = report
            .encoders
            .iter()
            .find(|e| e.name == "av1_nvenc")
            .expect("av1_nvenc listed");
        if ffmpeg_next::encoder::find_by_name("av1_nvenc").is_none() {
            assert!(!av1_nvenc.available);
            assert!(
                av1_nvenc
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains("has no av1_nvenc")),
                "{av1_nvenc:?}"
            );
        }
        let table = report.table();
        assert!(table.contains("\ndecoder "), "{table}");
        assert!(table.lines().any(|l| l.starts_with("nvdec ")), "{table}");
    }
}
