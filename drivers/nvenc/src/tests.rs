//! Tests of the NVENC driver. Most machines that build corecast (this project's included) have
//! no NVIDIA driver, so the "unavailable" paths are tested for real: with the real (absent)
//! driver, with stand-in driver libraries compiled by `cc`, and with FFmpeg's log texts. The
//! encode test runs only where [`probe`] says NVENC works, and prints why it is skipped
//! otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use testmedia::encoded::encode_test_pictures;

use media::{AvcConfig, HevcConfig};

use super::*;

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corecast-nvenc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[test]
fn without_a_driver_new_is_unavailable_with_the_libcuda_reason() {
    // SAFETY: loading the real driver library, if present, has no preconditions (see driver.rs).
    let driver_present = unsafe { libloading::Library::new("libcuda.so.1") }.is_ok();
    let result = NvencEncoder::new(NvencSettings::default());
    if driver_present {
        // Any outcome but a panic is right on a machine with a driver; say what it was.
        eprintln!(
            "libcuda.so.1 is installed here; NvencEncoder::new gave {:?}",
            result.as_ref().map(|_| "an encoder")
        );
        return;
    }
    let error = result.expect_err("no driver, yet an encoder opened");
    let reason = error.unavailable_reason().expect("an Unavailable error");
    assert!(reason.starts_with("libcuda.so.1 not found"), "{reason}");
    assert!(
        error
            .to_string()
            .starts_with("NVENC unavailable: libcuda.so.1 not found")
    );
    // The same reason again (the failed load is remembered, not retried into a panic).
    let again = NvencEncoder::new(NvencSettings::default()).unwrap_err();
    assert_eq!(again.unavailable_reason(), Some(reason));
    // FFmpeg 5.1 has no av1_nvenc: that is the reason, before any driver is asked.
    let av1 = NvencEncoder::with_codec(NvencCodec::Av1, NvencSettings::default()).unwrap_err();
    let av1_reason = av1.unavailable_reason().expect("Unavailable");
    if ffmpeg_next::encoder::find_by_name("av1_nvenc").is_none() {
        assert!(
            av1_reason.contains("has no av1_nvenc (av1_nvenc arrived in FFmpeg 6.0)"),
            "{av1_reason}"
        );
    }
    assert_eq!(
        probe(NvencCodec::Av1).unavailable.as_deref(),
        Some(av1_reason)
    );
    // hevc_nvenc goes through the same check, with the same reason.
    let hevc = NvencEncoder::with_codec(NvencCodec::Hevc, NvencSettings::default()).unwrap_err();
    assert_eq!(hevc.unavailable_reason(), Some(reason));
    // Both FFmpeg encoders are in Debian's FFmpeg, so the probe gets as far as the driver.
    for codec in [NvencCodec::H264, NvencCodec::Hevc] {
        let probe = probe(codec);
        assert_eq!(probe.gpu, None);
        let reason = probe.unavailable.expect("unavailable");
        assert!(reason.starts_with("libcuda.so.1 not found"), "{reason}");
    }
}

/// FFmpeg's own failure, with our driver check skipped: its log is captured and mapped.
#[test]
fn ffmpeg_failing_to_load_the_driver_is_captured_and_mapped() {
    // SAFETY: as above.
    if unsafe { libloading::Library::new("libcuda.so.1") }.is_ok() {
        eprintln!("skipped: libcuda.so.1 is installed here");
        return;
    }
    let error = crate::encoder::open_context_after(
        NvencCodec::H264,
        &NvencSettings::default(),
        |_| Ok(None),
        None,
    )
    .map(|_| "an encoder")
    .expect_err("no driver");
    let reason = error.unavailable_reason().expect("Unavailable");
    if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        assert_eq!(
            reason,
            "libcuda.so.1 not found (FFmpeg's loader: Cannot load libcuda.so.1)"
        );
    } else {
        assert!(reason.starts_with("h264_nvenc did not open"), "{reason}");
    }
}

#[test]
fn bad_settings_are_refused_before_the_driver_is_asked() {
    for (settings, setting) in [
        (
            NvencSettings {
                width: 641,
                ..NvencSettings::default()
            },
            "width",
        ),
        (
            NvencSettings {
                height: 8192,
                ..NvencSettings::default()
            },
            "height",
        ),
        (
            NvencSettings {
                fps_den: 0,
                ..NvencSettings::default()
            },
            "fps",
        ),
        (
            NvencSettings {
                bitrate_kbps: 0,
                ..NvencSettings::default()
            },
            "bitrate_kbps",
        ),
    ] {
        match NvencEncoder::new(settings) {
            Err(NvencError::InvalidSettings { setting: got, .. }) => assert_eq!(got, setting),
            other => panic!("{setting}: {other:?}"),
        }
    }
}

