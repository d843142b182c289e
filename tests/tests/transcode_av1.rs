//! RTMP in (real ffmpeg, 640x360 with B-frames and a 2 s GOP) through a ladder with one H.264
//! rung and two tiny AV1 rungs (320x180: SVT-AV1, the default AV1 encoder, and rav1e at speed
//! 10), served over HLS and DASH. Checked with real ffprobe / ffmpeg (libdav1d): every AV1
//! segment starts with a key frame at the same pts as the H.264 rung's IDR, decodes on its own
//! (init + that segment), its CODECS string is `av01.*`, and in DASH the AV1 rungs are their
//! own AdaptationSet (players cannot switch codecs inside one).

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
[[transcode.rungs]]
name = "180p"
height = 180
bitrate_kbps = 150
maxrate_kbps = 200
preset = "ultrafast"
[[transcode.rungs]]
name = "180p-av1"
codec = "av1"
height = 180
bitrate_kbps = 150
maxrate_kbps = 200
[[transcode.rungs]]
name = "180p-rav1e"
codec = "av1"
encoder = "rav1e"
av1_preset = 10
height = 180
bitrate_kbps = 150
maxrate_kbps = 200
"#;

const H264_RUNG: &str = "180p";
const AV1_RUNGS: [&str; 2] = ["180p-av1", "180p-rav1e"];

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
fn av1_rungs_are_served_aligned_with_the_h264_rungs() {
    let server = Server::start(CONFIG, &[]);
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url("cam"), 10);
    let names: Vec<&str> = std::iter::once("source")
        .chain(std::iter::once(H264_RUNG))
        .chain(AV1_RUNGS)
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
    assert!(source.segments.len() >= 4, "{}", source.text);
    for (playlist, name) in playlists.iter().zip(&names) {
        assert_eq!(
            playlist.segments, source.segments,
            "{name}: segments and durations"
        );
    }

    let tmp = TempDir::new("ladder-av1");
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
        for name in AV1_RUNGS {
            let segment = server.get(&format!("/live/cam/{name}/{uri}"));
            assert_eq!(segment.status, 200, "{name}/{uri}");
            let path = tmp.path().join(format!("{name}-{uri}.mp4"));
            std::fs::write(&path, [init(name).as_slice(), &segment.body].concat()).expect("write");
            let path = path.to_str().unwrap();
            let probe = ffprobe_json(&["-show_entries", "stream=codec_name,width,height"], path);
            assert_eq!(probe["streams"][0]["codec_name"], "av1", "{name}/{uri}");
            assert_eq!(probe["streams"][0]["width"], 320, "{name}/{uri}");
            let errors = ffmpeg_decode_errors(path);
            assert!(errors.trim().is_empty(), "{name}/{uri}: {errors}");
            let av1_packets = packets(path);
            assert_eq!(
                av1_packets.first().copied(),
                Some(idr),
                "{name}/{uri}: key frame at the H.264 rung's IDR pts"
            );
            assert_eq!(
                av1_packets.len(),
                h264_packets.len(),
                "{name}/{uri}: frames"
            );
        }
    }

    // HLS: each AV1 rung is its own variant with an av01 CODECS string.
    let multivariant = server.get("/live/cam/index.m3u8").text();
    for name in AV1_RUNGS {
        let attributes = multivariant
            .lines()
            .collect::<Vec<_>>()
            .windows(2)
            .find(|pair| pair[1] == format!("{name}/index.m3u8"))
            .map(|pair| pair[0].to_owned())
            .unwrap_or_else(|| panic!("{name} not listed:\n{multivariant}"));
        assert!(attributes.contains("CODECS=\"av01.0."), "{attributes}");
        assert!(attributes.contains("RESOLUTION=320x180"), "{attributes}");
    }

    // DASH: the AV1 Representations sit in an AdaptationSet without avc1 ones.
    let mpd = server.get("/live/cam/index.mpd").text();
    let sets: Vec<&str> = mpd.split("<AdaptationSet").skip(1).collect();
    let av1_set = sets
        .iter()
        .find(|set| set.contains("codecs=\"av01"))
        .unwrap_or_else(|| panic!("no AV1 AdaptationSet:\n{mpd}"));
    assert!(!av1_set.contains("codecs=\"avc1"), "{mpd}");
    for name in AV1_RUNGS {
        assert!(av1_set.contains(&format!("id=\"{name}\"")), "{mpd}");
    }
}
