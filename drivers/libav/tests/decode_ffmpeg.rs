//! The H.264 decoder and the scaler against real ffmpeg output: an MP4 with B-frames made by
//! the ffmpeg command line, its samples read straight out of the file (they are already our
//! length-prefixed format) at the offsets ffprobe reports, its `avcC` from ffprobe's extradata
//! dump (corecast-testmedia's `TestSource`). Fails saying so where ffmpeg is not installed.

use std::process::Command;

use bytes::Bytes;
use corecast_libav::{
    I420Picture, LibavError, ScaleFilter, Scaler, VideoDecoder, VideoDecoderSettings,
};
use media::{AccessUnit, TrackConfig};
use testmedia::{TempDir, TestSource};

/// Decodes every unit (collecting per-unit errors), then flushes. Returns the pts of every
/// decoded picture, the errors, and the luma mean of the picture scaled to 320x180 at `probe`.
fn decode_all(
    decoder: &mut VideoDecoder,
    units: &[AccessUnit],
    mut on_frame: impl FnMut(&media::encode::RawVideoFrame<'_>),
) -> (Vec<i64>, Vec<LibavError>) {
    let mut pts = Vec::new();
    let mut errors = Vec::new();
    for unit in units {
        if let Err(error) = decoder.submit(unit) {
            errors.push(error);
        }
        while let Some(frame) = decoder.poll_frame().expect("poll_frame") {
            pts.push(frame.pts);
            on_frame(&frame);
        }
    }
    decoder.flush().expect("flush");
    while let Some(frame) = decoder.poll_frame().expect("poll_frame") {
        pts.push(frame.pts);
        on_frame(&frame);
    }
    (pts, errors)
}

#[test]
fn decodes_b_frames_in_presentation_order_and_scales_like_ffmpeg() {
    let dir = TempDir::new("libav-decode");
    let source = TestSource::new(640, 360, 2).gop(30).make(dir.path());
    let units = source.video_units();
    assert_eq!(units.len(), 60);
    assert!(
        units.iter().any(|u| u.pts != u.dts),
        "the source has B-frames (pts differs from dts)"
    );
    assert_eq!((source.video.width, source.video.height), (640, 360));

    let mut decoder = VideoDecoder::new(
        &TrackConfig::Avc(source.video.clone()),
        VideoDecoderSettings::default(),
    )
    .unwrap();
    let mut scaler = Scaler::new((640, 360), (320, 180), ScaleFilter::Bicubic).unwrap();
    let mut first_scaled = Vec::new();
    let (pts, errors) = decode_all(&mut decoder, &units, |frame| {
        assert_eq!((frame.width, frame.height), (640, 360));
        let scaled = scaler.scale(frame).expect("scale");
        assert_eq!(
            (scaled.width, scaled.height, scaled.pts),
            (320, 180, frame.pts)
        );
        if first_scaled.is_empty() {
            for row in 0..180 {
                first_scaled.extend_from_slice(&scaled.planes[0][row * scaled.strides[0]..][..320]);
            }
        }
    });
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        pts.len(),
        source.count_video_frames(),
        "as many pictures as ffprobe counts"
    );
    let mut expected: Vec<i64> = units.iter().map(|u| u.pts).collect();
    expected.sort_unstable();
    assert_eq!(pts, expected, "every pts once, in presentation order");
    let stats = decoder.stats();
    assert_eq!(
        (stats.units, stats.frames, stats.corrupt_units),
        (60, 60, 0)
    );
    assert_eq!(stats.concealed_frames, 0);

    // ffmpeg's own decode + bicubic scale of the first picture, as raw luma.
    let reference = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&source.path)
        .args(["-frames:v", "1", "-vf", "scale=320:180:flags=bicubic"])
        .args(["-pix_fmt", "yuv420p", "-f", "rawvideo", "-"])
        .output()
        .expect("ffmpeg scale");
    assert!(reference.status.success(), "{reference:?}");
    // Luma first: 320x180 bytes, then the two chroma planes.
    assert_eq!(reference.stdout.len(), first_scaled.len() * 3 / 2);
    let diffs: Vec<u8> = first_scaled
        .iter()
        .zip(&reference.stdout[..first_scaled.len()])
        .map(|(a, b)| a.abs_diff(*b))
        .collect();
    let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
    let max = diffs.iter().copied().max().unwrap_or(0);
    assert!(
        mean < 0.5 && max <= 4,
        "mean diff {mean}, max {max} against ffmpeg"
    );

    // Frame threads: same pictures, same order.
    let mut threaded = VideoDecoder::new(
        &TrackConfig::Avc(source.video.clone()),
        VideoDecoderSettings { threads: 2 },
    )
    .unwrap();
    let (threaded_pts, errors) = decode_all(&mut threaded, &units, |_| {});
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(threaded_pts, expected);

    // A reused output picture: no allocation per frame, pts carried.
    let mut picture = I420Picture::new(320, 180).unwrap();
    let mut decoder = VideoDecoder::new(
        &TrackConfig::Avc(source.video.clone()),
        VideoDecoderSettings::default(),
    )
    .unwrap();
    decoder.submit(&units[0]).unwrap();
    decoder.flush().unwrap();
    let frame = decoder.poll_frame().unwrap().expect("the IDR decodes");
    scaler.scale_into(&frame, &mut picture).unwrap();
    assert_eq!(picture.pts(), units[0].pts);
}

