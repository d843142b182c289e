//! The fMP4 and MPEG-TS muxers against a real peer: ffmpeg encodes 6 s of H.264 (High profile,
//! 2 B-frames, an IDR every 2 s) and AAC into an MP4; the test takes the samples and codec
//! configs out of it (ffprobe lists each packet's times, flags and file position), muxes 2 s
//! segments as CMAF (init + N.m4s per track) and as TS, and has ffprobe and ffmpeg read them
//! back: codecs, resolution, audio format, per-segment frame counts, every pts and dts (so
//! B-frame composition offsets and contiguity across segments), keyframe flags, continuity
//! counters, and a full decode with no errors.
//!
//! Needs ffmpeg and ffprobe (scripts/install-deps.sh --test); fails saying so when missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bytes::Bytes;
use corecast_package::{fmp4, ts};
use media::{AacConfig, AccessUnit, AvcConfig, Codec, TrackConfig, rescale};
use serde_json::Value;

const VIDEO_TRACK_ID: u32 = 1;
const AUDIO_TRACK_ID: u32 = 2;
const SAMPLE_RATE: u32 = 48_000;
/// Shift added to every source timestamp (1 s on each clock), so that the first frames of the
/// B-frame stream (dts -2 frames) have a dts `tfdt` can hold.
const SHIFT_SECONDS: i64 = 1;

#[test]
fn ffprobe_reads_our_fmp4_and_ts_segments() {
    let dir = scratch_dir();
    let source = encode_source(&dir);
    let segments = cut_segments(&source);
    assert_eq!(segments.len(), 3, "6 s with an IDR every 2 s");

    check_fmp4_video(&dir, &source, &segments);
    check_fmp4_audio(&dir, &source, &segments);
    check_ts(&dir, &source, &segments);

    std::fs::remove_dir_all(&dir).ok();
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

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corecast-mux-ffprobe-{}", std::process::id()));
    std::fs::remove_dir_all(&dir).ok();
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

fn tool(name: &str) -> Command {
    if Command::new(name).arg("-version").output().is_err() {
        panic!("{name} is not installed: run scripts/install-deps.sh --test");
    }
    let mut command = Command::new(name);
    command.arg("-hide_banner");
    command
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("tool runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn ffprobe(path: &Path) -> Value {
    let output = run(tool("ffprobe")
        .args([
            "-v",
            "error",
            "-of",
            "json",
            "-show_streams",
            "-show_packets",
        ])
        .arg(path));
    serde_json::from_slice(&output.stdout).expect("ffprobe writes JSON")
}

/// ffprobe writes some numbers as JSON numbers and some as strings.
fn int(value: &Value) -> i64 {
    match value {
        Value::Number(number) => number.as_i64().expect("integer"),
        Value::String(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("not an integer: {text}")),
        other => panic!("not an integer: {other}"),
    }
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

fn encode_source(dir: &Path) -> Source {
    let path = dir.join("source.mp4");
    run(tool("ffmpeg")
        .args(["-v", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=640x360:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "6",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-bf",
            "2",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ac",
            "2",
            "-b:a",
            "96k",
            "-video_track_timescale",
            "90000",
            "-movflags",
            "+faststart",
        ])
        .arg(&path));
    let file = std::fs::read(&path).expect("read source.mp4");

    // With +faststart the moov (and so the first avcC/esds) comes before any sample data.
    let video_config =
        AvcConfig::from_record(box_body(&file, b"avcC")).expect("x264's avcC parses");
    let esds = box_body(&file, b"esds");
    let asc = decoder_specific_info(esds.get(4..).expect("esds has version and flags"))
        .expect("esds has a DecoderSpecificInfo");
    let audio_config = AacConfig::from_asc(asc).expect("ffmpeg's AudioSpecificConfig parses");
    assert_eq!((video_config.width, video_config.height), (640, 360));
    assert_eq!(
        (audio_config.sample_rate, audio_config.channels),
        (SAMPLE_RATE, 2)
    );

    let probe = ffprobe(&path);
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    for packet in probe["packets"].as_array().expect("packets") {
        let flags = text(&packet["flags"]);
        if flags.contains('D') {
            continue; // the AAC priming frame a live encoder would not send
        }
        let start = usize::try_from(int(&packet["pos"])).unwrap();
        let size = usize::try_from(int(&packet["size"])).unwrap();
        let payload = Bytes::copy_from_slice(&file[start..start + size]);
        let (codec, shift, units) = match int(&packet["stream_index"]) {
            0 => (Codec::H264, SHIFT_SECONDS * 90_000, &mut video),
            _ => (
                Codec::Aac,
                SHIFT_SECONDS * i64::from(SAMPLE_RATE),
                &mut audio,
            ),
        };
        units.push(AccessUnit {
            codec,
            pts: int(&packet["pts"]) + shift,
            dts: int(&packet["dts"]) + shift,
            keyframe: flags.contains('K'),
            payload,
        });
    }
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

fn box_body<'a>(file: &'a [u8], kind: &[u8; 4]) -> &'a [u8] {
    let at = file
        .windows(4)
        .position(|window| window == kind)
        .expect("box present");
    let size = u32::from_be_bytes(file[at - 4..at].try_into().unwrap()) as usize;
    &file[at + 4..at - 4 + size]
}

/// Finds the DecoderSpecificInfo (tag 5) in ES_Descriptor / DecoderConfigDescriptor nesting
/// (ISO/IEC 14496-1 §7.2.6).
fn decoder_specific_info(mut data: &[u8]) -> Option<&[u8]> {
    while let Some((&tag, rest)) = data.split_first() {
        let mut size = 0usize;
        let mut rest = rest;
        loop {
            let (&byte, after) = rest.split_first()?;
            size = (size << 7) | usize::from(byte & 0x7f);
            rest = after;
            if byte & 0x80 == 0 {
                break;
            }
        }
        let (body, after) = rest.split_at_checked(size)?;
        match tag {
            0x03 => return decoder_specific_info(body.get(3..)?),
            0x04 => return decoder_specific_info(body.get(13..)?),
            0x05 => return Some(body),
            _ => data = after,
        }
    }
    None
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
            int(&packet["pts"]),
            to_probe_time(unit.pts),
            "{what}: pts of packet {index}"
        );
        assert_eq!(
            int(&packet["dts"]),
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
        .filter(|packet| int(&packet["stream_index"]) == stream_index)
        .collect()
}

fn assert_decodes_cleanly(path: &Path) {
    let output = run(tool("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"]));
    let errors = String::from_utf8_lossy(&output.stderr);
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
        assert_eq!((int(&stream["width"]), int(&stream["height"])), (640, 360));
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
            int(&pair[1]["dts"]) - int(&pair[0]["dts"]),
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
        assert_eq!(int(&stream["channels"]), 2);
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
            int(&pair[1]["dts"]) - int(&pair[0]["dts"]),
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
            (int(&video_stream["width"]), int(&video_stream["height"])),
            (640, 360)
        );
        assert_eq!(text(&audio_stream["codec_name"]), "aac");
        assert_eq!(text(&audio_stream["sample_rate"]), "48000");
        assert_eq!(int(&audio_stream["channels"]), 2);
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
