//! RTMP in (real ffmpeg, 640x360 with B-frames and a 2 s GOP), a two-rung transcode ladder
//! (240p, 180p, x264 ultrafast), served as three video renditions over HLS and DASH. Checked
//! with real ffprobe / ffmpeg: shared segment numbers and durations, every rung segment
//! starting with an IDR and decoding on its own, equal frame counts, exact CODECS strings.

use std::time::{Duration, Instant};

use corecast_e2e::{
    Server, TempDir, ffmpeg_decode_errors, ffmpeg_publish, ffmpeg_publish_with, ffprobe_json,
    video_sizes, wait_success,
};

const CONFIG: &str = r#"
[demo]
enabled = false
[packaging]
window = 10
grace_period_seconds = 2
[transcode]
enabled = true
[[transcode.rungs]]
name = "240p"
height = 240
bitrate_kbps = 300
maxrate_kbps = 400
preset = "ultrafast"
[[transcode.rungs]]
name = "180p"
height = 180
bitrate_kbps = 150
maxrate_kbps = 200
preset = "ultrafast"
"#;

const RENDITIONS: [(&str, u64, u64); 3] =
    [("source", 640, 360), ("240p", 426, 240), ("180p", 320, 180)];

/// NAL unit type of the first slice (VCL NAL, types 1-5) of the first sample in a CMAF
/// segment's `mdat` (AVC samples: 4-byte length-prefixed NAL units).
fn first_slice_type(segment: &[u8]) -> Option<u8> {
    let mdat = segment.windows(4).position(|w| w == b"mdat")? + 4;
    let mut at = mdat;
    while at + 5 <= segment.len() {
        let length = u32::from_be_bytes(segment[at..at + 4].try_into().ok()?) as usize;
        let kind = segment[at + 4] & 0x1f;
        if (1..=5).contains(&kind) {
            return Some(kind);
        }
        at += 4 + length;
    }
    None
}

