//! The ladder against real input: 6 s of 1280x720 30 fps H.264 with B-frames made by the
//! ffmpeg command line (keyframe every 25 frames, so only some keyframes start a 2 s segment),
//! through a ladder of two small rungs (360p and 180p, x264 ultrafast, to keep the shared box
//! cool). The segment cuts of the source are computed by the packager's own `Segmenter`, not by
//! the ladder's `SegmentClock`, so the test checks that the two agree. Outputs are written as
//! Annex B and decoded by ffmpeg. The source comes from corecast-testmedia's `TestSource`; a
//! missing ffmpeg fails the tests saying how to install it.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use corecast_transcode::{
    GpuFallback, Ladder, LadderConfig, NvencPreset, RungCodec, RungConfig, RungEncoder, RungId,
    TranscodeError,
};
use media::{AccessUnit, AvcConfig, TrackConfig};
use package::live::segmenter::{Segmenter, SegmenterConfig};
use serde_json::Value;
use testmedia::{TempDir, TestSource, ffmpeg_decode_errors, ffprobe_int, ffprobe_json};
use x264::{X264Preset, X264Profile};

const SECONDS: u32 = 6;
const FPS: u32 = 30; // TestSource's rate
const GOP: u32 = 25;
const TARGET: i64 = 180_000;

struct Source {
    config: AvcConfig,
    /// Decode order, as ingest would hand them over.
    units: Vec<AccessUnit>,
    /// Where the packager cuts the source rendition (input pts).
    cuts: Vec<i64>,
}

/// Made once and shared by the tests (the encode is the expensive part).
fn source() -> &'static Source {
    static SOURCE: OnceLock<Source> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let dir = TempDir::new("ladder-source");
        // ultrafast with B-frames put back: cheap, and still reordered like a real encoder.
        let media = TestSource::new(1280, 720, SECONDS)
            .gop(GOP)
            .preset("ultrafast")
            .make(dir.path());
        let units = media.video_units();
        let cuts = packager_cuts(&units);
        Source {
            config: media.video,
            units,
            cuts,
        }
    })
}

/// The pts (input timeline) of the first unit of every segment the packager's segmenter cuts
/// from these video units.
fn packager_cuts(units: &[AccessUnit]) -> Vec<i64> {
    let config = SegmenterConfig {
        target: TARGET,
        max_segment: TARGET * 5,
        audio_wait: TARGET,
    };
    let mut segmenter = Segmenter::new(config, 0, Some(3000), None);
    let origin = units.iter().find(|u| u.keyframe).expect("a keyframe").dts;
    let mut cuts = Vec::new();
    let mut collect = |segmenter: &mut Segmenter| {
        while let Some(segment) = segmenter.pop() {
            // The first unit in decode order starts the segment; the segment's earliest pts is
            // its start on the timeline. Both are the keyframe here.
            let first = &segment.video[0].unit;
            assert!(first.keyframe);
            cuts.push(first.pts + origin);
        }
    };
    for unit in units {
        segmenter.push(unit.clone());
        collect(&mut segmenter);
    }
    segmenter.finish();
    collect(&mut segmenter);
    cuts
}

fn small_ladder() -> LadderConfig {
    let rung = |name: &str, height, kbps| RungConfig {
        name: name.to_owned(),
        height,
        bitrate_kbps: kbps,
        maxrate_kbps: kbps * 11 / 10,
        vbv_buffer_kbits: kbps * 2,
        preset: X264Preset::Ultrafast,
        profile: X264Profile::Main,
        encoder: RungEncoder::X264,
        nvenc_preset: NvencPreset::P1,
        fallback: GpuFallback::Cpu,
    };
    LadderConfig {
        rungs: vec![
            rung("1080p", 1080, 4000), // taller than the source: skipped
            rung("360p", 360, 600),
            rung("180p", 180, 250),
        ],
        segment_target: Duration::from_millis(TARGET as u64 / 90),
        ..LadderConfig::default()
    }
}

/// Media time of a unit as the caller's clock (a real-time feed).
fn now_of(unit: &AccessUnit, first: &AccessUnit) -> Duration {
    Duration::from_micros(((unit.dts - first.dts).max(0) as u64) * 100 / 9)
}

