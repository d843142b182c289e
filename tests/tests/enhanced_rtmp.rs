//! Enhanced RTMP in (HEVC and AV1 in FourCC video tags, AAC as usual), CMAF HLS + DASH (+ HLS
//! TS for HEVC) out, checked with real ffprobe / ffmpeg. No tool in Debian 12 sends Enhanced
//! RTMP, so ffmpeg encodes with libx265 / libaom-av1 into an MP4 and the test's own publisher
//! (corecast_e2e::enhanced_rtmp, written from the specification) sends it in real time.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use corecast_e2e::enhanced_rtmp::{EnhancedRtmpPublisher, Mp4Media};
use corecast_e2e::{
    MediaPlaylist, Server, TempDir, ffmpeg_decode_errors, ffprobe_json, require_tool,
};
use media::{Av1Config, HevcConfig};

fn encode(dir: &Path, name: &str, video_args: &[&str], size: &str, seconds: &str) -> Mp4Media {
    require_tool("ffmpeg");
    let path = dir.join(format!("{name}.mp4"));
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=25"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", seconds])
        .args(video_args)
        .args(["-c:a", "aac", "-b:a", "64k", "-ac", "2"])
        .arg(&path)
        .output()
        .expect("run ffmpeg");
    assert!(
        output.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Mp4Media::read(&path)
}

fn server(extra: &str) -> Server {
    Server::start(
        &format!(
            "[demo]\nenabled = false\n[packaging]\nsegment_seconds = 1\nwindow = 30\n\
             grace_period_seconds = 1\n{extra}"
        ),
        &[],
    )
}

/// A ladder the AV1 stream cannot feed: the ladder decodes H.264 (and HEVC) only.
const LADDER: &str = "[transcode]\nenabled = true\n[[transcode.rungs]]\nname = \"120p\"\n\
                      height = 120\nbitrate_kbps = 100\nmaxrate_kbps = 150\n\
                      preset = \"ultrafast\"\n";

/// Waits until `dir/index.m3u8` of `stream` has ended, then writes init + every segment to
/// `out` and returns the playlist.
fn download_ended(server: &Server, stream: &str, dir: &str, out: &Path) -> MediaPlaylist {
    let path = format!("/live/{stream}/{dir}/index.m3u8");
    let response = server.wait_for(&path, Duration::from_secs(40), |text| {
        text.contains("#EXT-X-ENDLIST")
    });
    let playlist = MediaPlaylist::parse(&response.text());
    let mut bytes = Vec::new();
    if dir != "ts" {
        let init = server.get(&format!("/live/{stream}/{dir}/init.mp4"));
        assert_eq!(init.status, 200, "{dir}/init.mp4");
        bytes.extend_from_slice(&init.body);
    }
    for (uri, _, _) in &playlist.segments {
        let segment = server.get(&format!("/live/{stream}/{dir}/{uri}"));
        assert_eq!(segment.status, 200, "{dir}/{uri}");
        bytes.extend_from_slice(&segment.body);
    }
    std::fs::write(out, bytes).unwrap();
    playlist
}

fn video_stream(path: &str) -> serde_json::Value {
    let probe = ffprobe_json(&["-select_streams", "v", "-show_streams"], path);
    probe["streams"][0].clone()
}

fn assert_decodes(path: &Path) {
    let errors = ffmpeg_decode_errors(path);
    assert!(errors.trim().is_empty(), "{}: {errors}", path.display());
}

/// The CODECS attribute of the first variant of the multivariant playlist.
fn variant_codecs(server: &Server, stream: &str) -> String {
    let text = server.get(&format!("/live/{stream}/index.m3u8")).text();
    let line = text
        .lines()
        .find(|line| line.starts_with("#EXT-X-STREAM-INF:"))
        .unwrap_or_else(|| panic!("no variant in {text}"));
    let codecs = line.split("CODECS=\"").nth(1).expect("CODECS");
    codecs[..codecs.find('"').unwrap()].to_owned()
}

