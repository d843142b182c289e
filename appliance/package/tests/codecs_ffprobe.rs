//! HEVC and AV1 through the fMP4 and TS muxers, checked by ffprobe and ffmpeg: ffmpeg encodes a
//! short test pattern with libx265 (with B-frames) or libaom-av1 into an MP4; the test takes the
//! samples out (ffprobe lists each packet's time, flags, position and size) and the parameter
//! sets out of the stream's `hvcC` / `av1C`, rebuilds the track config with our own code from
//! the raw parameter sets / sequence header (the path ingest takes), muxes CMAF segments cut at
//! keyframes (and TS for HEVC), and has ffprobe read them back: codec, sample entry tag, size,
//! every pts / dts / keyframe flag, and a clean full decode.
//!
//! Needs ffmpeg and ffprobe (scripts/install-deps.sh --test); fails saying so when missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use corecast_package::{fmp4, ts};
use media::{AccessUnit, Av1Config, Codec, HevcConfig, TrackConfig, av1, rescale};
use serde_json::Value;
use testmedia::{
    TempDir, ffmpeg_decode_errors, ffprobe_int, ffprobe_json, hexdump_bytes, require_tool,
};

const TRACK_ID: u32 = 1;

struct Encoded {
    /// The stream's `hvcC` / `av1C` body, as ffmpeg wrote it.
    record: Vec<u8>,
    /// In decode order, on 90 kHz.
    units: Vec<AccessUnit>,
}

fn text(value: &Value) -> &str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"))
}

/// Runs ffmpeg on a lavfi test pattern and reads the MP4 back.
fn encode(dir: &Path, name: &str, codec: Codec, args: &[&str]) -> Encoded {
    require_tool("ffmpeg");
    let path = dir.join(format!("{name}.mp4"));
    let output = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
        ])
        .args(args)
        .arg(&path)
        .output()
        .expect("run ffmpeg");
    assert!(
        output.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let streams = ffprobe_json(&["-show_streams", "-show_data"], &path);
    let stream = &streams["streams"][0];
    let record = hexdump_bytes(text(&stream["extradata"]));
    let (num, den) = text(&stream["time_base"]).split_once('/').unwrap();
    let (num, den): (i64, u32) = (num.parse().unwrap(), den.parse().unwrap());
    let file = std::fs::read(&path).unwrap();
    let packets = ffprobe_json(&["-show_entries", "packet=pts,dts,flags,pos,size"], &path);
    let units = packets["packets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|packet| {
            let start = usize::try_from(ffprobe_int(&packet["pos"])).unwrap();
            let size = usize::try_from(ffprobe_int(&packet["size"])).unwrap();
            AccessUnit {
                codec,
                pts: rescale(ffprobe_int(&packet["pts"]) * num, den, 90_000),
                dts: rescale(ffprobe_int(&packet["dts"]) * num, den, 90_000),
                keyframe: text(&packet["flags"]).starts_with('K'),
                payload: Bytes::copy_from_slice(&file[start..start + size]),
            }
        })
        .collect();
    Encoded { record, units }
}

/// Keyframe indices plus the end: segment boundaries.
fn cuts(units: &[AccessUnit]) -> Vec<usize> {
    let mut cuts: Vec<usize> = (0..units.len()).filter(|&i| units[i].keyframe).collect();
    assert_eq!(cuts[0], 0, "stream starts with a keyframe");
    assert!(cuts.len() >= 2, "at least two keyframes: {cuts:?}");
    cuts.push(units.len());
    cuts
}

fn samples(units: &[AccessUnit]) -> Vec<fmp4::Sample> {
    (0..units.len())
        .map(|index| {
            let duration = match units.get(index + 1) {
                Some(next) => next.dts - units[index].dts,
                None => units[index].dts - units[index - 1].dts,
            };
            fmp4::Sample::from_unit(&units[index], u32::try_from(duration).unwrap())
        })
        .collect()
}