/// Feeds the units; after each, `steps(index)` encode steps (None: until idle). Returns each
/// rung's units.
fn run(
    ladder: &mut Ladder,
    units: &[AccessUnit],
    steps: impl Fn(usize) -> Option<usize>,
) -> BTreeMap<RungId, Vec<AccessUnit>> {
    let mut out: BTreeMap<RungId, Vec<AccessUnit>> = BTreeMap::new();
    let mut last_now = Duration::ZERO;
    for (index, unit) in units.iter().enumerate() {
        let now = now_of(unit, &units[0]);
        last_now = now;
        ladder.handle_unit(unit).expect("handle_unit");
        match steps(index) {
            None => while ladder.encode_step(now).expect("encode_step") {},
            Some(count) => {
                for _ in 0..count {
                    ladder.encode_step(now).expect("encode_step");
                }
            }
        }
        while let Some((rung, unit)) = ladder.poll_output() {
            out.entry(rung).or_default().push(unit);
        }
    }
    ladder.finish().expect("finish");
    while ladder.encode_step(last_now).expect("encode_step") {}
    while let Some((rung, unit)) = ladder.poll_output() {
        out.entry(rung).or_default().push(unit);
    }
    out
}

/// Writes a rung as Annex B (SPS and PPS before each IDR) and has ffmpeg decode it: returns
/// ffmpeg's error output and ffprobe's (width, height, frames).
fn decode_with_ffmpeg(name: &str, avc: &AvcConfig, units: &[AccessUnit]) -> (String, Value) {
    let dir = TempDir::new(&format!("ladder-{name}"));
    let path = dir.path().join(format!("{name}.h264"));
    let mut stream = Vec::new();
    for unit in units {
        if unit.keyframe {
            for set in avc.sps.iter().chain(&avc.pps) {
                stream.extend_from_slice(&[0, 0, 0, 1]);
                stream.extend_from_slice(set);
            }
        }
        assert!(x264::append_annex_b(&unit.payload, &mut stream));
    }
    std::fs::write(&path, &stream).expect("write h264");
    let errors = ffmpeg_decode_errors(&path);
    let probe = ffprobe_json(
        &[
            "-count_frames",
            "-show_entries",
            "stream=width,height,nb_read_frames,sample_aspect_ratio",
        ],
        &path,
    );
    (errors, probe["streams"][0].clone())
}

fn keyframe_pts(units: &[AccessUnit]) -> Vec<i64> {
    units.iter().filter(|u| u.keyframe).map(|u| u.pts).collect()
}

