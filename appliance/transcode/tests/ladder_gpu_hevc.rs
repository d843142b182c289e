//! GPU decode and HEVC rungs in the ladder, against real input: 4 s of 640x360 30 fps H.264
//! with B-frames (keyframe every 25 frames) made by the ffmpeg command line.
//!
//! - `decoder = "auto"` decodes on the CPU where NVDEC cannot be set up, and says why;
//!   `decoder = "nvdec"` refuses the ladder with that reason. On a box with an NVIDIA GPU the
//!   same tests check that NVDEC decoded the pictures instead.
//! - HEVC rungs (x265, and NVENC falling back to x265) have IDRs at exactly the pts where the
//!   H.264 rung has its IDRs (which tests/ladder_ffmpeg.rs checks against the packager's own
//!   cuts), `hvc1` track configs, and decode with the ffmpeg command line.

use std::collections::BTreeMap;
use std::time::Duration;

use corecast_transcode::{
    DecodeDevice, DecoderChoice, GpuFallback, Ladder, LadderConfig, RungCodec, RungConfig,
    RungEncoder, RungId, TranscodeError,
};
use media::{AccessUnit, HevcConfig, TrackConfig};
use testmedia::{
    SourceMedia, TempDir, TestSource, ffmpeg_decode_errors, ffprobe_int, ffprobe_json,
};

const SECONDS: u32 = 4;
const FPS: u32 = 30;

fn source(dir: &TempDir) -> SourceMedia {
    TestSource::new(640, 360, SECONDS)
        .gop(25)
        .preset("ultrafast")
        .make(dir.path())
}

fn rung(name: &str, encoder: RungEncoder) -> RungConfig {
    let mut rung = LadderConfig::default().rungs[3].clone();
    rung.name = name.to_owned();
    rung.height = 180;
    rung.bitrate_kbps = 250;
    rung.maxrate_kbps = 300;
    rung.vbv_buffer_kbits = 600;
    rung.preset = x264::X264Preset::Ultrafast;
    rung.encoder = encoder;
    rung
}

fn keyframe_pts(units: &[AccessUnit]) -> Vec<i64> {
    units.iter().filter(|u| u.keyframe).map(|u| u.pts).collect()
}

/// Feeds every unit (encoding all it can after each), finishes, and returns each rung's units.
fn run(ladder: &mut Ladder, units: &[AccessUnit]) -> BTreeMap<RungId, Vec<AccessUnit>> {
    let mut out: BTreeMap<RungId, Vec<AccessUnit>> = BTreeMap::new();
    let first_dts = units[0].dts;
    let mut now = Duration::ZERO;
    for unit in units {
        now = Duration::from_micros(((unit.dts - first_dts).max(0) as u64) * 100 / 9);
        ladder.handle_unit(unit).expect("handle_unit");
        while ladder.encode_step(now).expect("encode_step") {}
        while let Some((rung, unit)) = ladder.poll_output() {
            out.entry(rung).or_default().push(unit);
        }
    }
    ladder.finish().expect("finish");
    while ladder.encode_step(now).expect("encode_step") {}
    while let Some((rung, unit)) = ladder.poll_output() {
        out.entry(rung).or_default().push(unit);
    }
    out
}

/// Why NVDEC cannot be set up here, or `None` where it can.
fn nvdec_unavailable() -> Option<String> {
    libav::nvdec_check(0).err()
}

#[test]
fn decoder_auto_decodes_on_the_cpu_without_nvdec_and_says_why() {
    let dir = TempDir::new("ladder-decoder-auto");
    let media = source(&dir);
    let units = media.video_units();
    // "auto" asks for NVDEC when the ladder has an NVENC rung (which falls back to x264 here).
    let config = LadderConfig {
        rungs: vec![rung(
            "180p",
            RungEncoder::Nvenc {
                codec: RungCodec::H264,
            },
        )],
        decoder: DecoderChoice::Auto,
        ..LadderConfig::default()
    };
    let mut ladder = Ladder::new(config, &TrackConfig::Avc(media.video.clone())).expect("ladder");
    match nvdec_unavailable() {
        Some(reason) => {
            eprintln!("NVDEC unavailable here ({reason}): checking the CPU fallback");
            assert_eq!(ladder.decoder_device(), DecodeDevice::Cpu);
            assert_eq!(ladder.decoder_fallback_reason(), Some(reason.as_str()));
            assert!(
                reason.contains("libcuda.so.1")
                    || reason.contains("libnvcuvid")
                    || reason.contains("CUDA"),
                "{reason}"
            );
        }
        None => {
            eprintln!("NVDEC available here: checking the GPU decoder");
            assert_eq!(ladder.decoder_device(), DecodeDevice::Nvdec { gpu: 0 });
            assert_eq!(ladder.decoder_fallback_reason(), None);
        }
    }
    let out = run(&mut ladder, &units);
    let frames = (SECONDS * FPS) as usize;
    assert_eq!(
        out[&RungId(0)].len(),
        frames,
        "every picture decoded and encoded"
    );
    assert_eq!(ladder.stats().decoded_frames, frames as u64);
    assert_eq!(ladder.stats().corrupt_units, 0);

    // "cpu" never asks for the GPU. "auto" uses it for a ladder of CPU encoders too, but
    // decoding such a ladder on the CPU is no fallback: nothing asked for the GPU.
    for decoder in [DecoderChoice::Cpu, DecoderChoice::Auto] {
        let cpu = LadderConfig {
            rungs: vec![rung("180p", RungEncoder::X264)],
            decoder,
            ..LadderConfig::default()
        };
        let ladder = Ladder::new(cpu, &TrackConfig::Avc(media.video.clone())).expect("ladder");
        let expected = if decoder == DecoderChoice::Auto && nvdec_unavailable().is_none() {
            DecodeDevice::Nvdec { gpu: 0 }
        } else {
            DecodeDevice::Cpu
        };
        assert_eq!(ladder.decoder_device(), expected, "{decoder:?}");
        assert_eq!(ladder.decoder_fallback_reason(), None, "{decoder:?}");
        assert_eq!(ladder.scales_on_gpu(), expected != DecodeDevice::Cpu);
    }
}