/// (key_frame, pict_type) of every frame of a file, decoded by ffprobe.
fn frames(path: &str) -> Vec<(i64, String)> {
    let probe = ffprobe_json(
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=key_frame,pict_type",
        ],
        path,
    );
    probe["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| {
            (
                f["key_frame"].as_i64().unwrap_or(-1),
                f["pict_type"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect()
}

/// The attributes of each `EXT-X-STREAM-INF` line, with the URI that follows it.
fn variants(multivariant: &str) -> Vec<(String, String)> {
    let lines: Vec<&str> = multivariant.lines().collect();
    lines
        .windows(2)
        .filter_map(|pair| {
            let attributes = pair[0].strip_prefix("#EXT-X-STREAM-INF:")?;
            Some((attributes.to_owned(), pair[1].to_owned()))
        })
        .collect()
}

/// `avc1.PPCCLL` for what ffprobe reports of a stream.
fn codec_string(stream: &serde_json::Value) -> String {
    let profile = match stream["profile"].as_str().unwrap_or("") {
        "High" => 0x64,
        "Main" => 0x4d,
        "Baseline" | "Constrained Baseline" => 0x42,
        other => panic!("unexpected H.264 profile {other}"),
    };
    let level = stream["level"].as_u64().expect("level");
    format!("avc1.{profile:02x}__{level:02x}")
}

#[test]
fn rtmp_publish_is_served_as_an_aligned_ladder() {
    let server = Server::start(CONFIG, &[]);
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url("cam"), 10);

    // While live: the API lists every rung with its size and encoder figures.
    let deadline = Instant::now() + Duration::from_secs(40);
    let api = loop {
        let response = server.api_get("/api/v1/streams/cam");
        if response.status == 200 {
            let json: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON");
            let renditions = json["renditions"].as_array().cloned().unwrap_or_default();
            if renditions.len() == 4 && renditions[1]["encode_fps"].as_f64().unwrap_or(0.0) > 0.0 {
                break renditions;
            }
        }
        assert!(
            Instant::now() < deadline,
            "API never listed the rungs:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for (index, (name, width, height)) in RENDITIONS.iter().enumerate() {
        assert_eq!(api[index]["name"], *name, "{api:?}");
        assert_eq!(api[index]["width"].as_u64(), Some(*width), "{name}");
        assert_eq!(api[index]["height"].as_u64(), Some(*height), "{name}");
        assert!(api[index]["codec"].as_str().unwrap().starts_with("avc1."));
    }
    assert_eq!(api[1]["dropped_frames"].as_u64(), Some(0), "{api:?}");
    assert_eq!(api[0]["corrupt_units"].as_u64(), Some(0), "{api:?}");
    assert_eq!(api[0]["concealed_frames"].as_u64(), Some(0), "{api:?}");
    assert_eq!(api[1]["encoder"], "x264", "{api:?}");
    assert!(api[1].get("fallback_reason").is_none(), "{api:?}");
    assert_eq!(api[3]["name"], "audio");
    // The same figures in /metrics, per rung.
    let metrics = server.api_get("/metrics").text();
    assert!(
        metrics.contains("corecast_stream_transcode_dropped_units_total{stream=\"cam\"} "),
        "{metrics}"
    );
    assert!(
        metrics.contains("corecast_stream_corrupt_units_total{stream=\"cam\",track=\"video\"} 0"),
        "{metrics}"
    );
    for (name, _, _) in &RENDITIONS[1..3] {
        for family in [
            "corecast_rung_encode_fps",
            "corecast_rung_dropped_frames_total",
            "corecast_rung_lag_ms",
        ] {
            let series = format!("{family}{{stream=\"cam\",rung=\"{name}\"}} ");
            assert!(metrics.contains(&series), "{series} missing in:\n{metrics}");
        }
    }

    // Until the stream ends (publisher gone + 2 s grace), then read the final playlists.
    let names: Vec<&str> = RENDITIONS.iter().map(|(name, _, _)| *name).collect();
    let playlists = server.wait_until_ended("cam", &names, Duration::from_secs(60));
    wait_success(&mut ffmpeg, Duration::from_secs(5), "ffmpeg");

    // Same numbers and durations in every rendition; about 10 s in 2 s segments.
    let source = &playlists[0];
    assert!(
        (4..=6).contains(&source.segments.len()),
        "{} segments:\n{}",
        source.segments.len(),
        source.text
    );
    assert_eq!(source.media_sequence, 0, "window 10 keeps every segment");
    for (playlist, (name, _, _)) in playlists.iter().zip(RENDITIONS) {
        assert!(
            !playlist.text.contains("#EXT-X-GAP"),
            "{name}:\n{}",
            playlist.text
        );
        assert_eq!(playlist.media_sequence, source.media_sequence, "{name}");
        assert_eq!(
            playlist.segments, source.segments,
            "{name} segments and durations"
        );
    }

    // Every rung segment starts with an IDR, decodes on its own (init + that segment only),
    // and has as many frames as the source's segment.
    let tmp = TempDir::new("ladder");
    let inits: Vec<Vec<u8>> = RENDITIONS
        .iter()
        .map(|(name, _, _)| {
            let init = server.get(&format!("/live/cam/{name}/init.mp4"));
            assert_eq!(init.status, 200, "{name}/init.mp4");
            init.body
        })
        .collect();
    let mut totals = [0usize; 3];
    for (uri, _, _) in &source.segments {
        let mut counts = Vec::new();
        for (index, (name, _, _)) in RENDITIONS.iter().enumerate() {
            let segment = server.get(&format!("/live/cam/{name}/{uri}"));
            assert_eq!(segment.status, 200, "{name}/{uri}");
            if index > 0 {
                assert_eq!(
                    first_slice_type(&segment.body),
                    Some(5),
                    "{name}/{uri} starts with an IDR slice"
                );
            }
            let path = tmp.path().join(format!("{name}-{uri}.mp4"));
            std::fs::write(&path, [inits[index].as_slice(), &segment.body].concat())
                .expect("write");
            let path = path.to_str().unwrap();
            let decoded = frames(path);
            assert_eq!(
                decoded.first(),
                Some(&(1, "I".to_owned())),
                "{name}/{uri} first frame"
            );
            let errors = ffmpeg_decode_errors(path);
            assert!(
                errors.trim().is_empty(),
                "{name}/{uri} decodes with errors: {errors}"
            );
            counts.push(decoded.len());
            totals[index] += decoded.len();
        }
        if !counts.iter().all(|&c| c == counts[0]) {
            for (name, _, _) in RENDITIONS {
                let path = tmp.path().join(format!("{name}-{uri}.mp4"));
                let probe = ffprobe_json(
                    &["-show_entries", "packet=pts,dts,flags"],
                    path.to_str().unwrap(),
                );
                eprintln!("{name}: {}", probe["packets"]);
            }
        }
        assert!(
            counts.iter().all(|&c| c == counts[0]),
            "{uri}: frames per rendition {counts:?}"
        );
    }
    assert!(
        (290..=310).contains(&totals[0]),
        "10 s at 30 fps: {totals:?}"
    );

    // The multivariant playlist lists the three video renditions with their exact CODECS.
    let multivariant = server.get("/live/cam/index.m3u8").text();
    let listed = variants(&multivariant);
    assert_eq!(listed.len(), 3, "{multivariant}");
    for ((attributes, uri), (name, width, height)) in listed.iter().zip(RENDITIONS) {
        assert_eq!(uri, &format!("{name}/index.m3u8"));
        assert!(
            attributes.contains(&format!("RESOLUTION={width}x{height}")),
            "{attributes}"
        );
        assert!(attributes.contains("FRAME-RATE=30.000"), "{attributes}");
        assert!(attributes.contains("AUDIO=\"audio\""), "{attributes}");
        assert!(attributes.contains("AVERAGE-BANDWIDTH="), "{attributes}");
        let path = tmp
            .path()
            .join(format!("{name}-{}.mp4", source.segments[0].0));
        let probe = ffprobe_json(
            &["-select_streams", "v:0", "-show_streams"],
            path.to_str().unwrap(),
        );
        let stream = &probe["streams"][0];
        assert_eq!(
            (stream["width"].as_u64(), stream["height"].as_u64()),
            (Some(width), Some(height)),
            "{name}"
        );
        // avc1.PPCCLL: profile and level from the SPS as ffprobe reads it; CC (constraint
        // flags) is not reported by ffprobe, so it is taken from the playlist.
        let codecs = attributes
            .split("CODECS=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("CODECS");
        let video_codec = codecs.split(',').next().expect("video codec");
        let expected = codec_string(stream);
        assert_eq!(video_codec.len(), 11, "{video_codec}");
        assert_eq!(
            format!("{}__{}", &video_codec[..7], &video_codec[9..]),
            expected,
            "{name}: {video_codec}"
        );
        assert!(codecs.ends_with(",mp4a.40.2"), "{codecs}");
    }

    // The DASH MPD: one video AdaptationSet with a Representation per rendition, readable by
    // ffprobe (which opens every Representation).
    let mpd = server.get("/live/cam/index.mpd").text();
    assert_eq!(mpd.matches("<AdaptationSet").count(), 2, "{mpd}");
    for (name, width, height) in RENDITIONS {
        assert!(
            mpd.contains(&format!("<Representation id=\"{name}\" codecs=\"avc1."))
                && mpd.contains(&format!("width=\"{width}\" height=\"{height}\"")),
            "{name}: {mpd}"
        );
    }
    let sizes = video_sizes(&server.url("/live/cam/index.mpd"));
    assert_eq!(
        sizes,
        [(320, 180), (426, 240), (640, 360)],
        "ffprobe of the MPD"
    );
}

/// A 4:2:2 source (H.264 High 4:2:2, as broadcast contribution encoders send) is passed through
/// as it is and gets an 8-bit 4:2:0 ladder: its pictures are converted before scaling.
#[test]
fn a_4_2_2_source_gets_an_8_bit_4_2_0_ladder() {
    let server = Server::start(CONFIG, &[]);
    let mut ffmpeg = ffmpeg_publish_with(&server.rtmp_url("cam"), 6, &["-pix_fmt", "yuv422p"]);
    let names: Vec<&str> = RENDITIONS.iter().map(|(name, _, _)| *name).collect();
    let playlists = server.wait_until_ended("cam", &names, Duration::from_secs(60));
    wait_success(&mut ffmpeg, Duration::from_secs(5), "ffmpeg");
    let multivariant = server.get("/live/cam/index.m3u8").text();
    assert!(
        multivariant.contains("CODECS=\"avc1.7a"),
        "the source is High 4:2:2:\n{multivariant}"
    );
    let tmp = TempDir::new("ladder-422");
    for ((name, width, height), playlist) in RENDITIONS.iter().zip(&playlists) {
        assert!(!playlist.segments.is_empty(), "{name}");
        assert_eq!(playlist.segments, playlists[0].segments, "{name} segments");
        let init = server.get(&format!("/live/cam/{name}/init.mp4")).body;
        let (uri, _, _) = &playlist.segments[0];
        let segment = server.get(&format!("/live/cam/{name}/{uri}")).body;
        let path = tmp.path().join(format!("{name}.mp4"));
        std::fs::write(&path, [init, segment].concat()).expect("write");
        let path = path.to_str().unwrap();
        let probe = ffprobe_json(&["-select_streams", "v:0", "-show_streams"], path);
        let stream = &probe["streams"][0];
        let expected = if *name == "source" {
            "yuv422p"
        } else {
            "yuv420p"
        };
        assert_eq!(stream["pix_fmt"], expected, "{name}: {stream}");
        assert_eq!(stream["width"].as_u64(), Some(*width), "{name}");
        assert_eq!(stream["height"].as_u64(), Some(*height), "{name}");
        let errors = ffmpeg_decode_errors(path);
        assert!(
            errors.trim().is_empty(),
            "{name} decodes with errors: {errors}"
        );
    }
}
