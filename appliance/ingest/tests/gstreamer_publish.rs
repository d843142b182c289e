//! A real peer: GStreamer's `rtmp2sink` (1.22) publishes H.264 + AAC over RTMP to an
//! `RtmpSession` behind a plain std `TcpListener` on 127.0.0.1 (see rtmp_listener).
//!
//! `rtmp2sink` is GStreamer's own RTMP client (not librtmp): its own handshake, command
//! sequence and chunk writer, with `flvmux` making the tags, so it is a third independent
//! implementation beside ffmpeg's and OBS's (librtmp).
//!
//! The pipeline tees `flvmux`'s output into a file as well, and ffprobe reads that file: every
//! video unit the session reports must match the FLV tag GStreamer sent (timestamps,
//! composition offset, keyframe flag). GStreamer's own timestamps are not a clean 30 fps:
//! `x264enc` with B-frames in a live pipeline gives DTS steps of 21 and 43 ms, and `flvmux`
//! may start video a few ms after 0. The session passes them on as sent, which is why the
//! checks compare with the file rather than with ideal values.
//!
//! Set `CORECAST_RTMP_CAPTURE=path` to write the first 64 KiB GStreamer sent to `path` (that is
//! how tests/data/gst122_rtmp2sink_publish.bin was made, from `gst_publishes_h264_and_aac`).
// The I/O driver around the pure session (rtmp_listener) owns the socket and the clock.
#![allow(clippy::disallowed_methods)]

mod rtmp_listener;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use corecast_ingest::rtmp::{PublishRejection, RtmpEvent};
use media::Codec;
use rtmp_listener::{Publication, RtmpListener, finish, tool_present};

/// 3 s of 48 kHz audio in buffers of one AAC frame each.
const AUDIO_BUFFERS: usize = 141;
const VIDEO_FRAMES: usize = 90;
const KEYFRAME_INTERVAL: usize = 30;

/// One FLV tag as ffprobe reads it from the teed file: milliseconds.
#[derive(Debug, PartialEq)]
struct FlvPacket {
    pts: i64,
    dts: i64,
    keyframe: bool,
}

/// Runs `gst-launch-1.0` with a 640x360 30 fps test pattern encoded by `x264enc` with
/// `x264_options`, and a 48 kHz stereo tone encoded by `avenc_aac`, both live (real time) for
/// 3 s, muxed by `flvmux` and sent by `rtmp2sink` (with `sink_options`) to
/// `rtmp://127.0.0.1:PORT/live/gst`, with a copy of the FLV in `flv_copy`.
fn gst_publish(x264_options: &str, sink_options: &str, flv_copy: &Path) -> Publication {
    assert!(
        tool_present("gst-launch-1.0", "--version"),
        "gst-launch-1.0 is not installed: run scripts/install-deps.sh --test"
    );
    let listener = RtmpListener::bind();
    let pipeline = format!(
        "videotestsrc is-live=true num-buffers={VIDEO_FRAMES} \
           ! video/x-raw,width=640,height=360,framerate=30/1 \
           ! x264enc {x264_options} key-int-max={KEYFRAME_INTERVAL} ! h264parse \
           ! flvmux name=mux streamable=true ! tee name=flv \
           ! queue ! rtmp2sink location={url} {sink_options} \
         flv. ! queue ! filesink location={file} \
         audiotestsrc is-live=true num-buffers={AUDIO_BUFFERS} samplesperbuffer=1024 \
           ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! avenc_aac ! aacparse ! mux.",
        url = listener.url("live", "gst"),
        file = flv_copy.display(),
    );
    let mut gst = Command::new("gst-launch-1.0")
        .args(["-q", "-e"])
        .args(pipeline.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let publication = listener.serve_one(&mut gst, Duration::from_secs(15));
    let (status, stderr) = finish(gst, Duration::from_secs(5));
    if let Some(failure) = &publication.failure {
        panic!("{failure}; gst-launch-1.0 said: {stderr}");
    }
    assert!(
        status.success(),
        "gst-launch-1.0 failed ({status}): {stderr}"
    );
    publication
}

/// The video and audio packets of an FLV file, as ffprobe reads them.
fn probe_flv(path: &Path) -> (Vec<FlvPacket>, Vec<FlvPacket>) {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "packet=codec_type,pts,dts,flags",
        ])
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe is not installed: run scripts/install-deps.sh --test");
    assert!(
        output.status.success(),
        "ffprobe failed on {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let [kind, pts, dts, flags] = fields[..] else {
            panic!("unexpected ffprobe line {line:?}");
        };
        let packet = FlvPacket {
            pts: pts.parse().unwrap(),
            dts: dts.parse().unwrap(),
            keyframe: flags.starts_with('K'),
        };
        match kind {
            "video" => video.push(packet),
            "audio" => audio.push(packet),
            // flvmux's script tags (onMetaData), which ffprobe shows as a data stream.
            _ => {}
        }
    }
    (video, audio)
}

