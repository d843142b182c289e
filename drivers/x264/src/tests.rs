//! Encodes synthetic pictures with the real libx264 and checks the output with our own NAL walk,
//! the media crate's SPS parser and ffprobe.

use std::path::PathBuf;
use std::process::Command;

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

/// A diagonal gradient that moves `index` pixels per frame, so P-frames have motion to code.
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

/// Encodes `count` frames at 30 fps forcing IDRs at `idr_frames`, returning every unit.
fn encode(
    encoder: &mut X264Encoder,
    count: u32,
    idr_frames: &[u32],
) -> Result<Vec<AccessUnit>, X264Error> {
    let mut units = Vec::new();
    for index in 0..count {
        let planes = picture(index);
        let pts = i64::from(index) * 3000;
        encoder.submit(&frame(&planes, pts), idr_frames.contains(&index))?;
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

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("corecast-x264-{}-{name}", std::process::id()))
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
    let keyframes: Vec<i64> = units
        .iter()
        .filter(|u| u.keyframe)
        .map(|u| u.pts / 3000)
        .collect();
    assert_eq!(keyframes, vec![0, 10, 20]);
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
    let path = temp_path("probe.h264");
    std::fs::write(&path, &stream).unwrap();
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=codec_name,profile,width,height,nb_read_frames",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(&path)
        .output()
        .expect("ffprobe not found: run scripts/install-deps.sh --test");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "codec_name=h264",
        "profile=High",
        "width=320",
        "height=240",
        "nb_read_frames=60",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line} in:\n{text}"
        );
    }
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
    let planes = picture(0);
    let wrong_size = RawVideoFrame {
        width: 640,
        ..frame(&planes, 0)
    };
    assert!(matches!(
        encoder.submit(&wrong_size, false),
        Err(X264Error::FrameSize { got_width: 640, .. })
    ));
    let short = RawVideoFrame {
        planes: [&planes.0, &planes.1[..10], &planes.2],
        ..frame(&planes, 0)
    };
    assert!(matches!(
        encoder.submit(&short, false),
        Err(X264Error::PlaneTooSmall { plane: 1 })
    ));
    encoder.flush().unwrap();
    assert!(matches!(
        encoder.submit(&frame(&planes, 0), false),
        Err(X264Error::SubmitAfterFlush)
    ));
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
