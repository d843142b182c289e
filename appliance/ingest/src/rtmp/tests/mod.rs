//! Whole-session tests: a small sans-IO publishing client drives the session through the
//! handshake, the command exchange and media, the way ffmpeg and OBS do; `rtmp2` does the same
//! the way GStreamer's rtmp2sink does, and `captures` replays bytes real publishers sent.

use std::collections::HashMap;
use std::time::Instant;

/// Some `Instant` to pass in: `std` has no constructor but `now()`, and the session never
/// compares times today, so any value will do.
#[allow(clippy::disallowed_methods)]
fn some_instant() -> Instant {
    Instant::now()
}

use media::Codec;

use super::amf0::{self, Amf0Value};
use super::chunk::{ChunkReader, Message};
use super::handshake::PACKET_LEN;
use super::{PublishRejection, RtmpError, RtmpEvent, RtmpSession};

mod captures;
mod enhanced;
mod rtmp2;

/// ffmpeg 5.1's AVC sequence header body for x264 1280x720 30 fps (see media's avc tests).
const X264_720P_RECORD: &str = "0164001fffe1001a6764001facd9405005bb0110000003001000000303c0f183196001000668ebe3cb22c0fdf8f800";
const X264_720P_SPS: &str = "6764001facd9405005bb0110000003001000000303c0f1831960";
/// ffmpeg's AAC-LC 48 kHz stereo AudioSpecificConfig.
const AAC_48K_STEREO_ASC: [u8; 2] = [0x11, 0x90];

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// What a chunk stream of the client remembers, to compress headers as ffmpeg does.
#[derive(Default, Clone, Copy)]
struct ClientChunkStream {
    timestamp: u32,
    delta: u32,
    length: usize,
    type_id: u8,
    stream_id: u32,
    used: bool,
}

/// The client half: writes what a publisher writes, reads what the server answers.
struct TestClient {
    chunk_size: usize,
    streams: HashMap<u32, ClientChunkStream>,
    /// Server bytes not yet read (after the handshake).
    received: Vec<u8>,
    server_reader: ChunkReader,
    handshake_done: bool,
    transaction: f64,
}

impl TestClient {
    fn new() -> Self {
        TestClient {
            chunk_size: 128,
            streams: HashMap::new(),
            received: Vec::new(),
            server_reader: ChunkReader::default(),
            handshake_done: false,
            transaction: 0.0,
        }
    }

    fn c0_c1() -> Vec<u8> {
        let mut bytes = vec![3];
        bytes.extend((0..PACKET_LEN).map(|i| (i * 31 % 256) as u8));
        bytes
    }

    /// Writes one message with the smallest header type that describes it (§5.3.1.2), with
    /// extended timestamps where needed and on every type-3 continuation chunk.
    fn message(
        &mut self,
        csid: u32,
        type_id: u8,
        stream_id: u32,
        ts: u32,
        payload: &[u8],
    ) -> Vec<u8> {
        let prev = self.streams.get(&csid).copied().unwrap_or_default();
        let delta = ts.wrapping_sub(prev.timestamp);
        let fmt = if !prev.used || prev.stream_id != stream_id || ts < prev.timestamp {
            0
        } else if prev.length != payload.len() || prev.type_id != type_id {
            1
        } else if prev.delta != delta {
            2
        } else {
            3
        };
        let time_field = if fmt == 0 { ts } else { delta };
        let extended = time_field >= 0xff_ffff;
        let mut out = Vec::new();
        let basic = |out: &mut Vec<u8>, fmt: u8| {
            if csid < 64 {
                out.push(fmt << 6 | csid as u8);
            } else if csid < 320 {
                out.extend([fmt << 6, (csid - 64) as u8]);
            } else {
                let id = csid - 64;
                out.extend([fmt << 6 | 1, id as u8, (id >> 8) as u8]);
            }
        };
        basic(&mut out, fmt);
        let field = if extended { 0xff_ffff } else { time_field };
        if fmt <= 2 {
            out.extend(&field.to_be_bytes()[1..]);
        }
        if fmt <= 1 {
            out.extend(&(payload.len() as u32).to_be_bytes()[1..]);
            out.push(type_id);
        }
        if fmt == 0 {
            out.extend(stream_id.to_le_bytes());
        }
        // A type-3 header repeats the extended timestamp of the header it stands for.
        let prev_extended = prev.used
            && (if fmt == 3 {
                prev.delta >= 0xff_ffff
            } else {
                false
            });
        if extended || prev_extended {
            out.extend(time_field.to_be_bytes());
        }
        for (index, chunk) in payload.chunks(self.chunk_size).enumerate() {
            if index > 0 {
                basic(&mut out, 3);
                if extended || prev_extended {
                    out.extend(time_field.to_be_bytes());
                }
            }
            out.extend(chunk);
        }
        self.streams.insert(
            csid,
            ClientChunkStream {
                timestamp: ts,
                delta: time_field,
                length: payload.len(),
                type_id,
                stream_id,
                used: true,
            },
        );
        out
    }