#[test]
fn decoder_nvdec_refuses_the_ladder_with_the_reason_when_nvdec_is_missing() {
    let dir = TempDir::new("ladder-decoder-nvdec");
    let media = source(&dir);
    let config = LadderConfig {
        rungs: vec![rung("180p", RungEncoder::X264)],
        decoder: DecoderChoice::Nvdec,
        ..LadderConfig::default()
    };
    let result = Ladder::new(config, &TrackConfig::Avc(media.video.clone()));
    let Some(reason) = nvdec_unavailable() else {
        let ladder = result.expect("NVDEC is available, so the ladder builds");
        assert_eq!(ladder.decoder_device(), DecodeDevice::Nvdec { gpu: 0 });
        return;
    };
    match result {
        Err(error @ TranscodeError::GpuDecoderUnavailable { .. }) => {
            let TranscodeError::GpuDecoderUnavailable { reason: got } = &error else {
                unreachable!()
            };
            assert_eq!(got, &reason);
            let text = error.to_string();
            assert!(
                text.starts_with("ladder asks for decoder = \"nvdec\", and NVDEC is unavailable: ")
                    && text.ends_with(&reason),
                "{text}"
            );
        }
        other => panic!("expected GpuDecoderUnavailable, got {other:?}"),
    }
}

/// Writes HEVC units as Annex B (parameter sets first) and returns ffmpeg's error output and
/// ffprobe's stream.
fn decode_hevc(
    dir: &TempDir,
    name: &str,
    hevc: &HevcConfig,
    units: &[AccessUnit],
) -> (String, serde_json::Value) {
    let path = dir.path().join(format!("{name}.hevc"));
    let mut stream = Vec::new();
    for nal in hevc.vps.iter().chain(&hevc.sps).chain(&hevc.pps) {
        stream.extend_from_slice(&[0, 0, 0, 1]);
        stream.extend_from_slice(nal);
    }
    for unit in units {
        let mut rest = &unit.payload[..];
        while let Some((len, body)) = rest.split_first_chunk::<4>() {
            let (nal, tail) = body.split_at(u32::from_be_bytes(*len) as usize);
            stream.extend_from_slice(&[0, 0, 0, 1]);
            stream.extend_from_slice(nal);
            rest = tail;
        }
    }
    std::fs::write(&path, &stream).expect("write hevc");
    let errors = ffmpeg_decode_errors(&path);
    let probe = ffprobe_json(
        &[
            "-count_frames",
            "-show_entries",
            "stream=codec_name,profile,width,height,nb_read_frames",
        ],
        &path,
    );
    (errors, probe["streams"][0].clone())
}

