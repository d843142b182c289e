//! Transcoded renditions beside the source: shared cuts, numbers and durations, the bounded
//! wait for a lagging rung, and the manifests that list them.

use super::*;

fn rung_avc(width: u32, height: u32, level_idc: u8) -> AvcConfig {
    AvcConfig {
        width,
        height,
        level_idc,
        ..avc(width)
    }
}

fn rungs() -> Vec<Rendition> {
    vec![
        Rendition {
            name: "360p".into(),
            track: TrackConfig::Avc(rung_avc(640, 360, 0x1e)),
        },
        Rendition {
            name: "180p".into(),
            track: TrackConfig::Avc(rung_avc(320, 180, 0x0d)),
        },
    ]
}

/// A rung unit as the ladder makes it: the source's pts, no reordering (dts = pts).
fn rung_unit(pts: i64, keyframe: bool) -> AccessUnit {
    AccessUnit {
        codec: Codec::H264,
        pts,
        dts: pts,
        keyframe,
        payload: Bytes::from(vec![0, 0, 0, 2, if keyframe { 0x65 } else { 0x41 }, 0x80]),
    }
}

/// `seconds` of source (30 fps, keyframe every 2 s, pts = dts + 2 frames) and audio; the
/// rungs in `sending` get the unit of source picture `j` after source unit `j + lag`.
fn feed_with_rungs(
    packager: &mut LivePackager,
    store: &mut Store,
    seconds: i64,
    lag: i64,
    sending: &[usize],
) {
    let frames = seconds * 30;
    let mut audio_pts = 0;
    for k in 0..frames + lag {
        let now = T0 + k * 100 / 3;
        if k < frames {
            let dts = k * FRAME;
            while audio_pts * 90_000 / 48_000 <= dts {
                packager.handle_unit(now, audio(audio_pts));
                audio_pts += 1024;
            }
            packager.handle_unit(now, video(dts, k % 60 == 0));
        }
        if k >= lag {
            let j = k - lag;
            for &rung in sending {
                packager.handle_rendition_unit(
                    now,
                    rung,
                    rung_unit(j * FRAME + 2 * FRAME, j % 60 == 0),
                );
            }
        }
        store.drain(packager);
    }
}

/// (tfdt, sample durations, first sample is a sync sample) of a one-track media segment.
fn fragment(segment: &[u8]) -> (u64, Vec<u32>, bool) {
    let find = |fourcc: &[u8; 4]| {
        segment
            .windows(4)
            .position(|w| w == fourcc)
            .unwrap_or_else(|| panic!("no {fourcc:?} box"))
            + 4
    };
    let be32 = |at: usize| u32::from_be_bytes(segment[at..at + 4].try_into().unwrap());
    let tfdt = find(b"tfdt");
    let decode_time = if segment[tfdt] == 1 {
        u64::from(be32(tfdt + 4)) << 32 | u64::from(be32(tfdt + 8))
    } else {
        u64::from(be32(tfdt + 4))
    };
    let trun = find(b"trun");
    let flags = be32(trun) & 0x00ff_ffff;
    let count = be32(trun + 4) as usize;
    let mut at = trun + 8;
    let mut first_flags = None;
    if flags & 0x1 != 0 {
        at += 4;
    }
    if flags & 0x4 != 0 {
        first_flags = Some(be32(at));
        at += 4;
    }
    let mut durations = Vec::with_capacity(count);
    for index in 0..count {
        if flags & 0x100 != 0 {
            durations.push(be32(at));
            at += 4;
        }
        if flags & 0x200 != 0 {
            at += 4;
        }
        if flags & 0x400 != 0 {
            if index == 0 {
                first_flags = Some(be32(at));
            }
            at += 4;
        }
        if flags & 0x800 != 0 {
            at += 4;
        }
    }
    // sample_is_non_sync_sample is bit 16 of the sample flags (ISO/IEC 14496-12 §8.8.3.1).
    let sync = first_flags.is_some_and(|f| f & 0x0001_0000 == 0);
    (decode_time, durations, sync)
}