    fn command(&mut self, stream_id: u32, name: &str, args: &[Amf0Value]) -> Vec<u8> {
        self.transaction += 1.0;
        let transaction = if name == "publish" {
            0.0
        } else {
            self.transaction
        };
        let mut payload = Vec::new();
        amf0::encode(&Amf0Value::String(name.into()), &mut payload);
        amf0::encode(&Amf0Value::Number(transaction), &mut payload);
        for arg in args {
            amf0::encode(arg, &mut payload);
        }
        let csid = if stream_id == 0 { 3 } else { 8 };
        self.message(csid, 20, stream_id, 0, &payload)
    }

    fn set_chunk_size(&mut self, size: u32) -> Vec<u8> {
        let bytes = self.message(2, 1, 0, 0, &size.to_be_bytes());
        self.chunk_size = size as usize;
        bytes
    }

    fn connect(&mut self, app: &str) -> Vec<u8> {
        self.command(
            0,
            "connect",
            &[Amf0Value::Object(vec![
                ("app".into(), Amf0Value::String(app.into())),
                ("type".into(), Amf0Value::String("nonprivate".into())),
                ("flashVer".into(), Amf0Value::String("FMLE/3.0".into())),
                (
                    "tcUrl".into(),
                    Amf0Value::String(format!("rtmp://127.0.0.1/{app}")),
                ),
            ])],
        )
    }

    fn video(&mut self, ts: u32, body: &[u8]) -> Vec<u8> {
        self.message(6, 9, 1, ts, body)
    }

    fn audio(&mut self, ts: u32, body: &[u8]) -> Vec<u8> {
        self.message(4, 8, 1, ts, body)
    }

    /// Reads the server's answer: handshake bytes first, then messages (commands decoded).
    fn read(&mut self, bytes: &[u8]) -> (Option<Vec<u8>>, Vec<Message>) {
        self.received.extend_from_slice(bytes);
        let mut c2 = None;
        if !self.handshake_done {
            if self.received.len() < 1 + 2 * PACKET_LEN {
                return (None, Vec::new());
            }
            assert_eq!(self.received[0], 3);
            c2 = Some(self.received[1..1 + PACKET_LEN].to_vec());
            self.received.drain(..1 + 2 * PACKET_LEN);
            self.handshake_done = true;
        }
        let mut messages = Vec::new();
        let mut pos = 0;
        while let Some(chunk) = self
            .server_reader
            .read_chunk(&self.received[pos..], 0)
            .unwrap()
        {
            pos += chunk.len;
            if let Some(message) = chunk.message {
                if message.type_id == 1 {
                    let size = u32::from_be_bytes(message.payload[..4].try_into().unwrap());
                    self.server_reader.set_chunk_size(size, 0).unwrap();
                }
                messages.push(message);
            }
        }
        self.received.drain(..pos);
        (c2, messages)
    }
}

fn commands(messages: &[Message]) -> Vec<Vec<Amf0Value>> {
    messages
        .iter()
        .filter(|m| m.type_id == 20)
        .map(|m| amf0::decode_all(&m.payload).unwrap())
        .collect()
}

fn name(command: &[Amf0Value]) -> &str {
    command[0].as_str().unwrap()
}

fn code(command: &[Amf0Value]) -> &str {
    command[3]
        .property("code")
        .and_then(Amf0Value::as_str)
        .unwrap()
}

/// Both halves plus what the server said and reported.
struct Pair {
    client: TestClient,
    server: RtmpSession,
    now: Instant,
    replies: Vec<Message>,
    events: Vec<RtmpEvent>,
}

