//! The fMP4 and MPEG-TS muxers against a real peer: ffmpeg encodes 6 s of H.264 (High profile,
//! 2 B-frames, an IDR every 2 s) and AAC into an MP4; the test takes the samples and codec
//! configs out of it (corecast-testmedia's `TestSource`: ffprobe lists each packet's times,
//! flags and file position, and dumps the avcC and AudioSpecificConfig), muxes 2 s
//! segments as CMAF (init + N.m4s per track) and as TS, and has ffprobe and ffmpeg read them
//! back: codecs, resolution, audio format, per-segment frame counts, every pts and dts (so
//! B-frame composition offsets and contiguity across segments), keyframe flags, continuity
//! counters, and a full decode with no errors.
//!
//! Needs ffmpeg and ffprobe (scripts/install-deps.sh --test); fails saying so when missing.

use std::path::{Path, PathBuf};

use corecast_package::{fmp4, ts};
use media::{AacConfig, AccessUnit, AvcConfig, TrackConfig, rescale};
use serde_json::Value;
use testmedia::{TempDir, TestSource, ffmpeg_decode_errors, ffprobe_int, ffprobe_json};

const VIDEO_TRACK_ID: u32 = 1;
const AUDIO_TRACK_ID: u32 = 2;
const SAMPLE_RATE: u32 = 48_000;
/// Shift added to every source timestamp (1 s on each clock), so that the first frames of the
/// B-frame stream (dts -2 frames) have a dts `tfdt` can hold.
const SHIFT_SECONDS: i64 = 1;

#[test]
fn ffprobe_reads_our_fmp4_and_ts_segments() {
    let temp = TempDir::new("mux-ffprobe");
    let dir = temp.path();
    let source = encode_source(dir);
    let segments = cut_segments(&source);
    assert_eq!(segments.len(), 3, "6 s with an IDR every 2 s");

    check_fmp4_video(dir, &source, &segments);
    check_fmp4_audio(dir, &source, &segments);
    check_ts(dir, &source, &segments);
}

struct Source {
    video_config: AvcConfig,
    audio_config: AacConfig,
    /// In decode order, times shifted by `SHIFT_SECONDS`.
    video: Vec<AccessUnit>,
    audio: Vec<AccessUnit>,
}

/// Index ranges into `Source::video` and `Source::audio`.
struct Segment {
    video: std::ops::Range<usize>,
    audio: std::ops::Range<usize>,
}