/// The EXTINF and URI lines of a media playlist, with the folder-independent part only.
fn timing(playlist: &str) -> Vec<String> {
    playlist
        .lines()
        .filter(|l| {
            l.starts_with("#EXTINF")
                || l.starts_with("#EXT-X-PROGRAM-DATE-TIME")
                || !l.starts_with('#')
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn rungs_share_numbers_durations_and_cut_points() {
    let mut packager = LivePackager::new(PackagerConfig::default());
    let mut store = Store::default();
    packager.handle_start_renditions(T0, Some(avc(1280)), Some(aac()), rungs());
    feed_with_rungs(&mut packager, &mut store, 9, 5, &[0, 1]);
    assert_eq!(packager.published_segments(), 4, "cuts at 2, 4, 6 and 8 s");
    packager.handle_publisher_gone(T0 + 9_500);
    store.drain(&mut packager);
    assert_eq!(packager.published_segments(), 5);
    assert_eq!(packager.late_rendition_units(), 0);

    let source = store.text("source/index.m3u8");
    assert_eq!(listed(&source), [0, 1, 2, 3, 4]);
    for rung in ["360p", "180p"] {
        let playlist = store.text(&format!("{rung}/index.m3u8"));
        assert_eq!(timing(&playlist), timing(&source), "{rung}");
        assert!(playlist.contains("#EXT-X-MAP:URI=\"init.mp4\"\n"));
        assert_eq!(
            store.kind(&format!("{rung}/init.mp4")),
            ObjectKind::VideoInit
        );
        for number in 0..5 {
            let (_, source_body) = &store.objects[&format!("source/{number}.m4s")];
            let (_, rung_body) = &store.objects[&format!("{rung}/{number}.m4s")];
            let (source_start, source_durations, source_sync) = fragment(source_body);
            let (rung_start, rung_durations, rung_sync) = fragment(rung_body);
            assert!(
                source_sync && rung_sync,
                "{rung}/{number}.m4s starts with its IDR"
            );
            assert_eq!(
                rung_durations.len(),
                source_durations.len(),
                "{rung}/{number}"
            );
            assert_eq!(
                rung_durations.iter().sum::<u32>(),
                source_durations.iter().sum::<u32>(),
                "{rung}/{number}: same span"
            );
            // The source's first sample is decoded 2 frames before it is shown; the rung
            // (no reordering) decodes it when it is shown: same presentation time.
            assert_eq!(
                rung_start,
                source_start + 2 * FRAME as u64,
                "{rung}/{number}"
            );
        }
    }
    // TS stays the source only.
    assert!(
        !store
            .objects
            .keys()
            .any(|p| p.starts_with("ts/") && p.contains("p/"))
    );

    let multivariant = store.text("index.m3u8");
    assert_eq!(multivariant.matches("#EXT-X-STREAM-INF").count(), 3);
    assert!(multivariant.contains("CODECS=\"avc1.64001e,mp4a.40.2\",RESOLUTION=640x360,FRAME-RATE=30.000,AUDIO=\"audio\"\n360p/index.m3u8\n"), "{multivariant}");
    assert!(
        multivariant
            .contains("RESOLUTION=320x180,FRAME-RATE=30.000,AUDIO=\"audio\"\n180p/index.m3u8\n")
    );
    // Every variant's bandwidth is measured from its own segments.
    let bandwidths: Vec<u64> = multivariant
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-STREAM-INF:BANDWIDTH="))
        .map(|l| l.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(bandwidths.iter().all(|&b| b > 0), "{bandwidths:?}");
    let renditions = packager.rendition_bandwidths();
    assert_eq!(renditions.len(), 2);
    assert_eq!(renditions[0].0, "360p");
    assert_eq!(renditions[0].1, bandwidths[1]);

    let mpd = store.text("index.mpd");
    assert_eq!(
        mpd.matches("<Representation id=").count(),
        4,
        "3 video + audio"
    );
    assert!(mpd.contains(
        "<Representation id=\"360p\" codecs=\"avc1.64001e\" width=\"640\" height=\"360\""
    ));
    assert!(mpd.contains(
        "<Representation id=\"180p\" codecs=\"avc1.64000d\" width=\"320\" height=\"180\""
    ));
    assert_eq!(mpd.matches("<AdaptationSet").count(), 2);
}

#[test]
fn a_silent_rung_holds_a_segment_one_target_then_becomes_a_gap() {
    let mut packager = LivePackager::new(PackagerConfig::default());
    let mut store = Store::default();
    packager.handle_start_renditions(T0, Some(avc(1280)), Some(aac()), rungs());
    // Only 360p sends; segment 0 (ends at 2 s) waits until the source reaches 4 s.
    feed_with_rungs(&mut packager, &mut store, 5, 5, &[0]);
    assert_eq!(
        packager.published_segments(),
        1,
        "segment 1 waits until 6 s"
    );
    let playlist = store.text("180p/index.m3u8");
    assert!(
        playlist.contains("#EXT-X-GAP\n#EXTINF:2.000000,\n0.m4s"),
        "{playlist}"
    );
    assert!(!store.objects.contains_key("180p/0.m4s"));
    assert!(store.objects.contains_key("360p/0.m4s"));
    assert!(!store.text("360p/index.m3u8").contains("GAP"));

    // The rung's units for the published segment arrive too late: dropped and counted.
    for j in 0..3 {
        packager.handle_rendition_unit(T0 + 5_000, 1, rung_unit(j * FRAME + 2 * FRAME, j == 0));
    }
    store.drain(&mut packager);
    assert_eq!(packager.published_segments(), 1);
    // The ladder ends: nothing waits for it any more.
    packager.handle_renditions_end(T0 + 5_000);
    store.drain(&mut packager);
    assert_eq!(packager.published_segments(), 2);
    assert_eq!(packager.late_rendition_units(), 3);
    assert!(
        store
            .text("180p/index.m3u8")
            .contains("#EXT-X-GAP\n#EXTINF:2.000000,\n1.m4s")
    );
}

#[test]
fn bad_rendition_names_and_indexes_are_ignored() {
    let mut packager = LivePackager::new(PackagerConfig::default());
    let mut store = Store::default();
    let mut renditions = rungs();
    renditions.push(Rendition {
        name: "source".into(),
        track: TrackConfig::Avc(avc(1280)),
    });
    renditions.push(Rendition {
        name: "a/b".into(),
        track: TrackConfig::Avc(avc(1280)),
    });
    renditions.push(renditions[0].clone());
    packager.handle_start_renditions(T0, Some(avc(1280)), None, renditions);
    packager.handle_rendition_unit(T0, 7, rung_unit(0, true));
    assert_eq!(packager.late_rendition_units(), 1);
    feed_with_rungs(&mut packager, &mut store, 3, 1, &[0, 1, 2, 3, 4]);
    assert_eq!(packager.published_segments(), 1);
    let folders: std::collections::BTreeSet<&str> = store
        .objects
        .keys()
        .filter_map(|p| p.split_once('/').map(|(folder, _)| folder))
        .collect();
    assert_eq!(
        folders.into_iter().collect::<Vec<_>>(),
        ["180p", "360p", "source", "ts"]
    );
    assert_eq!(
        store
            .text("index.m3u8")
            .matches("#EXT-X-STREAM-INF")
            .count(),
        3
    );
}
