//! Encodes synthetic pictures with the real rav1e and checks the output with the media crate's
//! OBU walker and sequence-header parser, then with ffmpeg's dav1d decoder.

use testmedia::encoded::{
    DecodedVideo, assert_av1_units, decode_av1_units, encode_test_pictures, key_frame_indexes,
    refused_submissions,
};

use super::*;

const WIDTH: u32 = 160;
const HEIGHT: u32 = 90;
const FIRST_PTS: i64 = 90_000;

fn settings() -> Rav1eSettings {
    Rav1eSettings {
        width: WIDTH,
        height: HEIGHT,
        bitrate_kbps: 200,
        ..Rav1eSettings::default()
    }
}

/// Encodes `count` pictures at 30 fps (pts from 90000, as a live stream would) forcing key
/// frames at `key_frames`.
fn encode(
    encoder: &mut Rav1eEncoder,
    count: u32,
    key_frames: &[u32],
) -> Result<Vec<AccessUnit>, Rav1eError> {
    encode_test_pictures(encoder, (WIDTH, HEIGHT), count, FIRST_PTS, key_frames)
}

#[test]
fn forced_key_frames_are_the_only_key_frames_and_units_have_no_temporal_delimiter() {
    let mut encoder = Rav1eEncoder::new(settings()).unwrap();
    let units = encode(&mut encoder, 40, &[0, 13, 30]).unwrap();

    assert_eq!(units.len(), 40);
    assert_eq!(key_frame_indexes(&units, FIRST_PTS), vec![0, 13, 30]);
    assert_av1_units(&units, FIRST_PTS);
    let config = encoder.av1_config();
    assert_eq!((config.width, config.height), (WIDTH, HEIGHT));
    assert_eq!(config.bit_depth, 8);
    assert!(config.chroma_subsampling_x && config.chroma_subsampling_y);
    assert!(
        config.codec_string().starts_with("av01.0."),
        "{}",
        config.codec_string()
    );
    assert_eq!(encoder.track_config().codec(), Codec::Av1);
}

#[test]
fn keyint_max_places_key_frames_without_forcing() {
    let mut encoder = Rav1eEncoder::new(Rav1eSettings {
        keyint_max: Some(10),
        ..settings()
    })
    .unwrap();
    let units = encode(&mut encoder, 25, &[]).unwrap();
    assert_eq!(key_frame_indexes(&units, FIRST_PTS), vec![0, 10, 20]);
}

#[test]
fn dav1d_decodes_every_frame_and_finds_the_forced_key_frames() {
    let mut encoder = Rav1eEncoder::new(Rav1eSettings {
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
    assert_eq!(decode_av1_units(&units, "rav1e"), expected);
}

#[test]
fn bad_settings_and_frames_are_typed_errors() {
    for (bad, setting) in [
        (
            Rav1eSettings {
                width: 161,
                ..settings()
            },
            "width",
        ),
        (
            Rav1eSettings {
                threads: 0,
                ..settings()
            },
            "threads",
        ),
        (
            Rav1eSettings {
                speed: 11,
                ..settings()
            },
            "speed",
        ),
        (
            Rav1eSettings {
                lookahead_frames: 0,
                ..settings()
            },
            "lookahead_frames",
        ),
    ] {
        match Rav1eEncoder::new(bad) {
            Err(Rav1eError::InvalidSettings { setting: got, .. }) => assert_eq!(got, setting),
            other => panic!("{setting}: {other:?}"),
        }
    }

    let mut encoder = Rav1eEncoder::new(settings()).unwrap();
    let refused = refused_submissions(&mut encoder, (WIDTH, HEIGHT));
    assert!(
        matches!(
            &refused,
            [
                Err(Rav1eError::FrameSize { got_width: 320, .. }),
                Err(Rav1eError::PlaneTooSmall { plane: 1 }),
                Err(Rav1eError::SubmitAfterFlush),
            ]
        ),
        "{refused:?}"
    );
}