fn assert_packets(probe: &Value, units: &[AccessUnit], to_probe: impl Fn(i64) -> i64, what: &str) {
    let packets = probe["packets"].as_array().expect("packets");
    assert_eq!(packets.len(), units.len(), "{what}: packet count");
    for (index, (packet, unit)) in packets.iter().zip(units).enumerate() {
        assert_eq!(
            ffprobe_int(&packet["pts"]),
            to_probe(unit.pts),
            "{what}: pts {index}"
        );
        assert_eq!(
            ffprobe_int(&packet["dts"]),
            to_probe(unit.dts),
            "{what}: dts {index}"
        );
        assert_eq!(
            text(&packet["flags"]).starts_with('K'),
            unit.keyframe,
            "{what}: keyframe flag of packet {index}"
        );
    }
}

fn assert_decodes_cleanly(path: &Path) {
    let errors = ffmpeg_decode_errors(path);
    assert!(
        errors.trim().is_empty(),
        "ffmpeg reports errors decoding {}: {errors}",
        path.display()
    );
}

/// Writes init + one file per segment (each also as init+segment) and init + all segments;
/// checks each with ffprobe and returns the path of the whole.
fn check_fmp4(
    dir: &Path,
    name: &str,
    config: &TrackConfig,
    units: &[AccessUnit],
    expected: (&str, &str, i64, i64),
) -> PathBuf {
    let (codec_name, tag, width, height) = expected;
    let init = fmp4::init_segment(TRACK_ID, config);
    let samples = samples(units);
    let cuts = cuts(units);
    let mut whole = init.to_vec();
    for (index, range) in cuts.windows(2).enumerate() {
        let sequence_number = u32::try_from(index + 1).unwrap();
        let segment = fmp4::media_segment(sequence_number, TRACK_ID, &samples[range[0]..range[1]]);
        let single = dir.join(format!("{name}-init-{sequence_number}.mp4"));
        std::fs::write(&single, [init.as_ref(), segment.as_ref()].concat()).unwrap();
        whole.extend_from_slice(&segment);

        let probe = ffprobe_json(&["-show_streams", "-show_packets"], &single);
        let stream = &probe["streams"][0];
        assert_eq!(text(&stream["codec_name"]), codec_name);
        assert_eq!(text(&stream["codec_tag_string"]), tag);
        assert_eq!(
            (
                ffprobe_int(&stream["width"]),
                ffprobe_int(&stream["height"])
            ),
            (width, height)
        );
        assert_packets(
            &probe,
            &units[range[0]..range[1]],
            |t| t,
            &format!("{name} segment {index}"),
        );
        assert_decodes_cleanly(&single);
    }
    let path = dir.join(format!("{name}-all.mp4"));
    std::fs::write(&path, whole).unwrap();
    let probe = ffprobe_json(&["-show_packets"], &path);
    assert_packets(&probe, units, |t| t, &format!("{name}, all segments"));
    assert_decodes_cleanly(&path);
    path
}

