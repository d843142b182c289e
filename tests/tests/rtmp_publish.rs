//! RTMP in (real ffmpeg), HLS fMP4 + DASH + HLS TS out, checked with real ffprobe/ffmpeg.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use corecast_e2e::{
    MediaPlaylist, Server, TempDir, ffmpeg_decode_errors, ffmpeg_publish, ffprobe_json,
    wait_success,
};

/// Acts like a player on one media playlist: remembers every media sequence number it saw and
/// downloads every segment once.
struct Follower {
    dir: String,
    playlist: MediaPlaylist,
    sequences_seen: Vec<u64>,
    segments: BTreeMap<u64, (f64, Vec<u8>)>,
}

impl Follower {
    fn new(dir: &str) -> Follower {
        Follower {
            dir: dir.to_owned(),
            playlist: MediaPlaylist::default(),
            sequences_seen: Vec::new(),
            segments: BTreeMap::new(),
        }
    }

    fn poll(&mut self, server: &Server, stream: &str) {
        let response = server.get(&format!("/live/{stream}/{}/index.m3u8", self.dir));
        if response.status != 200 {
            return;
        }
        let playlist = MediaPlaylist::parse(&response.text());
        if self.sequences_seen.last() != Some(&playlist.media_sequence) {
            self.sequences_seen.push(playlist.media_sequence);
        }
        for (seq, (uri, duration, _)) in playlist.numbered() {
            if self.segments.contains_key(&seq) {
                continue;
            }
            let segment = server.get(&format!("/live/{stream}/{}/{uri}", self.dir));
            assert_eq!(
                segment.status, 200,
                "{} segment {uri} listed but not served",
                self.dir
            );
            self.segments.insert(seq, (*duration, segment.body));
        }
        self.playlist = playlist;
    }

    /// init (if any) + every segment in order, written to `path`.
    fn write_concatenated(
        &self,
        server: &Server,
        stream: &str,
        init: bool,
        path: &std::path::Path,
    ) {
        let mut bytes = Vec::new();
        if init {
            let response = server.get(&format!("/live/{stream}/{}/init.mp4", self.dir));
            assert_eq!(response.status, 200, "{}/init.mp4", self.dir);
            bytes.extend_from_slice(&response.body);
        }
        for (_, body) in self.segments.values() {
            bytes.extend_from_slice(body);
        }
        std::fs::write(path, bytes).expect("write concatenated segments");
    }

    fn assert_sequence_advances_by_one(&self) {
        let numbers: Vec<u64> = self.segments.keys().copied().collect();
        let first = numbers[0];
        assert_eq!(
            numbers,
            (first..first + numbers.len() as u64).collect::<Vec<_>>(),
            "{}: segment numbers must be contiguous",
            self.dir
        );
        for pair in self.sequences_seen.windows(2) {
            assert_eq!(
                pair[1],
                pair[0] + 1,
                "{}: EXT-X-MEDIA-SEQUENCE jumped: {:?}",
                self.dir,
                self.sequences_seen
            );
        }
        assert!(
            self.sequences_seen.len() >= 3,
            "{}: the window never slid: {:?}",
            self.dir,
            self.sequences_seen
        );
    }
}