#[test]
fn a_corrupt_unit_is_an_error_for_it_alone() {
    let dir = TempDir::new("libav-corrupt");
    let source = TestSource::new(320, 240, 2).gop(30).make(dir.path());
    let mut units = source.video_units();
    // Unit 10 truncated (its last NAL loses bytes), unit 40's slice data scrambled.
    let truncated_pts = units[10].pts;
    let cut = units[10].payload.len() - 7;
    units[10].payload = units[10].payload.slice(..cut);
    let flipped_pts = units[40].pts;
    let mut bytes = units[40].payload.to_vec();
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..] {
        *byte ^= 0x5a;
    }
    units[40].payload = Bytes::from(bytes);

    let mut decoder = VideoDecoder::new(
        &TrackConfig::Avc(source.video.clone()),
        VideoDecoderSettings::default(),
    )
    .unwrap();
    let (pts, errors) = decode_all(&mut decoder, &units, |_| {});
    let stats = decoder.stats();
    // The truncated unit is refused, by its pts, and is the only error.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        matches!(&errors[0], LibavError::CorruptUnit { pts, reason }
            if *pts == truncated_pts && reason.contains("truncated")),
        "{errors:?}"
    );
    assert!(!pts.contains(&truncated_pts));
    // The scrambled unit still gives a picture, patched up by libavcodec and counted.
    assert!(pts.contains(&flipped_pts));
    assert!(stats.concealed_frames >= 1, "{stats:?}");
    // Every other picture comes out, in order, up to the last one.
    assert_eq!(pts.len(), source.count_video_frames() - 1, "{stats:?}");
    assert!(pts.windows(2).all(|p| p[0] < p[1]));
    assert_eq!(
        (stats.units, stats.corrupt_units, stats.frames),
        (60, 1, 59),
        "{stats:?}"
    );
}

/// Sources that are not 8-bit 4:2:0 (broadcast contribution feeds are often 4:2:2, HEVC
/// cameras often Main 10) decode to 8-bit I420 through swscale, close to ffmpeg's own
/// conversion of the same file.
#[test]
fn converts_4_2_2_and_10_bit_sources_to_8_bit_4_2_0_like_ffmpeg() {
    for (hevc, pix_fmt) in [
        (false, "yuv422p"),
        (false, "yuv420p10le"),
        (true, "yuv420p10le"),
        (true, "yuv422p10le"),
    ] {
        let what = format!("{} {pix_fmt}", if hevc { "HEVC" } else { "H.264" });
        let dir = TempDir::new("libav-convert");
        let mut source = TestSource::new(320, 180, 1).gop(15).pix_fmt(pix_fmt);
        if hevc {
            source = source.hevc();
        }
        let track = source.make_track(dir.path());
        let units = track.video_units();
        let mut decoder = VideoDecoder::new(&track.video, VideoDecoderSettings::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut first = Vec::new();
        let (pts, errors) = decode_all(&mut decoder, &units, |frame| {
            assert_eq!((frame.width, frame.height), (320, 180), "{what}");
            if first.is_empty() {
                for plane in 0..3 {
                    let (w, h) = frame.plane_size(plane);
                    for row in 0..h {
                        first.extend_from_slice(
                            &frame.planes[plane][row * frame.strides[plane]..][..w],
                        );
                    }
                }
            }
        });
        assert!(errors.is_empty(), "{what}: {errors:?}");
        assert_eq!(pts.len(), 30, "{what}");
        let stats = decoder.stats();
        assert_eq!(
            stats.converted_frames, 30,
            "{what}: every picture converted"
        );

        let reference = Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&track.path)
            .args([
                "-frames:v",
                "1",
                "-pix_fmt",
                "yuv420p",
                "-f",
                "rawvideo",
                "-",
            ])
            .output()
            .expect("ffmpeg");
        assert!(reference.status.success(), "{reference:?}");
        assert_eq!(reference.stdout.len(), first.len(), "{what}");
        let diffs: Vec<u8> = first
            .iter()
            .zip(&reference.stdout)
            .map(|(a, b)| a.abs_diff(*b))
            .collect();
        let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
        let max = diffs.iter().copied().max().unwrap_or(0);
        eprintln!("{what}: mean diff {mean:.3}, max {max} against ffmpeg's conversion");
        assert!(
            mean < 1.0 && max <= 16,
            "{what}: mean diff {mean}, max {max}"
        );
    }
    // 8-bit 4:2:0 is not converted.
    let dir = TempDir::new("libav-convert-none");
    let track = TestSource::new(320, 180, 1).make_track(dir.path());
    let mut decoder = VideoDecoder::new(&track.video, VideoDecoderSettings::default()).unwrap();
    decode_all(&mut decoder, &track.video_units(), |_| {});
    assert_eq!(decoder.stats().converted_frames, 0);
}
