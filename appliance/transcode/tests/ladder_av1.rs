//! AV1 rungs in the ladder, against real input: 4 s of 640x360 30 fps H.264 with B-frames
//! (keyframe every 25 frames, so the 2 s segment cuts fall on some keyframes only) made by the
//! ffmpeg command line, through a ladder of one x264 rung and one rung per AV1 encoder, all at
//! 180p. Checks that the AV1 rungs have key frames at exactly the pts where the H.264 rung has
//! its IDRs (which tests/ladder_ffmpeg.rs checks against the packager's own cuts), that their
//! track configs are `av01`, and that ffmpeg (libdav1d) decodes every frame of them.

use std::collections::BTreeMap;
use std::time::Duration;

use corecast_transcode::{Ladder, LadderConfig, RungCodec, RungConfig, RungEncoder, RungId};
use media::{AccessUnit, TrackConfig};
use testmedia::{TempDir, TestSource, ffmpeg_decode_errors, ffprobe_int, ffprobe_json};

const SECONDS: u32 = 4;
const FPS: u32 = 30;

fn rung(name: &str, encoder: RungEncoder) -> RungConfig {
    let mut rung = LadderConfig::default().rungs[3].clone();
    rung.name = name.to_owned();
    rung.height = 180;
    rung.bitrate_kbps = 250;
    rung.maxrate_kbps = 300;
    rung.vbv_buffer_kbits = 600;
    rung.encoder = encoder;
    rung
}

fn keyframe_pts(units: &[AccessUnit]) -> Vec<i64> {
    units.iter().filter(|u| u.keyframe).map(|u| u.pts).collect()
}

#[test]
fn av1_rungs_cut_key_frames_where_the_h264_rung_cuts_idrs_and_decode() {
    let dir = TempDir::new("ladder-av1");
    let media = TestSource::new(640, 360, SECONDS)
        .gop(25)
        .preset("ultrafast")
        .make(dir.path());
    let units = media.video_units();
    let config = LadderConfig {
        // AV1 first in the config: the ladder still numbers the H.264 rungs first.
        rungs: vec![
            rung("180p-rav1e", RungEncoder::Rav1e { speed: 10 }),
            rung("180p", RungEncoder::X264),
            rung("180p-svt", RungEncoder::SvtAv1 { preset: 12 }),
        ],
        segment_target: Duration::from_secs(2),
        ..LadderConfig::default()
    };
    let mut ladder = Ladder::new(config, &TrackConfig::Avc(media.video.clone())).expect("ladder");

    let h264: Vec<(RungId, String)> = ladder
        .rungs()
        .map(|r| (r.id, r.config.name.clone()))
        .collect();
    assert_eq!(h264, vec![(RungId(0), "180p".to_owned())]);
    let all: Vec<(RungId, String, String, u32)> = ladder
        .rung_tracks()
        .map(|r| (r.id, r.config.name.clone(), r.track.codec_string(), r.width))
        .collect();
    assert_eq!(all.len(), 3);
    assert_eq!(all[1].1, "180p-rav1e");
    assert_eq!(all[2].1, "180p-svt");
    for (_, name, codec, width) in &all[1..] {
        assert!(codec.starts_with("av01.0."), "{name}: {codec}");
        assert_eq!(*width, 320, "{name}");
    }
    for rung in ladder.rung_tracks().skip(1) {
        assert_eq!(rung.encoder.codec(), RungCodec::Av1);
    }

    let mut out: BTreeMap<RungId, Vec<AccessUnit>> = BTreeMap::new();
    let first_dts = units[0].dts;
    let mut now = Duration::ZERO;
    for unit in &units {
        now = Duration::from_micros(((unit.dts - first_dts).max(0) as u64) * 100 / 9);
        ladder.handle_unit(unit).expect("handle_unit");
        while ladder.encode_step(now).expect("encode_step") {}
        while let Some((rung, unit)) = ladder.poll_output() {
            out.entry(rung).or_default().push(unit);
        }
    }
    ladder.finish().expect("finish");
    while ladder.encode_step(now).expect("encode_step") {}
    while let Some((rung, unit)) = ladder.poll_output() {
        out.entry(rung).or_default().push(unit);
    }

    let frames = (SECONDS * FPS) as usize;
    let idrs = keyframe_pts(&out[&RungId(0)]);
    assert_eq!(idrs.len(), 2, "IDRs at 0 and 2.5 s: {idrs:?}");
    for (id, name, _, _) in &all[1..] {
        let units = &out[id];
        assert_eq!(units.len(), frames, "{name}: one unit per source frame");
        assert_eq!(
            keyframe_pts(units),
            idrs,
            "{name}: key frames at the H.264 IDRs"
        );
        assert!(
            units.iter().all(|u| u.dts == u.pts),
            "{name}: no reordering"
        );

        let path = dir.path().join(format!("{name}.obu"));
        let mut stream = Vec::new();
        for unit in units {
            stream.extend_from_slice(&[0x12, 0x00]);
            stream.extend_from_slice(&unit.payload);
        }
        std::fs::write(&path, &stream).expect("write obu");
        let errors = ffmpeg_decode_errors(&path);
        assert!(errors.is_empty(), "{name}: {errors}");
        let probe = ffprobe_json(
            &[
                "-count_frames",
                "-show_entries",
                "stream=codec_name,width,height,nb_read_frames",
            ],
            &path,
        );
        let stream = &probe["streams"][0];
        assert_eq!(stream["codec_name"], "av1", "{name}");
        assert_eq!(ffprobe_int(&stream["width"]), 320, "{name}");
        assert_eq!(
            ffprobe_int(&stream["nb_read_frames"]),
            frames as i64,
            "{name}"
        );
    }
}