fn ffprobe(path: &Path) -> Value {
    ffprobe_json(&["-show_streams", "-show_packets"], path)
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

fn encode_source(dir: &Path) -> Source {
    let media = TestSource::new(640, 360, 6).with_audio().make(dir);
    let video_config = media.video.clone();
    let audio_config = media.audio.clone().expect("an AAC track");
    assert_eq!((video_config.width, video_config.height), (640, 360));
    assert_eq!(
        (audio_config.sample_rate, audio_config.channels),
        (SAMPLE_RATE, 2)
    );
    let shifted = |units: Vec<AccessUnit>, ticks: i64| -> Vec<AccessUnit> {
        units
            .into_iter()
            .map(|mut unit| {
                unit.pts += ticks;
                unit.dts += ticks;
                unit
            })
            .collect()
    };
    let video = shifted(media.video_units(), SHIFT_SECONDS * 90_000);
    // Without the AAC priming frame a live encoder would not send.
    let audio = shifted(
        media.live_audio_units(),
        SHIFT_SECONDS * i64::from(SAMPLE_RATE),
    );
    assert_eq!(video.len(), 180);
    assert!(audio.len() > 270, "6 s of 1024-sample frames");
    assert!(
        video.iter().any(|unit| unit.pts != unit.dts),
        "source has B-frames"
    );
    Source {
        video_config,
        audio_config,
        video,
        audio,
    }
}

/// Cuts at every video keyframe; audio frames go with the segment their pts falls in.
fn cut_segments(source: &Source) -> Vec<Segment> {
    let mut starts: Vec<usize> = (0..source.video.len())
        .filter(|&index| source.video[index].keyframe)
        .collect();
    assert_eq!(starts[0], 0, "stream starts with a keyframe");
    starts.push(source.video.len());
    let mut segments = Vec::new();
    let mut audio_start = 0;
    for pair in starts.windows(2) {
        let audio_end = match source.video.get(pair[1]) {
            Some(next_keyframe) => {
                let cut = rescale(next_keyframe.pts, 90_000, SAMPLE_RATE);
                source
                    .audio
                    .iter()
                    .position(|unit| unit.pts >= cut)
                    .unwrap_or(source.audio.len())
            }
            None => source.audio.len(),
        };
        segments.push(Segment {
            video: pair[0]..pair[1],
            audio: audio_start..audio_end,
        });
        audio_start = audio_end;
    }
    segments
}

/// Samples with durations from the next unit's dts (the last repeats the one before).
fn samples(units: &[AccessUnit]) -> Vec<fmp4::Sample> {
    (0..units.len())
        .map(|index| {
            let duration = match (units.get(index + 1), index.checked_sub(1)) {
                (Some(next), _) => next.dts - units[index].dts,
                (None, Some(previous)) => units[index].dts - units[previous].dts,
                (None, None) => 0,
            };
            fmp4::Sample::from_unit(&units[index], u32::try_from(duration).unwrap())
        })
        .collect()
}

/// Writes init.mp4 and N.m4s for one track and returns the per-segment files (init + N).
fn write_fmp4_track(
    dir: &Path,
    name: &str,
    track_id: u32,
    config: &TrackConfig,
    samples: &[fmp4::Sample],
    ranges: &[std::ops::Range<usize>],
) -> (Vec<PathBuf>, PathBuf) {
    let init = fmp4::init_segment(track_id, config);
    std::fs::write(dir.join(format!("{name}-init.mp4")), &init).unwrap();
    let mut whole = init.to_vec();
    let mut singles = Vec::new();
    for (index, range) in ranges.iter().enumerate() {
        let sequence_number = u32::try_from(index + 1).unwrap();
        let segment = fmp4::media_segment(sequence_number, track_id, &samples[range.clone()]);
        std::fs::write(dir.join(format!("{name}-{sequence_number}.m4s")), &segment).unwrap();
        let single = dir.join(format!("{name}-init-{sequence_number}.mp4"));
        std::fs::write(&single, [init.as_ref(), segment.as_ref()].concat()).unwrap();
        singles.push(single);
        whole.extend_from_slice(&segment);
    }
    let whole_path = dir.join(format!("{name}-all.mp4"));
    std::fs::write(&whole_path, whole).unwrap();
    (singles, whole_path)
}

/// Asserts that ffprobe's packets are exactly these units: count, pts, dts, keyframe flags.
fn assert_packets(
    packets: &[&Value],
    units: &[AccessUnit],
    to_probe_time: impl Fn(i64) -> i64,
    what: &str,
) {
    assert_eq!(packets.len(), units.len(), "{what}: packet count");
    for (index, (packet, unit)) in packets.iter().zip(units).enumerate() {
        assert_eq!(
            ffprobe_int(&packet["pts"]),
            to_probe_time(unit.pts),
            "{what}: pts of packet {index}"
        );
        assert_eq!(
            ffprobe_int(&packet["dts"]),
            to_probe_time(unit.dts),
            "{what}: dts of packet {index}"
        );
        if unit.keyframe {
            assert!(
                text(&packet["flags"]).contains('K'),
                "{what}: packet {index} is a keyframe"
            );
        }
    }
}

fn packets_of(probe: &Value, stream_index: i64) -> Vec<&Value> {
    probe["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .filter(|packet| ffprobe_int(&packet["stream_index"]) == stream_index)
        .collect()
}

fn assert_decodes_cleanly(path: &Path) {
    let errors = ffmpeg_decode_errors(path);
    assert!(
        errors.trim().is_empty(),
        "ffmpeg reports errors decoding {}: {errors}",
        path.display()
    );
}

fn check_fmp4_video(dir: &Path, source: &Source, segments: &[Segment]) {
    let samples = samples(&source.video);
    let ranges: Vec<_> = segments
        .iter()
        .map(|segment| segment.video.clone())
        .collect();
    let config = TrackConfig::Avc(source.video_config.clone());
    let (singles, whole) =
        write_fmp4_track(dir, "video", VIDEO_TRACK_ID, &config, &samples, &ranges);
    for (index, (path, range)) in singles.iter().zip(&ranges).enumerate() {
        let probe = ffprobe(path);
        let stream = &probe["streams"][0];
        assert_eq!(text(&stream["codec_name"]), "h264");
        assert_eq!(
            (
                ffprobe_int(&stream["width"]),
                ffprobe_int(&stream["height"])
            ),
            (640, 360)
        );
        assert_eq!(text(&stream["time_base"]), "1/90000");
        let units = &source.video[range.clone()];
        assert!(
            units.iter().any(|unit| unit.pts != unit.dts),
            "segment {index} has B-frames"
        );
        assert_packets(
            &packets_of(&probe, 0),
            units,
            |t| t,
            &format!("video segment {index}"),
        );
        assert_decodes_cleanly(path);
    }
    // All segments after one init: one continuous timeline, identical to the source.
    let probe = ffprobe(&whole);
    let packets = packets_of(&probe, 0);
    assert_packets(&packets, &source.video, |t| t, "video, all segments");
    for pair in packets.windows(2) {
        assert_eq!(
            ffprobe_int(&pair[1]["dts"]) - ffprobe_int(&pair[0]["dts"]),
            3000,
            "video dts contiguous"
        );
    }
    assert_decodes_cleanly(&whole);
}

fn check_fmp4_audio(dir: &Path, source: &Source, segments: &[Segment]) {
    let samples = samples(&source.audio);
    let ranges: Vec<_> = segments
        .iter()
        .map(|segment| segment.audio.clone())
        .collect();
    let config = TrackConfig::Aac(source.audio_config.clone());
    let (singles, whole) =
        write_fmp4_track(dir, "audio", AUDIO_TRACK_ID, &config, &samples, &ranges);
    for (index, (path, range)) in singles.iter().zip(&ranges).enumerate() {
        let probe = ffprobe(path);
        let stream = &probe["streams"][0];
        assert_eq!(text(&stream["codec_name"]), "aac");
        assert_eq!(text(&stream["sample_rate"]), "48000");
        assert_eq!(ffprobe_int(&stream["channels"]), 2);
        assert_eq!(text(&stream["time_base"]), "1/48000");
        let units = &source.audio[range.clone()];
        assert_packets(
            &packets_of(&probe, 0),
            units,
            |t| t,
            &format!("audio segment {index}"),
        );
    }
    let probe = ffprobe(&whole);
    let packets = packets_of(&probe, 0);
    assert_packets(&packets, &source.audio, |t| t, "audio, all segments");
    for pair in packets.windows(2) {
        assert_eq!(
            ffprobe_int(&pair[1]["dts"]) - ffprobe_int(&pair[0]["dts"]),
            1024,
            "audio dts contiguous"
        );
    }
    assert_decodes_cleanly(&whole);
}

fn check_ts(dir: &Path, source: &Source, segments: &[Segment]) {
    let mut muxer = ts::TsMuxer::new(
        Some(source.video_config.clone()),
        Some(source.audio_config.clone()),
    );
    let mut whole = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let mut out = Vec::new();
        muxer.write_tables(&mut out);
        // Interleave by decode time, as the packager does.
        let mut video = source.video[segment.video.clone()].iter().peekable();
        let mut audio = source.audio[segment.audio.clone()].iter().peekable();
        loop {
            let take_video = match (video.peek(), audio.peek()) {
                (Some(v), Some(a)) => v.dts * i64::from(SAMPLE_RATE) <= a.dts * 90_000,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let unit = if take_video {
                video.next()
            } else {
                audio.next()
            };
            muxer.write_unit(unit.unwrap(), &mut out);
        }
        assert_eq!(out.len() % ts::PACKET_SIZE, 0);
        let path = dir.join(format!("{}.ts", index + 1));
        std::fs::write(&path, &out).unwrap();
        whole.extend_from_slice(&out);

        let probe = ffprobe(&path);
        let streams = probe["streams"].as_array().expect("streams");
        assert_eq!(streams.len(), 2, "segment {index}: video and audio");
        let video_index = streams
            .iter()
            .position(|s| text(&s["codec_type"]) == "video")
            .unwrap();
        let audio_index = 1 - video_index;
        let (video_stream, audio_stream) = (&streams[video_index], &streams[audio_index]);
        assert_eq!(text(&video_stream["codec_name"]), "h264");
        assert_eq!(
            (
                ffprobe_int(&video_stream["width"]),
                ffprobe_int(&video_stream["height"])
            ),
            (640, 360)
        );
        assert_eq!(text(&audio_stream["codec_name"]), "aac");
        assert_eq!(text(&audio_stream["sample_rate"]), "48000");
        assert_eq!(ffprobe_int(&audio_stream["channels"]), 2);
        let what = format!("TS segment {index}");
        assert_packets(
            &packets_of(&probe, video_index as i64),
            &source.video[segment.video.clone()],
            ts_video_time,
            &format!("{what} video"),
        );
        assert_packets(
            &packets_of(&probe, audio_index as i64),
            &source.audio[segment.audio.clone()],
            ts_audio_time,
            &format!("{what} audio"),
        );
        assert_decodes_cleanly(&path);
    }
    assert_eq!((muxer.malformed_nal_units(), muxer.skipped_units()), (0, 0));

    // The segments one after the other are one valid stream: continuity counters run on.
    let path = dir.join("all.ts");
    std::fs::write(&path, &whole).unwrap();
    assert_continuity(&whole);
    let probe = ffprobe(&path);
    assert_packets(
        &packets_of(&probe, 0),
        &source.video,
        ts_video_time,
        "TS video, all",
    );
    assert_packets(
        &packets_of(&probe, 1),
        &source.audio,
        ts_audio_time,
        "TS audio, all",
    );
    assert_decodes_cleanly(&path);
}

fn ts_video_time(time: i64) -> i64 {
    (time + ts::TIMESTAMP_OFFSET) % ts::TIMESTAMP_MODULUS
}

fn ts_audio_time(time: i64) -> i64 {
    ts_video_time(rescale(time, SAMPLE_RATE, 90_000))
}

fn assert_continuity(stream: &[u8]) {
    let mut last = std::collections::HashMap::new();
    for (index, packet) in stream.chunks(ts::PACKET_SIZE).enumerate() {
        assert_eq!(packet[0], 0x47, "sync byte of packet {index}");
        let pid = u16::from(packet[1] & 0x1f) << 8 | u16::from(packet[2]);
        let counter = packet[3] & 0x0f;
        if let Some(previous) = last.insert(pid, counter) {
            assert_eq!(
                counter,
                (previous + 1) & 0x0f,
                "continuity of PID {pid:#x} at packet {index}"
            );
        }
    }
}
