//! RTMP in (real ffmpeg, 640x360 with B-frames and a 2 s GOP) through a ladder with one H.264
//! rung and two tiny HEVC rungs (320x180: x265, and NVENC with `fallback = "cpu"`, which on a
//! box without an NVIDIA driver runs on x265 too), with `decoder = "auto"` (NVDEC where there
//! is one, else the CPU). Served over HLS and DASH and checked with real ffprobe / ffmpeg:
//! every HEVC segment starts with an IDR at the same pts as the H.264 rung's IDR and decodes on
//! its own (init + that segment), the multivariant playlist lists each HEVC rung as its own
//! variant with an `hvc1` CODECS string, and in DASH the HEVC rungs are their own
//! AdaptationSet.

use std::time::{Duration, Instant};

use corecast_e2e::{
    MediaPlaylist, Server, TempDir, ffmpeg_decode_errors, ffmpeg_publish, ffprobe_json, wait_child,
};

const CONFIG: &str = r#"
[demo]
enabled = false
[packaging]
window = 10
grace_period_seconds = 2
[transcode]
enabled = true
decoder = "auto"
[[transcode.rungs]]
name = "180p"
height = 180
bitrate_kbps = 150
maxrate_kbps = 200
preset = "ultrafast"
[[transcode.rungs]]
name = "180p-hevc"
codec = "hevc"
height = 180
bitrate_kbps = 150
maxrate_kbps = 200
preset = "ultrafast"
[[transcode.rungs]]
name = "180p-hevc-gpu"
codec = "hevc"
encoder = "nvenc"
fallback = "cpu"
height = 180
bitrate_kbps = 150
maxrate_kbps = 200
preset = "ultrafast"
"#;

const H264_RUNG: &str = "180p";
const HEVC_RUNGS: [&str; 2] = ["180p-hevc", "180p-hevc-gpu"];

/// (pts, key) of every packet of a file, as ffprobe reads them.
fn packets(path: &str) -> Vec<(i64, bool)> {
    let probe = ffprobe_json(&["-show_entries", "packet=pts,flags"], path);
    probe["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|p| {
            (
                p["pts"].as_i64().unwrap_or(-1),
                p["flags"].as_str().unwrap_or("").starts_with('K'),
            )
        })
        .collect()
}

#[test]
fn hevc_rungs_are_served_aligned_with_the_h264_rung() {
    let server = Server::start(CONFIG, &[]);
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url("cam"), 8);
    let names: Vec<&str> = std::iter::once("source")
        .chain(std::iter::once(H264_RUNG))
        .chain(HEVC_RUNGS)
        .collect();

    let deadline = Instant::now() + Duration::from_secs(90);
    let playlists: Vec<MediaPlaylist> = loop {
        let playlists: Vec<MediaPlaylist> = names
            .iter()
            .map(|name| {
                MediaPlaylist::parse(&server.get(&format!("/live/cam/{name}/index.m3u8")).text())
            })
            .collect();
        if playlists.iter().all(|p| p.ended) {
            break playlists;
        }
        assert!(
            Instant::now() < deadline,
            "playlists never ended:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let out = wait_child(&mut ffmpeg, Duration::from_secs(5));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let source = &playlists[0];
    assert!(source.segments.len() >= 3, "{}", source.text);
    for (playlist, name) in playlists.iter().zip(&names) {
        assert_eq!(
            playlist.segments, source.segments,
            "{name}: segments and durations"
        );
    }

    let tmp = TempDir::new("ladder-hevc");
    let init = |name: &str| {
        let init = server.get(&format!("/live/cam/{name}/init.mp4"));
        assert_eq!(init.status, 200, "{name}/init.mp4");
        init.body
    };
    let h264_init = init(H264_RUNG);
    for (uri, _, _) in &source.segments {
        let h264 = server.get(&format!("/live/cam/{H264_RUNG}/{uri}"));
        let h264_path = tmp.path().join(format!("h264-{uri}.mp4"));
        std::fs::write(&h264_path, [h264_init.as_slice(), &h264.body].concat()).expect("write");
        let h264_packets = packets(h264_path.to_str().unwrap());
        let idr = h264_packets.first().copied().expect("H.264 packets");
        assert!(idr.1, "{H264_RUNG}/{uri} starts with an IDR");
        for name in HEVC_RUNGS {
            let segment = server.get(&format!("/live/cam/{name}/{uri}"));
            assert_eq!(segment.status, 200, "{name}/{uri}");
            let path = tmp.path().join(format!("{name}-{uri}.mp4"));
            std::fs::write(&path, [init(name).as_slice(), &segment.body].concat()).expect("write");
            let path = path.to_str().unwrap();
            let probe = ffprobe_json(
                &[
                    "-show_entries",
                    "stream=codec_name,codec_tag_string,width,height",
                ],
                path,
            );
            let stream = &probe["streams"][0];
            assert_eq!(stream["codec_name"], "hevc", "{name}/{uri}");
            assert_eq!(stream["codec_tag_string"], "hvc1", "{name}/{uri}");
            assert_eq!(stream["width"], 320, "{name}/{uri}");
            let errors = ffmpeg_decode_errors(path);
            assert!(errors.trim().is_empty(), "{name}/{uri}: {errors}");
            let hevc_packets = packets(path);
            assert_eq!(
                hevc_packets.first().copied(),
                Some(idr),
                "{name}/{uri}: IDR at the H.264 rung's IDR pts"
            );
            assert_eq!(
                hevc_packets.iter().filter(|p| p.1).count(),
                1,
                "{name}/{uri}: one IDR, at the start"
            );
            assert_eq!(
                hevc_packets.len(),
                h264_packets.len(),
                "{name}/{uri}: frames"
            );
        }
    }

    // HLS: each HEVC rung is its own variant with an hvc1 CODECS string.
    let multivariant = server.get("/live/cam/index.m3u8").text();
    for name in HEVC_RUNGS {
        let attributes = multivariant
            .lines()
            .collect::<Vec<_>>()
            .windows(2)
            .find(|pair| pair[1] == format!("{name}/index.m3u8"))
            .map(|pair| pair[0].to_owned())
            .unwrap_or_else(|| panic!("{name} not listed:\n{multivariant}"));
        assert!(attributes.contains("CODECS=\"hvc1.1."), "{attributes}");
        assert!(attributes.contains("RESOLUTION=320x180"), "{attributes}");
    }

    // DASH: the HEVC Representations sit in an AdaptationSet without avc1 ones.
    let mpd = server.get("/live/cam/index.mpd").text();
    let sets: Vec<&str> = mpd.split("<AdaptationSet").skip(1).collect();
    let hevc_set = sets
        .iter()
        .find(|set| set.contains("codecs=\"hvc1"))
        .unwrap_or_else(|| panic!("no HEVC AdaptationSet:\n{mpd}"));
    assert!(!hevc_set.contains("codecs=\"avc1"), "{mpd}");
    for name in HEVC_RUNGS {
        assert!(hevc_set.contains(&format!("id=\"{name}\"")), "{mpd}");
    }

    // Without an NVIDIA driver the log says why the GPU rung and the decoder run on the CPU.
    if !std::path::Path::new("/proc/driver/nvidia/version").exists() {
        let log = server.log_text();
        assert!(
            log.contains("NVENC unavailable") && log.contains("NVDEC unavailable"),
            "{log}"
        );
    }
}
