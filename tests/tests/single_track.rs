//! Audio-only and video-only publishers get playable streams with just their one track.

use std::time::Duration;

use corecast_e2e::{MediaPlaylist, Server, ffmpeg_publish_with, ffprobe_json, wait_child};

fn codecs_of(server: &Server, path: &str) -> Vec<String> {
    let probe = ffprobe_json(&["-show_streams"], server.url(path));
    probe["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["codec_name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn video_only_and_audio_only_publishers_are_served() {
    let server = Server::start(
        "[demo]\nenabled = false\n[packaging]\ngrace_period_seconds = 1\n",
        &[],
    );
    let mut video_only = ffmpeg_publish_with(&server.rtmp_url("vonly"), 7, &["-an"]);
    let mut audio_only = ffmpeg_publish_with(&server.rtmp_url("aonly"), 7, &["-vn"]);
    for child in [&mut video_only, &mut audio_only] {
        let out = wait_child(child, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for stream in ["vonly", "aonly"] {
        server.wait_for(
            &format!("/live/{stream}/index.m3u8"),
            Duration::from_secs(10),
            |_| true,
        );
        server.wait_for(
            &format!("/live/{stream}/ts/index.m3u8"),
            Duration::from_secs(10),
            |t| t.contains("#EXT-X-ENDLIST"),
        );
    }

    let master = server.get("/live/vonly/index.m3u8").text();
    assert!(
        !master.contains("TYPE=AUDIO"),
        "video-only has no audio group:\n{master}"
    );
    assert!(!master.contains("mp4a"), "{master}");
    assert_eq!(server.get("/live/vonly/audio/index.m3u8").status, 404);
    assert_eq!(codecs_of(&server, "/live/vonly/index.m3u8"), ["h264"]);
    assert_eq!(codecs_of(&server, "/live/vonly/ts/index.m3u8"), ["h264"]);
    assert_eq!(codecs_of(&server, "/live/vonly/index.mpd"), ["h264"]);

    let master = server.get("/live/aonly/index.m3u8").text();
    assert!(
        !master.contains("avc1") && !master.contains("RESOLUTION"),
        "{master}"
    );
    assert!(master.contains("CODECS=\"mp4a.40.2\""), "{master}");
    assert_eq!(server.get("/live/aonly/source/index.m3u8").status, 404);
    assert_eq!(codecs_of(&server, "/live/aonly/index.m3u8"), ["aac"]);
    assert_eq!(codecs_of(&server, "/live/aonly/ts/index.m3u8"), ["aac"]);
    assert_eq!(codecs_of(&server, "/live/aonly/index.mpd"), ["aac"]);
    let audio = MediaPlaylist::parse(&server.get("/live/aonly/audio/index.m3u8").text());
    assert!(audio.ended && audio.segments.len() >= 3, "{}", audio.text);
}
