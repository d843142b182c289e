//! The H.264 decoder and the scaler against real ffmpeg output: an MP4 with B-frames made by
//! the ffmpeg command line, its samples read straight out of the file (they are already our
//! length-prefixed format) at the offsets ffprobe reports, its `avcC` from ffprobe's extradata
//! dump. Skips with a message where ffmpeg is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use corecast_libav::{
    H264Decoder, H264DecoderSettings, I420Picture, LibavError, ScaleFilter, Scaler,
};
use media::{AccessUnit, AvcConfig, Codec, rescale};
use serde_json::Value;

const FPS: u32 = 30;

fn tool_available(name: &str) -> bool {
    Command::new(name)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("corecast-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Bytes of an ffprobe hex dump (`00000000: 0164 001e ...  ascii`).
fn hexdump_bytes(dump: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in dump.lines().filter(|l| l.len() > 10) {
        let hex = line.get(10..49).unwrap_or(&line[10..]);
        for group in hex.split_whitespace() {
            for pair in group.as_bytes().chunks(2) {
                let text = std::str::from_utf8(pair).expect("ascii");
                out.push(u8::from_str_radix(text, 16).expect("hex byte"));
            }
        }
    }
    out
}

fn ffprobe_json(args: &[&str], input: &Path) -> Value {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(input)
        .output()
        .expect("run ffprobe");
    assert!(output.status.success(), "ffprobe {args:?}: {output:?}");
    serde_json::from_slice(&output.stdout).expect("ffprobe JSON")
}

struct Source {
    config: AvcConfig,
    units: Vec<AccessUnit>,
    /// Frames ffprobe decodes from the file.
    frames: usize,
}

/// `seconds` of testsrc2 at `size`, x264 veryfast with 2 B-frames and a keyframe every `gop`.
fn make_source(dir: &Path, size: &str, seconds: u32, gop: u32) -> Source {
    let mp4 = dir.join("source.mp4");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size={size}:rate={FPS}"))
        .args(["-t", &seconds.to_string(), "-threads", "2"])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-bf", "2"])
        .args(["-g", &gop.to_string(), "-keyint_min", &gop.to_string()])
        .args(["-sc_threshold", "0", "-pix_fmt", "yuv420p"])
        .arg(&mp4)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg made the source");
    let file = std::fs::read(&mp4).expect("read mp4");

    let streams = ffprobe_json(
        &[
            "-count_frames",
            "-show_streams",
            "-show_data",
            "-select_streams",
            "v:0",
        ],
        &mp4,
    );
    let stream = &streams["streams"][0];
    let config = AvcConfig::from_record(&hexdump_bytes(
        stream["extradata"].as_str().expect("extradata"),
    ))
    .expect("avcC parses");
    let frames: usize = stream["nb_read_frames"]
        .as_str()
        .expect("nb_read_frames")
        .parse()
        .expect("number");
    let time_base = stream["time_base"].as_str().expect("time_base");
    let (num, den) = time_base.split_once('/').expect("a/b");
    let (num, den): (i64, u32) = (num.parse().unwrap(), den.parse().unwrap());

    let packets = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts,dts,flags,pos,size",
        ],
        &mp4,
    );
    let mut units = Vec::new();
    for packet in packets["packets"].as_array().expect("packets") {
        let number = |key: &str| -> i64 {
            match &packet[key] {
                Value::String(text) => text.parse().expect("number"),
                value => value.as_i64().expect("number"),
            }
        };
        let (pos, size) = (number("pos") as usize, number("size") as usize);
        units.push(AccessUnit {
            codec: Codec::H264,
            pts: rescale(number("pts") * num, den, 90_000),
            dts: rescale(number("dts") * num, den, 90_000),
            keyframe: packet["flags"].as_str().is_some_and(|f| f.starts_with('K')),
            payload: Bytes::copy_from_slice(&file[pos..pos + size]),
        });
    }
    Source {
        config,
        units,
        frames,
    }
}

