//! Enhanced RTMP publishing (enhanced-rtmp v1): HEVC and AV1 sequence starts and coded frames
//! as OBS 30 and ffmpeg 6.1 send them, built from real encoder output (the media crate's
//! x265 and libaom captures) since no tool in Debian 12 sends Enhanced RTMP.

use media::{Av1Config, HevcConfig, TrackConfig, av1, hevc};

use super::*;

const X265_HVCC: &[u8] = include_bytes!("../../../../media/tests/data/x265_320x240_main.hvcC");
const X265_STREAM: &[u8] = include_bytes!("../../../../media/tests/data/x265_320x240_main.hevc");
const LIBAOM_AV1C: &[u8] = include_bytes!("../../../../media/tests/data/libaom_320x240.av1C");
const LIBAOM_STREAM: &[u8] = include_bytes!("../../../../media/tests/data/libaom_320x240.obu");

/// An Enhanced RTMP video tag body: IsExHeader, frame type, packet type, FourCC, then `rest`.
fn ex_body(frame_type: u8, packet_type: u8, fourcc: &[u8; 4], rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0x80 | frame_type << 4 | packet_type];
    body.extend(fourcc);
    body.extend(rest);
    body
}

/// The x265 capture's pictures as length-prefixed NAL units, parameter sets and SEI kept in the
/// first (as an encoder sends its first keyframe).
fn hevc_pictures() -> Vec<Vec<u8>> {
    let mut pictures: Vec<Vec<u8>> = Vec::new();
    let mut current = Vec::new();
    for nal in media::annex_b::nal_units(X265_STREAM) {
        let kind = hevc::nal_unit_type(nal).unwrap();
        // first_slice_segment_in_pic_flag: the top bit after the 2-byte header.
        if kind < 32 && nal[2] & 0x80 != 0 && current.iter().any(|&(k, _)| k < 32) {
            pictures.push(
                current
                    .drain(..)
                    .flat_map(|(_, n): (u8, Vec<u8>)| n)
                    .collect(),
            );
        }
        current.push((kind, super::nal(nal)));
    }
    pictures.push(current.into_iter().flat_map(|(_, n)| n).collect());
    pictures
}

#[test]
fn hevc_sequence_start_and_coded_frames_become_h265_units() {
    let mut pair = Pair::new();
    pair.publish("hevc");
    pair.server.accept_publish();
    pair.drain();
    let mut bytes = pair.client.video(0, &ex_body(1, 0, b"hvc1", X265_HVCC));
    let pictures = hevc_pictures();
    assert_eq!(pictures.len(), 5);
    for (index, picture) in pictures.iter().enumerate() {
        let ms = index as u32 * 40;
        let frame_type = if index == 0 { 1 } else { 2 };
        // ffmpeg 6.1's FLV muxer: CodedFramesX when the composition time is 0.
        let body = if index % 2 == 0 {
            ex_body(frame_type, 3, b"hvc1", picture)
        } else {
            let mut rest = 80i32.to_be_bytes()[1..].to_vec();
            rest.extend(picture);
            ex_body(frame_type, 1, b"hvc1", &rest)
        };
        bytes.extend(pair.client.video(ms, &body));
    }
    bytes.extend(pair.client.video(200, &ex_body(1, 2, b"hvc1", &[])));
    pair.feed(&bytes).unwrap();

    let configs: Vec<&TrackConfig> = pair
        .events
        .iter()
        .filter_map(|e| match e {
            RtmpEvent::VideoConfig(config) => Some(config),
            _ => None,
        })
        .collect();
    assert_eq!(
        configs,
        [&TrackConfig::Hevc(
            HevcConfig::from_record(X265_HVCC).unwrap()
        )]
    );
    assert_eq!(configs[0].codec_string(), "hvc1.1.6.L60.90");
    let video = media(&pair.events, Codec::H265);
    assert_eq!(video.len(), 5);
    let times: Vec<(i64, i64, bool)> = video.iter().map(|u| (u.dts, u.pts, u.keyframe)).collect();
    assert_eq!(
        times,
        [
            (0, 0, true),
            (3600, 3600 + 7200, false),
            (7200, 7200, false),
            (10800, 10800 + 7200, false),
            (14400, 14400, false),
        ]
    );
    // Parameter sets left the first sample (they are in the hvcC); its slices did not.
    let types: Vec<u8> = sample_nal_types(&video[0].payload);
    assert!(!types.iter().any(|t| (32..=35).contains(t)), "{types:?}");
    assert!(types.iter().any(|&t| hevc::is_irap(t)), "{types:?}");
}

