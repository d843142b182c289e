//! Hub tests: names, claims, the publisher life cycle through the real packager.

use super::*;

#[test]
fn stream_names_are_url_safe() {
    assert!(valid_stream_name("demo"));
    assert!(valid_stream_name("cam-1_hd.v2"));
    for bad in ["", ".", "..", "a/b", "a b", "x?y", "ü"] {
        assert!(!valid_stream_name(bad), "{bad:?}");
    }
    assert!(!valid_stream_name(&"a".repeat(129)));
}

#[test]
fn second_claim_of_a_live_name_is_refused_until_released() {
    let (handle, _hub) = hub(HubConfig::default(), Arc::new(SegmentStore::new()));
    let first = handle.claim("cam", "test").expect("free name");
    assert_eq!(
        handle.claim("cam", "test").unwrap_err(),
        ClaimError::NameInUse("cam".into())
    );
    assert_eq!(
        handle.claim("a/b", "test").unwrap_err(),
        ClaimError::BadName("a/b".into())
    );
    drop(first);
    assert!(handle.claim("cam", "test").is_ok());
}

fn avc() -> AvcConfig {
    AvcConfig {
        record: bytes::Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 2, 0x67, 0x64]),
        sps: vec![bytes::Bytes::from_static(&[0x67, 0x64, 0x00, 0x1f])],
        pps: vec![bytes::Bytes::from_static(&[0x68, 0xeb])],
        profile_idc: 0x64,
        constraint_flags: 0,
        level_idc: 0x1f,
        width: 320,
        height: 180,
        frame_rate: Some((30, 1)),
    }
}

fn frame(index: i64) -> AccessUnit {
    let keyframe = index % 30 == 0;
    AccessUnit {
        codec: media::Codec::H264,
        pts: index * 3000,
        dts: index * 3000,
        keyframe,
        payload: bytes::Bytes::from(vec![0, 0, 0, 2, if keyframe { 0x65 } else { 0x41 }, 0x80]),
    }
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn playlist(store: &SegmentStore) -> String {
    store
        .lookup("/live/cam/source/index.m3u8")
        .map(|o| String::from_utf8_lossy(&o.body).into_owned())
        .unwrap_or_default()
}

/// The life cycle through the real packager: publish, drop, return within the grace
/// period (same playlist, a discontinuity), drop again, end, removal.
#[test]
fn publisher_life_cycle_reaches_the_store() {
    let store = Arc::new(SegmentStore::new());
    let config = HubConfig {
        packaging: PackagerConfig {
            target_duration: Duration::from_secs(1),
            window: 10,
        },
        grace_period: Duration::from_millis(300),
        ended_retention: Duration::from_millis(300),
        queue_depth: 1024,
        transcode: TranscodeConfig::default(),
    };
    let (handle, stream_hub) = hub(config, store.clone());
    let thread = std::thread::spawn(move || stream_hub.run());

    let mut claim = handle.claim("cam", "test 1").expect("free");
    claim.start(Some(avc()), None);
    (0..95).for_each(|i| claim.send_unit(frame(i)));
    wait_until("three 1 s segments", || {
        playlist(&store).matches(".m4s").count() >= 3
    });
    let object = store.lookup("/live/cam/source/0.m4s").expect("segment 0");
    assert_eq!(object.content_type, content_type::MP4_VIDEO);
    assert_eq!(object.cache, CachePolicy::Immutable);
    let master = store.lookup("/live/cam/index.m3u8").expect("multivariant");
    assert_eq!(master.content_type, content_type::HLS_PLAYLIST);
    assert!(matches!(master.cache, CachePolicy::Live { .. }));
    wait_until("status", || {
        handle
            .status()
            .iter()
            .any(|s| s.name == "cam" && s.state == "live")
    });

    drop(claim);
    wait_until("reconnecting", || {
        handle
            .status()
            .iter()
            .any(|s| s.name == "cam" && s.state == "reconnecting")
    });
    let mut claim = handle.claim("cam", "test 2").expect("released on drop");
    claim.start(Some(avc()), None);
    (0..65).for_each(|i| claim.send_unit(frame(i)));
    wait_until("a discontinuity", || {
        playlist(&store).contains("#EXT-X-DISCONTINUITY")
    });
    assert!(playlist(&store).contains("#EXT-X-MEDIA-SEQUENCE:0"));
    drop(claim);
    wait_until("the end", || playlist(&store).contains("#EXT-X-ENDLIST"));
    wait_until("removal", || !store.has_stream("cam"));
    wait_until("status cleared", || handle.status().is_empty());
    drop(handle);
    thread.join().expect("hub ends when every handle is gone");
}

#[test]
fn rate_meter_averages_full_seconds() {
    let mut meter = RateMeter::default();
    let t0 = Instant::now();
    for s in 0..4u64 {
        for _ in 0..10 {
            meter.add(t0 + Duration::from_millis(s * 1000 + 50), 12_500);
        }
    }
    // 125,000 bytes per second = 1,000 kbit/s.
    assert_eq!(meter.kbps(t0 + Duration::from_millis(4_100)), 1000);
    assert_eq!(RateMeter::default().kbps(t0), 0);
}

/// A ladder set up on NVDEC whose figures say it now decodes in software shows that in the
/// source rendition's status, with the reason; one that decodes on the GPU shows the GPU.
#[test]
fn the_source_status_says_where_a_gpu_ladder_really_decodes() {
    let ladder = |stats: LadderStats| StreamLadder {
        generation: 1,
        worker: 0,
        rungs: Vec::new(),
        encoders: Vec::new(),
        decoder: ("nvdec", "gpu", None),
        stats: Vec::new(),
        ladder_stats: stats,
        finishing_until: None,
        dropped_units: 0,
    };
    let video = TrackConfig::Avc(avc());
    let source = |ladder: &StreamLadder| {
        RenditionStatus::of(Some(&video), None, Some(ladder))
            .into_iter()
            .next()
            .expect("the source rendition")
    };
    let on_gpu = source(&ladder(LadderStats {
        decoded_frames: 30,
        gpu_decoded_frames: 30,
        ..LadderStats::default()
    }));
    assert_eq!(
        (on_gpu.decoder, on_gpu.scaler),
        (Some("nvdec"), Some("gpu"))
    );
    assert_eq!(on_gpu.fallback_reason, None);
    // No picture yet: what the ladder was set up with.
    let starting = source(&ladder(LadderStats::default()));
    assert_eq!(starting.decoder, Some("nvdec"));
    let software = source(&ladder(LadderStats {
        decoded_frames: 30,
        converted_frames: 30,
        ..LadderStats::default()
    }));
    assert_eq!(
        (software.decoder, software.scaler),
        (Some("cpu"), Some("cpu"))
    );
    assert!(
        software
            .fallback_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("NVDEC does not take this stream")),
        "{software:?}"
    );
    let failed = source(&ladder(LadderStats {
        decoded_frames: 30,
        gpu_decoded_frames: 10,
        gpu_failovers: 1,
        ..LadderStats::default()
    }));
    assert_eq!(failed.decoder, Some("cpu"));
    assert!(
        failed
            .fallback_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("the GPU failed mid-stream")),
        "{failed:?}"
    );
}