/// Decodes every unit (collecting per-unit errors), then flushes. Returns the pts of every
/// decoded picture, the errors, and the luma mean of the picture scaled to 320x180 at `probe`.
fn decode_all(
    decoder: &mut H264Decoder,
    units: &[AccessUnit],
    mut on_frame: impl FnMut(&media::encode::RawVideoFrame<'_>),
) -> (Vec<i64>, Vec<LibavError>) {
    let mut pts = Vec::new();
    let mut errors = Vec::new();
    for unit in units {
        if let Err(error) = decoder.submit(unit) {
            errors.push(error);
        }
        while let Some(frame) = decoder.poll_frame().expect("poll_frame") {
            pts.push(frame.pts);
            on_frame(&frame);
        }
    }
    decoder.flush().expect("flush");
    while let Some(frame) = decoder.poll_frame().expect("poll_frame") {
        pts.push(frame.pts);
        on_frame(&frame);
    }
    (pts, errors)
}

#[test]
fn decodes_b_frames_in_presentation_order_and_scales_like_ffmpeg() {
    if !tool_available("ffmpeg") {
        eprintln!("skipped: ffmpeg not installed (scripts/install-deps.sh --test)");
        return;
    }
    let dir = scratch_dir("libav-decode");
    let source = make_source(&dir, "640x360", 2, 30);
    assert_eq!(source.units.len(), 60);
    assert!(
        source.units.iter().any(|u| u.pts != u.dts),
        "the source has B-frames (pts differs from dts)"
    );
    assert_eq!((source.config.width, source.config.height), (640, 360));

    let mut decoder = H264Decoder::new(&source.config, H264DecoderSettings::default()).unwrap();
    let mut scaler = Scaler::new((640, 360), (320, 180), ScaleFilter::Bicubic).unwrap();
    let mut first_scaled = Vec::new();
    let (pts, errors) = decode_all(&mut decoder, &source.units, |frame| {
        assert_eq!((frame.width, frame.height), (640, 360));
        let scaled = scaler.scale(frame).expect("scale");
        assert_eq!(
            (scaled.width, scaled.height, scaled.pts),
            (320, 180, frame.pts)
        );
        if first_scaled.is_empty() {
            for row in 0..180 {
                first_scaled.extend_from_slice(&scaled.planes[0][row * scaled.strides[0]..][..320]);
            }
        }
    });
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        pts.len(),
        source.frames,
        "as many pictures as ffprobe counts"
    );
    let mut expected: Vec<i64> = source.units.iter().map(|u| u.pts).collect();
    expected.sort_unstable();
    assert_eq!(pts, expected, "every pts once, in presentation order");
    let stats = decoder.stats();
    assert_eq!(
        (stats.units, stats.frames, stats.corrupt_units),
        (60, 60, 0)
    );
    assert_eq!(stats.concealed_frames, 0);

    // ffmpeg's own decode + bicubic scale of the first picture, as raw luma.
    let reference = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(dir.join("source.mp4"))
        .args(["-frames:v", "1", "-vf", "scale=320:180:flags=bicubic"])
        .args(["-pix_fmt", "yuv420p", "-f", "rawvideo", "-"])
        .output()
        .expect("ffmpeg scale");
    assert!(reference.status.success(), "{reference:?}");
    // Luma first: 320x180 bytes, then the two chroma planes.
    assert_eq!(reference.stdout.len(), first_scaled.len() * 3 / 2);
    let diffs: Vec<u8> = first_scaled
        .iter()
        .zip(&reference.stdout[..first_scaled.len()])
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    let max = diffs.iter().copied().max().unwrap_or(0);
    assert!(
        mean < 0.5 && max <= 4,
        "mean diff {mean}, max {max} against ffmpeg"
    );

    // Frame threads: same pictures, same order.
    let mut threaded =
        H264Decoder::new(&source.config, H264DecoderSettings { threads: 2 }).unwrap();
    let (threaded_pts, errors) = decode_all(&mut threaded, &source.units, |_| {});
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(threaded_pts, expected);

    // A reused output picture: no allocation per frame, pts carried.
    let mut picture = I420Picture::new(320, 180).unwrap();
    let mut decoder = H264Decoder::new(&source.config, H264DecoderSettings::default()).unwrap();
    decoder.submit(&source.units[0]).unwrap();
    decoder.flush().unwrap();
    let frame = decoder.poll_frame().unwrap().expect("the IDR decodes");
    scaler.scale_into(&frame, &mut picture).unwrap();
    assert_eq!(picture.pts(), source.units[0].pts);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_unit_is_an_error_for_it_alone() {
    if !tool_available("ffmpeg") {
        eprintln!("skipped: ffmpeg not installed (scripts/install-deps.sh --test)");
        return;
    }
    let dir = scratch_dir("libav-corrupt");
    let source = make_source(&dir, "320x240", 2, 30);
    let mut units = source.units.clone();
    // Unit 10 truncated (its last NAL loses bytes), unit 40's slice data scrambled.
    let truncated_pts = units[10].pts;
    let cut = units[10].payload.len() - 7;
    units[10].payload = units[10].payload.slice(..cut);
    let flipped_pts = units[40].pts;
    let mut bytes = units[40].payload.to_vec();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..] {
        *byte ^= 0x5a;
    }
    units[40].payload = Bytes::from(bytes);

    let mut decoder = H264Decoder::new(&source.config, H264DecoderSettings::default()).unwrap();
    let (pts, errors) = decode_all(&mut decoder, &units, |_| {});
    let stats = decoder.stats();
    // The truncated unit is refused, by its pts, and is the only error.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(&errors[0], LibavError::CorruptUnit { pts, reason }
            if *pts == truncated_pts && reason.contains("truncated")),
        "{errors:?}"
    );
    assert!(!pts.contains(&truncated_pts));
    // The scrambled unit still gives a picture, patched up by libavcodec and counted.
    assert!(pts.contains(&flipped_pts));
    assert!(stats.concealed_frames >= 1, "{stats:?}");
    // Every other picture comes out, in order, up to the last one.
    assert_eq!(pts.len(), source.frames - 1, "{stats:?}");
    assert!(pts.windows(2).all(|p| p[0] < p[1]));
    assert_eq!(
        (stats.units, stats.corrupt_units, stats.frames),
        (60, 1, 59),
        "{stats:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