fn sample_nal_types(sample: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut rest = sample;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        types.push(hevc::nal_unit_type(&tail[..len]).unwrap());
        rest = &tail[len..];
    }
    types
}

#[test]
fn av1_sequence_start_and_temporal_units_become_av1_units() {
    let mut pair = Pair::new();
    pair.publish("av1");
    pair.server.accept_publish();
    pair.drain();
    let mut bytes = pair.client.video(0, &ex_body(1, 0, b"av01", LIBAOM_AV1C));
    // OBS sends each temporal unit with its temporal delimiter; the session drops it.
    let starts: Vec<usize> = av1::obus(LIBAOM_STREAM)
        .map(Result::unwrap)
        .filter(|obu| obu.obu_type == av1::OBU_TEMPORAL_DELIMITER)
        .map(|obu| obu.offset)
        .chain([LIBAOM_STREAM.len()])
        .collect();
    for (index, range) in starts.windows(2).enumerate() {
        let frame_type = if index == 0 { 1 } else { 2 };
        let unit = &LIBAOM_STREAM[range[0]..range[1]];
        bytes.extend(
            pair.client
                .video(index as u32 * 40, &ex_body(frame_type, 1, b"av01", unit)),
        );
    }
    pair.feed(&bytes).unwrap();

    let RtmpEvent::VideoConfig(TrackConfig::Av1(config)) = &pair.events[1] else {
        panic!("{} events, not an AV1 config first", pair.events.len());
    };
    assert_eq!(*config, Av1Config::from_record(LIBAOM_AV1C).unwrap());
    let video = media(&pair.events, Codec::Av1);
    assert_eq!(video.len(), 3);
    for (index, unit) in video.iter().enumerate() {
        assert_eq!(unit.keyframe, index == 0);
        assert_eq!(
            (unit.dts, unit.pts),
            (index as i64 * 3600, index as i64 * 3600)
        );
        let types: Vec<u8> = av1::obus(&unit.payload)
            .map(|o| o.unwrap().obu_type)
            .collect();
        assert!(!types.contains(&av1::OBU_TEMPORAL_DELIMITER), "{types:?}");
    }
}

#[test]
fn other_fourccs_and_bad_sequence_starts_end_the_session_with_a_reason() {
    let mut pair = Pair::new();
    pair.publish("vp9");
    pair.server.accept_publish();
    pair.drain();
    let vp9 = pair.client.video(0, &ex_body(1, 0, b"vp09", &[1, 2, 3]));
    let err = pair.feed(&vp9).unwrap_err();
    assert!(
        err.to_string()
            .contains("unsupported Enhanced RTMP FourCC \"vp09\""),
        "{err}"
    );

    let mut pair = Pair::new();
    pair.publish("bad");
    pair.server.accept_publish();
    pair.drain();
    let bad = pair
        .client
        .video(0, &ex_body(1, 0, b"hvc1", &X265_HVCC[..30]));
    let err = pair.feed(&bad).unwrap_err().to_string();
    assert!(err.contains("Enhanced RTMP HEVC sequence start"), "{err}");

    // Coded frames before any sequence start are dropped, not an error.
    let mut pair = Pair::new();
    pair.publish("early");
    pair.server.accept_publish();
    pair.drain();
    let frame = pair
        .client
        .video(0, &ex_body(1, 3, b"hvc1", &super::nal(&[0x26, 1, 0xaf])));
    pair.feed(&frame).unwrap();
    assert!(media(&pair.events, Codec::H265).is_empty());
}