#[test]
fn every_rung_has_idrs_exactly_at_the_source_cuts_and_decodes_cleanly() {
    let source = source();
    let frames = (SECONDS * FPS) as usize;
    assert_eq!(source.units.len(), frames);
    assert!(
        source.units.iter().any(|u| u.pts != u.dts),
        "source has B-frames"
    );
    // Keyframes every 25 frames, cuts only where 2 s have passed: 0, 2.5 s, 5 s.
    let first = source.units.iter().map(|u| u.pts).min().unwrap();
    assert_eq!(
        source.cuts,
        vec![first, first + 75 * 3000, first + 150 * 3000],
        "packager cuts"
    );
    assert_eq!(keyframe_pts(&source.units).len(), 8);

    let mut ladder =
        Ladder::new(small_ladder(), &TrackConfig::Avc(source.config.clone())).expect("ladder");
    let sizes: Vec<(String, u32, u32)> = ladder
        .rungs()
        .map(|r| (r.config.name.clone(), r.width, r.height))
        .collect();
    assert_eq!(
        sizes,
        vec![("360p".to_owned(), 640, 360), ("180p".to_owned(), 320, 180)]
    );
    let avcs: Vec<AvcConfig> = ladder.rungs().map(|r| r.avc.clone()).collect();
    let outputs = run(&mut ladder, &source.units, |_| None);

    let mut source_pts: Vec<i64> = source.units.iter().map(|u| u.pts).collect();
    source_pts.sort_unstable();
    for (index, avc) in avcs.iter().enumerate() {
        let units = &outputs[&RungId(index)];
        let name = &sizes[index].0;
        assert_eq!(units.len(), frames, "{name}: one unit per source frame");
        assert_eq!(keyframe_pts(units), source.cuts, "{name}: IDRs at the cuts");
        let mut pts: Vec<i64> = units.iter().map(|u| u.pts).collect();
        pts.sort_unstable();
        assert_eq!(pts, source_pts, "{name}: the source's timestamps");
        // The packager, run over the rung, cuts it at the same pts as the source.
        assert_eq!(packager_cuts(units), source.cuts, "{name}: rung segments");
        assert_eq!((avc.width, avc.height), (sizes[index].1, sizes[index].2));

        let (errors, probe) = decode_with_ffmpeg(name, avc, units);
        assert!(errors.is_empty(), "{name}: ffmpeg says {errors}");
        assert_eq!(ffprobe_int(&probe["width"]), i64::from(sizes[index].1));
        assert_eq!(ffprobe_int(&probe["height"]), i64::from(sizes[index].2));
        assert_eq!(ffprobe_int(&probe["nb_read_frames"]), frames as i64);
        // Square pixels, so the picture keeps the source's 16:9.
        let sar = probe["sample_aspect_ratio"].as_str().unwrap_or("1:1");
        assert!(sar == "1:1" || sar == "0:1", "{name}: SAR {sar}");

        let stats = ladder.rung_stats(RungId(index)).unwrap();
        assert_eq!(
            (stats.encoded_frames, stats.dropped_frames),
            (frames as u64, 0)
        );
        assert_eq!(stats.queued_frames, 0);
        // Fed in real time and never behind: about the source rate per second of `now`.
        assert!((25.0..35.0).contains(&stats.encoded_fps), "{stats:?}");
    }
    let stats = ladder.stats();
    assert_eq!(stats.decoded_frames, frames as u64);
    assert_eq!(
        (
            stats.segment_starts,
            stats.corrupt_units,
            stats.misaligned_boundaries
        ),
        (3, 0, 0)
    );
}

#[test]
fn a_corrupt_source_unit_is_skipped_and_counted() {
    let source = source();
    let frames = source.units.len();
    let mut units = source.units.clone();
    // A non-reference picture (nal_ref_idc 0: a B-frame) in the second segment loses its tail.
    let victim = units
        .iter()
        .position(|u| u.dts - units[0].dts > 100 * 3000 && u.payload[4] & 0x60 == 0)
        .expect("a B-frame");
    let lost_pts = units[victim].pts;
    let cut = units[victim].payload.len() / 2;
    units[victim].payload = units[victim].payload.slice(..cut);

    let mut ladder =
        Ladder::new(small_ladder(), &TrackConfig::Avc(source.config.clone())).expect("ladder");
    let avcs: Vec<AvcConfig> = ladder.rungs().map(|r| r.avc.clone()).collect();
    let outputs = run(&mut ladder, &units, |_| None);
    let stats = ladder.stats();
    assert_eq!(stats.corrupt_units, 1, "{stats:?}");
    assert_eq!(stats.decoded_frames, frames as u64 - 1);
    for (index, avc) in avcs.iter().enumerate() {
        let units = &outputs[&RungId(index)];
        assert_eq!(units.len(), frames - 1);
        assert!(units.iter().all(|u| u.pts != lost_pts));
        assert_eq!(keyframe_pts(units), source.cuts);
        let (errors, probe) = decode_with_ffmpeg(&format!("corrupt-{index}"), avc, units);
        assert!(errors.is_empty(), "ffmpeg says {errors}");
        assert_eq!(ffprobe_int(&probe["nb_read_frames"]), frames as i64 - 1);
    }
}