#[test]
fn enhanced_rtmp_hevc_is_served_as_hvc1_cmaf_dash_and_ts() {
    let temp = TempDir::new("ertmp-hevc");
    let dir = temp.path();
    // 5 s of 640x360 HEVC with B-frames (composition times on the wire), IRAP every second.
    let media = encode(
        dir,
        "x265",
        &[
            "-c:v",
            "libx265",
            "-preset",
            "ultrafast",
            "-x265-params",
            "log-level=error:keyint=25:min-keyint=25:scenecut=0:bframes=2",
            "-tag:v",
            "hvc1",
        ],
        "640x360",
        "5",
    );
    let expected_codec = HevcConfig::from_record(&media.video_record)
        .expect("ffmpeg's hvcC parses")
        .codec_string();
    assert!(
        media
            .packets
            .iter()
            .any(|p| p.video && p.pts_ms != p.dts_ms),
        "the source has B-frames"
    );

    let server = server("");
    let publisher = EnhancedRtmpPublisher::publish(server.rtmp, "live", "hevc");
    let live = std::thread::spawn({
        let http = server.http;
        move || {
            // While publishing: the multivariant playlist names the codec.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let response = corecast_e2e::http_get(http, "/live/hevc/index.m3u8");
                if response.status == 200 {
                    return response.text();
                }
                assert!(Instant::now() < deadline, "no multivariant playlist");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    });
    publisher.publish_media(&media);
    let multivariant = live.join().unwrap();
    assert!(multivariant.contains("hvc1."), "{multivariant}");

    let codecs = variant_codecs(&server, "hevc");
    assert!(codecs.starts_with("hvc1."), "{codecs}");
    assert_eq!(codecs.split(',').next().unwrap(), expected_codec);
    assert!(codecs.contains("mp4a.40.2"), "{codecs}");

    // CMAF video: hevc in an hvc1 sample entry, at the source size, decoding cleanly.
    let cmaf = dir.join("source.mp4");
    let playlist = download_ended(&server, "hevc", "source", &cmaf);
    assert!(playlist.segments.len() >= 3, "{:?}", playlist.segments);
    let stream = video_stream(cmaf.to_str().unwrap());
    assert_eq!(stream["codec_name"], "hevc");
    assert_eq!(stream["codec_tag_string"], "hvc1");
    assert_eq!(
        (stream["width"].as_i64(), stream["height"].as_i64()),
        (Some(640), Some(360))
    );
    assert_decodes(&cmaf);

    // HLS TS: HEVC (stream_type 0x24) and AAC.
    let ts = dir.join("all.ts");
    download_ended(&server, "hevc", "ts", &ts);
    let probe = ffprobe_json(&["-show_streams"], ts.to_str().unwrap());
    let names: Vec<&str> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["codec_name"].as_str())
        .collect();
    assert!(
        names.contains(&"hevc") && names.contains(&"aac"),
        "{names:?}"
    );
    assert_decodes(&ts);

    // DASH: the MPD names the codec and ffprobe reads the stream through it.
    let mpd = server.get("/live/hevc/index.mpd").text();
    assert!(
        mpd.contains(&format!("codecs=\"{expected_codec}\"")),
        "{mpd}"
    );
    let stream = video_stream(&server.url("/live/hevc/index.mpd"));
    assert_eq!(stream["codec_name"], "hevc");
    assert_eq!(stream["width"].as_i64(), Some(640));
}