/// A file name unique to this process and test, in the temporary directory.
fn scratch_file(test: &str) -> PathBuf {
    std::env::temp_dir().join(format!("corecast-{test}-{}.flv", std::process::id()))
}

/// Publishes, then checks what holds for any of our GStreamer publishes.
fn publish_and_check(test: &str, x264_options: &str, sink_options: &str) -> Publication {
    let flv_copy = scratch_file(test);
    let publication = gst_publish(x264_options, sink_options, &flv_copy);
    let (sent_video, sent_audio) = probe_flv(&flv_copy);
    let _ = std::fs::remove_file(&flv_copy);

    let events = &publication.events;
    assert_eq!(
        events.first(),
        Some(&RtmpEvent::PublishRequested {
            app: "live".into(),
            stream_key: "gst".into()
        })
    );
    let video_config = publication.video_config().expect("no AVC sequence header");
    assert_eq!((video_config.width, video_config.height), (640, 360));
    let audio_config = publication.audio_config().expect("no AAC sequence header");
    assert_eq!(
        (audio_config.sample_rate, audio_config.channels),
        (48_000, 2)
    );
    let unpublished = events
        .iter()
        .filter(|e| matches!(e, RtmpEvent::Unpublished))
        .count();
    assert_eq!(unpublished, 1, "Unpublished reported {unpublished} times");
    assert_eq!(events.last(), Some(&RtmpEvent::Unpublished));

    let video = publication.units(Codec::H264);
    assert_eq!(video.len(), VIDEO_FRAMES, "video units");
    let received: Vec<FlvPacket> = video
        .iter()
        .map(|unit| FlvPacket {
            pts: unit.pts / 90,
            dts: unit.dts / 90,
            keyframe: unit.keyframe,
        })
        .collect();
    assert_eq!(received, sent_video, "video units differ from the FLV tags");
    assert!(video[0].keyframe, "the first unit is not a keyframe");
    let keyframes: Vec<usize> = (0..video.len()).filter(|&i| video[i].keyframe).collect();
    assert!(keyframes.len() >= 3, "{} keyframes", keyframes.len());
    assert!(
        keyframes
            .windows(2)
            .all(|w| w[1] - w[0] <= KEYFRAME_INTERVAL),
        "keyframes further apart than key-int-max: {keyframes:?}"
    );
    assert!(video.iter().all(|u| u.pts >= u.dts), "pts before dts");
    // Not strictly: with B-frames, x264enc's invented DTS can repeat a value as it flushes at
    // EOS (seen: 2454, 2454 ms). The session reports what was sent; the packager copes.
    assert!(
        video.windows(2).all(|w| w[1].dts >= w[0].dts),
        "dts going backwards: {received:?}"
    );
    // Only slices reach the engine: parameter sets travel in the config.
    for unit in &video {
        let mut pos = 0;
        while pos < unit.payload.len() {
            let len = u32::from_be_bytes(unit.payload[pos..pos + 4].try_into().unwrap()) as usize;
            let nal_type = unit.payload[pos + 4] & 0x1f;
            assert!(
                !matches!(nal_type, 7..=9),
                "NAL type {nal_type} in a sample"
            );
            pos += 4 + len;
        }
        assert_eq!(pos, unit.payload.len());
    }

    let audio = publication.units(Codec::Aac);
    assert_eq!(audio.len(), sent_audio.len(), "audio units");
    // avenc_aac adds a frame or two of priming and flushes its tail at EOS.
    assert!(
        (AUDIO_BUFFERS..=AUDIO_BUFFERS + 3).contains(&audio.len()),
        "{} audio units",
        audio.len()
    );
    for pair in audio.windows(2) {
        assert_eq!(pair[1].pts - pair[0].pts, 1024, "uneven AAC timestamps");
    }
    // The even AAC clock stays within a frame of the millisecond times GStreamer sent.
    for (unit, sent) in audio.iter().zip(&sent_audio) {
        let sent_ticks = sent.pts * 48;
        assert!(
            (unit.pts - sent_ticks).abs() <= 1024,
            "AAC pts {} far from the FLV time {} ms",
            unit.pts,
            sent.pts
        );
    }
    // Audio and video start together (within a few frames: both sources are live).
    let start_gap = video[0].dts as f64 / 90_000.0 - audio[0].pts as f64 / 48_000.0;
    assert!(
        start_gap.abs() < 0.1,
        "audio and video start {start_gap} s apart"
    );
    publication
}

