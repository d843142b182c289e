//! A test-only Enhanced RTMP publisher: no tool in Debian 12 sends Enhanced RTMP (ffmpeg 6.1
//! and OBS 30 do), so this client wraps real encoder output in the tags the specification
//! defines and publishes them like an encoder would.
//!
//! Follows Adobe's RTMP 1.0 (§5.2 simple handshake, §5.3 chunking, §7.2 NetConnection.connect,
//! createStream, NetStream.publish) and Veovera's enhanced-rtmp v1 ("Extending
//! VideoTagHeader": `IsExHeader` in bit 7, frame type in bits 6-4, VideoPacketType in bits 3-0,
//! then the FourCC; SequenceStart carries the `hvcC` / `av1C` record, CodedFrames carries an
//! SI24 composition time for `hvc1` and none for `av01`, CodedFramesX carries none). Written
//! independently of corecast's own RTMP code, so that the two can disagree in a test.
//!
//! The media comes from an MP4 that ffmpeg writes: [`Mp4Media::read`] takes each packet's bytes
//! out by the position and size ffprobe lists, and the codec records out of ffprobe's
//! extradata dump; corecast's `media` crate checks them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use testmedia::{ffprobe_int, ffprobe_json, hexdump_bytes};

/// One packet of an MP4 track, times in milliseconds.
#[derive(Clone, Debug)]
pub struct Packet {
    pub video: bool,
    pub dts_ms: i64,
    pub pts_ms: i64,
    pub keyframe: bool,
    /// The MP4 sample: length-prefixed NAL units (HEVC), OBUs (AV1) or a raw AAC frame.
    pub data: Vec<u8>,
}

/// An MP4 of one video and (optionally) one AAC track, taken apart.
#[derive(Clone, Debug)]
pub struct Mp4Media {
    /// `hvc1` or `av01`, or `avc1` for H.264 (sent in legacy FLV tags).
    pub fourcc: [u8; 4],
    /// The `hvcC` / `av1C` / `avcC` body.
    pub video_record: Vec<u8>,
    /// The AudioSpecificConfig.
    pub audio_config: Option<Vec<u8>>,
    /// All packets in file order (each track in decode order).
    pub packets: Vec<Packet>,
}

impl Mp4Media {
    pub fn read(path: &Path) -> Mp4Media {
        let streams = ffprobe_json(&["-show_streams", "-show_data"], path);
        let mut video = None;
        let mut audio_config = None;
        let mut time_bases = Vec::new();
        for stream in streams["streams"].as_array().expect("streams") {
            let extradata = hexdump_bytes(stream["extradata"].as_str().unwrap_or(""));
            let (num, den) = stream["time_base"]
                .as_str()
                .and_then(|tb| tb.split_once('/'))
                .expect("time_base");
            let time_base: (i64, i64) = (num.parse().unwrap(), den.parse().unwrap());
            let index = ffprobe_int(&stream["index"]);
            time_bases.push((index, time_base));
            match (stream["codec_type"].as_str(), stream["codec_name"].as_str()) {
                (Some("video"), Some("hevc")) => video = Some((index, *b"hvc1", extradata)),
                // Sent in the legacy FLV AVC tags (codec id 7), as every RTMP encoder does.
                (Some("video"), Some("h264")) => video = Some((index, *b"avc1", extradata)),
                (Some("video"), Some("av1")) => video = Some((index, *b"av01", extradata)),
                (Some("audio"), Some("aac")) => audio_config = Some(extradata),
                other => panic!("unexpected stream {other:?}"),
            }
        }
        let (video_index, fourcc, video_record) = video.expect("a video stream");
        let file = std::fs::read(path).expect("read the MP4");
        let probe = ffprobe_json(
            &[
                "-show_entries",
                "packet=stream_index,pts,dts,flags,pos,size",
            ],
            path,
        );
        let packets = probe["packets"]
            .as_array()
            .expect("packets")
            .iter()
            .map(|packet| {
                let index = ffprobe_int(&packet["stream_index"]);
                let (num, den) = time_bases
                    .iter()
                    .find(|(i, _)| *i == index)
                    .map(|(_, tb)| *tb)
                    .expect("stream time base");
                let ms = |value: i64| (value * num * 1000).div_euclid(den);
                let start = ffprobe_int(&packet["pos"]) as usize;
                let size = ffprobe_int(&packet["size"]) as usize;
                Packet {
                    video: index == video_index,
                    dts_ms: ms(ffprobe_int(&packet["dts"])),
                    pts_ms: ms(ffprobe_int(&packet["pts"])),
                    keyframe: packet["flags"].as_str().unwrap_or("").starts_with('K'),
                    data: file[start..start + size].to_vec(),
                }
            })
            .collect();
        Mp4Media {
            fourcc,
            video_record,
            audio_config,
            packets,
        }
    }
}

