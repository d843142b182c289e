//! Encodes synthetic pictures with the real x265 (through libavcodec) and checks the output:
//! IDR NAL units exactly at the forced pictures, the track's `hvcC`, and a decode of every unit
//! by libavcodec's HEVC decoder ([`crate::VideoDecoder`]) and by the ffmpeg command line.

use media::hevc::is_irap;
use testmedia::encoded::{encode_test_pictures, key_frame_indexes, refused_submissions};
use testmedia::{TempDir, ffmpeg_decode_errors, ffprobe_int, ffprobe_json};

use super::*;
use crate::{VideoDecoder, VideoDecoderSettings};

const WIDTH: u32 = 160;
const HEIGHT: u32 = 90;
const FIRST_PTS: i64 = 90_000;
/// IDR_W_RADL and IDR_N_LP (ITU-T H.265 Table 7-1).
const IDR_TYPES: [u8; 2] = [19, 20];

fn settings() -> X265Settings {
    X265Settings {
        width: WIDTH,
        height: HEIGHT,
        bitrate_kbps: 200,
        ..X265Settings::default()
    }
}

/// The NAL unit types of a length-prefixed payload.
fn nal_types(payload: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut rest = payload;
    while let Some((len, body)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        let Some((nal, tail)) = body.split_at_checked(len) else {
            panic!("truncated NAL");
        };
        types.push(nal_unit_type(nal).expect("NAL header"));
        rest = tail;
    }
    types
}

#[test]
fn forced_idrs_land_where_asked_and_units_decode() {
    let mut encoder = X265Encoder::new(settings()).unwrap();
    let units =
        encode_test_pictures(&mut encoder, (WIDTH, HEIGHT), 40, FIRST_PTS, &[0, 13, 30]).unwrap();

    assert_eq!(units.len(), 40, "one unit per picture");
    assert_eq!(key_frame_indexes(&units, FIRST_PTS), vec![0, 13, 30]);
    for (index, unit) in units.iter().enumerate() {
        let types = nal_types(&unit.payload);
        let slices: Vec<u8> = types.iter().copied().filter(|&t| t < 32).collect();
        assert!(!slices.is_empty(), "unit {index}: {types:?}");
        assert_eq!(
            slices.iter().all(|t| IDR_TYPES.contains(t)),
            unit.keyframe,
            "unit {index}: IDR slices exactly on key frames: {types:?}"
        );
        assert!(
            slices.iter().all(|&t| unit.keyframe || !is_irap(t)),
            "unit {index}: no CRA or other IRAP between forced IDRs: {types:?}"
        );
        assert!(
            !types.iter().any(|t| (32..=35).contains(t)),
            "unit {index}: parameter sets and AUDs stay in hvcC: {types:?}"
        );
        assert_eq!(unit.dts, unit.pts, "no reordering");
        assert_eq!(unit.codec, Codec::H265);
    }
    let config = encoder.hevc_config();
    assert_eq!((config.width, config.height), (WIDTH, HEIGHT));
    assert!(
        config.codec_string().starts_with("hvc1.1."),
        "Main profile: {}",
        config.codec_string()
    );

    // Our own decoder, fed exactly what the packager gets.
    let track = encoder.track_config();
    let mut decoder = VideoDecoder::new(&track, VideoDecoderSettings::default()).unwrap();
    let mut decoded = Vec::new();
    for unit in &units {
        decoder.submit(unit).unwrap();
        while let Some(frame) = decoder.poll_frame().unwrap() {
            decoded.push((frame.pts, frame.width, frame.height));
        }
    }
    decoder.flush().unwrap();
    while let Some(frame) = decoder.poll_frame().unwrap() {
        decoded.push((frame.pts, frame.width, frame.height));
    }
    assert_eq!(decoded.len(), 40);
    assert_eq!(decoder.stats().concealed_frames, 0);
    assert!(decoded.iter().all(|&(_, w, h)| (w, h) == (WIDTH, HEIGHT)));

    // And the ffmpeg command line, from an Annex B file with the hvcC's parameter sets first.
    let dir = TempDir::new("x265-units");
    let path = dir.path().join("out.hevc");
    let mut stream = Vec::new();
    for nal in config.vps.iter().chain(&config.sps).chain(&config.pps) {
        stream.extend_from_slice(&[0, 0, 0, 1]);
        stream.extend_from_slice(nal);
    }
    for unit in &units {
        let mut rest = &unit.payload[..];
        while let Some((len, body)) = rest.split_first_chunk::<4>() {
            let (nal, tail) = body.split_at(u32::from_be_bytes(*len) as usize);
            stream.extend_from_slice(&[0, 0, 0, 1]);
            stream.extend_from_slice(nal);
            rest = tail;
        }
    }
    std::fs::write(&path, &stream).unwrap();
    let errors = ffmpeg_decode_errors(&path);
    assert!(errors.is_empty(), "{errors}");
    let probe = ffprobe_json(
        &[
            "-count_frames",
            "-show_entries",
            "stream=codec_name,width,nb_read_frames",
        ],
        &path,
    );
    let stream = &probe["streams"][0];
    assert_eq!(stream["codec_name"], "hevc");
    assert_eq!(ffprobe_int(&stream["width"]), i64::from(WIDTH));
    assert_eq!(ffprobe_int(&stream["nb_read_frames"]), 40);
}

#[test]
fn without_forcing_only_the_first_picture_is_an_idr() {
    let mut encoder = X265Encoder::new(settings()).unwrap();
    let units = encode_test_pictures(&mut encoder, (WIDTH, HEIGHT), 30, FIRST_PTS, &[]).unwrap();
    assert_eq!(units.len(), 30);
    assert_eq!(key_frame_indexes(&units, FIRST_PTS), vec![0]);
}

#[test]
fn bad_settings_and_pictures_are_refused() {
    for bad in [
        X265Settings {
            width: 161,
            ..settings()
        },
        X265Settings {
            preset: "warp",
            ..settings()
        },
        X265Settings {
            threads: 0,
            ..settings()
        },
        X265Settings {
            bitrate_kbps: 0,
            ..settings()
        },
    ] {
        assert!(
            matches!(
                X265Encoder::new(bad.clone()),
                Err(LibavError::InvalidSettings { .. })
            ),
            "{bad:?}"
        );
    }
    let mut encoder = X265Encoder::new(settings()).unwrap();
    let [wrong_size, short, after_flush] = refused_submissions(&mut encoder, (WIDTH, HEIGHT));
    assert!(matches!(wrong_size, Err(LibavError::FrameSize { .. })));
    assert!(matches!(short, Err(LibavError::PlaneTooSmall { plane: 1 })));
    assert!(matches!(after_flush, Err(LibavError::SubmitAfterFlush)));
}

#[test]
fn parameter_sets_are_required_in_the_global_header() {
    let error = HevcConfig::from_annex_b(&[0, 0, 0, 1, 0x40, 0x01, 0x0c]).unwrap_err();
    assert!(error.to_string().contains("no SPS"), "{error}");
}