#[test]
fn hevc_rungs_cut_idrs_where_the_h264_rung_cuts_and_decode() {
    let dir = TempDir::new("ladder-hevc-rungs");
    let media = source(&dir);
    let units = media.video_units();
    let nvenc_hevc = RungEncoder::Nvenc {
        codec: RungCodec::Hevc,
    };
    let config = LadderConfig {
        // HEVC first in the config: the ladder still numbers the H.264 rungs first.
        rungs: vec![
            rung("180p-x265", RungEncoder::X265),
            rung("180p", RungEncoder::X264),
            rung("180p-nvenc-hevc", nvenc_hevc),
        ],
        decoder: DecoderChoice::Cpu,
        ..LadderConfig::default()
    };
    let nvenc = nvenc::probe(nvenc::NvencCodec::Hevc).unavailable;
    let mut ladder = Ladder::new(config, &TrackConfig::Avc(media.video.clone())).expect("ladder");
    let rungs: Vec<(RungId, String, RungEncoder, Option<String>, TrackConfig)> = ladder
        .rung_tracks()
        .map(|r| {
            (
                r.id,
                r.config.name.clone(),
                r.encoder,
                r.fallback_reason.map(str::to_owned),
                r.track.clone(),
            )
        })
        .collect();
    let names: Vec<&str> = rungs.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(names, ["180p", "180p-x265", "180p-nvenc-hevc"]);
    assert_eq!(ladder.rungs().count(), 1, "one H.264 rung");
    assert_eq!(rungs[1].2, RungEncoder::X265);
    match &nvenc {
        Some(reason) => {
            eprintln!("NVENC HEVC unavailable here ({reason}): checking the x265 fallback");
            assert_eq!(rungs[2].2, RungEncoder::X265, "fell back to x265");
            assert_eq!(rungs[2].3.as_deref(), Some(reason.as_str()));
        }
        None => assert_eq!((rungs[2].2, rungs[2].3.as_deref()), (nvenc_hevc, None)),
    }
    for (_, name, encoder, _, track) in &rungs[1..] {
        assert_eq!(encoder.codec(), RungCodec::Hevc);
        let TrackConfig::Hevc(hevc) = track else {
            panic!("{name}: not an HEVC track: {track:?}");
        };
        assert!(
            hevc.codec_string().starts_with("hvc1.1."),
            "{name}: {}",
            hevc.codec_string()
        );
        assert_eq!((hevc.width, hevc.height), (320, 180), "{name}");
    }

    let out = run(&mut ladder, &units);
    let frames = (SECONDS * FPS) as usize;
    let idrs = keyframe_pts(&out[&RungId(0)]);
    assert_eq!(idrs.len(), 2, "H.264 IDRs at 0 and 2.5 s: {idrs:?}");
    for (id, name, _, _, track) in &rungs[1..] {
        let units = &out[id];
        assert_eq!(units.len(), frames, "{name}: one unit per source frame");
        assert_eq!(keyframe_pts(units), idrs, "{name}: IDRs at the H.264 IDRs");
        assert!(
            units
                .iter()
                .all(|u| u.dts == u.pts && u.codec == media::Codec::H265),
            "{name}"
        );
        let TrackConfig::Hevc(hevc) = track else {
            unreachable!()
        };
        let (errors, probe) = decode_hevc(&dir, name, hevc, units);
        assert!(errors.is_empty(), "{name}: ffmpeg says {errors}");
        assert_eq!(probe["codec_name"], "hevc", "{name}");
        assert_eq!(probe["profile"], "Main", "{name}");
        assert_eq!(ffprobe_int(&probe["width"]), 320, "{name}");
        assert_eq!(
            ffprobe_int(&probe["nb_read_frames"]),
            frames as i64,
            "{name}"
        );
    }
}

#[test]
fn gpu_rungs_with_fallback_fail_refuse_and_av1_nvenc_is_never_there() {
    let dir = TempDir::new("ladder-gpu-fail");
    let media = source(&dir);
    for codec in [RungCodec::Hevc, RungCodec::Av1] {
        let reason = nvenc::probe(match codec {
            RungCodec::Hevc => nvenc::NvencCodec::Hevc,
            _ => nvenc::NvencCodec::Av1,
        })
        .unavailable;
        let Some(reason) = reason else {
            eprintln!("skipped {codec:?}: NVENC has it here");
            continue;
        };
        let mut gpu = rung("180p-gpu", RungEncoder::Nvenc { codec });
        gpu.fallback = GpuFallback::Fail;
        let config = LadderConfig {
            rungs: vec![rung("180p", RungEncoder::X264), gpu.clone()],
            decoder: DecoderChoice::Cpu,
            ..LadderConfig::default()
        };
        match Ladder::new(config, &TrackConfig::Avc(media.video.clone())) {
            Err(TranscodeError::GpuUnavailable { rung, reason: got }) => {
                assert_eq!(rung, "180p-gpu");
                assert_eq!(got, reason);
            }
            other => panic!("{codec:?}: expected GpuUnavailable, got {other:?}"),
        }
        if codec == RungCodec::Av1 {
            assert!(reason.contains("av1_nvenc"), "{reason}");
            // fallback = cpu: the rung runs on the default AV1 encoder, reason kept.
            gpu.fallback = GpuFallback::Cpu;
            let config = LadderConfig {
                rungs: vec![gpu],
                decoder: DecoderChoice::Cpu,
                ..LadderConfig::default()
            };
            let ladder =
                Ladder::new(config, &TrackConfig::Avc(media.video.clone())).expect("ladder");
            let track = ladder.rung_tracks().next().expect("the AV1 rung");
            assert_eq!(track.encoder, RungCodec::Av1.default_encoder());
            assert_eq!(track.fallback_reason, Some(reason.as_str()));
            assert!(track.track.codec_string().starts_with("av01."));
        }
    }
}
