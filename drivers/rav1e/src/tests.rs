//! Encodes synthetic pictures with the real rav1e and checks the output with the media crate's
//! OBU walker and sequence-header parser, then with ffmpeg's dav1d decoder.

use std::process::Command;

use media::av1::{OBU_SEQUENCE_HEADER, OBU_TEMPORAL_DELIMITER, obus};
use testmedia::{TempDir, ffprobe_int, ffprobe_json};

use super::*;

const WIDTH: u32 = 160;
const HEIGHT: u32 = 90;

fn settings() -> Rav1eSettings {
    Rav1eSettings {
        width: WIDTH,
        height: HEIGHT,
        bitrate_kbps: 200,
        ..Rav1eSettings::default()
    }
}

/// A diagonal gradient that moves `index` pixels per frame, so inter frames have motion to code.
fn picture(index: u32) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (w, h) = (WIDTH as usize, HEIGHT as usize);
    let y = (0..w * h)
        .map(|i| ((i % w + i / w + index as usize * 4) % 220 + 16) as u8)
        .collect();
    let u = vec![(100 + index % 50) as u8; (w / 2) * (h / 2)];
    let v = vec![150u8; (w / 2) * (h / 2)];
    (y, u, v)
}

fn frame<'a>(planes: &'a (Vec<u8>, Vec<u8>, Vec<u8>), pts: i64) -> RawVideoFrame<'a> {
    RawVideoFrame {
        width: WIDTH,
        height: HEIGHT,
        pts,
        planes: [&planes.0, &planes.1, &planes.2],
        strides: [WIDTH as usize, WIDTH as usize / 2, WIDTH as usize / 2],
    }
}

/// Encodes `count` frames at 30 fps (pts starting at 90000, as a live stream would) forcing key
/// frames at `key_frames`, returning every unit.
fn encode(
    encoder: &mut Rav1eEncoder,
    count: u32,
    key_frames: &[u32],
) -> Result<Vec<AccessUnit>, Rav1eError> {
    let mut units = Vec::new();
    for index in 0..count {
        let planes = picture(index);
        let pts = 90_000 + i64::from(index) * 3000;
        encoder.submit(&frame(&planes, pts), key_frames.contains(&index))?;
        while let Some(unit) = encoder.poll_packet()? {
            units.push(unit);
        }
    }
    encoder.flush()?;
    while let Some(unit) = encoder.poll_packet()? {
        units.push(unit);
    }
    Ok(units)
}

fn obu_types(payload: &[u8]) -> Vec<u8> {
    obus(payload)
        .map(|obu| obu.expect("OBUs walk to the end").obu_type)
        .collect()
}

#[test]
fn forced_key_frames_are_the_only_key_frames_and_units_have_no_temporal_delimiter() {
    let mut encoder = Rav1eEncoder::new(settings()).unwrap();
    let units = encode(&mut encoder, 40, &[0, 13, 30]).unwrap();

    assert_eq!(units.len(), 40);
    let key_frames: Vec<i64> = units
        .iter()
        .filter(|u| u.keyframe)
        .map(|u| (u.pts - 90_000) / 3000)
        .collect();
    assert_eq!(key_frames, vec![0, 13, 30]);
    for (index, unit) in units.iter().enumerate() {
        assert_eq!(unit.codec, Codec::Av1);
        assert_eq!(unit.pts, 90_000 + index as i64 * 3000, "input order kept");
        assert_eq!(unit.dts, unit.pts, "no reordering with low_latency");
        let types = obu_types(&unit.payload);
        assert!(
            !types.contains(&OBU_TEMPORAL_DELIMITER),
            "{index}: {types:?}"
        );
        assert_eq!(
            types.first() == Some(&OBU_SEQUENCE_HEADER),
            unit.keyframe,
            "frame {index}: {types:?}"
        );
    }

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
    let key_frames: Vec<i64> = units
        .iter()
        .filter(|u| u.keyframe)
        .map(|u| (u.pts - 90_000) / 3000)
        .collect();
    assert_eq!(key_frames, vec![0, 10, 20]);
}

#[test]
fn dav1d_decodes_every_frame_and_finds_the_forced_key_frames() {
    let mut encoder = Rav1eEncoder::new(Rav1eSettings {
        threads: 2,
        ..settings()
    })
    .unwrap();
    let units = encode(&mut encoder, 30, &[0, 20]).unwrap();
    // A low-overhead OBU stream (ffmpeg's `obu` demuxer): temporal delimiters go back in front
    // of every temporal unit.
    let mut stream = Vec::new();
    for unit in &units {
        stream.extend_from_slice(&[0x12, 0x00]);
        stream.extend_from_slice(&unit.payload);
    }
    let dir = TempDir::new("rav1e");
    let path = dir.path().join("out.obu");
    std::fs::write(&path, &stream).unwrap();

    let probe = ffprobe_json(
        &[
            "-f",
            "obu",
            "-show_frames",
            "-show_entries",
            "frame=key_frame,width,height",
        ],
        &path,
    );
    let frames = probe["frames"].as_array().expect("frames");
    assert_eq!(frames.len(), 30, "{probe}");
    let keys: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| ffprobe_int(&f["key_frame"]) == 1)
        .map(|(index, _)| index)
        .collect();
    assert_eq!(keys, vec![0, 20]);
    assert_eq!(ffprobe_int(&frames[0]["width"]), i64::from(WIDTH));
    assert_eq!(ffprobe_int(&frames[0]["height"]), i64::from(HEIGHT));

    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "obu", "-c:v", "libdav1d", "-i"])
        .arg(&path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
    let planes = picture(0);
    let wrong_size = RawVideoFrame {
        width: 320,
        ..frame(&planes, 0)
    };
    assert!(matches!(
        encoder.submit(&wrong_size, false),
        Err(Rav1eError::FrameSize { got_width: 320, .. })
    ));
    let short = RawVideoFrame {
        planes: [&planes.0, &planes.1[..10], &planes.2],
        ..frame(&planes, 0)
    };
    assert!(matches!(
        encoder.submit(&short, false),
        Err(Rav1eError::PlaneTooSmall { plane: 1 })
    ));
    encoder.flush().unwrap();
    assert!(matches!(
        encoder.submit(&frame(&planes, 0), false),
        Err(Rav1eError::SubmitAfterFlush)
    ));
}