/// AMF0 values the client sends (AMF0 spec §2).
enum Amf {
    Number(f64),
    Str(&'static str),
    Owned(String),
    Null,
    Object(Vec<(&'static str, Amf)>),
}

fn amf(values: &[Amf]) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, value: &Amf) {
        match value {
            Amf::Number(n) => {
                out.push(0x00);
                out.extend_from_slice(&n.to_be_bytes());
            }
            Amf::Str(text) => put_string(out, text),
            Amf::Owned(text) => put_string(out, text),
            Amf::Null => out.push(0x05),
            Amf::Object(fields) => {
                out.push(0x03);
                for (key, value) in fields {
                    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
                    out.extend_from_slice(key.as_bytes());
                    put(out, value);
                }
                out.extend_from_slice(&[0, 0, 0x09]);
            }
        }
    }
    fn put_string(out: &mut Vec<u8>, text: &str) {
        out.push(0x02);
        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    let mut out = Vec::new();
    for value in values {
        put(&mut out, value);
    }
    out
}

const CHUNK_SIZE: usize = 4096;
const MESSAGE_SET_CHUNK_SIZE: u8 = 1;
const MESSAGE_AUDIO: u8 = 8;
const MESSAGE_VIDEO: u8 = 9;
const MESSAGE_COMMAND_AMF0: u8 = 20;

/// A publishing Enhanced RTMP connection.
#[derive(Debug)]
pub struct EnhancedRtmpPublisher {
    socket: TcpStream,
    /// Everything the server sent, searched for the replies we wait on.
    received: Vec<u8>,
    stream_id: u32,
}

impl EnhancedRtmpPublisher {
    /// Handshake, connect to `app`, createStream, publish `key`; returns once the server says
    /// NetStream.Publish.Start.
    pub fn publish(addr: SocketAddr, app: &str, key: &str) -> EnhancedRtmpPublisher {
        let socket = TcpStream::connect(addr).expect("connect to the RTMP port");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        socket.set_nodelay(true).unwrap();
        let mut client = EnhancedRtmpPublisher {
            socket,
            received: Vec::new(),
            stream_id: 1,
        };
        client.handshake();
        client.send(
            2,
            MESSAGE_SET_CHUNK_SIZE,
            0,
            0,
            &(CHUNK_SIZE as u32).to_be_bytes(),
        );
        let tc_url = format!("rtmp://{addr}/{app}");
        client.send(
            3,
            MESSAGE_COMMAND_AMF0,
            0,
            0,
            &amf(&[
                Amf::Str("connect"),
                Amf::Number(1.0),
                Amf::Object(vec![
                    ("app", Amf::Owned(app.to_owned())),
                    ("type", Amf::Str("nonprivate")),
                    ("flashVer", Amf::Str("FMLE/3.0 (compatible; corecast-e2e)")),
                    ("tcUrl", Amf::Owned(tc_url)),
                ]),
            ]),
        );
        client.wait_for(b"NetConnection.Connect.Success");
        client.send(
            3,
            MESSAGE_COMMAND_AMF0,
            0,
            0,
            &amf(&[Amf::Str("createStream"), Amf::Number(2.0), Amf::Null]),
        );
        // The createStream `_result` (the second `_result`) carries the stream id as a number.
        client.wait_for_count(b"_result", 2);
        client.stream_id = client.created_stream_id().unwrap_or(1);
        client.send(
            8,
            MESSAGE_COMMAND_AMF0,
            0,
            client.stream_id,
            &amf(&[
                Amf::Str("publish"),
                Amf::Number(3.0),
                Amf::Null,
                Amf::Owned(key.to_owned()),
                Amf::Str("live"),
            ]),
        );
        client.wait_for(b"NetStream.Publish.Start");
        client
    }

    fn handshake(&mut self) {
        let mut c0c1 = vec![3u8];
        c0c1.extend_from_slice(&[0; 8]);
        c0c1.extend((0..1528u32).map(|i| (i * 7 + 13) as u8));
        self.socket.write_all(&c0c1).expect("send C0+C1");
        let mut s0s1s2 = vec![0u8; 1 + 1536 * 2];
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut read = 0;
        while read < s0s1s2.len() {
            match self.socket.read(&mut s0s1s2[read..]) {
                Ok(0) => panic!("server closed during the handshake"),
                Ok(n) => read += n,
                Err(_) if Instant::now() < deadline => {}
                Err(e) => panic!("handshake: {e}"),
            }
        }
        assert_eq!(s0s1s2[0], 3, "S0 version");
        // C2 echoes S1.
        self.socket.write_all(&s0s1s2[1..1537]).expect("send C2");
    }

    fn wait_for(&mut self, needle: &[u8]) {
        self.wait_for_count(needle, 1);
    }

    fn wait_for_count(&mut self, needle: &[u8], count: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let found = self
                .received
                .windows(needle.len())
                .filter(|w| *w == needle)
                .count();
            if found >= count {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no {:?} from the server",
                String::from_utf8_lossy(needle)
            );
            self.read_some();
        }
    }

    fn read_some(&mut self) {
        let mut buf = [0u8; 4096];
        match self.socket.read(&mut buf) {
            Ok(0) => panic!("server closed the connection"),
            Ok(n) => self.received.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }

    /// The number after the second `_result`: transaction id 2.0, null, then the stream id
    /// (AMF0 number marker 0x00 and 8 bytes).
    fn created_stream_id(&self) -> Option<u32> {
        let at = self
            .received
            .windows(7)
            .enumerate()
            .filter(|(_, w)| *w == b"_result")
            .nth(1)?
            .0;
        let rest = self.received.get(at + 7..)?;
        // Number 2.0 (9 bytes), null (1 byte), number.
        let number = rest.get(10..19)?;
        (number[0] == 0).then(|| f64::from_be_bytes(number[1..9].try_into().unwrap()) as u32)
    }

    /// One message in chunks of [`CHUNK_SIZE`]: a type-0 chunk, then type-3 continuations.
    fn send(&mut self, csid: u8, kind: u8, timestamp: u32, stream_id: u32, payload: &[u8]) {
        assert!((2..64).contains(&csid) && timestamp < 0xff_ffff);
        let mut out = Vec::with_capacity(payload.len() + 16);
        out.push(csid);
        out.extend_from_slice(&timestamp.to_be_bytes()[1..]);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.push(kind);
        out.extend_from_slice(&stream_id.to_le_bytes());
        for (index, piece) in payload.chunks(CHUNK_SIZE).enumerate() {
            if index > 0 {
                out.push(0xc0 | csid);
            }
            out.extend_from_slice(piece);
        }
        self.socket.write_all(&out).expect("send an RTMP message");
    }

    /// The Enhanced RTMP SequenceStart of the video track (for `avc1`: the legacy FLV AVC
    /// sequence header, AVCPacketType 0, FLV spec E.4.3.1).
    pub fn send_video_sequence_start(&mut self, fourcc: &[u8; 4], record: &[u8]) {
        let mut body = if fourcc == b"avc1" {
            vec![0x17, 0, 0, 0, 0] // keyframe, AVC; sequence header; composition time 0
        } else {
            let mut body = vec![0x80 | (1 << 4)]; // IsExHeader, keyframe, SequenceStart (0)
            body.extend_from_slice(fourcc);
            body
        };
        body.extend_from_slice(record);
        self.send(6, MESSAGE_VIDEO, 0, self.stream_id, &body);
    }

    /// One video frame: CodedFrames with a composition time for `hvc1` when it is not 0,
    /// CodedFramesX otherwise (as ffmpeg 6.1's FLV muxer does); always CodedFrames for `av01`.
    pub fn send_video_frame(&mut self, fourcc: &[u8; 4], packet: &Packet) {
        let frame_type = if packet.keyframe { 1 } else { 2 };
        let composition = (packet.pts_ms - packet.dts_ms) as i32;
        if fourcc == b"avc1" {
            // Legacy AVC NALU packet: AVCPacketType 1 and an SI24 composition time.
            let mut body = vec![(frame_type << 4) | 7, 1];
            body.extend_from_slice(&composition.to_be_bytes()[1..]);
            body.extend_from_slice(&packet.data);
            self.send(
                6,
                MESSAGE_VIDEO,
                packet.dts_ms as u32,
                self.stream_id,
                &body,
            );
            return;
        }
        let hevc = fourcc == b"hvc1";
        let packet_type = if hevc && composition == 0 { 3 } else { 1 };
        let mut body = vec![0x80 | (frame_type << 4) | packet_type];
        body.extend_from_slice(fourcc);
        if hevc && packet_type == 1 {
            body.extend_from_slice(&composition.to_be_bytes()[1..]);
        }
        body.extend_from_slice(&packet.data);
        self.send(
            6,
            MESSAGE_VIDEO,
            packet.dts_ms as u32,
            self.stream_id,
            &body,
        );
    }

    /// The legacy FLV AAC sequence header (AACPacketType 0).
    pub fn send_audio_config(&mut self, asc: &[u8]) {
        let mut body = vec![0xaf, 0x00];
        body.extend_from_slice(asc);
        self.send(4, MESSAGE_AUDIO, 0, self.stream_id, &body);
    }

    pub fn send_audio_frame(&mut self, packet: &Packet) {
        let mut body = vec![0xaf, 0x01];
        body.extend_from_slice(&packet.data);
        self.send(
            4,
            MESSAGE_AUDIO,
            packet.dts_ms as u32,
            self.stream_id,
            &body,
        );
    }

    /// Sends the sequence headers, then every packet at the pace of its dts (real time, as a
    /// live encoder would), then unpublishes and closes.
    pub fn publish_media(self, media: &Mp4Media) {
        self.publish_in_turn(std::slice::from_ref(media));
    }

    /// [`Self::publish_media`] for several files one after the other in one session, as an
    /// encoder whose settings change mid-stream: each file's sequence headers go out again
    /// before its first packet, and its times continue where the previous file ended.
    pub fn publish_in_turn(mut self, medias: &[Mp4Media]) {
        let start = Instant::now();
        let mut offset = 0;
        for media in medias {
            offset = self.send_media(media, start, offset);
        }
        self.unpublish();
    }

    /// Sends one file's headers and packets in real time from `start`, its times shifted to
    /// begin at `offset_ms`; returns where the next file's times begin.
    fn send_media(&mut self, media: &Mp4Media, start: Instant, offset_ms: i64) -> i64 {
        self.send_video_sequence_start(&media.fourcc, &media.video_record);
        if let Some(asc) = &media.audio_config {
            self.send_audio_config(asc);
        }
        let first_dts = media.packets.iter().map(|p| p.dts_ms).min().unwrap_or(0);
        let mut end = offset_ms;
        for packet in &media.packets {
            // Times start at `offset_ms` on the wire (0 for the first file, as an encoder's).
            let dts_ms = packet.dts_ms - first_dts + offset_ms;
            let due = Duration::from_millis(dts_ms.max(0) as u64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            let packet = Packet {
                dts_ms,
                pts_ms: packet.pts_ms - first_dts + offset_ms,
                ..packet.clone()
            };
            end = end.max(packet.dts_ms + 40);
            if packet.video {
                self.send_video_frame(&media.fourcc, &packet);
            } else {
                self.send_audio_frame(&packet);
            }
            // Keep the server's acknowledgements and pings drained.
            let _ = self.socket.set_nonblocking(true);
            self.read_some_nonblocking();
            let _ = self.socket.set_nonblocking(false);
        }
        end
    }

    fn unpublish(&mut self) {
        let end = amf(&[
            Amf::Str("deleteStream"),
            Amf::Number(4.0),
            Amf::Null,
            Amf::Number(f64::from(self.stream_id)),
        ]);
        self.send(3, MESSAGE_COMMAND_AMF0, 0, 0, &end);
        std::thread::sleep(Duration::from_millis(200));
    }

    fn read_some_nonblocking(&mut self) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.socket.read(&mut buf) {
            if n == 0 {
                break;
            }
            self.received.extend_from_slice(&buf[..n]);
            // Only replies at the start matter; keep memory bounded.
            if self.received.len() > 1 << 20 {
                self.received.clear();
            }
        }
    }
}
