//! Helpers for the video encoder drivers' tests (x264, NVENC, rav1e, SVT-AV1): synthetic
//! pictures to feed an encoder, the submit/poll/flush loop that collects its units, and the
//! checks of AV1 output that the two AV1 drivers share (OBU layout of AV1-ISOBMFF §2.4, and a
//! full decode by ffmpeg's dav1d).

use media::av1::{OBU_SEQUENCE_HEADER, OBU_TEMPORAL_DELIMITER, obus};
use media::encode::{RawVideoFrame, VideoEncoder};
use media::{AccessUnit, Codec};

use crate::{TempDir, ffmpeg_decode_errors_with, ffprobe_int, ffprobe_json};

/// 90 kHz ticks between pictures at 30 fps, the rate the encoder tests run at.
pub const FRAME_TICKS: i64 = 3000;

/// One synthetic I420 picture with tightly packed planes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestPicture {
    pub width: u32,
    pub height: u32,
    /// Y, U, V; the chroma planes are `ceil(width / 2)` by `ceil(height / 2)`.
    pub planes: [Vec<u8>; 3],
}

impl TestPicture {
    /// A diagonal luma gradient that moves 4 pixels per `index`, with chroma that changes
    /// slowly, so inter pictures have motion to code.
    pub fn moving_gradient(width: u32, height: u32, index: u32) -> TestPicture {
        let (w, h) = (width as usize, height as usize);
        let chroma = w.div_ceil(2) * h.div_ceil(2);
        let y = (0..w * h)
            .map(|i| ((i % w + i / w + index as usize * 4) % 220 + 16) as u8)
            .collect();
        TestPicture {
            width,
            height,
            planes: [y, vec![(100 + index % 50) as u8; chroma], vec![150; chroma]],
        }
    }

    /// The picture as an encoder input at `pts` (90 kHz).
    pub fn frame(&self, pts: i64) -> RawVideoFrame<'_> {
        let width = self.width as usize;
        RawVideoFrame {
            width: self.width,
            height: self.height,
            pts,
            planes: [&self.planes[0], &self.planes[1], &self.planes[2]],
            strides: [width, width.div_ceil(2), width.div_ceil(2)],
        }
    }
}