#[test]
fn hevc_from_x265_in_cmaf_and_ts() {
    let temp = TempDir::new("codecs-hevc");
    let dir = temp.path();
    // 2 s at 25 fps, an IRAP every second, x265's default B-frames.
    let encoded = encode(
        dir,
        "x265",
        Codec::H265,
        &[
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "2",
            "-c:v",
            "libx265",
            "-x265-params",
            "log-level=error:keyint=25:min-keyint=25:scenecut=0",
            "-tag:v",
            "hvc1",
        ],
    );
    // Shift by 1 s so the B-frame stream's first dts (before pts 0) fits tfdt and TS.
    let units: Vec<AccessUnit> = encoded
        .units
        .iter()
        .map(|unit| AccessUnit {
            pts: unit.pts + 90_000,
            dts: unit.dts + 90_000,
            ..unit.clone()
        })
        .collect();
    assert!(units.iter().any(|unit| unit.pts != unit.dts), "B-frames");

    // Our config from ffmpeg's record, and our own record from the raw parameter sets.
    let from_ffmpeg = HevcConfig::from_record(&encoded.record).unwrap();
    let ours = HevcConfig::from_parameter_sets(
        &from_ffmpeg.vps[0],
        &from_ffmpeg.sps[0],
        &from_ffmpeg.pps[0],
    )
    .unwrap();
    assert_eq!(ours.codec_string(), from_ffmpeg.codec_string());
    assert!(
        ours.codec_string().starts_with("hvc1.1.6.L"),
        "{}",
        ours.codec_string()
    );
    let config = TrackConfig::Hevc(ours);
    assert_eq!(config.codec_string(), from_ffmpeg.codec_string());

    check_fmp4(dir, "hevc", &config, &units, ("hevc", "hvc1", 320, 240));

    // HLS-TS: stream_type 0x24, Annex B with VPS/SPS/PPS before each IRAP.
    let mut muxer = ts::TsMuxer::with_video(Some(config.clone()), None).expect("TS carries HEVC");
    let mut out = Vec::new();
    for range in cuts(&units).windows(2) {
        muxer.write_tables(&mut out);
        for unit in &units[range[0]..range[1]] {
            muxer.write_unit(unit, &mut out);
        }
    }
    assert_eq!((muxer.malformed_nal_units(), muxer.skipped_units()), (0, 0));
    let pmt = &out[ts::PACKET_SIZE..2 * ts::PACKET_SIZE];
    assert_eq!(pmt[5 + 12], 0x24, "stream_type of the first PMT entry");
    let path = dir.join("hevc.ts");
    std::fs::write(&path, &out).unwrap();
    let probe = ffprobe_json(&["-show_streams", "-show_packets"], &path);
    let stream = &probe["streams"][0];
    assert_eq!(text(&stream["codec_name"]), "hevc");
    assert_eq!(
        (
            ffprobe_int(&stream["width"]),
            ffprobe_int(&stream["height"])
        ),
        (320, 240)
    );
    assert_packets(
        &probe,
        &units,
        |t| (t + ts::TIMESTAMP_OFFSET) % ts::TIMESTAMP_MODULUS,
        "HEVC in TS",
    );
    assert_decodes_cleanly(&path);
}

#[test]
fn av1_from_libaom_in_cmaf_and_refused_by_ts() {
    let temp = TempDir::new("codecs-av1");
    let dir = temp.path();
    // Small and short: AV1 encoding is slow on this box. A keyframe every 12 frames.
    let encoded = encode(
        dir,
        "libaom",
        Codec::Av1,
        &[
            "-i",
            "testsrc2=size=192x108:rate=24",
            "-frames:v",
            "24",
            "-c:v",
            "libaom-av1",
            "-cpu-used",
            "8",
            "-g",
            "12",
            "-keyint_min",
            "12",
        ],
    );
    let from_ffmpeg = Av1Config::from_record(&encoded.record).unwrap();
    let ours = Av1Config::from_sequence_header_obu(&from_ffmpeg.sequence_header).unwrap();
    assert_eq!(
        ours.record, encoded.record,
        "our av1C is the one ffmpeg writes"
    );
    assert_eq!((ours.width, ours.height), (192, 108));
    // The sample format needs no rewriting, and our sync-sample rule agrees with ffmpeg's.
    for unit in &encoded.units {
        let (payload, keyframe) = av1::temporal_unit_payload(&unit.payload).unwrap();
        assert_eq!(payload, unit.payload);
        assert_eq!(keyframe, unit.keyframe, "dts {}", unit.dts);
    }
    let config = TrackConfig::Av1(ours);
    assert!(
        config.codec_string().starts_with("av01.0."),
        "{}",
        config.codec_string()
    );

    check_fmp4(
        dir,
        "av1",
        &config,
        &encoded.units,
        ("av1", "av01", 192, 108),
    );
    assert!(!ts::carries_video(&config));
    assert!(ts::TsMuxer::with_video(Some(config), None).is_none());
}