#[test]
fn enhanced_rtmp_av1_is_served_as_av01_cmaf_and_dash_without_ts_even_with_a_ladder() {
    let temp = TempDir::new("ertmp-av1");
    let dir = temp.path();
    // Small and short: AV1 encoding is slow on this box.
    let media = encode(
        dir,
        "libaom",
        &[
            "-c:v",
            "libaom-av1",
            "-cpu-used",
            "8",
            "-row-mt",
            "1",
            "-g",
            "25",
            "-keyint_min",
            "25",
        ],
        "256x144",
        "4",
    );
    let expected_codec = Av1Config::from_record(&media.video_record)
        .expect("ffmpeg's av1C parses")
        .codec_string();

    let server = server(LADDER);
    EnhancedRtmpPublisher::publish(server.rtmp, "live", "av1").publish_media(&media);

    let cmaf = dir.join("source.mp4");
    let playlist = download_ended(&server, "av1", "source", &cmaf);
    assert!(playlist.segments.len() >= 2, "{:?}", playlist.segments);
    let codecs = variant_codecs(&server, "av1");
    assert_eq!(codecs.split(',').next().unwrap(), expected_codec);
    assert!(codecs.starts_with("av01.0."), "{codecs}");
    let stream = video_stream(cmaf.to_str().unwrap());
    assert_eq!(stream["codec_name"], "av1");
    assert_eq!(stream["codec_tag_string"], "av01");
    assert_eq!(
        (stream["width"].as_i64(), stream["height"].as_i64()),
        (Some(256), Some(144))
    );
    assert_decodes(&cmaf);

    let mpd = server.get("/live/av1/index.mpd").text();
    assert!(
        mpd.contains(&format!("codecs=\"{expected_codec}\"")),
        "{mpd}"
    );
    // No TS variant for AV1.
    assert_eq!(server.get("/live/av1/ts/index.m3u8").status, 404);
    // The ladder could not take AV1: the source went out alone, and the log says why.
    let log = server.log_text();
    assert!(
        log.contains("transcode ladder") && log.contains("passthrough only"),
        "{log}"
    );
    assert_eq!(server.get("/live/av1/120p/index.m3u8").status, 404);
}

/// x265 settings of the sources below: cheap, B-frames, an IRAP every second.
const X265: [&str; 8] = [
    "-c:v",
    "libx265",
    "-preset",
    "ultrafast",
    "-x265-params",
    "log-level=error:keyint=25:min-keyint=25:scenecut=0:bframes=2:pools=2",
    "-tag:v",
    "hvc1",
];

#[test]
fn an_hevc_source_also_gets_the_h264_ladder_when_transcoding_is_on() {
    // 8-bit Main, and Main 10 (HEVC cameras often send it): the ladder converts 10-bit
    // pictures to 8-bit 4:2:0 before scaling.
    let main10: Vec<&str> = X265
        .iter()
        .copied()
        .chain(["-pix_fmt", "yuv420p10le"])
        .collect();
    for (stream_name, args, profile, source_pix_fmt) in [
        ("hevcladder", &X265[..], "hvc1.1.", "yuv420p"),
        ("hevc10ladder", &main10[..], "hvc1.2.", "yuv420p10le"),
    ] {
        let temp = TempDir::new("ertmp-hevc-ladder");
        let dir = temp.path();
        let media = encode(dir, "x265", args, "640x360", "4");
        let server = server(LADDER);
        EnhancedRtmpPublisher::publish(server.rtmp, "live", stream_name).publish_media(&media);

        // The rung: H.264 made from the HEVC source, at 120 px and the source's 16:9.
        let rung = dir.join("rung.mp4");
        let playlist = download_ended(&server, stream_name, "120p", &rung);
        assert!(playlist.segments.len() >= 3, "{:?}", playlist.segments);
        let stream = video_stream(rung.to_str().unwrap());
        assert_eq!(stream["codec_name"], "h264");
        assert_eq!(stream["pix_fmt"], "yuv420p", "{stream_name}");
        assert_eq!(
            (stream["width"].as_i64(), stream["height"].as_i64()),
            (Some(214), Some(120))
        );
        assert_decodes(&rung);
        // The source is passed through as it came.
        let source = dir.join("source.mp4");
        download_ended(&server, stream_name, "source", &source);
        let stream = video_stream(source.to_str().unwrap());
        assert_eq!(stream["pix_fmt"], source_pix_fmt, "{stream_name}");
        // H.264-only players find the rung; HEVC players still get the source.
        let text = server
            .get(&format!("/live/{stream_name}/index.m3u8"))
            .text();
        let variants: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("#EXT-X-STREAM-INF:"))
            .collect();
        assert!(
            variants
                .iter()
                .any(|v| v.contains(&format!("CODECS=\"{profile}"))),
            "{stream_name}: {text}"
        );
        assert!(
            variants.iter().any(|v| v.contains("CODECS=\"avc1.")),
            "{text}"
        );
    }
}

