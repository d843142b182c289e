use std::collections::BTreeMap;

use bytes::Bytes;
use media::Codec;

use super::*;

const FRAME: i64 = 3000;
const T0: i64 = 1_709_294_400_000; // 2024-03-01T12:00:00Z

fn avc(width: u32) -> AvcConfig {
    let sps = Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9]);
    let pps = Bytes::from_static(&[0x68, 0xeb, 0xe3, 0xcb]);
    AvcConfig {
        record: Bytes::from_static(&[1, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0, 6, 0x67, 0x64, 0x00]),
        sps: vec![sps],
        pps: vec![pps],
        profile_idc: 0x64,
        constraint_flags: 0,
        level_idc: 0x1f,
        width,
        height: 720,
        frame_rate: Some((30, 1)),
    }
}

fn aac() -> AacConfig {
    AacConfig {
        asc: Bytes::from_static(&[0x11, 0x90]),
        object_type: 2,
        sample_rate: 48_000,
        channels: 2,
    }
}

fn video(dts: i64, keyframe: bool) -> AccessUnit {
    AccessUnit {
        codec: Codec::H264,
        pts: dts + 2 * FRAME,
        dts,
        keyframe,
        // One length-prefixed NAL unit: IDR or non-IDR slice.
        payload: Bytes::from(vec![
            0,
            0,
            0,
            3,
            if keyframe { 0x65 } else { 0x41 },
            0x88,
            0x80,
        ]),
    }
}

fn audio(pts: i64) -> AccessUnit {
    AccessUnit {
        codec: Codec::Aac,
        pts,
        dts: pts,
        keyframe: true,
        payload: Bytes::from_static(&[0x21, 0x10, 0x04, 0x60, 0x8c, 0x1c]),
    }
}

/// The store the engine keeps, fed batch by batch.
#[derive(Default)]
struct Store {
    objects: BTreeMap<String, (ObjectKind, Bytes)>,
    batches: usize,
}

impl Store {
    fn drain(&mut self, packager: &mut LivePackager) {
        let mut batch = Vec::new();
        while let Some(output) = packager.poll_output() {
            match output {
                PackagerOutput::Commit => {
                    for change in batch.drain(..) {
                        match change {
                            PackagerOutput::Put { path, kind, body } => {
                                self.objects.insert(path, (kind, body));
                            }
                            PackagerOutput::Remove { path } => {
                                assert!(self.objects.remove(&path).is_some(), "{path} exists");
                            }
                            PackagerOutput::Commit => unreachable!(),
                        }
                    }
                    self.batches += 1;
                }
                other => batch.push(other),
            }
        }
        assert!(batch.is_empty(), "every batch ends with Commit");
    }

    fn text(&self, path: &str) -> String {
        let (_, body) = self
            .objects
            .get(path)
            .unwrap_or_else(|| panic!("{path} missing"));
        String::from_utf8(body.to_vec()).expect("UTF-8")
    }

    fn kind(&self, path: &str) -> ObjectKind {
        self.objects[path].0
    }
}

/// Segment numbers a media playlist lists.
fn listed(playlist: &str) -> Vec<u64> {
    playlist
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split('.').next()?.parse().ok())
        .collect()
}

/// Feeds `seconds` of 30 fps video (keyframe every 2 s) and 48 kHz AAC, arriving in real time
/// from `wall`, with input timestamps starting at `base` seconds.
fn feed(
    packager: &mut LivePackager,
    store: &mut Store,
    wall: i64,
    base: i64,
    seconds: i64,
    with_audio: bool,
    with_video: bool,
) {
    let mut audio_pts = base * 48_000;
    for k in 0..seconds * 30 {
        let dts = base * 90_000 + k * FRAME;
        let now = wall + k * 100 / 3;
        while with_audio && audio_pts * 90_000 / 48_000 <= dts {
            packager.handle_unit(now, audio(audio_pts));
            audio_pts += 1024;
        }
        if with_video {
            packager.handle_unit(now, video(dts, k % 60 == 0));
        }
        store.drain(packager);
    }
}

