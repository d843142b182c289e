//! A test source: testsrc2 (and a sine tone) encoded by the ffmpeg command line into an MP4,
//! then taken apart with ffprobe into access units.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use media::{AacConfig, AccessUnit, AvcConfig, Codec, HevcConfig, TrackConfig, rescale};

use crate::{ffprobe_int, ffprobe_json, hexdump_bytes, require_tool};

/// What ffmpeg encodes: `testsrc2` at a size and frame rate for some seconds, x264 with 2
/// B-frames and a keyframe exactly every `gop` frames (no scene cuts), and optionally a 440 Hz
/// sine at 48 kHz as stereo AAC at 96 kb/s.
#[derive(Debug, Clone)]
pub struct TestSource {
    width: u32,
    height: u32,
    fps: u32,
    seconds: u32,
    gop: u32,
    preset: &'static str,
    audio: bool,
    /// libx265 instead of libx264 ([`TestSource::hevc`]).
    hevc: bool,
    /// ffmpeg's `-pix_fmt` of the encoded video ([`TestSource::pix_fmt`]).
    pix_fmt: &'static str,
}

impl TestSource {
    /// `seconds` of `width`x`height` at 30 fps, x264 veryfast, a keyframe every 2 s, no audio.
    pub fn new(width: u32, height: u32, seconds: u32) -> TestSource {
        TestSource {
            width,
            height,
            fps: 30,
            seconds,
            gop: 60,
            preset: "veryfast",
            audio: false,
            hevc: false,
            pix_fmt: "yuv420p",
        }
    }

    /// Encodes this pixel format (ffmpeg's name: `yuv422p` makes H.264 High 4:2:2,
    /// `yuv420p10le` with [`TestSource::hevc`] HEVC Main 10) instead of 8-bit 4:2:0.
    pub fn pix_fmt(mut self, pix_fmt: &'static str) -> TestSource {
        self.pix_fmt = pix_fmt;
        self
    }

    /// A keyframe every `frames` frames.
    pub fn gop(mut self, frames: u32) -> TestSource {
        self.gop = frames;
        self
    }

    /// The x264 preset by its ffmpeg name (`ultrafast`, `veryfast`, …).
    pub fn preset(mut self, preset: &'static str) -> TestSource {
        self.preset = preset;
        self
    }

    /// HEVC from libx265 (Main profile, the same GOP, 2 B-frames, no scene cuts) instead of
    /// H.264; read it back with [`TestSource::make_track`].
    pub fn hevc(mut self) -> TestSource {
        self.hevc = true;
        self
    }

    /// Adds the AAC sine track.
    pub fn with_audio(mut self) -> TestSource {
        self.audio = true;
        self
    }

    /// The ffmpeg arguments from the inputs up to, not including, the output (container and
    /// path), for callers that send the source somewhere else (`-re … -f flv rtmp://…`).
    pub fn ffmpeg_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["-f".into(), "lavfi".into(), "-i".into()];
        args.push(format!(
            "testsrc2=size={}x{}:rate={}",
            self.width, self.height, self.fps
        ));
        if self.audio {
            args.extend(
                ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"].map(Into::into),
            );
        }
        let gop = self.gop.to_string();
        let seconds = self.seconds.to_string();
        if self.hevc {
            let params = format!(
                "pools=2:log-level=error:bframes=2:keyint={gop}:min-keyint={gop}:scenecut=0"
            );
            args.extend(
                [
                    "-t",
                    &seconds,
                    "-c:v",
                    "libx265",
                    "-preset",
                    self.preset,
                    "-x265-params",
                    &params,
                    "-pix_fmt",
                    self.pix_fmt,
                    "-tag:v",
                    "hvc1",
                ]
                .map(Into::into),
            );
        } else {
            // Two threads: the shared test box has few cores and several tests encode at once.
            args.extend(
                [
                    "-t",
                    &seconds,
                    "-threads",
                    "2",
                    "-c:v",
                    "libx264",
                    "-preset",
                    self.preset,
                    "-bf",
                    "2",
                    "-g",
                    &gop,
                    "-keyint_min",
                    &gop,
                    "-sc_threshold",
                    "0",
                    "-pix_fmt",
                    self.pix_fmt,
                ]
                .map(Into::into),
            );
        }
        if self.audio {
            args.extend(["-c:a", "aac", "-ac", "2", "-b:a", "96k"].map(Into::into));
        }
        args
    }

    /// Encodes the source into `dir/source.mp4` and reads it back with ffprobe. For H.264
    /// sources (the default); HEVC ones are read with [`TestSource::make_track`].
    pub fn make(&self, dir: &Path) -> SourceMedia {
        let track = self.make_track(dir);
        let TrackConfig::Avc(video) = track.video else {
            panic!("TestSource::make is for H.264 sources; use make_track for HEVC")
        };
        SourceMedia {
            path: track.path,
            video,
            audio: track.audio,
            units: track.units,
            discarded: track.discarded,
        }
    }

    /// Encodes the source into `dir/source.mp4` and reads it back with ffprobe, whatever its
    /// video codec.
    pub fn make_track(&self, dir: &Path) -> TrackMedia {
        require_tool("ffmpeg");
        let path = dir.join("source.mp4");
        let output = Command::new("ffmpeg")
            .args(["-hide_banner", "-nostdin", "-v", "error", "-y"])
            .args(self.ffmpeg_args())
            .arg(&path)
            .output()
            .expect("run ffmpeg");
        assert!(
            output.status.success(),
            "ffmpeg did not make {}: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        TrackMedia::read(path)
    }
}