#[test]
fn presets_by_name() {
    assert_eq!(NvencPreset::from_name("p1"), Some(NvencPreset::P1));
    assert_eq!(NvencPreset::from_name("p7"), Some(NvencPreset::P7));
    assert_eq!(NvencPreset::from_name("p8"), None);
    assert_eq!(NvencPreset::from_name("veryfast"), None);
    assert_eq!(NvencPreset::P4.name(), "p4");
}

/// Lines as FFmpeg 5.1's h264_nvenc logs them (captured with `ffmpeg -c:v h264_nvenc`: the
/// first on this machine, the others as nvenc.c prints them on an H100 and on an old driver).
#[test]
fn ffmpeg_log_lines_map_to_reasons() {
    let gpu = GpuInfo {
        index: 0,
        name: "NVIDIA H100 80GB HBM3".into(),
        compute_capability: (9, 0),
        device_count: 1,
        cuda_driver_version: 12040,
        nvenc_api: (12, 2),
    };
    let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let reason = open_failure_reason(
        "h264_nvenc",
        ffmpeg_next::Error::Unknown,
        &lines(&["[h264_nvenc @ 0x5581ab2c4f40] Cannot load libcuda.so.1"]),
        None,
    );
    assert_eq!(
        reason,
        "libcuda.so.1 not found (FFmpeg's loader: Cannot load libcuda.so.1)"
    );
    let reason = open_failure_reason(
        "h264_nvenc",
        ffmpeg_next::Error::External,
        &lines(&[
            "[h264_nvenc @ 0x55d0c2a0] OpenEncodeSessionEx failed: unsupported device (2): (no details)",
            "[h264_nvenc @ 0x55d0c2a0] No capable devices found",
        ]),
        Some(&gpu),
    );
    assert_eq!(
        reason,
        "GPU 0 (NVIDIA H100 80GB HBM3) has no NVENC engine (OpenEncodeSessionEx failed: \
         unsupported device (2): (no details); No capable devices found)"
    );
    // Where the log cannot be captured, the error code after a good driver check says the same.
    let reason = open_failure_reason("h264_nvenc", ffmpeg_next::Error::External, &[], Some(&gpu));
    assert_eq!(reason, "GPU 0 (NVIDIA H100 80GB HBM3) has no NVENC engine");
    let reason = open_failure_reason(
        "h264_nvenc",
        ffmpeg_next::Error::External,
        &lines(&["[h264_nvenc @ 0x1] No CUDA capable devices found"]),
        None,
    );
    assert_eq!(reason, "no CUDA device (the driver sees no GPU)");
    let reason = open_failure_reason(
        "hevc_nvenc",
        ffmpeg_next::Error::from(-38),
        &lines(&[
            "[hevc_nvenc @ 0x1] Driver does not support the required nvenc API version. Required: 11.1 Found: 11.0",
        ]),
        Some(&gpu),
    );
    assert!(reason.starts_with("NVIDIA driver too old for FFmpeg's hevc_nvenc: Driver does not"));
    // Anything else: FFmpeg's own words and the error code.
    let reason = open_failure_reason(
        "h264_nvenc",
        ffmpeg_next::Error::InvalidData,
        &lines(&["[h264_nvenc @ 0x1] Width 8192 exceeds 4096"]),
        Some(&gpu),
    );
    assert_eq!(
        reason,
        "h264_nvenc did not open: Width 8192 exceeds 4096 (Invalid data found when processing \
         input)"
    );
    let reason = open_failure_reason("h264_nvenc", ffmpeg_next::Error::InvalidData, &[], None);
    assert_eq!(
        reason,
        "h264_nvenc did not open: Invalid data found when processing input"
    );
}

#[test]
fn parameter_sets_come_from_annex_b_extradata() {
    if !tool_available("ffmpeg") {
        eprintln!("skipped: ffmpeg not installed (scripts/install-deps.sh --test)");
        return;
    }
    // A real encoder's Annex B output (SPS, PPS, SEI, IDR), as h264_nvenc's extradata and
    // packets are shaped.
    let dir = scratch_dir("extradata");
    let path = dir.join("one.h264");
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
        ])
        .args(["-frames:v", "1", "-c:v", "libx264", "-profile:v", "main"])
        .args(["-pix_fmt", "yuv420p", "-f", "h264"])
        .arg(&path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success());
    let stream = std::fs::read(&path).expect("read h264");
    let _ = std::fs::remove_dir_all(&dir);
    let config = AvcConfig::from_annex_b(&stream).expect("SPS and PPS");
    assert_eq!((config.width, config.height), (320, 240));
    assert!(
        config.codec_string().starts_with("avc1.4d"),
        "{}",
        config.codec_string()
    );
    assert!(matches!(
        AvcConfig::from_annex_b(&[0, 0, 0, 1, 0x68, 0xce, 0x38, 0x80]),
        Err(media::MediaError::MissingParameterSet("SPS"))
    ));
}