#[test]
fn a_rung_that_falls_behind_drops_frames_but_never_an_idr() {
    let source = source();
    let frames = source.units.len() as u64;
    let config = LadderConfig {
        queue_frames: 4,
        ..small_ladder()
    };
    let mut ladder = Ladder::new(config, &TrackConfig::Avc(source.config.clone())).expect("ladder");
    let mut peak_queue = 0;
    // One encode step per source frame for two rungs: each rung gets about half the time it
    // needs. Watch the queues while it runs.
    let mut outputs: BTreeMap<RungId, Vec<AccessUnit>> = BTreeMap::new();
    let mut rates = Vec::new();
    for (index, unit) in source.units.iter().enumerate() {
        if index == 150 {
            rates = (0..2)
                .map(|rung| ladder.rung_stats(RungId(rung)).unwrap().encoded_fps)
                .collect();
        }
        ladder.handle_unit(unit).unwrap();
        ladder.encode_step(now_of(unit, &source.units[0])).unwrap();
        for index in 0..2 {
            let stats = ladder.rung_stats(RungId(index)).unwrap();
            peak_queue = peak_queue.max(stats.queued_frames);
            // Bounded: the queue holds 4 pictures, about every other frame at this rate.
            assert!(stats.lag_ticks <= 3 * 4 * 3000, "{stats:?}");
        }
        while let Some((rung, unit)) = ladder.poll_output() {
            outputs.entry(rung).or_default().push(unit);
        }
    }
    assert_eq!(peak_queue, 4, "the queues fill up to their bound");
    ladder.finish().unwrap();
    while ladder.encode_step(Duration::from_secs(7)).unwrap() {}
    while let Some((rung, unit)) = ladder.poll_output() {
        outputs.entry(rung).or_default().push(unit);
    }
    for index in 0..2 {
        let stats = ladder.rung_stats(RungId(index)).unwrap();
        let units = &outputs[&RungId(index)];
        assert!(stats.dropped_frames > frames / 4, "{stats:?}");
        assert_eq!(
            stats.encoded_frames + stats.dropped_frames,
            frames,
            "{stats:?}"
        );
        assert_eq!(units.len() as u64, stats.encoded_frames);
        assert_eq!(keyframe_pts(units), source.cuts, "IDRs survive the drops");
        // About half the source rate got through, as the rate figure said while it ran.
        assert!((12.0..18.0).contains(&rates[index]), "{rates:?}");
    }
}

/// Why NVENC cannot run here, or `None` where it can (a GPU with an NVENC engine and driver).
fn nvenc_unavailable() -> Option<String> {
    nvenc::probe(nvenc::NvencCodec::H264).unavailable
}

#[test]
fn an_nvenc_rung_falls_back_to_x264_with_the_same_aligned_idrs() {
    let source = source();
    let unavailable = nvenc_unavailable();
    let mut config = small_ladder();
    config.rungs[1].encoder = RungEncoder::Nvenc {
        codec: RungCodec::H264,
    }; // 360p asks for the GPU; 180p stays on x264
    let mut ladder = Ladder::new(config, &TrackConfig::Avc(source.config.clone()))
        .expect("fallback = cpu builds the ladder");
    let rungs: Vec<(String, RungEncoder, Option<String>)> = ladder
        .rungs()
        .map(|r| {
            (
                r.config.name.clone(),
                r.encoder,
                r.fallback_reason.map(str::to_owned),
            )
        })
        .collect();
    match &unavailable {
        Some(reason) => {
            eprintln!("NVENC unavailable here ({reason}): checking the x264 fallback");
            assert_eq!(rungs[0].0, "360p");
            assert_eq!(rungs[0].1, RungEncoder::X264, "fell back to x264");
            assert_eq!(rungs[0].2.as_deref(), Some(reason.as_str()));
        }
        None => {
            eprintln!("NVENC available here: checking a real GPU rung");
            assert_eq!(
                (rungs[0].1, rungs[0].2.as_deref()),
                (
                    RungEncoder::Nvenc {
                        codec: RungCodec::H264
                    },
                    None
                )
            );
        }
    }
    assert_eq!(
        (rungs[1].1, rungs[1].2.as_deref()),
        (RungEncoder::X264, None)
    );
    let avcs: Vec<AvcConfig> = ladder.rungs().map(|r| r.avc.clone()).collect();
    let outputs = run(&mut ladder, &source.units, |_| None);
    let frames = source.units.len();
    for (index, avc) in avcs.iter().enumerate() {
        let units = &outputs[&RungId(index)];
        assert_eq!(units.len(), frames);
        assert_eq!(
            keyframe_pts(units),
            source.cuts,
            "rung {index}: IDRs at the cuts"
        );
        assert_eq!(packager_cuts(units), source.cuts);
        let (errors, probe) = decode_with_ffmpeg(&format!("nvenc-{index}"), avc, units);
        assert!(errors.is_empty(), "ffmpeg says {errors}");
        assert_eq!(ffprobe_int(&probe["nb_read_frames"]), frames as i64);
    }
}