#[test]
fn nothing_is_published_before_the_first_segment() {
    let mut packager = LivePackager::new(PackagerConfig::default());
    let mut store = Store::default();
    packager.handle_start(T0, Some(avc(1280)), Some(aac()));
    feed(&mut packager, &mut store, T0, 0, 1, true, true);
    assert!(store.objects.is_empty());
    assert!(packager.poll_output().is_none());
}

#[test]
fn first_batch_holds_every_track_and_every_manifest() {
    let mut packager = LivePackager::new(PackagerConfig::default());
    let mut store = Store::default();
    packager.handle_start(T0, Some(avc(1280)), Some(aac()));
    feed(&mut packager, &mut store, T0, 100, 5, true, true);
    assert_eq!(
        store.batches, 2,
        "cuts at 2 s and 4 s; audio reached each cut"
    );
    let paths: Vec<&str> = store.objects.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "audio/0.m4s",
            "audio/1.m4s",
            "audio/index.m3u8",
            "audio/init.mp4",
            "index.m3u8",
            "index.mpd",
            "source/0.m4s",
            "source/1.m4s",
            "source/index.m3u8",
            "source/init.mp4",
            "ts/0.ts",
            "ts/1.ts",
            "ts/index.m3u8",
        ]
    );
    assert_eq!(store.kind("source/0.m4s"), ObjectKind::VideoSegment);
    assert_eq!(store.kind("audio/init.mp4"), ObjectKind::AudioInit);
    assert_eq!(store.kind("index.mpd"), ObjectKind::Mpd);
    for playlist in ["source/index.m3u8", "audio/index.m3u8", "ts/index.m3u8"] {
        assert_eq!(listed(&store.text(playlist)), [0, 1], "{playlist}");
    }
    let source = store.text("source/index.m3u8");
    assert!(source.contains("#EXT-X-MAP:URI=\"init.mp4\"\n"));
    assert!(source.contains("#EXT-X-TARGETDURATION:2\n"));
    assert!(
        source.contains(
            "#EXT-X-PROGRAM-DATE-TIME:2024-03-01T12:00:00.066Z\n#EXTINF:2.000000,\n0.m4s"
        )
    );
    assert!(!store.text("ts/index.m3u8").contains("EXT-X-MAP"));
    let multivariant = store.text("index.m3u8");
    assert!(multivariant.contains("CODECS=\"avc1.64001f,mp4a.40.2\",RESOLUTION=1280x720,FRAME-RATE=30.000,AUDIO=\"audio\"\nsource/index.m3u8\n"));
    assert!(multivariant.contains("#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"audio\""));
    let mpd = store.text("index.mpd");
    assert!(mpd.contains("type=\"dynamic\" availabilityStartTime=\"2024-03-01T12:00:00.000Z\""));
    assert!(
        mpd.contains("<S t=\"6000\" d=\"180000\" r=\"1\"/>"),
        "{mpd}"
    );
    assert!(mpd.contains("startNumber=\"0\""));
    assert_eq!(mpd.matches("<AdaptationSet").count(), 2);
}

#[test]
fn window_slides_and_old_segments_are_removed_a_window_later() {
    let config = PackagerConfig {
        window: 3,
        ..PackagerConfig::default()
    };
    let mut packager = LivePackager::new(config);
    let mut store = Store::default();
    packager.handle_start(T0, Some(avc(1280)), Some(aac()));
    feed(&mut packager, &mut store, T0, 0, 21, true, true);
    assert_eq!(packager.published_segments(), 10);
    let source = store.text("source/index.m3u8");
    assert_eq!(listed(&source), [7, 8, 9]);
    assert!(source.contains("#EXT-X-MEDIA-SEQUENCE:7\n"));
    // Listed-out segments 4..6 stay fetchable; 0..3 are gone.
    for n in 4..10 {
        assert!(store.objects.contains_key(&format!("ts/{n}.ts")), "{n}");
        assert!(store.objects.contains_key(&format!("audio/{n}.m4s")), "{n}");
    }
    for n in 0..4 {
        assert!(
            !store.objects.contains_key(&format!("source/{n}.m4s")),
            "{n}"
        );
    }
    let mpd = store.text("index.mpd");
    assert!(mpd.contains("startNumber=\"7\""));
    assert!(
        mpd.contains("<S t=\"1266000\" d=\"180000\" r=\"2\"/>"),
        "{mpd}"
    );
}