impl Pair {
    fn new() -> Self {
        Pair {
            client: TestClient::new(),
            server: RtmpSession::new(),
            now: some_instant(),
            replies: Vec::new(),
            events: Vec::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Result<(), RtmpError> {
        let used = self.server.handle_bytes(self.now, bytes)?;
        assert_eq!(used, bytes.len());
        self.drain();
        Ok(())
    }

    fn drain(&mut self) {
        let mut out = Vec::new();
        while self.server.poll_transmit(&mut out).is_some() {}
        let (c2, messages) = self.client.read(&out);
        self.replies.extend(messages);
        while let Some(event) = self.server.poll_event() {
            self.events.push(event);
        }
        if let Some(c2) = c2 {
            self.feed(&c2).unwrap();
        }
    }

    fn take_commands(&mut self) -> Vec<Vec<Amf0Value>> {
        commands(&std::mem::take(&mut self.replies))
    }

    /// Handshake, connect, releaseStream, FCPublish, createStream, publish: as ffmpeg sends.
    fn publish(&mut self, key: &str) {
        self.feed(&TestClient::c0_c1()).unwrap();
        let mut bytes = self.client.set_chunk_size(4096);
        bytes.extend(self.client.connect("live"));
        self.feed(&bytes).unwrap();
        let arg = Amf0Value::String(key.into());
        let mut bytes = self
            .client
            .command(0, "releaseStream", &[Amf0Value::Null, arg.clone()]);
        bytes.extend(
            self.client
                .command(0, "FCPublish", &[Amf0Value::Null, arg.clone()]),
        );
        bytes.extend(self.client.command(0, "createStream", &[Amf0Value::Null]));
        self.feed(&bytes).unwrap();
        let publish = self.client.command(
            1,
            "publish",
            &[Amf0Value::Null, arg, Amf0Value::String("live".into())],
        );
        self.feed(&publish).unwrap();
    }
}

fn avc_body(frame_type: u8, packet_type: u8, cts_ms: i32, data: &[u8]) -> Vec<u8> {
    let mut body = vec![frame_type << 4 | 7, packet_type];
    body.extend(&cts_ms.to_be_bytes()[1..]);
    body.extend(data);
    body
}

fn nal(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
    out.extend(bytes);
    out
}

fn aac_body(packet_type: u8, data: &[u8]) -> Vec<u8> {
    let mut body = vec![0xaf, packet_type];
    body.extend(data);
    body
}

fn media(events: &[RtmpEvent], codec: Codec) -> Vec<&media::AccessUnit> {
    events
        .iter()
        .filter_map(|e| match e {
            RtmpEvent::Media(unit) if unit.codec == codec => Some(unit),
            _ => None,
        })
        .collect()
}

#[test]
fn ffmpeg_style_publish_exchange() {
    let mut pair = Pair::new();
    pair.feed(&TestClient::c0_c1()).unwrap();
    // Handshake done (C2 went back in `drain`); connect with objectEncoding 0.
    let mut bytes = pair.client.set_chunk_size(4096);
    let connect = pair.client.command(
        0,
        "connect",
        &[Amf0Value::Object(vec![
            ("app".into(), Amf0Value::String("live".into())),
            ("objectEncoding".into(), Amf0Value::Number(0.0)),
        ])],
    );
    bytes.extend(connect);
    pair.feed(&bytes).unwrap();
    let replies = std::mem::take(&mut pair.replies);
    let types: Vec<u8> = replies.iter().map(|m| m.type_id).collect();
    assert_eq!(types, [5, 6, 1, 20]);
    assert_eq!(replies[0].payload[..], 5_000_000u32.to_be_bytes());
    assert_eq!(replies[1].payload[..], [0x00, 0x4c, 0x4b, 0x40, 2]);
    assert_eq!(replies[2].payload[..], 4096u32.to_be_bytes());
    let result = &commands(&replies)[0];
    assert_eq!(name(result), "_result");
    assert_eq!(result[1], Amf0Value::Number(1.0));
    assert_eq!(
        result[2].property("fmsVer").and_then(Amf0Value::as_str),
        Some("FMS/3,0,1,123")
    );
    assert_eq!(code(result), "NetConnection.Connect.Success");
    assert_eq!(
        result[3].property("objectEncoding"),
        Some(&Amf0Value::Number(0.0))
    );

    let key = Amf0Value::String("test?token=abc".into());
    let mut bytes = pair
        .client
        .command(0, "releaseStream", &[Amf0Value::Null, key.clone()]);
    bytes.extend(
        pair.client
            .command(0, "FCPublish", &[Amf0Value::Null, key.clone()]),
    );
    bytes.extend(pair.client.command(0, "createStream", &[Amf0Value::Null]));
    pair.feed(&bytes).unwrap();
    let replies = pair.take_commands();
    let names: Vec<&str> = replies.iter().map(|c| name(c)).collect();
    assert_eq!(names, ["_result", "onFCPublish", "_result"]);
    assert_eq!(replies[2][1], Amf0Value::Number(4.0));
    assert_eq!(replies[2][3], Amf0Value::Number(1.0));

    let publish = pair.client.command(
        1,
        "publish",
        &[Amf0Value::Null, key, Amf0Value::String("live".into())],
    );
    pair.feed(&publish).unwrap();
    assert_eq!(
        pair.events,
        [RtmpEvent::PublishRequested {
            app: "live".into(),
            stream_key: "test".into()
        }]
    );
    assert!(
        pair.take_commands().is_empty(),
        "answered before the engine did"
    );
    pair.server.accept_publish();
    pair.drain();
    let replies = std::mem::take(&mut pair.replies);
    assert_eq!(replies[0].type_id, 4); // Stream Begin
    assert_eq!(replies[0].payload[..], [0, 0, 0, 0, 0, 1]);
    let status = &commands(&replies)[0];
    assert_eq!(name(status), "onStatus");
    assert_eq!(code(status), "NetStream.Publish.Start");
    assert_eq!(replies[1].stream_id, 1);

    let unpublish = pair.client.command(0, "FCUnpublish", &[Amf0Value::Null]);
    pair.feed(&unpublish).unwrap();
    let delete = pair.client.command(
        0,
        "deleteStream",
        &[Amf0Value::Null, Amf0Value::Number(1.0)],
    );
    pair.feed(&delete).unwrap();
    assert_eq!(pair.events.last(), Some(&RtmpEvent::Unpublished));
    assert_eq!(
        pair.events
            .iter()
            .filter(|e| **e == RtmpEvent::Unpublished)
            .count(),
        1
    );
}

#[test]
fn media_becomes_access_units_with_bframe_times_and_even_aac() {
    let mut pair = Pair::new();
    pair.publish("cam");
    pair.server.accept_publish();
    pair.drain();
    pair.events.clear();
    // Small chunks so frames span many chunks, and metadata first as ffmpeg sends it.
    let mut bytes = pair.client.set_chunk_size(50);
    let mut meta = Vec::new();
    amf0::encode(&Amf0Value::String("@setDataFrame".into()), &mut meta);
    amf0::encode(&Amf0Value::String("onMetaData".into()), &mut meta);
    amf0::encode(
        &Amf0Value::EcmaArray(vec![("width".into(), Amf0Value::Number(1280.0))]),
        &mut meta,
    );
    bytes.extend(pair.client.message(4, 18, 1, 0, &meta));
    bytes.extend(
        pair.client
            .video(0, &avc_body(1, 0, 0, &hex(X264_720P_RECORD))),
    );
    bytes.extend(pair.client.audio(0, &aac_body(0, &AAC_48K_STEREO_ASC)));
    pair.feed(&bytes).unwrap();

    // Keyframe with AUD + SPS in band (stripped) and a big slice; then P, B, B as x264 -bf 2
    // orders them: dts 0, 33, 66, 100 ms; composition offsets 66, 133, 0, 0.
    let mut keyframe = nal(&[0x09, 0xf0]);
    keyframe.extend(nal(&hex(X264_720P_SPS)));
    let idr: Vec<u8> = std::iter::once(0x65)
        .chain((0..400).map(|i| i as u8))
        .collect();
    keyframe.extend(nal(&idr));
    let frames = [
        (0u32, 1u8, 66i32, keyframe),
        (33, 2, 133, nal(&[0x41, 1, 2, 3])),
        (66, 2, 0, nal(&[0x01, 4])),
        (100, 2, 0, nal(&[0x01, 5])),
    ];
    let aac_ms = [0u32, 21, 43, 64, 85, 107, 128];
    let mut bytes = Vec::new();
    for (ts, frame_type, cts, data) in &frames {
        bytes.extend(
            pair.client
                .video(*ts, &avc_body(*frame_type, 1, *cts, data)),
        );
    }
    for ms in aac_ms {
        bytes.extend(pair.client.audio(ms, &aac_body(1, &[0x21, 0x10, ms as u8])));
    }
    // End of sequence: ignored.
    bytes.extend(pair.client.video(133, &avc_body(1, 2, 0, &[])));
    pair.feed(&bytes).unwrap();

    let RtmpEvent::VideoConfig(media::TrackConfig::Avc(video)) = &pair.events[0] else {
        panic!("{:?}", pair.events[0]);
    };
    assert_eq!(
        (video.width, video.height, video.frame_rate),
        (1280, 720, Some((30, 1)))
    );
    let RtmpEvent::AudioConfig(audio) = &pair.events[1] else {
        panic!("{:?}", pair.events[1]);
    };
    assert_eq!((audio.sample_rate, audio.channels), (48_000, 2));

    let video = media(&pair.events, Codec::H264);
    let times: Vec<(i64, i64, bool)> = video.iter().map(|u| (u.dts, u.pts, u.keyframe)).collect();
    assert_eq!(
        times,
        [
            (0, 66 * 90, true),
            (33 * 90, 166 * 90, false),
            (66 * 90, 66 * 90, false),
            (100 * 90, 100 * 90, false)
        ]
    );
    assert_eq!(
        video[0].payload[..],
        nal(&idr)[..],
        "AUD and SPS were not stripped"
    );
    assert_eq!(video[1].payload[..], nal(&[0x41, 1, 2, 3])[..]);

    let audio = media(&pair.events, Codec::Aac);
    let pts: Vec<i64> = audio.iter().map(|u| u.pts).collect();
    assert_eq!(pts, (0..7).map(|i| i * 1024).collect::<Vec<_>>());
    assert!(audio.iter().all(|u| u.keyframe && u.dts == u.pts));
    assert_eq!(audio[3].payload[..], [0x21, 0x10, 64]);
}

/// An MPEG-1 layer III frame of libmp3lame at 44.1 kHz joint stereo 128 kbit/s (417 bytes,
/// no padding): its real header, then a body of zeros.
fn mp3_frame() -> Vec<u8> {
    let mut frame = vec![0xff, 0xfb, 0x90, 0x64];
    frame.resize(417, 0);
    frame
}

#[test]
fn mp3_tags_become_framed_units_with_an_audio_format_and_even_pts() {
    let mut pair = Pair::new();
    pair.publish("mp3");
    // A first tag before the accept: its format is reported at the accept, its frame dropped.
    let mut body = vec![0x2f];
    body.extend(mp3_frame());
    let early = pair.client.audio(0, &body);
    pair.feed(&early).unwrap();
    pair.server.accept_publish();
    pair.drain();
    let format = media::AudioFormat {
        codec: Codec::Mp3,
        sample_rate: 44_100,
        channels: 2,
    };
    assert!(
        pair.events.contains(&RtmpEvent::AudioFormat(format)),
        "{:?}",
        pair.events
    );
    pair.events.clear();
    // 1152 samples at 44.1 kHz = 26.12 ms: ffmpeg sends 26, 52, 78 ms; one tag holds two
    // frames; one tag is damaged (a header with bitrate_index 15) and is dropped.
    let mut bytes = Vec::new();
    bytes.extend(pair.client.audio(26, &body));
    let mut double = body.clone();
    double.extend(mp3_frame());
    bytes.extend(pair.client.audio(52, &double));
    let mut damaged = body.clone();
    damaged[3] = 0xf0;
    bytes.extend(pair.client.audio(104, &damaged));
    bytes.extend(pair.client.audio(131, &body));
    pair.feed(&bytes).unwrap();
    assert!(
        !pair
            .events
            .iter()
            .any(|e| matches!(e, RtmpEvent::AudioFormat(_))),
        "an unchanged format was reported again"
    );
    let units = media(&pair.events, Codec::Mp3);
    let pts: Vec<i64> = units.iter().map(|u| u.pts).collect();
    // The dropped frame's gap (one frame) is within the clock's tolerance: counting goes on.
    assert_eq!(pts, [1152, 2304, 3456, 4608]);
    assert!(units.iter().all(|u| u.payload[..] == mp3_frame()[..]));
    assert_eq!(pair.server.bad_audio_tags(), 1);
    // An AAC sequence header afterwards replaces the MP3 track.
    let header = pair.client.audio(150, &aac_body(0, &AAC_48K_STEREO_ASC));
    pair.feed(&header).unwrap();
    assert!(matches!(
        pair.events.last(),
        Some(RtmpEvent::AudioConfig(_))
    ));
}

#[test]
fn media_before_accept_is_dropped_and_configs_follow_the_accept() {
    let mut pair = Pair::new();
    pair.publish("early");
    let mut bytes = pair
        .client
        .video(0, &avc_body(1, 0, 0, &hex(X264_720P_RECORD)));
    bytes.extend(pair.client.video(0, &avc_body(1, 1, 0, &nal(&[0x65, 1]))));
    bytes.extend(pair.client.audio(0, &aac_body(1, &[0x21])));
    pair.feed(&bytes).unwrap();
    assert_eq!(pair.events.len(), 1, "{:?}", pair.events);
    pair.server.accept_publish();
    pair.drain();
    assert!(matches!(pair.events[1], RtmpEvent::VideoConfig(_)));
    assert_eq!(pair.events.len(), 2);
    // Audio before its config: dropped.
    let audio = pair.client.audio(23, &aac_body(1, &[0x21]));
    pair.feed(&audio).unwrap();
    assert_eq!(pair.events.len(), 2);
    let video = pair.client.video(33, &avc_body(2, 1, 0, &nal(&[0x41, 1])));
    pair.feed(&video).unwrap();
    assert_eq!(media(&pair.events, Codec::H264).len(), 1);
}

#[test]
fn rejected_publish_gets_bad_name_and_no_media() {
    for (why, text) in [
        (PublishRejection::NameInUse, "already being published"),
        (PublishRejection::BadName, "not accepted"),
    ] {
        let mut pair = Pair::new();
        pair.publish("taken");
        pair.take_commands();
        pair.server.reject_publish(why);
        pair.drain();
        let status = &pair.take_commands()[0];
        assert_eq!(name(status), "onStatus");
        assert_eq!(
            status[3].property("level"),
            Some(&Amf0Value::String("error".into()))
        );
        assert_eq!(code(status), "NetStream.Publish.BadName");
        let description = status[3]
            .property("description")
            .and_then(Amf0Value::as_str);
        assert!(description.unwrap().contains(text), "{description:?}");
        assert!(
            description.unwrap().contains("live/taken"),
            "{description:?}"
        );
        let mut bytes = pair
            .client
            .video(0, &avc_body(1, 0, 0, &hex(X264_720P_RECORD)));
        bytes.extend(pair.client.video(0, &avc_body(1, 1, 0, &nal(&[0x65, 1]))));
        pair.feed(&bytes).unwrap();
        assert_eq!(pair.events.len(), 1, "{:?}", pair.events);
        // Closing a refused stream is not an unpublish the engine must hear about.
        let delete = pair.client.command(0, "deleteStream", &[Amf0Value::Null]);
        pair.feed(&delete).unwrap();
        assert_eq!(pair.events.len(), 1);
    }
}

#[test]
fn unknown_commands_are_answered_or_ignored_and_the_session_goes_on() {
    let mut pair = Pair::new();
    pair.publish("x");
    pair.take_commands();
    let call = pair
        .client
        .command(0, "getStreamLength", &[Amf0Value::Null]);
    pair.feed(&call).unwrap();
    let error = &pair.take_commands()[0];
    assert_eq!(name(error), "_error");
    assert_eq!(code(error), "NetConnection.Call.Failed");
    let mut payload = Vec::new();
    amf0::encode(&Amf0Value::String("whatever".into()), &mut payload);
    amf0::encode(&Amf0Value::Number(0.0), &mut payload);
    let notify = pair.client.message(3, 20, 0, 0, &payload);
    pair.feed(&notify).unwrap();
    assert!(pair.take_commands().is_empty());
    pair.server.accept_publish();
    pair.drain();
    assert_eq!(code(&pair.take_commands()[0]), "NetStream.Publish.Start");
}

#[test]
fn timestamps_unwrap_across_the_32_bit_wrap_with_extended_headers() {
    let mut pair = Pair::new();
    pair.publish("long");
    pair.server.accept_publish();
    pair.drain();
    let start = u32::MAX - 40;
    let mut bytes = pair
        .client
        .video(start, &avc_body(1, 0, 0, &hex(X264_720P_RECORD)));
    for i in 0..4u32 {
        let ts = start.wrapping_add(i * 33);
        bytes.extend(
            pair.client
                .video(ts, &avc_body(2, 1, 0, &nal(&[0x41, i as u8]))),
        );
    }
    pair.feed(&bytes).unwrap();
    let dts: Vec<i64> = media(&pair.events, Codec::H264)
        .iter()
        .map(|u| u.dts)
        .collect();
    let expected: Vec<i64> = (0..4).map(|i| (i64::from(start) + i * 33) * 90).collect();
    assert_eq!(dts, expected);
}

#[test]
fn acknowledgements_follow_the_client_window() {
    let mut pair = Pair::new();
    pair.publish("ack");
    pair.server.accept_publish();
    pair.drain();
    let window = pair.client.message(2, 5, 0, 0, &1000u32.to_be_bytes());
    pair.feed(&window).unwrap();
    pair.replies.clear();
    let config = pair
        .client
        .video(0, &avc_body(1, 0, 0, &hex(X264_720P_RECORD)));
    pair.feed(&config).unwrap();
    let frame = pair
        .client
        .video(33, &avc_body(2, 1, 0, &nal(&[0x41; 1200])));
    pair.feed(&frame).unwrap();
    let acks: Vec<u32> = pair
        .replies
        .iter()
        .filter(|m| m.type_id == 3)
        .map(|m| u32::from_be_bytes(m.payload[..4].try_into().unwrap()))
        .collect();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert!(acks[0] > 1 + 3072 + 1000, "{acks:?}");
}

#[test]
fn abort_drops_a_half_sent_message() {
    let mut pair = Pair::new();
    pair.publish("abort");
    pair.server.accept_publish();
    pair.drain();
    let mut bytes = pair.client.set_chunk_size(64);
    bytes.extend(
        pair.client
            .video(0, &avc_body(1, 0, 0, &hex(X264_720P_RECORD))),
    );
    let frame = pair
        .client
        .video(33, &avc_body(2, 1, 0, &nal(&[0x41; 300])));
    // The type 1 header and the first 64-byte chunk: a message a fifth received.
    assert_eq!(frame[0] >> 6, 1);
    bytes.extend(&frame[..8 + 64]);
    // Abort csid 6; the stream then starts a new message with a type 0 header.
    pair.client.streams.remove(&6);
    bytes.extend(pair.client.message(2, 2, 0, 0, &6u32.to_be_bytes()));
    bytes.extend(pair.client.video(66, &avc_body(2, 1, 0, &nal(&[0x41, 9]))));
    pair.feed(&bytes).unwrap();
    let video = media(&pair.events, Codec::H264);
    assert_eq!(video.len(), 1, "{:?}", pair.events);
    assert_eq!(video[0].dts, 66 * 90);
}

#[test]
fn bad_input_ends_the_session_with_context() {
    let mut pair = Pair::new();
    pair.publish("bad");
    pair.server.accept_publish();
    pair.drain();
    let vp6 = pair.client.video(0, &[0x1c, 0, 0]);
    let err = pair.feed(&vp6).unwrap_err().to_string();
    assert!(err.contains("unsupported FLV video codec id 12"), "{err}");
    assert!(err.contains("csid 6"), "{err}");
    assert!(pair.feed(&[0]).is_err(), "a failed session took more bytes");

    let mut pair = Pair::new();
    pair.publish("bad");
    let record = pair
        .client
        .video(0, &avc_body(1, 0, 0, &[1, 0x64, 0, 0x1f, 0xfd, 0xe1]));
    let err = pair.feed(&record).unwrap_err().to_string();
    assert!(err.contains("AVC sequence header"), "{err}");
    assert!(err.contains("lengthSizeMinusOne 1"), "{err}");

    let mut pair = Pair::new();
    pair.publish("bad");
    let command = pair.client.message(3, 20, 0, 0, &[0x02, 0x00, 0x10, b'x']);
    let err = pair.feed(&command).unwrap_err().to_string();
    assert!(
        err.contains("AMF0 command (message type 20, csid 3"),
        "{err}"
    );

    let mut pair = Pair::new();
    let err = pair.feed(b"GET / HTTP/1.1\r\n").unwrap_err().to_string();
    assert!(err.contains("C0 version 71"), "{err}");
}

/// xorshift64*: deterministic, so a failing case can be replayed by its round number.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

/// A whole valid publisher byte stream (handshake through media), for mutation.
fn valid_stream() -> Vec<u8> {
    let mut client = TestClient::new();
    let mut bytes = TestClient::c0_c1();
    bytes.extend([7; PACKET_LEN]); // C2
    bytes.extend(client.set_chunk_size(64));
    bytes.extend(client.connect("live"));
    bytes.extend(client.command(0, "createStream", &[Amf0Value::Null]));
    bytes.extend(client.command(
        1,
        "publish",
        &[
            Amf0Value::Null,
            Amf0Value::String("k".into()),
            Amf0Value::String("live".into()),
        ],
    ));
    bytes.extend(client.video(0, &avc_body(1, 0, 0, &hex(X264_720P_RECORD))));
    bytes.extend(client.audio(0, &aac_body(0, &AAC_48K_STEREO_ASC)));
    for i in 0..6u32 {
        bytes.extend(client.video(
            i * 33,
            &avc_body(1 + u8::from(i > 0), 1, 33, &nal(&[0x65; 90])),
        ));
        bytes.extend(client.audio(i * 21, &aac_body(1, &[0x21; 20])));
    }
    bytes
}

/// Feeds `bytes` in slices cut by `rng`, accepting a publish as soon as it is asked for.
fn feed_in_slices(
    bytes: &[u8],
    rng: &mut Prng,
    max_slice: usize,
) -> (Vec<RtmpEvent>, Result<(), RtmpError>) {
    let mut session = RtmpSession::new();
    let now = some_instant();
    let mut events = Vec::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let len = 1 + rng.below(max_slice.min(rest.len()));
        let (slice, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        if let Err(err) = session.handle_bytes(now, slice) {
            return (events, Err(err));
        }
        while session.poll_transmit(&mut out).is_some() {}
        while let Some(event) = session.poll_event() {
            if matches!(event, RtmpEvent::PublishRequested { .. }) {
                session.accept_publish();
            }
            events.push(event);
        }
    }
    (events, Ok(()))
}

#[test]
fn garbage_and_mutations_never_panic() {
    let valid = valid_stream();
    let mut rng = Prng(0x5eed_1234_abcd_ef01);
    // The unmutated stream works in any slicing. Media in the slice that carried `publish`
    // comes before the accept and is dropped; everything after it arrives.
    let (events, result) = feed_in_slices(&valid, &mut rng, 1);
    result.unwrap();
    assert_eq!(media(&events, Codec::H264).len(), 6);
    assert_eq!(media(&events, Codec::Aac).len(), 6);
    for _ in 0..50 {
        let (events, result) = feed_in_slices(&valid, &mut rng, 700);
        result.unwrap();
        let video: Vec<i64> = media(&events, Codec::H264)
            .iter()
            .map(|u| u.dts / 90)
            .collect();
        assert!([0, 33, 66, 99, 132, 165].ends_with(&video), "{video:?}");
        let audio: Vec<i64> = media(&events, Codec::Aac).iter().map(|u| u.pts).collect();
        assert!(audio.windows(2).all(|w| w[1] - w[0] == 1024), "{audio:?}");
    }
    let mut failures = 0;
    for round in 0..3000 {
        let mut bytes = valid.clone();
        match round % 4 {
            0 => {
                // Flip a few bytes after the handshake.
                for _ in 0..1 + rng.below(4) {
                    let at = 3073 + rng.below(bytes.len() - 3073);
                    bytes[at] ^= 1 + rng.below(255) as u8;
                }
            }
            1 => bytes.truncate(rng.below(bytes.len())),
            2 => {
                let at = 3073 + rng.below(bytes.len() - 3073);
                let noise: Vec<u8> = (0..1 + rng.below(64)).map(|_| rng.next() as u8).collect();
                bytes.splice(at..at, noise);
            }
            _ => {
                // Pure noise after a valid handshake.
                bytes.truncate(3073);
                bytes.extend((0..rng.below(4000)).map(|_| rng.next() as u8));
            }
        }
        let (_, result) = feed_in_slices(&bytes, &mut rng, 300);
        failures += usize::from(result.is_err());
    }
    assert!(failures > 100, "mutations hardly ever failed: {failures}");
}

#[test]
fn chunk_header_bytes_of_a_type_3_start_use_the_previous_delta() {
    // Two audio messages of equal size and delta: the client writes the second with a type 3
    // header (one byte), as ffmpeg does for steady audio.
    let mut client = TestClient::new();
    let first = client.audio(10, &aac_body(1, &[1]));
    let second = client.audio(31, &aac_body(1, &[2]));
    let third = client.audio(52, &aac_body(1, &[3]));
    assert_eq!(third[0] >> 6, 3, "the test client did not compress");
    let mut reader = ChunkReader::default();
    let mut times = Vec::new();
    for bytes in [first, second, third] {
        let chunk = reader.read_chunk(&bytes, 0).unwrap().unwrap();
        times.push(chunk.message.unwrap().timestamp);
    }
    assert_eq!(times, [10, 31, 52]);
}
