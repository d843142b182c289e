//! Encodes synthetic pictures with the real SVT-AV1 (through libavcodec) and checks the output
//! with the media crate's OBU walker, then with ffmpeg's dav1d decoder.

use testmedia::encoded::{
    DecodedVideo, assert_av1_units, decode_av1_units, encode_test_pictures, key_frame_indexes,
    refused_submissions,
};

use super::*;

const WIDTH: u32 = 160;
const HEIGHT: u32 = 90;
const FIRST_PTS: i64 = 90_000;

fn settings() -> SvtAv1Settings {
    SvtAv1Settings {
        width: WIDTH,
        height: HEIGHT,
        bitrate_kbps: 200,
        preset: SVT_AV1_FASTEST_PRESET,
        ..SvtAv1Settings::default()
    }
}

/// Encodes `count` pictures at 30 fps (pts from 90000, as a live stream would) forcing key
/// frames at `key_frames`.
fn encode(
    encoder: &mut SvtAv1Encoder,
    count: u32,
    key_frames: &[u32],
) -> Result<Vec<AccessUnit>, LibavError> {
    encode_test_pictures(encoder, (WIDTH, HEIGHT), count, FIRST_PTS, key_frames)
}

#[test]
fn forced_key_frames_land_where_asked_and_units_have_no_temporal_delimiter() {
    let mut encoder = SvtAv1Encoder::new(settings()).unwrap();
    let units = encode(&mut encoder, 40, &[0, 13, 30]).unwrap();

    assert_eq!(units.len(), 40);
    assert_eq!(key_frame_indexes(&units, FIRST_PTS), vec![0, 13, 30]);
    assert_eq!(
        encoder.opens(),
        3,
        "one restart per forced key frame after the first"
    );
    assert_av1_units(&units, FIRST_PTS);
    let config = encoder.av1_config();
    assert_eq!((config.width, config.height), (WIDTH, HEIGHT));
    assert_eq!(config.bit_depth, 8);
    assert!(
        config.codec_string().starts_with("av01.0."),
        "{}",
        config.codec_string()
    );
    assert_eq!(encoder.track_config().codec(), Codec::Av1);
}

#[test]
fn without_forcing_only_the_first_frame_is_a_key_frame() {
    let mut encoder = SvtAv1Encoder::new(settings()).unwrap();
    let units = encode(&mut encoder, 40, &[]).unwrap();
    assert_eq!(units.len(), 40);
    assert_eq!(key_frame_indexes(&units, FIRST_PTS), vec![0]);
    assert_eq!(encoder.opens(), 1);
}

#[test]
fn dav1d_decodes_every_frame_and_finds_the_forced_key_frames() {
    let mut encoder = SvtAv1Encoder::new(SvtAv1Settings {
        threads: 2,
        ..settings()
    })
    .unwrap();
    let units = encode(&mut encoder, 30, &[0, 20]).unwrap();
    let expected = DecodedVideo {
        frames: 30,
        key_frames: vec![0, 20],
        width: WIDTH.into(),
        height: HEIGHT.into(),
    };
    assert_eq!(decode_av1_units(&units, "svtav1"), expected);
}

#[test]
fn bad_settings_and_frames_are_typed_errors() {
    for (bad, setting) in [
        (
            SvtAv1Settings {
                width: 161,
                ..settings()
            },
            "width",
        ),
        (
            SvtAv1Settings {
                threads: 0,
                ..settings()
            },
            "threads",
        ),
        (
            SvtAv1Settings {
                preset: 14,
                ..settings()
            },
            "preset",
        ),
    ] {
        match SvtAv1Encoder::new(bad) {
            Err(LibavError::InvalidSettings { setting: got, .. }) => assert_eq!(got, setting),
            other => panic!("{setting}: {other:?}"),
        }
    }
    let mut encoder = SvtAv1Encoder::new(settings()).unwrap();
    let refused = refused_submissions(&mut encoder, (WIDTH, HEIGHT));
    assert!(
        matches!(
            &refused,
            [
                Err(LibavError::FrameSize {
                    got: (320, HEIGHT),
                    ..
                }),
                Err(LibavError::PlaneTooSmall { plane: 1 }),
                Err(LibavError::SubmitAfterFlush),
            ]
        ),
        "{refused:?}"
    );
}
