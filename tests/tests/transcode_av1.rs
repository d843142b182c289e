//! RTMP in (real ffmpeg, 640x360 with B-frames and a 2 s GOP) through a ladder with one H.264
//! rung and two tiny AV1 rungs (320x180: SVT-AV1, the default AV1 encoder, and rav1e at speed
//! 10), served over HLS and DASH. Checked with real ffprobe / ffmpeg (libdav1d): every AV1
//! segment starts with a key frame at the same pts as the H.264 rung's IDR, decodes on its own
//! (init + that segment), its CODECS string is `av01.*`, and in DASH the AV1 rungs are their
//! own AdaptationSet (players cannot switch codecs inside one).

use std::time::Duration;

use corecast_e2e::codec_rungs::CodecRungs;
use corecast_e2e::{Server, ffmpeg_publish, wait_success};

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

const AV1_RUNGS: [&str; 2] = ["180p-av1", "180p-rav1e"];

#[test]
fn av1_rungs_are_served_aligned_with_the_h264_rungs() {
    let server = Server::start(CONFIG, &[]);
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url("cam"), 10);
    let rungs = CodecRungs {
        stream: "cam",
        h264_rung: "180p",
        rungs: &AV1_RUNGS,
        codec_name: "av1",
        codec_tag: None,
        hls_codecs: "av01.0.",
        dash_codecs: "av01",
        size: (320, 180),
        one_key_frame_per_segment: false,
    };
    rungs.check_after_the_publish(&server, 4, Duration::from_secs(90));
    wait_success(&mut ffmpeg, Duration::from_secs(5), "ffmpeg");
}
