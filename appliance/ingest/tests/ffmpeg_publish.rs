//! A real peer: ffmpeg publishes H.264 (with B-frames) + AAC over RTMP to an `RtmpSession`
//! driven by a plain std `TcpListener` on 127.0.0.1.
//!
//! Set `CORECAST_RTMP_CAPTURE=path` to write the first 64 KiB ffmpeg sent to `path` (that is
//! how tests/data/ffmpeg5_rtmp_publish.bin was made for the replay unit test).
// The I/O driver around the pure session (rtmp_listener) owns the socket and the clock.
#![allow(clippy::disallowed_methods)]

mod rtmp_listener;

use std::process::{Command, Stdio};
use std::time::Duration;

use corecast_ingest::rtmp::RtmpEvent;
use media::Codec;
use rtmp_listener::{RtmpListener, finish, tool_present};

#[test]
fn ffmpeg_publishes_h264_and_aac() {
    assert!(
        tool_present("ffmpeg", "-version"),
        "ffmpeg is not installed: run scripts/install-deps.sh --test"
    );
    let listener = RtmpListener::bind();
    let mut ffmpeg = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "3", "-c:v", "libx264", "-bf", "2", "-g", "30"])
        .args(["-c:a", "aac", "-ac", "2", "-f", "flv"])
        .arg(listener.url("live", "test"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let publication = listener.serve_one(&mut ffmpeg, Duration::from_secs(15));
    let (status, stderr) = finish(ffmpeg, Duration::from_secs(5));
    if let Some(failure) = &publication.failure {
        panic!("{failure}; ffmpeg said: {stderr}");
    }
    assert!(status.success(), "ffmpeg failed ({status}): {stderr}");
    publication.write_capture_if_asked();
    let events = &publication.events;

    assert_eq!(
        events.first(),
        Some(&RtmpEvent::PublishRequested {
            app: "live".into(),
            stream_key: "test".into()
        })
    );
    let video_config = publication.video_config().expect("no AVC sequence header");
    assert_eq!((video_config.width, video_config.height), (640, 360));
    assert_eq!(video_config.frame_rate, Some((30, 1)));
    let audio_config = publication.audio_config().expect("no AAC sequence header");
    assert_eq!(
        (audio_config.sample_rate, audio_config.channels),
        (48_000, 2)
    );
    assert_eq!(events.last(), Some(&RtmpEvent::Unpublished));

    let video = publication.units(Codec::H264);
    assert!(
        (85..=95).contains(&video.len()),
        "{} video units",
        video.len()
    );
    assert!(video[0].keyframe, "the first unit is not a keyframe");
    let keyframes = video.iter().filter(|u| u.keyframe).count();
    assert!(keyframes >= 3, "{keyframes} keyframes");
    assert!(video.iter().any(|u| u.pts != u.dts), "no B-frames seen");
    assert!(video.iter().all(|u| u.pts >= u.dts), "pts before dts");
    assert!(
        video.windows(2).all(|w| w[1].dts > w[0].dts),
        "dts not increasing"
    );
    // ffmpeg's flv muxer sends length-prefixed slices only: no parameter sets in band.
    for unit in &video {
        let mut pos = 0;
        while pos < unit.payload.len() {
            let len = u32::from_be_bytes(unit.payload[pos..pos + 4].try_into().unwrap()) as usize;
            assert!(!matches!(unit.payload[pos + 4] & 0x1f, 7..=9));
            pos += 4 + len;
        }
        assert_eq!(pos, unit.payload.len());
    }

    let audio = publication.units(Codec::Aac);
    // 3 s at 48 kHz is 140.6 frames of 1024.
    assert!(
        (135..=145).contains(&audio.len()),
        "{} audio units",
        audio.len()
    );
    for pair in audio.windows(2) {
        assert_eq!(pair[1].pts - pair[0].pts, 1024, "uneven AAC timestamps");
    }
    // Audio and video start together (within a frame of each).
    let start_gap = video[0].dts as f64 / 90_000.0 - audio[0].pts as f64 / 48_000.0;
    assert!(
        start_gap.abs() < 0.05,
        "audio and video start {start_gap} s apart"
    );
}