#[test]
fn gst_publishes_h264_and_aac() {
    // rtmp2sink's defaults: 128-byte chunks, FCUnpublish + deleteStream at EOS.
    let publication = publish_and_check("gst-zerolatency", "tune=zerolatency", "");
    publication.write_capture_if_asked();
    // zerolatency means no B-frames: presentation order is decode order, one frame a tick.
    let video = publication.units(Codec::H264);
    assert!(video.iter().all(|u| u.pts == u.dts), "reordered frames");
    assert!(
        video.windows(2).all(|w| w[1].dts > w[0].dts),
        "dts not increasing"
    );
}

#[test]
fn gst_publishes_h264_with_bframes() {
    // Large chunks (a keyframe in one chunk) and closeStream as the only stop command.
    let publication = publish_and_check(
        "gst-bframes",
        "bframes=2 speed-preset=veryfast",
        "chunk-size=65536 stop-commands=closestream",
    );
    let video = publication.units(Codec::H264);
    let reordered = video.iter().filter(|u| u.pts != u.dts).count();
    assert!(reordered >= 30, "only {reordered} units with pts != dts");
}

/// The engine refuses a second publisher to a live name; a GStreamer user sees why.
#[test]
fn gst_reports_a_refused_publish() {
    assert!(
        tool_present("gst-launch-1.0", "--version"),
        "gst-launch-1.0 is not installed: run scripts/install-deps.sh --test"
    );
    let listener = RtmpListener::bind();
    let pipeline = format!(
        "videotestsrc is-live=true num-buffers=30 ! video/x-raw,width=320,height=180 \
           ! x264enc tune=zerolatency ! h264parse ! flvmux streamable=true \
           ! rtmp2sink location={url}",
        url = listener.url("live", "taken"),
    );
    let mut gst = Command::new("gst-launch-1.0")
        .args(pipeline.split_whitespace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let publication = listener.serve_one_answering(
        &mut gst,
        Duration::from_secs(10),
        Some(PublishRejection::NameInUse),
    );
    let (status, stderr) = finish(gst, Duration::from_secs(5));
    assert_eq!(publication.failure, None);
    assert_eq!(
        publication.events,
        [RtmpEvent::PublishRequested {
            app: "live".into(),
            stream_key: "taken".into()
        }],
        "media or Unpublished after a refusal"
    );
    // rtmp2sink fails the pipeline and prints the status the session sent.
    assert!(!status.success(), "gst-launch-1.0 exited 0 after a refusal");
    assert!(
        stderr.contains("NetStream.Publish.BadName")
            && stderr.contains("Stream live/taken is already being published."),
        "gst-launch-1.0 said: {stderr}"
    );
}
