//! `TestSource::make` against ffmpeg and ffprobe themselves: the units it returns are the file's
//! packets, in the shapes the rest of the tests rely on.

use corecast_testmedia::{TempDir, TestSource};
use media::Codec;

#[test]
fn a_one_second_source_with_audio_comes_apart_into_units_and_configs() {
    let dir = TempDir::new("testmedia-source");
    let media = TestSource::new(320, 240, 1)
        .gop(15)
        .with_audio()
        .make(dir.path());
    assert_eq!((media.video.width, media.video.height), (320, 240));
    let audio = media.audio.as_ref().expect("an AAC track");
    assert_eq!((audio.sample_rate, audio.channels), (48_000, 2));

    let video = media.video_units();
    assert_eq!(video.len(), 30);
    assert_eq!(media.count_video_frames(), 30);
    assert!(video.iter().any(|u| u.pts != u.dts), "B-frames");
    let keyframes: Vec<i64> = video.iter().filter(|u| u.keyframe).map(|u| u.pts).collect();
    assert_eq!(keyframes.len(), 2, "a keyframe every 15 frames");
    assert_eq!(
        keyframes[1] - keyframes[0],
        15 * 3000,
        "on the 90 kHz clock"
    );
    // Length-prefixed NAL units: the first length covers a NAL inside the payload.
    let first = &video[0].payload;
    let length = u32::from_be_bytes([first[0], first[1], first[2], first[3]]) as usize;
    assert!(length + 4 <= first.len());

    // The priming frame is flagged, and only it; the rest run on in 1024-sample steps.
    let all_audio = media.units.iter().filter(|u| u.codec == Codec::Aac).count();
    let live = media.live_audio_units();
    assert_eq!(media.discarded.iter().filter(|&&d| d).count(), 1);
    assert_eq!(live.len(), all_audio - 1);
    assert!(live.windows(2).all(|w| w[1].dts - w[0].dts == 1024));
}
