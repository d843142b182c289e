//! Replays of what real publishers sent (tests/data/, named by tool and version), fed to the
//! session in many slicings: one byte at a time, then irregular slices.

use media::Codec;

use super::{Prng, feed_in_slices, media};
use crate::rtmp::RtmpEvent;

/// The first 64 KiB ffmpeg 5.1 sent when publishing testsrc2 640x360 30 fps (libx264 -bf 2
/// -g 30) + sine 48 kHz (aac, stereo) to rtmp://127.0.0.1:PORT/live/test; captured by
/// tests/ffmpeg_publish.rs with CORECAST_RTMP_CAPTURE.
const FFMPEG5_PUBLISH: &[u8] = include_bytes!("../../../tests/data/ffmpeg5_rtmp_publish.bin");

#[test]
fn ffmpeg5_capture_replays_in_any_slicing() {
    let mut rng = Prng(42);
    // One byte at a time: the accept lands right after `publish`, as it did live.
    let (reference, result) = feed_in_slices(FFMPEG5_PUBLISH, &mut rng, 1);
    result.unwrap();
    assert_eq!(
        reference[0],
        RtmpEvent::PublishRequested {
            app: "live".into(),
            stream_key: "test".into()
        }
    );
    let video_config = reference.iter().find_map(|e| match e {
        RtmpEvent::VideoConfig(media::TrackConfig::Avc(config)) => Some(config),
        _ => None,
    });
    let video_config = video_config.unwrap();
    assert_eq!((video_config.width, video_config.height), (640, 360));
    assert_eq!(video_config.codec_string(), "avc1.64001e");
    let audio_config = reference.iter().find_map(|e| match e {
        RtmpEvent::AudioConfig(config) => Some(config),
        _ => None,
    });
    let audio_config = audio_config.unwrap();
    assert_eq!(
        (audio_config.sample_rate, audio_config.channels),
        (48_000, 2)
    );
    let video = media(&reference, Codec::H264);
    let audio = media(&reference, Codec::Aac);
    // The capture stops after 15 video and 22 audio frames.
    assert_eq!((video.len(), audio.len()), (15, 22));
    assert!(video[0].keyframe && video[0].dts == 0);
    assert!(
        video.iter().any(|u| u.pts != u.dts),
        "no B-frames in the capture"
    );
    assert!(audio.windows(2).all(|w| w[1].pts - w[0].pts == 1024));

    // Irregular slices give the same units, less those in the slice that carried `publish`.
    for max_slice in [7, 100, 1500, 9000, 70_000] {
        let (events, result) = feed_in_slices(FFMPEG5_PUBLISH, &mut rng, max_slice);
        result.unwrap();
        for codec in [Codec::H264, Codec::Aac] {
            let expected = media(&reference, codec);
            let got = media(&events, codec);
            assert!(
                expected.ends_with(&got),
                "{max_slice}: {codec:?} units differ"
            );
            if max_slice <= 1500 {
                assert!(
                    got.len() >= expected.len() / 2,
                    "{max_slice}: {codec:?} lost units"
                );
            }
        }
    }
}

/// The first 64 KiB GStreamer 1.22's rtmp2sink sent when publishing videotestsrc 640x360 30 fps
/// (x264enc tune=zerolatency key-int-max=30) + audiotestsrc 48 kHz stereo (avenc_aac) through
/// flvmux to rtmp://127.0.0.1:PORT/live/gst; captured by tests/gstreamer_publish.rs with
/// CORECAST_RTMP_CAPTURE. What sets it apart from ffmpeg's: connect without objectEncoding,
/// the client's own Window Acknowledgement Size, releaseStream and FCPublish with transaction 0,
/// Set Chunk Size (128) only after publish, media on chunk streams 5 and 6 with type-1
/// headers, and some AAC tags stamped with a nearby video time by flvmux.
const GST122_PUBLISH: &[u8] = include_bytes!("../../../tests/data/gst122_rtmp2sink_publish.bin");

#[test]
fn gst122_rtmp2sink_capture_replays_in_any_slicing() {
    let mut rng = Prng(7);
    let (reference, result) = feed_in_slices(GST122_PUBLISH, &mut rng, 1);
    result.unwrap();
    assert_eq!(
        reference[0],
        RtmpEvent::PublishRequested {
            app: "live".into(),
            stream_key: "gst".into()
        }
    );
    let video_config = reference.iter().find_map(|e| match e {
        RtmpEvent::VideoConfig(media::TrackConfig::Avc(config)) => Some(config),
        _ => None,
    });
    let video_config = video_config.unwrap();
    assert_eq!((video_config.width, video_config.height), (640, 360));
    assert_eq!(video_config.frame_rate, Some((30, 1)));
    let audio_config = reference.iter().find_map(|e| match e {
        RtmpEvent::AudioConfig(config) => Some(config),
        _ => None,
    });
    let audio_config = audio_config.unwrap();
    assert_eq!(
        (audio_config.sample_rate, audio_config.channels),
        (48_000, 2)
    );

    // The tags in the capture, read with a separate decoder (ms): video at 0, 33, 66, 100,
    // 133, 166, the first a keyframe, no reordering; audio at 0, 33, 43, 66, 86, 107, 133,
    // 166, 171.
    let video = media(&reference, Codec::H264);
    let video_ms: Vec<i64> = video.iter().map(|u| u.dts / 90).collect();
    assert_eq!(video_ms, [0, 33, 66, 100, 133, 166]);
    assert!(video.iter().all(|u| u.pts == u.dts));
    let keyframes: Vec<bool> = video.iter().map(|u| u.keyframe).collect();
    assert_eq!(keyframes, [true, false, false, false, false, false]);
    let audio = media(&reference, Codec::Aac);
    let sent_ms = [0i64, 33, 43, 66, 86, 107, 133, 166, 171];
    assert_eq!(audio.len(), sent_ms.len());
    // flvmux's uneven stamps become exact 1024-sample steps, each within a frame of its tag.
    for (index, (unit, ms)) in audio.iter().zip(sent_ms).enumerate() {
        assert_eq!(unit.pts, 1024 * index as i64, "AAC frame {index}");
        assert!((unit.pts - ms * 48).abs() < 1024, "AAC frame {index}");
    }

    // Irregular slices give the same units, less those in the slice that carried `publish`.
    // When that slice swallows the first AAC frames, the AAC clock starts from a later,
    // jittered tag time: the frames and their 1024 steps are the same, the offset is not.
    for max_slice in [7, 100, 1500, 9000, 70_000] {
        let (events, result) = feed_in_slices(GST122_PUBLISH, &mut rng, max_slice);
        result.unwrap();
        let expected = media(&reference, Codec::H264);
        let got = media(&events, Codec::H264);
        assert!(expected.ends_with(&got), "{max_slice}: video units differ");
        let expected: Vec<_> = media(&reference, Codec::Aac)
            .iter()
            .map(|u| u.payload.clone())
            .collect();
        let audio = media(&events, Codec::Aac);
        let got: Vec<_> = audio.iter().map(|u| u.payload.clone()).collect();
        assert!(expected.ends_with(&got), "{max_slice}: audio units differ");
        assert!(audio.windows(2).all(|w| w[1].pts - w[0].pts == 1024));
        if max_slice <= 1500 {
            assert!(got.len() >= expected.len() / 2, "{max_slice}: lost audio");
            let video = media(&events, Codec::H264);
            assert!(video.len() >= 3, "{max_slice}: lost video");
        }
    }
}