fn packets(path: &std::path::Path, stream: &str) -> Vec<(i64, i64)> {
    let probe = ffprobe_json(
        &[
            "-select_streams",
            stream,
            "-show_entries",
            "packet=dts,duration",
        ],
        path.to_str().unwrap(),
    );
    probe["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|p| {
            (
                p["dts"].as_i64().expect("dts"),
                p["duration"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

fn first_stream(path: &str, select: &str) -> serde_json::Value {
    let probe = ffprobe_json(
        &["-select_streams", select, "-count_frames", "-show_streams"],
        path,
    );
    probe["streams"][0].clone()
}

/// Every dts step is `step` within `slack` (RTMP carries video times in whole ms, so 30 fps
/// arrives as 33/34 ms steps), and the steps add up to exactly one `step` per packet: no gap
/// or overlap anywhere, across segment boundaries included.
fn assert_even_steps(packets: &[(i64, i64)], step: i64, slack: i64, what: &str) {
    for pair in packets.windows(2) {
        let delta = pair[1].0 - pair[0].0;
        assert!(
            (delta - step).abs() <= slack,
            "{what}: dts not contiguous at {pair:?}"
        );
    }
    let span = packets.last().expect("packets").0 - packets[0].0;
    let expected = step * (packets.len() as i64 - 1);
    assert!(
        (span - expected).abs() <= slack,
        "{what}: {span} ticks for {} packets",
        packets.len()
    );
}

#[test]
fn rtmp_publish_is_served_as_hls_dash_and_ts() {
    let server = Server::start(
        "[demo]\nenabled = false\n[packaging]\nwindow = 3\ngrace_period_seconds = 3\n",
        &[],
    );
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url("cam"), 12);
    let mut followers = [
        Follower::new("source"),
        Follower::new("audio"),
        Follower::new("ts"),
    ];
    let mut live_mpd = None;
    let mut api_seen = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut publisher_done = None;
    loop {
        for f in followers.iter_mut() {
            f.poll(&server, "cam");
        }
        if live_mpd.is_none() {
            let mpd = server.get("/live/cam/index.mpd");
            if mpd.status == 200 {
                live_mpd = Some(mpd);
            }
        }
        if api_seen.is_none() && followers[0].segments.len() >= 2 {
            let api = server.api_get("/api/v1/streams");
            assert_eq!(api.status, 200);
            api_seen = Some(serde_json::from_slice::<serde_json::Value>(&api.body).expect("JSON"));
        }
        if publisher_done.is_none()
            && let Ok(Some(status)) = ffmpeg.try_wait()
        {
            publisher_done = Some(status);
        }
        if followers.iter().all(|f| f.playlist.ended) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "playlists never ended:\n{}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    wait_success(&mut ffmpeg, Duration::from_secs(5), "ffmpeg");

    let tmp = TempDir::new("rtmp");
    // --- fMP4 video
    let video = tmp.path().join("video.mp4");
    followers[0].write_concatenated(&server, "cam", true, &video);
    let v = first_stream(video.to_str().unwrap(), "v:0");
    assert_eq!(v["codec_name"], "h264");
    assert_eq!(
        (v["width"].as_u64(), v["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert_eq!(
        v["nb_read_frames"], "360",
        "12 s at 30 fps, every frame published"
    );
    assert_even_steps(&packets(&video, "v:0"), 3000, 90, "video");
    // --- fMP4 audio
    let audio = tmp.path().join("audio.mp4");
    followers[1].write_concatenated(&server, "cam", true, &audio);
    let a = first_stream(audio.to_str().unwrap(), "a:0");
    assert_eq!(a["codec_name"], "aac");
    assert_eq!(a["sample_rate"], "48000");
    assert_eq!(a["channels"], 2);
    let audio_packets = packets(&audio, "a:0");
    assert_even_steps(&audio_packets, 1024, 0, "audio");
    let audio_seconds = audio_packets.len() as f64 * 1024.0 / 48_000.0;
    assert!(
        (11.5..=12.5).contains(&audio_seconds),
        "audio lasts {audio_seconds} s"
    );
    // --- TS
    let ts = tmp.path().join("all.ts");
    followers[2].write_concatenated(&server, "cam", false, &ts);
    let tv = first_stream(ts.to_str().unwrap(), "v:0");
    assert_eq!(tv["codec_name"], "h264");
    assert_eq!(tv["nb_read_frames"], "360");
    assert_eq!(
        first_stream(ts.to_str().unwrap(), "a:0")["codec_name"],
        "aac"
    );
    let errors = ffmpeg_decode_errors(ts.to_str().unwrap());
    assert!(
        errors.trim().is_empty(),
        "TS segments decode with errors: {errors}"
    );

    // --- playlists: numbering, durations, tags
    for f in &followers {
        f.assert_sequence_advances_by_one();
        let p = &f.playlist;
        assert!(
            p.target_duration >= 2.0,
            "{}: target {}",
            f.dir,
            p.target_duration
        );
        assert_eq!(
            p.program_date_times,
            p.segments.len(),
            "{}: PROGRAM-DATE-TIME on every segment",
            f.dir
        );
        let durations: Vec<f64> = f.segments.values().map(|(d, _)| *d).collect();
        for d in &durations[..durations.len() - 1] {
            assert!(
                (d - 2.0).abs() < 0.05,
                "{}: segment of {d} s with a 2 s GOP: {durations:?}",
                f.dir
            );
        }
        for d in &durations {
            assert!(
                *d > 0.0 && *d <= p.target_duration + 0.5,
                "{}: {d} s over target",
                f.dir
            );
        }
    }
    assert!(
        followers[0]
            .playlist
            .text
            .contains("#EXT-X-INDEPENDENT-SEGMENTS")
    );
    assert!(
        followers[0]
            .playlist
            .text
            .contains("#EXT-X-MAP:URI=\"init.mp4\"")
    );
    assert!(followers[2].playlist.text.contains(".ts"));
    assert_eq!(
        followers[0].segments.keys().collect::<Vec<_>>(),
        followers[1].segments.keys().collect::<Vec<_>>(),
        "video and audio segments share numbers"
    );

    // --- multivariant: exact CODECS from the stream's own SPS, as ffprobe reads it
    let master = server.get("/live/cam/index.m3u8");
    assert_eq!(master.status, 200);
    assert_eq!(
        master.header("Content-Type"),
        Some("application/vnd.apple.mpegurl")
    );
    let master = master.text();
    let level = v["level"].as_i64().expect("level");
    assert_eq!(v["profile"], "High");
    let codecs = format!("CODECS=\"avc1.6400{level:02x},mp4a.40.2\"");
    assert!(master.contains(&codecs), "{codecs} missing in:\n{master}");
    for needle in [
        "RESOLUTION=640x360",
        "FRAME-RATE=30",
        "BANDWIDTH=",
        "TYPE=AUDIO",
        "source/index.m3u8",
    ] {
        assert!(master.contains(needle), "{needle} missing in:\n{master}");
    }

    // --- DASH: dynamic while live, static after the grace period, readable by ffmpeg
    let live_mpd = live_mpd.expect("MPD published while live").text();
    for needle in [
        "type=\"dynamic\"",
        "availabilityStartTime=",
        "minimumUpdatePeriod=",
        "suggestedPresentationDelay=",
        "SegmentTemplate",
    ] {
        assert!(
            live_mpd.contains(needle),
            "{needle} missing in live MPD:\n{live_mpd}"
        );
    }
    let mpd = server.get("/live/cam/index.mpd");
    assert_eq!(mpd.header("Content-Type"), Some("application/dash+xml"));
    assert!(
        mpd.text().contains("type=\"static\""),
        "ended MPD:\n{}",
        mpd.text()
    );
    let dash = ffprobe_json(&["-show_streams"], server.url("/live/cam/index.mpd"));
    let codecs: Vec<&str> = dash["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["codec_name"].as_str())
        .collect();
    assert!(
        codecs.contains(&"h264") && codecs.contains(&"aac"),
        "DASH streams: {codecs:?}"
    );
    let errors = ffmpeg_decode_errors(server.url("/live/cam/index.mpd"));
    assert!(errors.trim().is_empty(), "DASH decode errors: {errors}");
    // HLS through ffmpeg's own HLS client (multivariant + audio group)
    let hls = ffprobe_json(&["-show_streams"], server.url("/live/cam/index.m3u8"));
    assert!(
        hls["streams"].as_array().expect("streams").len() >= 2,
        "HLS streams: {hls}"
    );

    // --- API while live
    let api = api_seen.expect("API polled while live");
    let cam = api["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .find(|s| s["name"] == "cam")
        .unwrap_or_else(|| panic!("cam missing from {api}"))
        .clone();
    assert_eq!(cam["state"], "live");
    assert!(cam["input_kbps"].as_u64().unwrap_or(0) > 0, "{cam}");
    assert!(cam["viewers"].as_u64().is_some(), "{cam}");
    let renditions = cam["renditions"].as_array().expect("renditions");
    assert_eq!(renditions[0]["name"], "source");
    assert_eq!(renditions[0]["width"], 640);
    assert_eq!(renditions[1]["codec"], "mp4a.40.2");

    // --- delivery counters and Prometheus metrics on the control port
    let delivery: serde_json::Value =
        serde_json::from_slice(&server.api_get("/api/v1/delivery").body).expect("JSON");
    assert!(
        delivery["workers"]
            .as_array()
            .is_some_and(|w| !w.is_empty()),
        "{delivery}"
    );
    assert!(
        delivery["total"]["requests"].as_u64().unwrap_or(0) > 20,
        "{delivery}"
    );
    assert!(
        delivery["total"]["bytes_sent"].as_u64().unwrap_or(0) > 1_000_000,
        "{delivery}"
    );
    let metrics = server.api_get("/metrics");
    assert_eq!(metrics.status, 200);
    let metrics = metrics.text();
    for needle in [
        "corecast_stream_live{stream=\"cam\"} 0",
        "# TYPE corecast_delivery_requests_total counter",
        "corecast_delivery_connections{worker=\"0\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing in:\n{metrics}");
    }

    // --- unknown things are 404
    assert_eq!(server.get("/live/nope/index.m3u8").status, 404);
    assert_eq!(server.get("/live/cam/source/999999.m4s").status, 404);
    assert_eq!(server.api_get("/api/v1/streams/nope").status, 404);
}
