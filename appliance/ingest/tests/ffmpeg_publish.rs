//! A real peer: ffmpeg publishes H.264 (with B-frames) + AAC over RTMP to an `RtmpSession`
//! driven by a plain std `TcpListener` on 127.0.0.1.
//!
//! Set `CORECAST_RTMP_CAPTURE=path` to write the first 64 KiB ffmpeg sent to `path` (that is
//! how tests/data/ffmpeg5_rtmp_publish.bin was made for the replay unit test).
// This file is the I/O driver around the pure session: it owns the socket and the clock.
#![allow(clippy::disallowed_methods)]

use std::io::{ErrorKind, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use corecast_ingest::rtmp::{RtmpEvent, RtmpSession};
use media::{AccessUnit, Codec};

const CAPTURE_LEN: usize = 64 * 1024;

fn ffmpeg_present() -> bool {
    Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn ffmpeg_publishes_h264_and_aac() {
    assert!(
        ffmpeg_present(),
        "ffmpeg is not installed: run scripts/install-deps.sh --test"
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let ffmpeg = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", "3", "-c:v", "libx264", "-bf", "2", "-g", "30"])
        .args(["-c:a", "aac", "-ac", "2", "-f", "flv"])
        .arg(format!("rtmp://127.0.0.1:{port}/live/test"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    let (mut socket, _) = listener.accept().unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut session = RtmpSession::new();
    let mut captured = Vec::new();
    let mut events = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::new();
    loop {
        let len = match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(len) => len,
            Err(err) if err.kind() == ErrorKind::ConnectionReset => break,
            Err(err) => panic!("reading from ffmpeg: {err}"),
        };
        let data = &buf[..len];
        let room = CAPTURE_LEN.saturating_sub(captured.len());
        captured.extend_from_slice(&data[..len.min(room)]);
        session
            .handle_bytes(Instant::now(), data)
            .unwrap_or_else(|err| panic!("session failed on ffmpeg's bytes: {err}"));
        loop {
            out.clear();
            while session.poll_transmit(&mut out).is_some() {}
            if !out.is_empty() {
                // ffmpeg may close first at the end; what we failed to send no longer matters.
                let _ = socket.write_all(&out);
            }
            let mut answered = false;
            while let Some(event) = session.poll_event() {
                if matches!(event, RtmpEvent::PublishRequested { .. }) {
                    session.accept_publish();
                    answered = true;
                }
                events.push(event);
            }
            if !answered {
                break;
            }
        }
    }
    let output = ffmpeg.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "ffmpeg failed: {stderr}");
    if let Some(path) = std::env::var_os("CORECAST_RTMP_CAPTURE") {
        std::fs::write(path, &captured).unwrap();
    }

    assert_eq!(
        events.first(),
        Some(&RtmpEvent::PublishRequested {
            app: "live".into(),
            stream_key: "test".into()
        })
    );
    let video_config = events.iter().find_map(|e| match e {
        RtmpEvent::VideoConfig(config) => Some(config),
        _ => None,
    });
    let video_config = video_config.expect("no AVC sequence header");
    assert_eq!((video_config.width, video_config.height), (640, 360));
    assert_eq!(video_config.frame_rate, Some((30, 1)));
    let audio_config = events.iter().find_map(|e| match e {
        RtmpEvent::AudioConfig(config) => Some(config),
        _ => None,
    });
    let audio_config = audio_config.expect("no AAC sequence header");
    assert_eq!(
        (audio_config.sample_rate, audio_config.channels),
        (48_000, 2)
    );
    assert_eq!(events.last(), Some(&RtmpEvent::Unpublished));

    let units = |codec| -> Vec<&AccessUnit> {
        events
            .iter()
            .filter_map(|e| match e {
                RtmpEvent::Media(unit) if unit.codec == codec => Some(unit),
                _ => None,
            })
            .collect()
    };
    let video = units(Codec::H264);
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

    let audio = units(Codec::Aac);
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