#[test]
fn an_nvenc_rung_with_fallback_fail_refuses_the_ladder() {
    let source = source();
    let Some(reason) = nvenc_unavailable() else {
        eprintln!("skipped: NVENC is available here, so fallback = fail has nothing to refuse");
        return;
    };
    let mut config = small_ladder();
    config.rungs[2].encoder = RungEncoder::Nvenc {
        codec: RungCodec::H264,
    };
    config.rungs[2].fallback = GpuFallback::Fail;
    match Ladder::new(config, &TrackConfig::Avc(source.config.clone())) {
        Err(TranscodeError::GpuUnavailable { rung, reason: got }) => {
            assert_eq!(rung, "180p");
            assert_eq!(got, reason);
            assert!(
                got.contains("libcuda") || got.contains("NVENC") || got.contains("CUDA"),
                "{got}"
            );
        }
        other => panic!("expected GpuUnavailable, got {other:?}"),
    }
    // A rung taller than the source is skipped before its encoder is opened: no refusal.
    let mut config = small_ladder();
    config.rungs[0].encoder = RungEncoder::Nvenc {
        codec: RungCodec::H264,
    };
    config.rungs[0].fallback = GpuFallback::Fail;
    assert!(Ladder::new(config, &TrackConfig::Avc(source.config.clone())).is_ok());
}

#[test]
fn an_hevc_source_is_decoded_and_transcoded_like_h264() {
    let dir = TempDir::new("ladder-hevc-source");
    let media = TestSource::new(640, 360, 4)
        .gop(GOP)
        .preset("ultrafast")
        .hevc()
        .make_track(dir.path());
    assert!(
        matches!(media.video, TrackConfig::Hevc(_)),
        "{:?}",
        media.video
    );
    let units = media.video_units();
    let frames = units.len();
    assert_eq!(frames, (4 * FPS) as usize);
    assert!(units.iter().any(|u| u.pts != u.dts), "x265 made B-frames");
    let cuts = packager_cuts(&units);
    assert!(cuts.len() >= 2, "{cuts:?}");

    let mut ladder = Ladder::new(small_ladder(), &media.video).expect("ladder on HEVC");
    let sizes: Vec<(u32, u32)> = ladder.rungs().map(|r| (r.width, r.height)).collect();
    assert_eq!(sizes, vec![(640, 360), (320, 180)]);
    let avcs: Vec<AvcConfig> = ladder.rungs().map(|r| r.avc.clone()).collect();
    let outputs = run(&mut ladder, &units, |_| None);
    for (index, avc) in avcs.iter().enumerate() {
        let rung = &outputs[&RungId(index)];
        assert_eq!(
            rung.len(),
            frames,
            "rung {index}: one H.264 unit per HEVC frame"
        );
        assert!(rung.iter().all(|u| u.codec == media::Codec::H264));
        assert_eq!(
            keyframe_pts(rung),
            cuts,
            "rung {index}: IDRs at the source's cuts"
        );
        let (errors, probe) = decode_with_ffmpeg(&format!("hevc-{index}"), avc, rung);
        assert!(errors.is_empty(), "rung {index}: ffmpeg says {errors}");
        assert_eq!(ffprobe_int(&probe["nb_read_frames"]), frames as i64);
        assert_eq!(ffprobe_int(&probe["width"]), i64::from(sizes[index].0));
    }
    assert_eq!(ladder.stats().corrupt_units, 0);
    // An H.264 unit fed to the HEVC ladder is refused, not decoded as garbage.
    let stray = source().units[0].clone();
    assert!(matches!(
        ladder.handle_unit(&stray),
        Err(TranscodeError::WrongCodec(media::Codec::H264))
    ));
}
