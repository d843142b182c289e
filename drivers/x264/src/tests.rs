//! Encodes synthetic pictures with the real libx264 and checks the output with our own NAL walk,
//! the media crate's SPS parser and ffprobe.

use testmedia::encoded::{encode_test_pictures, key_frame_indexes, refused_submissions};
use testmedia::{TempDir, ffmpeg_decode_errors, ffprobe_int, ffprobe_json};

use super::*;

const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;

fn settings() -> X264Settings {
    X264Settings {
        width: WIDTH,
        height: HEIGHT,
        bitrate_kbps: 500,
        ..X264Settings::default()
    }
}

/// Encodes `count` pictures at 30 fps (pts from 0) forcing IDRs at `idr_frames`.
fn encode(
    encoder: &mut X264Encoder,
    count: u32,
    idr_frames: &[u32],
) -> Result<Vec<AccessUnit>, X264Error> {
    encode_test_pictures(encoder, (WIDTH, HEIGHT), count, 0, idr_frames)
}

/// NAL unit types in a length-prefixed payload, or None if a length is broken.
fn nal_types(payload: &[u8]) -> Option<Vec<u8>> {
    let mut types = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let (len, body) = rest.split_first_chunk::<4>()?;
        let (nal, tail) = body.split_at_checked(u32::from_be_bytes(*len) as usize)?;
        types.push(nal.first()? & 0x1f);
        rest = tail;
    }
    Some(types)
}

#[test]
fn forced_idrs_are_the_only_keyframes_and_units_are_length_prefixed() {
    let mut encoder = X264Encoder::new(settings()).unwrap();
    let units = encode(&mut encoder, 60, &[0, 30]).unwrap();

    assert_eq!(units.len(), 60);
    let keyframes: Vec<i64> = units.iter().filter(|u| u.keyframe).map(|u| u.pts).collect();
    assert_eq!(keyframes, vec![0, 30 * 3000]);
    for (index, unit) in units.iter().enumerate() {
        assert_eq!(unit.codec, Codec::H264);
        assert_eq!(
            unit.pts,
            index as i64 * 3000,
            "zerolatency keeps input order"
        );
        assert_eq!(unit.dts, unit.pts, "no B-frames with zerolatency");
        let types = nal_types(&unit.payload).expect("4-byte lengths cover the payload");
        // Slices only: 5 = IDR, 1 = non-IDR (SEI 6 may ride along); never SPS/PPS in samples.
        assert!(
            !types.contains(&7) && !types.contains(&8),
            "frame {index}: {types:?}"
        );
        let idr = types.contains(&5);
        assert_eq!(idr, unit.keyframe, "frame {index}: {types:?}");
        if !idr {
            assert!(types.contains(&1), "frame {index}: {types:?}");
        }
    }

    let config = encoder.avc_config();
    assert_eq!((config.width, config.height), (WIDTH, HEIGHT));
    assert_eq!(config.profile_idc, 100, "High profile");
    assert_eq!(config.frame_rate, Some((30, 1)));
    assert!(config.codec_string().starts_with("avc1.64"));
    assert_eq!(encoder.track_config().codec(), Codec::H264);
}

#[test]
fn keyint_max_places_idrs_without_forcing() {
    let mut encoder = X264Encoder::new(X264Settings {
        keyint_max: Some(10),
        ..settings()
    })
    .unwrap();
    let units = encode(&mut encoder, 25, &[]).unwrap();
    assert_eq!(key_frame_indexes(&units, 0), vec![0, 10, 20]);
}

#[test]
fn ffprobe_reads_the_annex_b_dump() {
    let mut encoder = X264Encoder::new(settings()).unwrap();
    let units = encode(&mut encoder, 60, &[0, 30]).unwrap();
    let config = encoder.avc_config();
    let mut stream = Vec::new();
    for unit in &units {
        if unit.keyframe {
            for set in config.sps.iter().chain(&config.pps) {
                stream.extend_from_slice(&[0, 0, 0, 1]);
                stream.extend_from_slice(set);
            }
        }
        assert!(append_annex_b(&unit.payload, &mut stream));
    }
    let dir = TempDir::new("x264");
    let path = dir.path().join("probe.h264");
    std::fs::write(&path, &stream).unwrap();
    let probe = ffprobe_json(
        &[
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,profile,width,height,nb_read_frames",
        ],
        &path,
    );
    let video = &probe["streams"][0];
    assert_eq!(video["codec_name"], "h264", "{probe}");
    assert_eq!(video["profile"], "High", "{probe}");
    assert_eq!(ffprobe_int(&video["width"]), i64::from(WIDTH));
    assert_eq!(ffprobe_int(&video["height"]), i64::from(HEIGHT));
    assert_eq!(ffprobe_int(&video["nb_read_frames"]), 60);
    let errors = ffmpeg_decode_errors(&path);
    assert!(errors.is_empty(), "{errors}");
}

#[test]
fn bad_settings_and_frames_are_typed_errors() {
    let odd = X264Encoder::new(X264Settings {
        width: 321,
        ..settings()
    });
    assert!(matches!(
        odd,
        Err(X264Error::InvalidSettings {
            setting: "width",
            ..
        })
    ));
    let threads = X264Encoder::new(X264Settings {
        threads: 0,
        ..settings()
    });
    assert!(matches!(
        threads,
        Err(X264Error::InvalidSettings {
            setting: "threads",
            ..
        })
    ));

    let mut encoder = X264Encoder::new(settings()).unwrap();
    let refused = refused_submissions(&mut encoder, (WIDTH, HEIGHT));
    assert!(
        matches!(
            &refused,
            [
                Err(X264Error::FrameSize { got_width: 640, .. }),
                Err(X264Error::PlaneTooSmall { plane: 1 }),
                Err(X264Error::SubmitAfterFlush),
            ]
        ),
        "{refused:?}"
    );
}

#[test]
fn append_annex_b_writes_start_codes_and_rejects_a_length_past_the_end() {
    let mut out = Vec::new();
    assert!(append_annex_b(
        &[0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 1, 0x06],
        &mut out
    ));
    assert_eq!(out, [0, 0, 0, 1, 0x65, 0x88, 0, 0, 0, 1, 0x06]);
    let mut out = Vec::new();
    assert!(!append_annex_b(
        &[0, 0, 0, 2, 0x65, 0x88, 0, 0, 0, 9, 1],
        &mut out
    ));
    assert_eq!(
        out,
        [0, 0, 0, 1, 0x65, 0x88],
        "the good NAL before the fault stays"
    );
    assert!(!append_annex_b(&[0, 0, 1], &mut Vec::new()));
}