/// Feeds `count` moving-gradient pictures of `width` x `height` at 30 fps (pts from
/// `first_pts`), forcing key frames at the picture indexes in `key_frames`, then flushes;
/// returns every unit in the order the encoder gave them.
pub fn encode_test_pictures<E: VideoEncoder>(
    encoder: &mut E,
    (width, height): (u32, u32),
    count: u32,
    first_pts: i64,
    key_frames: &[u32],
) -> Result<Vec<AccessUnit>, E::Error> {
    let mut units = Vec::new();
    for index in 0..count {
        let picture = TestPicture::moving_gradient(width, height, index);
        let pts = first_pts + i64::from(index) * FRAME_TICKS;
        encoder.submit(&picture.frame(pts), key_frames.contains(&index))?;
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

/// Makes the three submissions every video encoder must refuse, in this order: a picture twice
/// as wide as `width` x `height` (the encoder's size), one whose U plane is cut to 10 bytes,
/// and a good picture after `flush`. Returns what `submit` said to each.
pub fn refused_submissions<E: VideoEncoder>(
    encoder: &mut E,
    (width, height): (u32, u32),
) -> [Result<(), E::Error>; 3] {
    let picture = TestPicture::moving_gradient(width, height, 0);
    let wrong_size = RawVideoFrame {
        width: width * 2,
        ..picture.frame(0)
    };
    let short = RawVideoFrame {
        planes: [
            &picture.planes[0],
            picture.planes[1].get(..10).unwrap_or_default(),
            &picture.planes[2],
        ],
        ..picture.frame(0)
    };
    let wrong_size = encoder.submit(&wrong_size, false);
    let short = encoder.submit(&short, false);
    encoder.flush().expect("flush");
    [wrong_size, short, encoder.submit(&picture.frame(0), false)]
}

/// The picture indexes (pts counted in 30 fps frames from `first_pts`) of the key frames.
pub fn key_frame_indexes(units: &[AccessUnit], first_pts: i64) -> Vec<i64> {
    units
        .iter()
        .filter(|unit| unit.keyframe)
        .map(|unit| (unit.pts - first_pts) / FRAME_TICKS)
        .collect()
}

/// The OBU types of an AV1 payload in order; fails the test if the OBUs do not walk to the end.
pub fn obu_types(payload: &[u8]) -> Vec<u8> {
    obus(payload)
        .map(|obu| obu.expect("OBUs walk to the end").obu_type)
        .collect()
}

/// Checks AV1 units from [`encode_test_pictures`]: input order kept at 30 fps from `first_pts`,
/// dts equal to pts, no temporal delimiter, and a sequence header exactly on key frames.
pub fn assert_av1_units(units: &[AccessUnit], first_pts: i64) {
    for (index, unit) in units.iter().enumerate() {
        assert_eq!(unit.codec, Codec::Av1);
        assert_eq!(
            unit.pts,
            first_pts + index as i64 * FRAME_TICKS,
            "input order kept"
        );
        assert_eq!(unit.dts, unit.pts, "no reordering");
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
}

/// What ffprobe and dav1d made of an AV1 stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodedVideo {
    pub frames: usize,
    /// Indexes of the frames ffprobe reports as key frames.
    pub key_frames: Vec<usize>,
    /// Size of the first frame.
    pub width: i64,
    pub height: i64,
}

/// Writes `units` as a low-overhead OBU stream (ffmpeg's `obu` demuxer; a temporal delimiter
/// goes back in front of each unit), reads its frames with ffprobe and decodes it fully with
/// ffmpeg's libdav1d; fails the test if the decode reports any error.
pub fn decode_av1_units(units: &[AccessUnit], label: &str) -> DecodedVideo {
    let mut stream = Vec::new();
    for unit in units {
        stream.extend_from_slice(&[(OBU_TEMPORAL_DELIMITER << 3) | 0x02, 0x00]);
        stream.extend_from_slice(&unit.payload);
    }
    let dir = TempDir::new(label);
    let path = dir.path().join("out.obu");
    std::fs::write(&path, &stream).expect("write the OBU stream");

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
    let frames = probe["frames"].as_array().expect("ffprobe lists frames");
    let first = frames.first().expect("at least one frame");
    let decoded = DecodedVideo {
        frames: frames.len(),
        key_frames: frames
            .iter()
            .enumerate()
            .filter(|(_, frame)| ffprobe_int(&frame["key_frame"]) == 1)
            .map(|(index, _)| index)
            .collect(),
        width: ffprobe_int(&first["width"]),
        height: ffprobe_int(&first["height"]),
    };
    let errors = ffmpeg_decode_errors_with(&["-f", "obu", "-c:v", "libdav1d"], &path);
    assert!(errors.is_empty(), "dav1d: {errors}");
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_gradient_has_i420_planes_that_move() {
        let first = TestPicture::moving_gradient(5, 3, 0);
        assert_eq!(first.planes[0].len(), 15);
        assert_eq!(first.planes[1].len(), 3 * 2);
        assert_eq!(first.planes[0][..6], [16, 17, 18, 19, 20, 17]);
        assert_eq!((first.planes[1][0], first.planes[2][0]), (100, 150));
        let next = TestPicture::moving_gradient(5, 3, 1);
        assert_eq!(next.planes[0][..3], [20, 21, 22]);
        assert_eq!(next.planes[1][0], 101);
        let frame = first.frame(90_000);
        assert_eq!(frame.strides, [5, 3, 3]);
        assert_eq!(frame.pts, 90_000);
        assert_eq!(frame.check_planes(), Ok(()));
    }

    #[test]
    fn key_frame_indexes_count_frames_from_the_first_pts() {
        let unit = |pts, keyframe| AccessUnit {
            codec: Codec::Av1,
            pts,
            dts: pts,
            keyframe,
            payload: bytes::Bytes::new(),
        };
        let units = [unit(90_000, true), unit(93_000, false), unit(96_000, true)];
        assert_eq!(key_frame_indexes(&units, 90_000), [0, 2]);
    }
}