/// An MP4 made by [`TestSource::make_track`], taken apart: H.264 or HEVC video.
#[derive(Debug, Clone)]
pub struct TrackMedia {
    pub path: PathBuf,
    pub video: TrackConfig,
    pub audio: Option<AacConfig>,
    /// As [`SourceMedia::units`], video in the `avc1` / `hvc1` sample format.
    pub units: Vec<AccessUnit>,
    pub discarded: Vec<bool>,
}

impl TrackMedia {
    /// The video units, in decode order.
    pub fn video_units(&self) -> Vec<AccessUnit> {
        let codec = self.video.codec();
        self.units
            .iter()
            .filter(|unit| unit.codec == codec)
            .cloned()
            .collect()
    }
}

/// An MP4 made by [`TestSource::make`], taken apart.
#[derive(Debug, Clone)]
pub struct SourceMedia {
    /// The MP4 (it lives as long as the directory given to `make`).
    pub path: PathBuf,
    pub video: AvcConfig,
    pub audio: Option<AacConfig>,
    /// Every packet in file order, video and audio interleaved as the muxer wrote them:
    /// H.264 as length-prefixed NAL units on a 90 kHz clock, raw AAC frames on the sample
    /// rate's clock. Each track is in decode order.
    pub units: Vec<AccessUnit>,
    /// For each of `units`: ffprobe flags it discarded (`D`), which is the AAC encoder's
    /// priming frame that the MP4 edit list cuts; a live encoder would not send it.
    pub discarded: Vec<bool>,
}

impl TrackMedia {
    fn read(path: PathBuf) -> TrackMedia {
        let streams = ffprobe_json(&["-show_streams", "-show_data"], &path);
        let mut video = None;
        let mut audio = None;
        let mut time_bases = BTreeMap::new();
        for stream in streams["streams"].as_array().expect("streams") {
            let index = ffprobe_int(&stream["index"]);
            let extradata = hexdump_bytes(stream["extradata"].as_str().expect("extradata"));
            let (num, den) = stream["time_base"]
                .as_str()
                .and_then(|tb| tb.split_once('/'))
                .expect("time_base a/b");
            let time_base: (i64, u32) = (
                num.parse().expect("time base numerator"),
                den.parse().expect("time base denominator"),
            );
            time_bases.insert(index, time_base);
            match stream["codec_type"].as_str() {
                Some("video") => {
                    let config = match stream["codec_name"].as_str() {
                        Some("hevc") => {
                            TrackConfig::Hevc(HevcConfig::from_record(&extradata).expect("hvcC"))
                        }
                        _ => TrackConfig::Avc(AvcConfig::from_record(&extradata).expect("avcC")),
                    };
                    video = Some((index, config));
                }
                Some("audio") => {
                    audio = Some((index, AacConfig::from_asc(&extradata).expect("ASC")));
                }
                _ => {}
            }
        }
        let (video_index, video) = video.expect("a video stream");

        let file = std::fs::read(&path).expect("read the source MP4");
        let packets = ffprobe_json(
            &[
                "-show_entries",
                "packet=stream_index,pts,dts,flags,pos,size",
            ],
            &path,
        );
        let mut units = Vec::new();
        let mut discarded = Vec::new();
        for packet in packets["packets"].as_array().expect("packets") {
            let index = ffprobe_int(&packet["stream_index"]);
            let (num, den) = time_bases[&index];
            let (codec, clock) = if index == video_index {
                (video.codec(), 90_000)
            } else {
                let (_, config) = audio.as_ref().expect("the packet's stream is audio");
                (Codec::Aac, config.sample_rate)
            };
            let flags = packet["flags"].as_str().expect("flags");
            let start = usize::try_from(ffprobe_int(&packet["pos"])).expect("pos");
            let size = usize::try_from(ffprobe_int(&packet["size"])).expect("size");
            // MP4 samples are already what ingest hands over: length-prefixed NAL units, raw AAC.
            let payload = file
                .get(start..start + size)
                .expect("packet inside the file");
            units.push(AccessUnit {
                codec,
                pts: rescale(ffprobe_int(&packet["pts"]) * num, den, clock),
                dts: rescale(ffprobe_int(&packet["dts"]) * num, den, clock),
                keyframe: flags.starts_with('K'),
                payload: Bytes::copy_from_slice(payload),
            });
            discarded.push(flags.contains('D'));
        }
        TrackMedia {
            path,
            video,
            audio: audio.map(|(_, config)| config),
            units,
            discarded,
        }
    }
}

impl SourceMedia {
    /// The H.264 units, in decode order.
    pub fn video_units(&self) -> Vec<AccessUnit> {
        self.units
            .iter()
            .filter(|unit| unit.codec == Codec::H264)
            .cloned()
            .collect()
    }

    /// The AAC units a live encoder would send: without the discarded priming frame.
    pub fn live_audio_units(&self) -> Vec<AccessUnit> {
        self.units
            .iter()
            .zip(&self.discarded)
            .filter(|(unit, discarded)| unit.codec == Codec::Aac && !**discarded)
            .map(|(unit, _)| unit.clone())
            .collect()
    }

    /// How many pictures ffprobe decodes from the video track (a full decode).
    pub fn count_video_frames(&self) -> usize {
        let probe = ffprobe_json(
            &[
                "-count_frames",
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=nb_read_frames",
            ],
            &self.path,
        );
        usize::try_from(ffprobe_int(&probe["streams"][0]["nb_read_frames"])).expect("a count")
    }
}
