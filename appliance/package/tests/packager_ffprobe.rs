//! End to end: real ffmpeg output (H.264 with B-frames + AAC) through the live packager,
//! written out as files, read back by ffprobe as HLS (fMP4 and TS) and DASH.
//!
//! The units come from an MP4 that ffmpeg writes (corecast-testmedia's `TestSource`): ffprobe
//! lists each packet's timestamps, flags and place in the file, and the samples there
//! (length-prefixed NAL units, raw AAC) are exactly what ingest hands the packager. A missing
//! ffmpeg fails the test saying how to install it; `CORECAST_KEEP_OUTPUT=1` keeps the files.

use std::path::Path;

use corecast_package::{LivePackager, PackagerConfig, PackagerOutput};
use media::{AacConfig, AccessUnit, AvcConfig, Codec};
use testmedia::{TempDir, TestSource, ffprobe_json};

const SECONDS: u32 = 7;
const FPS: u32 = 30;
const T0: i64 = 1_709_294_400_000;

struct Input {
    video: AvcConfig,
    audio: AacConfig,
    /// Units in file order (interleaved as a muxer would send them).
    units: Vec<AccessUnit>,
}

fn make_input(dir: &Path) -> Input {
    let media = TestSource::new(640, 360, SECONDS).with_audio().make(dir);
    Input {
        video: media.video,
        audio: media.audio.expect("audio stream"),
        units: media.units,
    }
}

/// Runs the packager over the input, applying each committed batch to files under `out`.
fn package(input: &Input, out: &Path) -> LivePackager {
    let mut packager = LivePackager::new(PackagerConfig {
        window: 100, // keep every segment, so ffprobe sees the whole stream
        ..PackagerConfig::default()
    });
    let apply = |packager: &mut LivePackager| {
        let mut batch = Vec::new();
        while let Some(output) = packager.poll_output() {
            match output {
                PackagerOutput::Commit => {
                    for change in batch.drain(..) {
                        match change {
                            PackagerOutput::Put { path, body, .. } => {
                                let file = out.join(path);
                                std::fs::create_dir_all(file.parent().expect("parent"))
                                    .expect("mkdir");
                                std::fs::write(file, body).expect("write object");
                            }
                            PackagerOutput::Remove { path } => {
                                std::fs::remove_file(out.join(path)).expect("remove object");
                            }
                            PackagerOutput::Commit => {}
                        }
                    }
                }
                other => batch.push(other),
            }
        }
    };
    packager.handle_start(T0, Some(input.video.clone()), Some(input.audio.clone()));
    for unit in &input.units {
        let ms = match unit.codec {
            Codec::H264 => unit.dts / 90,
            _ => unit.dts * 1000 / i64::from(input.audio.sample_rate),
        };
        packager.handle_unit(T0 + ms.max(0), unit.clone());
        apply(&mut packager);
    }
    packager.handle_publisher_gone(T0 + i64::from(SECONDS) * 1000);
    packager.handle_end(T0 + i64::from(SECONDS) * 1000 + 10_000);
    apply(&mut packager);
    packager
}

/// (codec, width, height, frames read) of every stream ffprobe finds.
fn probe_streams(path: &Path) -> Vec<(String, i64, i64, i64)> {
    let json = ffprobe_json(
        &[
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,height,nb_read_frames",
        ],
        path,
    );
    json["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            (
                s["codec_name"].as_str().unwrap_or("").to_string(),
                s["width"].as_i64().unwrap_or(0),
                s["height"].as_i64().unwrap_or(0),
                s["nb_read_frames"]
                    .as_str()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0),
            )
        })
        .collect()
}

fn check_streams(what: &str, streams: &[(String, i64, i64, i64)]) {
    eprintln!("{what}: {streams:?}");
    let video: Vec<_> = streams.iter().filter(|s| s.0 == "h264").collect();
    let audio: Vec<_> = streams.iter().filter(|s| s.0 == "aac").collect();
    assert!(
        !video.is_empty() && !audio.is_empty(),
        "{what}: {streams:?}"
    );
    for v in video {
        assert_eq!((v.1, v.2), (640, 360), "{what}: resolution");
        assert_eq!(v.3, i64::from(SECONDS * FPS), "{what}: every video frame");
    }
    // 7 s of 48 kHz AAC is 328 frames; the packager trims audio before the first picture.
    for a in audio {
        assert!((320..=330).contains(&a.3), "{what}: audio frames {}", a.3);
    }
}

#[test]
fn ffprobe_reads_hls_ts_and_dash_output() {
    let dir = TempDir::new("packager-ffprobe");
    let input = make_input(dir.path());
    assert!(
        input.units.iter().any(|u| u.pts != u.dts),
        "input has B-frames"
    );
    let out = dir.path().join("live");
    let packager = package(&input, &out);
    assert_eq!(packager.published_segments(), 4, "2 + 2 + 2 + 1 s");

    let multivariant = std::fs::read_to_string(out.join("index.m3u8")).expect("index.m3u8");
    assert!(
        multivariant.contains("RESOLUTION=640x360,FRAME-RATE=30.000"),
        "{multivariant}"
    );
    assert!(multivariant.contains(&format!(
        "CODECS=\"{},mp4a.40.2\"",
        input.video.codec_string()
    )));
    let source = std::fs::read_to_string(out.join("source/index.m3u8")).expect("playlist");
    let durations: Vec<f64> = source
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|d| d.trim_end_matches(',').parse().expect("EXTINF"))
        .collect();
    assert_eq!(durations, [2.0, 2.0, 2.0, 1.0], "{source}");
    assert!(source.ends_with("#EXT-X-ENDLIST\n"));

    check_streams("HLS fMP4", &probe_streams(&out.join("index.m3u8")));
    check_streams("HLS TS", &probe_streams(&out.join("ts/index.m3u8")));
    check_streams("DASH", &probe_streams(&out.join("index.mpd")));

    // Video timestamps run on across segment boundaries: every frame 1/30 s after the last.
    let json = ffprobe_json(
        &["-select_streams", "v", "-show_entries", "packet=dts"],
        out.join("source/index.m3u8"),
    );
    let dts: Vec<i64> = json["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .filter_map(|p| p["dts"].as_i64())
        .collect();
    assert_eq!(dts.len(), (SECONDS * FPS) as usize);
    assert!(
        dts.windows(2).all(|w| w[1] - w[0] == 3000),
        "contiguous dts"
    );
}
