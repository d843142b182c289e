//! The built-in demo stream plays with no publisher.

use std::time::Duration;

use corecast_e2e::{MediaPlaylist, Server, TempDir, ffprobe_json};

#[test]
fn demo_stream_is_playable_without_a_publisher() {
    let server = Server::start(
        "[demo]\nwidth = 640\nheight = 360\nfps = 30\nvideo_kbps = 600\n",
        &[],
    );
    let media = server.wait_for(
        "/live/demo/source/index.m3u8",
        Duration::from_secs(30),
        |t| MediaPlaylist::parse(t).segments.len() >= 2,
    );
    let playlist = MediaPlaylist::parse(&media.text());
    let probe = ffprobe_json(&["-show_streams"], server.url("/live/demo/index.m3u8"));
    let streams = probe["streams"].as_array().expect("streams");
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap_or_else(|| panic!("no video in {probe}"));
    assert_eq!(video["codec_name"], "h264");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert!(
        streams.iter().any(|s| s["codec_name"] == "aac"),
        "no audio in {probe}"
    );

    // One whole segment decodes to exactly 2 s of frames, starting on a keyframe.
    let tmp = TempDir::new("demo");
    let file = tmp.path().join("seg.mp4");
    let mut bytes = server.get("/live/demo/source/init.mp4").body;
    let (uri, duration, _) = &playlist.segments[0];
    bytes.extend(server.get(&format!("/live/demo/source/{uri}")).body);
    std::fs::write(&file, bytes).unwrap();
    let frames = ffprobe_json(
        &["-select_streams", "v:0", "-show_entries", "frame=key_frame"],
        file.to_str().unwrap(),
    );
    let frames = frames["frames"].as_array().expect("frames");
    assert_eq!(frames.len(), 60, "a {duration} s segment at 30 fps");
    assert_eq!(frames[0]["key_frame"], 1);
    assert!(
        (duration - 2.0).abs() < 0.01,
        "demo segments are exactly 2 s: {duration}"
    );
}