#[test]
fn reconnect_continues_numbers_with_a_discontinuity_and_a_new_period() {
    let mut packager = LivePackager::new(PackagerConfig::default());
    let mut store = Store::default();
    packager.handle_start(T0, Some(avc(1280)), Some(aac()));
    feed(&mut packager, &mut store, T0, 0, 5, true, true);
    packager.handle_publisher_gone(T0 + 5000);
    store.drain(&mut packager);
    assert_eq!(
        packager.published_segments(),
        3,
        "the open segment is closed"
    );
    // Back 3 s later with timestamps from 0 again and a new resolution.
    packager.handle_start(T0 + 8000, Some(avc(640)), Some(aac()));
    feed(&mut packager, &mut store, T0 + 8000, 0, 5, true, true);
    assert_eq!(packager.published_segments(), 5);
    let source = store.text("source/index.m3u8");
    assert_eq!(listed(&source), [0, 1, 2, 3, 4]);
    assert_eq!(source.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
    assert!(source.contains(
        "#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-1.mp4\"\n\
         #EXT-X-PROGRAM-DATE-TIME:2024-03-01T12:00:08.066Z\n#EXTINF:2.000000,\n3.m4s"
    ));
    assert!(store.objects.contains_key("source/init.mp4"));
    assert!(store.objects.contains_key("source/init-1.mp4"));
    // Audio did not change, so it keeps its init segment.
    assert!(!store.text("audio/index.m3u8").contains("init-1"));
    assert_eq!(listed(&store.text("ts/index.m3u8")), [0, 1, 2, 3, 4]);
    assert!(
        store
            .text("ts/index.m3u8")
            .contains("#EXT-X-DISCONTINUITY\n")
    );
    let mpd = store.text("index.mpd");
    assert!(mpd.contains("<Period id=\"0\" start=\"PT0.000000S\">"));
    // The second Period starts where the wall clock says: 8 s after the first unit.
    assert!(
        mpd.contains("<Period id=\"1\" start=\"PT8.000000S\">"),
        "{mpd}"
    );
    assert!(mpd.contains("presentationTimeOffset=\"720000\" initialization=\"$RepresentationID$/init-1.mp4\" media=\"$RepresentationID$/$Number$.m4s\" startNumber=\"3\""));
    assert!(store.text("index.m3u8").contains("RESOLUTION=640x720"));
}

#[test]
fn end_adds_endlist_and_makes_the_mpd_static() {
    let mut packager = LivePackager::new(PackagerConfig::default());
    let mut store = Store::default();
    packager.handle_start(T0, Some(avc(1280)), Some(aac()));
    feed(&mut packager, &mut store, T0, 0, 5, true, true);
    packager.handle_publisher_gone(T0 + 5000);
    packager.handle_end(T0 + 15_000);
    store.drain(&mut packager);
    for playlist in ["source/index.m3u8", "audio/index.m3u8", "ts/index.m3u8"] {
        assert!(
            store.text(playlist).ends_with("#EXT-X-ENDLIST\n"),
            "{playlist}"
        );
        assert_eq!(store.kind(playlist), ObjectKind::FinalPlaylist);
    }
    assert_eq!(store.kind("index.mpd"), ObjectKind::FinalMpd);
    let mpd = store.text("index.mpd");
    assert!(mpd.contains("type=\"static\""));
    assert!(!mpd.contains("minimumUpdatePeriod"));
    // 2 + 2 + 1 s of video, rebased to start at the first listed segment.
    assert!(
        mpd.contains("mediaPresentationDuration=\"PT5.000000S\""),
        "{mpd}"
    );
    assert!(mpd.contains("presentationTimeOffset=\"6000\""));
    // Nothing more after the end.
    packager.handle_unit(T0 + 16_000, video(0, true));
    packager.handle_start(T0 + 16_000, Some(avc(1280)), None);
    assert!(packager.poll_output().is_none());
}

#[test]
fn audio_only_stream_has_no_video_rendition() {
    let mut packager = LivePackager::new(PackagerConfig::default());
    let mut store = Store::default();
    packager.handle_start(T0, None, Some(aac()));
    feed(&mut packager, &mut store, T0, 0, 7, true, false);
    assert!(!store.objects.keys().any(|p| p.starts_with("source/")));
    assert_eq!(listed(&store.text("audio/index.m3u8")), [0, 1, 2]);
    let multivariant = store.text("index.m3u8");
    assert!(
        multivariant.contains("CODECS=\"mp4a.40.2\"\naudio/index.m3u8\n"),
        "{multivariant}"
    );
    assert!(!multivariant.contains("EXT-X-MEDIA:"));
    let mpd = store.text("index.mpd");
    assert_eq!(mpd.matches("<AdaptationSet").count(), 1);
    assert!(mpd.contains("contentType=\"audio\""));
    assert!(mpd.contains("<S t=\"0\" d=\"96256\" r=\"2\"/>"), "{mpd}");
}

#[test]
fn video_only_stream_has_no_audio_group() {
    let mut packager = LivePackager::new(PackagerConfig::default());
    let mut store = Store::default();
    packager.handle_start(T0, Some(avc(1280)), None);
    feed(&mut packager, &mut store, T0, 0, 5, false, true);
    assert!(!store.objects.keys().any(|p| p.starts_with("audio/")));
    let multivariant = store.text("index.m3u8");
    assert!(!multivariant.contains("AUDIO"));
    assert!(multivariant.contains("CODECS=\"avc1.64001f\",RESOLUTION=1280x720"));
    assert_eq!(store.text("index.mpd").matches("<AdaptationSet").count(), 1);
}

#[test]
fn returning_publisher_without_audio_leaves_audio_gaps() {
    let mut packager = LivePackager::new(PackagerConfig::default());
    let mut store = Store::default();
    packager.handle_start(T0, Some(avc(1280)), Some(aac()));
    feed(&mut packager, &mut store, T0, 0, 3, true, true);
    packager.handle_publisher_gone(T0 + 3000);
    packager.handle_start(T0 + 4000, Some(avc(1280)), None);
    feed(&mut packager, &mut store, T0 + 4000, 0, 5, false, true);
    let audio = store.text("audio/index.m3u8");
    assert_eq!(listed(&audio), [0, 1, 2, 3]);
    assert_eq!(audio.matches("#EXT-X-GAP\n").count(), 2);
    assert!(!store.objects.contains_key("audio/2.m4s"));
    let mpd = store.text("index.mpd");
    assert_eq!(
        mpd.matches("contentType=\"audio\"").count(),
        1,
        "only the first Period"
    );
}

#[test]
fn bandwidth_counts_every_track() {
    let mut packager = LivePackager::new(PackagerConfig::default());
    let mut store = Store::default();
    packager.handle_start(T0, Some(avc(1280)), Some(aac()));
    feed(&mut packager, &mut store, T0, 0, 5, true, true);
    let (peak, average) = packager.bandwidth();
    let bytes: usize = ["source/0.m4s", "audio/0.m4s"]
        .iter()
        .map(|p| store.objects[*p].1.len())
        .sum();
    assert!(peak >= (bytes * 8 / 2) as u64 && average > 0 && average <= peak);
    assert!(
        store
            .text("index.m3u8")
            .contains(&format!("BANDWIDTH={peak},"))
    );
}

#[path = "rendition_tests.rs"]
mod renditions;
