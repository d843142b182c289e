//! RTMP in (real ffmpeg, 640x360 with B-frames and a 2 s GOP) through a ladder with one H.264
//! rung and two tiny HEVC rungs (320x180: x265, and NVENC with `fallback = "cpu"`, which on a
//! box without an NVIDIA driver runs on x265 too), with `decoder = "auto"` (NVDEC where there
//! is one, else the CPU). Served over HLS and DASH and checked with real ffprobe / ffmpeg:
//! every HEVC segment starts with an IDR at the same pts as the H.264 rung's IDR and decodes on
//! its own (init + that segment), the multivariant playlist lists each HEVC rung as its own
//! variant with an `hvc1` CODECS string, and in DASH the HEVC rungs are their own
//! AdaptationSet.

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

const HEVC_RUNGS: [&str; 2] = ["180p-hevc", "180p-hevc-gpu"];

#[test]
fn hevc_rungs_are_served_aligned_with_the_h264_rung() {
    let server = Server::start(CONFIG, &[]);
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url("cam"), 8);
    // While the ladder runs, the stream's status says where the source is decoded and where
    // each rung is encoded, with the reasons for any fall-back.
    let no_driver = !std::path::Path::new("/proc/driver/nvidia/version").exists();
    server.wait_for(
        "/live/cam/180p-hevc/index.m3u8",
        Duration::from_secs(30),
        |t| t.contains("#EXTINF"),
    );
    let status: serde_json::Value =
        serde_json::from_slice(&server.api_get("/api/v1/streams/cam").body).expect("status");
    let rendition = |name: &str| {
        status["renditions"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no {name} rendition: {status}"))
    };
    let (source, gpu_rung) = (rendition("source"), rendition("180p-hevc-gpu"));
    assert_eq!(rendition("180p-hevc")["encoder"], "x265", "{status}");
    if no_driver {
        assert_eq!(source["decoder"], "cpu", "{source}");
        assert_eq!(source["scaler"], "cpu", "{source}");
        assert!(
            source["fallback_reason"]
                .as_str()
                .is_some_and(|r| r.contains(".so")),
            "{source}"
        );
        assert_eq!(gpu_rung["encoder"], "x265", "{gpu_rung}");
        assert!(gpu_rung["fallback_reason"].is_string(), "{gpu_rung}");
    }
    let rungs = CodecRungs {
        stream: "cam",
        h264_rung: "180p",
        rungs: &HEVC_RUNGS,
        codec_name: "hevc",
        codec_tag: Some("hvc1"),
        hls_codecs: "hvc1.1.",
        dash_codecs: "hvc1",
        size: (320, 180),
        one_key_frame_per_segment: true,
    };
    rungs.check_after_the_publish(&server, 3, Duration::from_secs(90));
    wait_success(&mut ffmpeg, Duration::from_secs(5), "ffmpeg");

    // Without an NVIDIA driver the log says why the GPU rung and the decoder run on the CPU.
    if no_driver {
        let log = server.log_text();
        assert!(
            log.contains("NVENC unavailable") && log.contains("NVDEC unavailable"),
            "{log}"
        );
    }
}