#[test]
fn a_resolution_change_mid_stream_rebuilds_the_ladder_after_a_discontinuity() {
    let temp = TempDir::new("ertmp-resize");
    let dir = temp.path();
    let h264 = |name: &str, size: &str| {
        encode(
            dir,
            name,
            &[
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-g",
                "25",
                "-keyint_min",
                "25",
                "-sc_threshold",
                "0",
                "-bf",
                "2",
                "-pix_fmt",
                "yuv420p",
            ],
            size,
            "3",
        )
    };
    let big = h264("big", "640x360");
    let small = h264("small", "320x180");
    assert_eq!(big.fourcc, *b"avc1");
    let server = server(LADDER);
    // One RTMP session: the encoder changes its output size after 3 s and sends a new AVC
    // sequence header, as OBS does when the output resolution changes.
    EnhancedRtmpPublisher::publish(server.rtmp, "live", "resize").publish_in_turn(&[big, small]);

    for (rendition, before, after) in [
        ("source", (640, 360), (320, 180)),
        ("120p", (214, 120), (214, 120)),
    ] {
        let response = server.wait_for(
            &format!("/live/resize/{rendition}/index.m3u8"),
            Duration::from_secs(40),
            |text| text.contains("#EXT-X-ENDLIST"),
        );
        let text = response.text();
        assert!(text.contains("#EXT-X-DISCONTINUITY"), "{rendition}: {text}");
        // Each side of the discontinuity decodes on its own, with the init segment in force
        // there (a new one where the parameters changed).
        let mut map = String::new();
        let mut parts: Vec<(String, Vec<String>)> = vec![(String::new(), Vec::new())];
        for line in text.lines() {
            if let Some(uri) = line.strip_prefix("#EXT-X-MAP:URI=\"") {
                map = uri.trim_end_matches('"').to_owned();
            } else if line == "#EXT-X-DISCONTINUITY" {
                parts.push((String::new(), Vec::new()));
            } else if !line.starts_with('#') && !line.is_empty() {
                let part = parts.last_mut().unwrap();
                part.0.clone_from(&map);
                part.1.push(line.to_owned());
            }
        }
        assert_eq!(parts.len(), 2, "{rendition}: {text}");
        if rendition == "source" {
            assert_ne!(
                parts[0].0, parts[1].0,
                "a new init for the new size: {text}"
            );
        }
        for (side, (map, segments)) in parts.iter().enumerate() {
            assert!(!segments.is_empty(), "{rendition} side {side}: {text}");
            let mut bytes = server.get(&format!("/live/resize/{rendition}/{map}")).body;
            for uri in segments {
                let segment = server.get(&format!("/live/resize/{rendition}/{uri}"));
                assert_eq!(segment.status, 200, "{rendition}/{uri}");
                bytes.extend_from_slice(&segment.body);
            }
            let path = dir.join(format!("{rendition}-{side}.mp4"));
            std::fs::write(&path, bytes).unwrap();
            let stream = video_stream(path.to_str().unwrap());
            let size = (stream["width"].as_i64(), stream["height"].as_i64());
            let (w, h) = if side == 0 { before } else { after };
            assert_eq!(size, (Some(w), Some(h)), "{rendition} side {side}");
            assert_decodes(&path);
        }
    }
}
