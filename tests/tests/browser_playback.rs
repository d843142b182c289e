//! Real web players in a real browser play corecast's live output: in headless Chromium, hls.js
//! plays the demo stream's CMAF and TS playlists and dash.js its MPD, and hls.js plays an RTMP
//! publish.
//!
//! The browser side is tests/browser/play.mjs (playwright-core driving Debian's
//! /usr/bin/chromium); it serves its page from its own origin, so every request to corecast is
//! cross-origin and the CORS headers are exercised. It prints one JSON line per playback; the
//! checks here read what the player itself reported: how far `currentTime` moved, the decoded
//! picture size, player error events, the audio rendition it found and what Chromium decoded.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use corecast_e2e::{MediaPlaylist, Server, ffmpeg_publish, wait_child};
use serde_json::Value;

/// Seconds of playback each run watches, counted from the player's first `playing` event.
const WATCH_SECONDS: u32 = 10;
/// How far `currentTime` must move in that time: real time minus room for a slow start.
const MIN_ADVANCE_SECONDS: f64 = 6.0;

const DEMO_CONFIG: &str = "[demo]\nwidth = 640\nheight = 360\nfps = 30\nvideo_kbps = 600\n";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("browser")
}

/// Checks Chromium and Node.js, and installs the pinned players (`npm ci`) when
/// tests/browser/node_modules is missing or holds other versions. Once per process, under a
/// file lock, so tests running in parallel (threads, or nextest's processes) never run two
/// `npm ci` at once in one directory.
fn prepare_browser() {
    static READY: OnceLock<()> = OnceLock::new();
    READY.get_or_init(|| {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        assert!(
            Path::new(&chromium).exists(),
            "{chromium} not found: run scripts/install-deps.sh --test (installs Debian's chromium)"
        );
        let node = Command::new("node").arg("--version").output();
        let version = match node {
            Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
            _ => panic!("`node` not found: run scripts/install-deps.sh --test"),
        };
        let major: u32 = version
            .trim()
            .trim_start_matches('v')
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        assert!(
            major >= 18,
            "Node.js {} found; playwright-core 1.61 needs Node.js 18 or newer",
            version.trim()
        );
        let lock_path = std::env::temp_dir().join("corecast-browser-npm-ci.lock");
        let lock = std::fs::File::create(&lock_path).expect("create npm ci lock file");
        lock.lock().expect("lock npm ci lock file");
        if !players_installed(&browser_dir()) {
            let out = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(browser_dir())
                .output()
                .expect("run npm (install it with scripts/install-deps.sh --test)");
            assert!(
                out.status.success() && players_installed(&browser_dir()),
                "`npm ci` in {} failed (it needs the npm registry); run it by hand:\n{}{}",
                browser_dir().display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
}

/// Whether node_modules holds exactly the versions package.json pins.
fn players_installed(dir: &Path) -> bool {
    let read_json = |path: PathBuf| -> Option<Value> {
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
    };
    let Some(manifest) = read_json(dir.join("package.json")) else {
        return false;
    };
    let Some(pins) = manifest["dependencies"].as_object() else {
        return false;
    };
    pins.iter().all(|(name, pin)| {
        read_json(dir.join("node_modules").join(name).join("package.json"))
            .is_some_and(|installed| installed["version"] == *pin)
    })
}

/// What play.mjs reported for one playback, with its exit status.
struct Playback {
    report: Value,
    exit_code: Option<i32>,
    stderr: String,
}

impl Playback {
    fn f64(&self, key: &str) -> f64 {
        self.report[key].as_f64().unwrap_or(f64::NAN)
    }

    fn count(&self, key: &str) -> usize {
        self.report[key].as_array().map_or(0, Vec::len)
    }
}

/// Plays `url` with `player` (`hls` or `dash`) for [`WATCH_SECONDS`].
fn play(player: &str, url: &str) -> Playback {
    prepare_browser();
    let out = Command::new("node")
        .arg(browser_dir().join("play.mjs"))
        .args([player, url, &WATCH_SECONDS.to_string()])
        .args(["--min-advance", &MIN_ADVANCE_SECONDS.to_string()])
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = stdout
        .lines()
        .rev()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or(Value::Null);
    let playback = Playback {
        report,
        exit_code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    eprintln!("{player} {url}: {}", playback.report);
    playback
}

/// Which of corecast's outputs a playback read, for what the player can report about it.
#[derive(Clone, Copy, PartialEq)]
enum Output {
    /// `index.m3u8`: multivariant playlist, CMAF video and a separate audio rendition.
    HlsCmaf,
    /// `index.mpd`: one video and one audio AdaptationSet.
    Dash,
    /// `ts/index.m3u8`: one media playlist of MPEG-TS segments, audio muxed with video.
    HlsTs,
}

/// Everything wrong with one playback of a 640x360 stream with audio; empty when it played.
fn playback_problems(name: &str, output: Output, playback: &Playback) -> Vec<String> {
    let r = &playback.report;
    if r.is_null() {
        return vec![format!(
            "{name}: play.mjs printed no report (exit {:?}): {}",
            playback.exit_code, playback.stderr
        )];
    }
    let mut problems = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            problems.push(format!("{name}: {what}"));
        }
    };
    let advanced = playback.f64("advanced");
    check(
        advanced >= MIN_ADVANCE_SECONDS,
        format!(
            "currentTime advanced {advanced:.2} s in {WATCH_SECONDS} s, want >= {MIN_ADVANCE_SECONDS}"
        ),
    );
    let played = playback.f64("played");
    check(
        played >= MIN_ADVANCE_SECONDS,
        format!("played {played:.2} s (seeks excluded), want >= {MIN_ADVANCE_SECONDS}"),
    );
    check(
        playback.exit_code == Some(0),
        format!("play.mjs exit {:?}", playback.exit_code),
    );
    check(r["playing"] == true, "not playing at the end".to_owned());
    check(
        (r["videoWidth"].as_u64(), r["videoHeight"].as_u64()) == (Some(640), Some(360)),
        format!(
            "picture {}x{}, want 640x360",
            r["videoWidth"], r["videoHeight"]
        ),
    );
    check(
        r["fatalErrors"] == 0 && playback.count("videoErrors") == 0,
        format!(
            "fatal errors {} / media element errors {}",
            r["errors"], r["videoErrors"]
        ),
    );
    // dash.js has no fatal flag on its error events: with our own server any one is a fault.
    if output == Output::Dash {
        check(
            playback.count("errors") == 0,
            format!("dash.js errors {}", r["errors"]),
        );
    }
    // A TS media playlist carries no RESOLUTION and no separate audio for the player to list.
    if output != Output::HlsTs {
        let has_640x360 = r["levels"].as_array().is_some_and(|levels| {
            levels
                .iter()
                .any(|l| l["width"] == 640 && l["height"] == 360)
        });
        check(has_640x360, format!("no 640x360 level in {}", r["levels"]));
        check(
            playback.count("audioTracks") >= 1,
            format!("no audio track/adaptation set: {}", r["audioTracks"]),
        );
        check(
            r["fragments"]["audio"].as_u64().unwrap_or(0) >= 1,
            format!("no audio segment buffered: {}", r["fragments"]),
        );
    }
    if output == Output::Dash {
        check(
            playback.count("audioLevels") >= 1,
            format!("no audio representation: {}", r["audioLevels"]),
        );
    }
    check(
        r["audioDecodedBytes"].as_u64().unwrap_or(0) > 0,
        "Chromium decoded no audio".to_owned(),
    );
    problems
}

#[test]
fn hls_js_and_dash_js_play_the_demo_stream_in_chromium() {
    prepare_browser();
    let server = Server::start(DEMO_CONFIG, &[]);
    server.wait_for(
        "/live/demo/source/index.m3u8",
        Duration::from_secs(30),
        |t| MediaPlaylist::parse(t).segments.len() >= 2,
    );
    // Both players run one after the other on one server: two Chromiums at once would
    // compete with the encoder for this box's two cores.
    let runs = [
        (
            "hls.js CMAF",
            Output::HlsCmaf,
            "hls",
            "/live/demo/index.m3u8",
        ),
        ("dash.js", Output::Dash, "dash", "/live/demo/index.mpd"),
        (
            "hls.js TS",
            Output::HlsTs,
            "hls",
            "/live/demo/ts/index.m3u8",
        ),
    ];
    let mut problems = Vec::new();
    let mut reports = String::new();
    for (name, output, player, path) in runs {
        let playback = play(player, &server.url(path));
        problems.extend(playback_problems(name, output, &playback));
        reports.push_str(&format!("\n{name} report: {}", playback.report));
    }
    assert!(problems.is_empty(), "{}{reports}", problems.join("\n"));
}

#[test]
fn hls_js_plays_an_rtmp_publish_in_chromium() {
    prepare_browser();
    let server = Server::start("", &["--no-demo"]);
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url("cam"), 20);
    server.wait_for(
        "/live/cam/source/index.m3u8",
        Duration::from_secs(20),
        |t| MediaPlaylist::parse(t).segments.len() >= 2,
    );
    let hls = play("hls", &server.url("/live/cam/index.m3u8"));
    let problems = playback_problems("hls.js CMAF", Output::HlsCmaf, &hls);
    let published = wait_child(&mut ffmpeg, Duration::from_secs(20));
    assert!(
        problems.is_empty(),
        "{}\nhls.js report: {}",
        problems.join("\n"),
        hls.report
    );
    assert!(
        published.status.success(),
        "ffmpeg publish failed: {}",
        String::from_utf8_lossy(&published.stderr)
    );
}

/// An RTMP publish transcoded to one small AV1 rung (SVT-AV1, CMAF `av01`): hls.js plays that
/// rung's media playlist in Chromium, which decodes it (the only 320x180 pictures there are).
#[test]
fn hls_js_plays_the_av1_rung_in_chromium() {
    const AV1_CONFIG: &str = "[packaging]\ngrace_period_seconds = 2\n[transcode]\nenabled = true\n\
        [[transcode.rungs]]\nname = \"180p-av1\"\ncodec = \"av1\"\nheight = 180\n\
        bitrate_kbps = 150\nmaxrate_kbps = 200\n";
    prepare_browser();
    let server = Server::start(AV1_CONFIG, &["--no-demo"]);
    let mut ffmpeg = ffmpeg_publish(&server.rtmp_url("cam"), 30);
    server.wait_for(
        "/live/cam/180p-av1/index.m3u8",
        Duration::from_secs(40),
        |t| MediaPlaylist::parse(t).segments.len() >= 2,
    );
    let multivariant = server.get("/live/cam/index.m3u8").text();
    let av1_variant = multivariant
        .lines()
        .zip(multivariant.lines().skip(1))
        .find(|(_, uri)| uri.starts_with("180p-av1/"))
        .map(|(tag, _)| tag.to_owned())
        .unwrap_or_default();
    assert!(
        av1_variant.contains("CODECS=\"av01.") && av1_variant.contains("RESOLUTION=320x180"),
        "AV1 variant in the multivariant playlist: {multivariant}"
    );

    let playback = play("hls", &server.url("/live/cam/180p-av1/index.m3u8"));
    let r = &playback.report;
    let mut problems = Vec::new();
    let advanced = playback.f64("advanced");
    if advanced < MIN_ADVANCE_SECONDS {
        problems.push(format!("currentTime advanced {advanced:.2} s"));
    }
    if (r["videoWidth"].as_u64(), r["videoHeight"].as_u64()) != (Some(320), Some(180)) {
        problems.push(format!("picture {}x{}", r["videoWidth"], r["videoHeight"]));
    }
    if r["fatalErrors"] != 0 || playback.count("videoErrors") > 0 {
        problems.push(format!("errors {} / {}", r["errors"], r["videoErrors"]));
    }
    if r["videoDecodedBytes"].as_u64().unwrap_or(0) == 0 {
        problems.push("Chromium decoded no video".into());
    }
    let _ = wait_child(&mut ffmpeg, Duration::from_secs(40));
    assert!(
        problems.is_empty(),
        "{}\nhls.js report: {r}\n{}",
        problems.join("\n"),
        server.log_text()
    );
}