fn tool_available(name: &str) -> bool {
    Command::new(name)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// A stand-in for the NVIDIA driver: the CUDA and NVENC entry points `check_gpu` calls, with
/// answers set by the test (`cc` builds it).
fn stand_in_driver(
    dir: &Path,
    devices: i32,
    cc: (i32, i32),
    nvenc_api: u32,
) -> Option<DriverLibraries> {
    std::fs::create_dir_all(dir).ok()?;
    let cuda_c = dir.join("cuda.c");
    std::fs::write(
        &cuda_c,
        format!(
            r#"#include <string.h>
int cuDriverGetVersion(int *v) {{ *v = 12040; return 0; }}
int cuInit(unsigned int flags) {{ return {devices} == 0 ? 100 : 0; }}
int cuDeviceGetCount(int *n) {{ *n = {devices}; return 0; }}
int cuDeviceGet(int *d, int i) {{ *d = i; return 0; }}
int cuDeviceGetName(char *name, int len, int d) {{ strncpy(name, "Stand-in GPU", len); return 0; }}
int cuDeviceGetAttribute(int *v, int attr, int d) {{ *v = attr == 75 ? {major} : {minor}; return 0; }}
"#,
            major = cc.0,
            minor = cc.1
        ),
    )
    .ok()?;
    let encode_c = dir.join("encode.c");
    std::fs::write(
        &encode_c,
        format!("int NvEncodeAPIGetMaxSupportedVersion(unsigned int *v) {{ *v = {nvenc_api}; return 0; }}\n"),
    )
    .ok()?;
    let build = |source: &Path, out: &Path| {
        Command::new("cc")
            .args(["-shared", "-fPIC", "-o"])
            .arg(out)
            .arg(source)
            .status()
            .is_ok_and(|s| s.success())
    };
    let (cuda, encode) = (
        dir.join("libcuda-stand-in.so"),
        dir.join("libencode-stand-in.so"),
    );
    if !build(&cuda_c, &cuda) || !build(&encode_c, &encode) {
        return None;
    }
    Some(DriverLibraries {
        cuda: cuda.display().to_string(),
        encode: encode.display().to_string(),
    })
}

#[test]
fn driver_checks_with_stand_in_libraries() {
    let dir = scratch_dir("stand-in");
    let Some(good) = stand_in_driver(&dir.join("good"), 1, (8, 9), 0xc2) else {
        eprintln!("skipped: no C compiler (cc) to build the stand-in driver");
        return;
    };
    let info = check_gpu_with(&good, 0).expect("a usable stand-in GPU");
    assert_eq!(
        info,
        GpuInfo {
            index: 0,
            name: "Stand-in GPU".into(),
            compute_capability: (8, 9),
            device_count: 1,
            cuda_driver_version: 12040,
            nvenc_api: (12, 2),
        }
    );
    assert_eq!(
        info.describe(),
        "GPU 0: Stand-in GPU (SM 8.9, CUDA 12.4, NVENC API 12.2)"
    );
    let reason = |result: Result<GpuInfo, NvencError>| {
        result
            .expect_err("unavailable")
            .unavailable_reason()
            .expect("an Unavailable error")
            .to_owned()
    };
    assert!(reason(check_gpu_with(&good, 1)).starts_with("GPU 1 does not exist"));

    let mut cases = Vec::new();
    for (name, devices, cc, api) in [
        ("none", 0, (8, 9), 0xc2),
        ("old", 1, (8, 9), 0xb0),
        ("fermi", 1, (2, 1), 0xc2),
    ] {
        cases.push(stand_in_driver(&dir.join(name), devices, cc, api).expect("cc worked before"));
    }
    assert_eq!(
        reason(check_gpu_with(&cases[0], 0)),
        "no CUDA device (the driver sees no GPU)"
    );
    assert!(reason(check_gpu_with(&cases[1], 0)).starts_with(
        "NVIDIA driver too old: it implements NVENC API 11.0, FFmpeg's encoder needs 11.1"
    ));
    assert_eq!(
        reason(check_gpu_with(&cases[2], 0)),
        "GPU 0 (Stand-in GPU) has no NVENC engine (compute capability 2.1)"
    );
    let no_encode = DriverLibraries {
        encode: dir.join("missing.so").display().to_string(),
        ..good.clone()
    };
    let text = reason(check_gpu_with(&no_encode, 0));
    assert!(text.contains("missing.so not found"), "{text}");
    let no_cuda = DriverLibraries {
        cuda: "libcuda-not-here.so.1".into(),
        ..good
    };
    assert!(reason(check_gpu_with(&no_cuda, 0)).starts_with("libcuda-not-here.so.1 not found"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Encodes on a real GPU when there is one with NVENC; elsewhere prints why not.
#[test]
fn encodes_forced_idrs_on_a_real_gpu() {
    let found = probe(NvencCodec::H264);
    if let Some(reason) = &found.unavailable {
        eprintln!("skipped: NVENC unavailable here: {reason}");
        return;
    }
    let (width, height) = (320u32, 240u32);
    let mut encoder = NvencEncoder::new(NvencSettings {
        width,
        height,
        bitrate_kbps: 500,
        ..NvencSettings::default()
    })
    .expect("probe said NVENC works");
    let avc = encoder.avc_config().expect("H.264");
    assert_eq!((avc.width, avc.height), (width, height));
    let units = encode_test_pictures(&mut encoder, (width, height), 60, 0, &[0, 30]).unwrap();
    assert_eq!(units.len(), 60);
    let keyframes: Vec<i64> = units.iter().filter(|u| u.keyframe).map(|u| u.pts).collect();
    assert_eq!(keyframes, vec![0, 90_000]);
    for unit in &units {
        assert_eq!(unit.dts, unit.pts);
        // Length-prefixed, each length inside the payload.
        let mut rest = &unit.payload[..];
        while let Some((len, body)) = rest.split_first_chunk::<4>() {
            let len = u32::from_be_bytes(*len) as usize;
            assert!(len <= body.len());
            rest = &body[len..];
        }
        assert!(rest.is_empty());
    }
}

/// As [`encodes_forced_idrs_on_a_real_gpu`], for `hevc_nvenc`: the track is `hvc1` and the
/// forced pictures are IDRs.
#[test]
fn encodes_hevc_with_forced_idrs_on_a_real_gpu() {
    let found = probe(NvencCodec::Hevc);
    if let Some(reason) = &found.unavailable {
        eprintln!("skipped: NVENC HEVC unavailable here: {reason}");
        return;
    }
    let (width, height) = (320u32, 240u32);
    let mut encoder = NvencEncoder::with_codec(
        NvencCodec::Hevc,
        NvencSettings {
            width,
            height,
            bitrate_kbps: 500,
            ..NvencSettings::default()
        },
    )
    .expect("probe said NVENC HEVC works");
    let media::TrackConfig::Hevc(hevc) = media::encode::VideoEncoder::track_config(&encoder) else {
        panic!("hevc_nvenc made a non-HEVC track");
    };
    assert_eq!((hevc.width, hevc.height), (width, height));
    assert!(
        hevc.codec_string().starts_with("hvc1."),
        "{}",
        hevc.codec_string()
    );
    let units = encode_test_pictures(&mut encoder, (width, height), 60, 0, &[0, 30]).unwrap();
    assert_eq!(units.len(), 60);
    let keyframes: Vec<i64> = units.iter().filter(|u| u.keyframe).map(|u| u.pts).collect();
    assert_eq!(keyframes, vec![0, 90_000]);
    assert!(units.iter().all(|u| u.codec == media::Codec::H265));
}

#[test]
fn hevc_parameter_sets_come_from_annex_b_extradata() {
    if !tool_available("ffmpeg") {
        eprintln!("skipped: ffmpeg not installed (scripts/install-deps.sh --test)");
        return;
    }
    // A real encoder's Annex B output (VPS, SPS, PPS, SEI, IDR), as hevc_nvenc's extradata is
    // shaped.
    let dir = scratch_dir("hevc-extradata");
    let path = dir.join("one.hevc");
    let status = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=30",
        ])
        .args([
            "-frames:v",
            "1",
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error",
        ])
        .args(["-pix_fmt", "yuv420p", "-f", "hevc"])
        .arg(&path)
        .status()
        .expect("run ffmpeg");
    assert!(status.success());
    let stream = std::fs::read(&path).expect("read hevc");
    let _ = std::fs::remove_dir_all(&dir);
    let config = HevcConfig::from_annex_b(&stream).expect("VPS, SPS and PPS");
    assert_eq!((config.width, config.height), (320, 240));
    assert!(
        config.codec_string().starts_with("hvc1.1."),
        "{}",
        config.codec_string()
    );
    // A stream with only a VPS names what is missing.
    assert!(matches!(
        HevcConfig::from_annex_b(&[0, 0, 0, 1, 0x40, 0x01, 0x0c]),
        Err(media::MediaError::MissingParameterSet("SPS"))
    ));
}
