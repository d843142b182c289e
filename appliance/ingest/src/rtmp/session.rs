//! The session: handshake, then messages (RTMP 1.0 §5.4, §6, §7): protocol control, the
//! NetConnection / NetStream command exchange of a publisher, and FLV media into access units.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::Bytes;

use media::mpeg_audio::MpegAudioHeader;
use media::{
    AacConfig, AccessUnit, AudioFormat, Av1Config, AvcConfig, Codec, HevcConfig, TrackConfig,
    VIDEO_TIMESCALE,
};

use super::amf0::{self, Amf0Value};
use super::chunk::{self, ChunkReader, Message};
use super::flv::{self, AacClock, AudioTag, TagError, TimestampUnwrapper, VideoTag};
use super::handshake::Handshake;
use super::{PublishRejection, RtmpError, RtmpEvent};

/// Message type ids (§5.4, §6.1, §7.1).
mod message_type {
    pub const SET_CHUNK_SIZE: u8 = 1;
    pub const ABORT: u8 = 2;
    pub const ACKNOWLEDGEMENT: u8 = 3;
    pub const USER_CONTROL: u8 = 4;
    pub const WINDOW_ACK_SIZE: u8 = 5;
    pub const SET_PEER_BANDWIDTH: u8 = 6;
    pub const AUDIO: u8 = 8;
    pub const VIDEO: u8 = 9;
    pub const DATA_AMF3: u8 = 15;
    pub const COMMAND_AMF3: u8 = 17;
    pub const DATA_AMF0: u8 = 18;
    pub const COMMAND_AMF0: u8 = 20;
    pub const AGGREGATE: u8 = 22;
}

/// What we ask of the client at connect: acknowledge every 5 MB, and our chunk size.
const OUR_WINDOW_ACK_SIZE: u32 = 5_000_000;
const OUR_CHUNK_SIZE: u32 = 4096;
/// Chunk streams we send on: protocol control, command replies, stream status.
const CSID_CONTROL: u8 = 2;
const CSID_COMMAND: u8 = 3;
const CSID_STATUS: u8 = 5;
/// The one message stream a publisher gets from createStream.
const PUBLISH_STREAM_ID: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
enum PublishState {
    Idle,
    /// PublishRequested was reported; waiting for the engine's answer.
    Requested {
        stream_key: String,
        stream_id: u32,
    },
    Publishing {
        stream_key: String,
    },
    Rejected,
}

/// One RTMP connection, server side. No sockets, no clock.
///
/// After any `handle_*` or `accept_*`/`reject_*` call: drain `poll_transmit` until `None`,
/// then `poll_event` until `None`. A `handle_bytes` error ends the session: close the
/// connection (after sending what `poll_transmit` still holds, if you like); later calls
/// return an error again.
#[derive(Debug)]
pub struct RtmpSession {
    handshake: Handshake,
    /// Received bytes not yet parsed (at most one incomplete chunk once the handshake is done).
    input: Vec<u8>,
    /// Connection offset of `input[0]`.
    input_offset: u64,
    reader: ChunkReader,
    transmit: Vec<u8>,
    out_chunk_size: u32,
    events: VecDeque<RtmpEvent>,
    failed: bool,

    app: Option<String>,
    publish: PublishState,
    video_config: Option<TrackConfig>,
    audio_config: Option<AacConfig>,
    /// The MP3 track's format, from its newest frame header (exclusive with `audio_config`).
    audio_format: Option<AudioFormat>,
    video_time: TimestampUnwrapper,
    audio_time: TimestampUnwrapper,
    aac_clock: AacClock,

    /// MP3 tags whose frames did not parse (dropped).
    bad_audio_tags: u64,
    /// Whether the publisher's `onMetaData` lists an audio track; `None` before any.
    announced_audio: Option<bool>,
    /// The client's Window Acknowledgement Size; we acknowledge after that many bytes.
    peer_window: Option<u32>,
    bytes_received: u64,
    acknowledged: u64,
}

impl Default for RtmpSession {
    fn default() -> Self {
        Self::new()
    }
}

/// Where a message came from, for error messages.
#[derive(Clone, Copy, Debug)]
struct Context {
    message_type: u8,
    csid: u32,
    offset: u64,
    timestamp: u32,
}

impl Context {
    fn error(&self, what: &'static str, reason: impl Into<String>) -> RtmpError {
        RtmpError::Message {
            what,
            message_type: self.message_type,
            csid: self.csid,
            offset: self.offset,
            timestamp: self.timestamp,
            reason: reason.into(),
        }
    }

    fn tag_error(&self, what: &'static str, error: TagError) -> RtmpError {
        match error {
            TagError::Unsupported(codec) => RtmpError::UnsupportedCodec {
                codec,
                csid: self.csid,
                offset: self.offset,
            },
            TagError::Malformed(reason) => self.error(what, reason),
        }
    }
}

impl RtmpSession {
    pub fn new() -> Self {
        RtmpSession {
            handshake: Handshake::AwaitC0C1,
            input: Vec::new(),
            input_offset: 0,
            reader: ChunkReader::default(),
            transmit: Vec::new(),
            out_chunk_size: chunk::DEFAULT_CHUNK_SIZE,
            events: VecDeque::new(),
            failed: false,
            app: None,
            publish: PublishState::Idle,
            video_config: None,
            audio_config: None,
            audio_format: None,
            video_time: TimestampUnwrapper::default(),
            audio_time: TimestampUnwrapper::default(),
            aac_clock: AacClock::default(),
            bad_audio_tags: 0,
            announced_audio: None,
            peer_window: None,
            bytes_received: 0,
            acknowledged: 0,
        }
    }

    /// Feeds received bytes; returns how many were consumed (all of them unless an error).
    /// Bytes that do not make a whole chunk yet are kept for the next call.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) -> Result<usize, RtmpError> {
        // No timers yet: the engine times out idle connections itself.
        let _ = now;
        if self.failed {
            return Err(RtmpError::Protocol(
                "the session already failed; close the connection".into(),
            ));
        }
        self.input.extend_from_slice(data);
        self.bytes_received += data.len() as u64;
        if let Err(err) = self.process_input() {
            self.failed = true;
            return Err(err);
        }
        self.acknowledge();
        Ok(data.len())
    }

    /// Appends bytes to send to `out`; returns how many were appended, `None` when nothing waits.
    pub fn poll_transmit(&mut self, out: &mut Vec<u8>) -> Option<usize> {
        if self.transmit.is_empty() {
            return None;
        }
        let len = self.transmit.len();
        out.extend_from_slice(&self.transmit);
        self.transmit.clear();
        Some(len)
    }

    /// MP3 tags dropped because their frames did not parse (damaged or cut short).
    pub fn bad_audio_tags(&self) -> u64 {
        self.bad_audio_tags
    }

    /// Whether the publisher's `onMetaData` (or `@setDataFrame onMetaData`) lists an audio
    /// track (any of `audiocodecid`, `audiodatarate`, `audiosamplerate`, `audiosamplesize`,
    /// `stereo`); `None` until one arrived. ffmpeg leaves them all out with `-an`; OBS and
    /// ffmpeg with audio write `audiocodecid`. A hint for how long to wait for audio's first
    /// tag, never a reason to drop audio that does come.
    pub fn announced_audio(&self) -> Option<bool> {
        self.announced_audio
    }

    pub fn poll_event(&mut self) -> Option<RtmpEvent> {
        self.events.pop_front()
    }

    /// Answers a [`RtmpEvent::PublishRequested`]: NetStream.Publish.Start goes out, and media
    /// from here on is reported (configs that came before the answer are reported now).
    /// Does nothing when no request is waiting.
    pub fn accept_publish(&mut self) {
        let PublishState::Requested {
            stream_key,
            stream_id,
        } = &self.publish
        else {
            return;
        };
        let (stream_key, stream_id) = (stream_key.clone(), *stream_id);
        // User Control Stream Begin (§7.1.7, event 0) for the publish stream.
        let mut begin = [0u8; 6];
        begin[2..].copy_from_slice(&stream_id.to_be_bytes());
        self.send(CSID_CONTROL, message_type::USER_CONTROL, 0, &begin);
        let description = format!("Publishing {}/{stream_key}.", self.app_name());
        self.send_status(stream_id, "status", "NetStream.Publish.Start", &description);
        self.events
            .extend(self.video_config.clone().map(RtmpEvent::VideoConfig));
        self.events
            .extend(self.audio_config.clone().map(RtmpEvent::AudioConfig));
        self.events
            .extend(self.audio_format.map(RtmpEvent::AudioFormat));
        self.publish = PublishState::Publishing { stream_key };
    }

    /// Answers a [`RtmpEvent::PublishRequested`] with an error status
    /// (`NetStream.Publish.BadName`, what ffmpeg and OBS show the user). The connection stays
    /// up; the engine may close it. Does nothing when no request is waiting.
    pub fn reject_publish(&mut self, why: PublishRejection) {
        let PublishState::Requested {
            stream_key,
            stream_id,
        } = &self.publish
        else {
            return;
        };
        let stream_id = *stream_id;
        let name = format!("{}/{stream_key}", self.app_name());
        let description = match why {
            PublishRejection::NameInUse => format!("Stream {name} is already being published."),
            PublishRejection::BadName => format!("Stream {name} is not accepted here."),
        };
        self.send_status(
            stream_id,
            "error",
            "NetStream.Publish.BadName",
            &description,
        );
        self.publish = PublishState::Rejected;
    }

    fn app_name(&self) -> &str {
        self.app.as_deref().unwrap_or("")
    }

    fn process_input(&mut self) -> Result<(), RtmpError> {
        let mut pos = 0;
        let result = loop {
            if self.handshake != Handshake::Done {
                match self
                    .handshake
                    .advance(&self.input[pos..], &mut self.transmit)
                {
                    Ok(0) => break Ok(()),
                    Ok(used) => pos += used,
                    Err(err) => break Err(err),
                }
                continue;
            }
            let offset = self.input_offset + pos as u64;
            let chunk = match self.reader.read_chunk(&self.input[pos..], offset) {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            };
            pos += chunk.len;
            if let Some(message) = chunk.message
                && let Err(err) = self.handle_message(message, offset)
            {
                break Err(err);
            }
        };
        self.input.drain(..pos);
        self.input_offset += pos as u64;
        result
    }

    fn handle_message(&mut self, message: Message, offset: u64) -> Result<(), RtmpError> {
        let ctx = Context {
            message_type: message.type_id,
            csid: message.csid,
            offset,
            timestamp: message.timestamp,
        };
        let payload = &message.payload;
        let u32_field = || {
            payload
                .get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| {
                    ctx.error(
                        "control message",
                        format!("{} bytes, 4 expected", payload.len()),
                    )
                })
        };
        match message.type_id {
            message_type::SET_CHUNK_SIZE => {
                // The top bit must be zero (§5.4.1); ffmpeg and OBS never set it.
                let size = u32_field()?;
                self.reader.set_chunk_size(size, offset)?;
            }
            message_type::ABORT => self.reader.abort(u32_field()?),
            message_type::WINDOW_ACK_SIZE => {
                let size = u32_field()?;
                self.peer_window = (size > 0).then_some(size);
            }
            message_type::ACKNOWLEDGEMENT
            | message_type::USER_CONTROL
            | message_type::SET_PEER_BANDWIDTH => {}
            message_type::COMMAND_AMF0 => self.handle_command(payload, &message, ctx)?,
            message_type::COMMAND_AMF3 => {
                // An AMF3 command is a format byte (0) and then AMF0 values (§7.1.1).
                self.handle_command(payload.get(1..).unwrap_or_default(), &message, ctx)?;
            }
            message_type::DATA_AMF0 => {
                // @setDataFrame / onMetaData: checked; the sequence headers say more about the
                // tracks, but only the metadata says up front whether audio will come.
                let values = amf0::decode_all(payload)
                    .map_err(|err| ctx.error("AMF0 data message", err.to_string()))?;
                if let Some(audio) = metadata_lists_audio(&values) {
                    self.announced_audio = Some(audio);
                }
            }
            message_type::DATA_AMF3 => {}
            message_type::VIDEO => self.handle_video(&message, ctx)?,
            message_type::AUDIO => self.handle_audio(&message, ctx)?,
            message_type::AGGREGATE => {
                return Err(ctx.error(
                    "aggregate message",
                    "aggregate messages are not supported from publishers",
                ));
            }
            // Unknown types (shared objects, AMF3 shared objects): not for a publisher; skip.
            _ => {}
        }
        Ok(())
    }

    fn handle_command(
        &mut self,
        payload: &[u8],
        message: &Message,
        ctx: Context,
    ) -> Result<(), RtmpError> {
        let values =
            amf0::decode_all(payload).map_err(|err| ctx.error("AMF0 command", err.to_string()))?;
        let Some(name) = values.first().and_then(Amf0Value::as_str) else {
            return Err(ctx.error("AMF0 command", "does not start with a command name"));
        };
        let transaction = values.get(1).and_then(Amf0Value::as_number).unwrap_or(0.0);
        let argument = |index: usize| values.get(index).and_then(Amf0Value::as_str);
        match name {
            "connect" => {
                let object = values.get(2);
                let app = object
                    .and_then(|o| o.property("app"))
                    .and_then(Amf0Value::as_str)
                    .unwrap_or_default();
                let app = app.split('?').next().unwrap_or_default();
                self.app = Some(app.trim_matches('/').to_string());
                let object_encoding = object
                    .and_then(|o| o.property("objectEncoding"))
                    .and_then(Amf0Value::as_number)
                    .unwrap_or(0.0);
                self.answer_connect(transaction, object_encoding);
            }
            "releaseStream" => {
                if transaction > 0.0 {
                    self.send_command(&[
                        Amf0Value::String("_result".into()),
                        Amf0Value::Number(transaction),
                        Amf0Value::Null,
                        Amf0Value::Undefined,
                    ]);
                }
            }
            "FCPublish" => {
                let name = argument(3).unwrap_or_default().to_string();
                self.send_command(&[
                    Amf0Value::String("onFCPublish".into()),
                    Amf0Value::Number(0.0),
                    Amf0Value::Null,
                    Amf0Value::Object(vec![
                        (
                            "code".into(),
                            Amf0Value::String("NetStream.Publish.Start".into()),
                        ),
                        ("description".into(), Amf0Value::String(name)),
                    ]),
                ]);
            }
            "createStream" => {
                self.send_command(&[
                    Amf0Value::String("_result".into()),
                    Amf0Value::Number(transaction),
                    Amf0Value::Null,
                    Amf0Value::Number(f64::from(PUBLISH_STREAM_ID)),
                ]);
            }
            "publish" => {
                let name = argument(3).unwrap_or_default();
                self.handle_publish(name, message.stream_id);
            }
            "FCUnpublish" | "deleteStream" | "closeStream" => self.unpublish(),
            // Replies to calls we never make, and keepalives: nothing to answer.
            "_result" | "_error" | "onStatus" | "_checkbw" | "onBWDone" => {}
            other => {
                if transaction > 0.0 {
                    let description = format!("Method not found ({other}).");
                    self.send_command(&[
                        Amf0Value::String("_error".into()),
                        Amf0Value::Number(transaction),
                        Amf0Value::Null,
                        status_object("error", "NetConnection.Call.Failed", &description),
                    ]);
                }
            }
        }
        Ok(())
    }

    fn answer_connect(&mut self, transaction: f64, object_encoding: f64) {
        let mut control = Vec::with_capacity(5);
        control.extend_from_slice(&OUR_WINDOW_ACK_SIZE.to_be_bytes());
        self.send(CSID_CONTROL, message_type::WINDOW_ACK_SIZE, 0, &control);
        control.push(2); // limit type: dynamic
        self.send(CSID_CONTROL, message_type::SET_PEER_BANDWIDTH, 0, &control);
        self.send(
            CSID_CONTROL,
            message_type::SET_CHUNK_SIZE,
            0,
            &OUR_CHUNK_SIZE.to_be_bytes(),
        );
        self.out_chunk_size = OUR_CHUNK_SIZE;
        let mut information = status_properties(
            "status",
            "NetConnection.Connect.Success",
            "Connection succeeded.",
        );
        information.push(("objectEncoding".into(), Amf0Value::Number(object_encoding)));
        self.send_command(&[
            Amf0Value::String("_result".into()),
            Amf0Value::Number(transaction),
            Amf0Value::Object(vec![
                ("fmsVer".into(), Amf0Value::String("FMS/3,0,1,123".into())),
                ("capabilities".into(), Amf0Value::Number(31.0)),
            ]),
            Amf0Value::Object(information),
        ]);
    }

    fn handle_publish(&mut self, name: &str, stream_id: u32) {
        // The key is the name before any query (`key?token=…`); tokens are not ours to read.
        let stream_key = name.split('?').next().unwrap_or_default().to_string();
        let refusal = if self.app.is_none() {
            Some("publish before connect.")
        } else if !matches!(self.publish, PublishState::Idle | PublishState::Rejected) {
            Some("this connection is publishing already.")
        } else if stream_key.is_empty() {
            Some("empty stream name.")
        } else {
            None
        };
        if let Some(reason) = refusal {
            let description = format!("Publish refused: {reason}");
            self.send_status(
                stream_id,
                "error",
                "NetStream.Publish.BadName",
                &description,
            );
            return;
        }
        self.events.push_back(RtmpEvent::PublishRequested {
            app: self.app_name().to_string(),
            stream_key: stream_key.clone(),
        });
        self.publish = PublishState::Requested {
            stream_key,
            stream_id,
        };
    }

    fn unpublish(&mut self) {
        if matches!(
            self.publish,
            PublishState::Requested { .. } | PublishState::Publishing { .. }
        ) {
            self.events.push_back(RtmpEvent::Unpublished);
        }
        self.publish = PublishState::Idle;
        self.video_config = None;
        self.audio_config = None;
        self.audio_format = None;
        self.aac_clock.reset();
    }

    fn publishing(&self) -> bool {
        matches!(self.publish, PublishState::Publishing { .. })
    }

    fn handle_video(&mut self, message: &Message, ctx: Context) -> Result<(), RtmpError> {
        let tag = flv::parse_video_tag(&message.payload)
            .map_err(|err| ctx.tag_error("FLV video tag", err))?;
        let ms = self.video_time.unwrap(message.timestamp);
        match tag {
            VideoTag::AvcSequenceHeader(record) => {
                let config =
                    AvcConfig::from_record(&record).map_err(|source| RtmpError::Config {
                        what: "AVC sequence header",
                        offset: ctx.offset,
                        source,
                    })?;
                self.set_video_config(TrackConfig::Avc(config));
            }
            VideoTag::SequenceStart { codec, record } => {
                let (what, parsed) = match codec {
                    Codec::H265 => (
                        "Enhanced RTMP HEVC sequence start",
                        HevcConfig::from_record(&record).map(TrackConfig::Hevc),
                    ),
                    _ => (
                        "Enhanced RTMP AV1 sequence start",
                        Av1Config::from_record(&record).map(TrackConfig::Av1),
                    ),
                };
                let config = parsed.map_err(|source| RtmpError::Config {
                    what,
                    offset: ctx.offset,
                    source,
                })?;
                self.set_video_config(config);
            }
            VideoTag::AvcNalus {
                keyframe,
                composition_time,
                data,
            } => {
                let data = flv::filter_avc_sample(data)
                    .map_err(|err| ctx.tag_error("FLV video tag", err))?;
                self.push_video(Codec::H264, ms, composition_time, keyframe, data);
            }
            VideoTag::CodedFrame {
                codec: Codec::H265,
                composition_time,
                data,
                ..
            } => {
                // The sync-sample flag comes from the NAL unit types, not the tag's frame type.
                let (data, irap) = flv::filter_hevc_sample(data)
                    .map_err(|err| ctx.tag_error("FLV video tag", err))?;
                self.push_video(Codec::H265, ms, composition_time, irap, data);
            }
            VideoTag::CodedFrame { codec, data, .. } => {
                // AV1: temporal delimiters dropped, size fields ensured (the sample format of
                // the media crate); the key-frame flag comes from the first frame header.
                let (sample, keyframe) = media::av1::temporal_unit_payload(&data)
                    .map_err(|err| ctx.error("Enhanced RTMP AV1 coded frames", err.to_string()))?;
                let data = if sample.len() == data.len() {
                    data
                } else {
                    Bytes::from(sample)
                };
                self.push_video(codec, ms, 0, keyframe, data);
            }
            VideoTag::Ignored => {}
        }
        Ok(())
    }

    /// A new or repeated video sequence header: reported when it differs from the last.
    fn set_video_config(&mut self, config: TrackConfig) {
        if self.video_config.as_ref() != Some(&config) {
            if self.publishing() {
                self.events
                    .push_back(RtmpEvent::VideoConfig(config.clone()));
            }
            self.video_config = Some(config);
        }
    }

    /// Reports one video frame, if the session publishes and the frame's codec is the one
    /// the last sequence header announced (frames before any header cannot be decoded).
    fn push_video(
        &mut self,
        codec: Codec,
        ms: i64,
        composition_time: i32,
        keyframe: bool,
        data: Bytes,
    ) {
        let configured = self.video_config.as_ref().map(TrackConfig::codec) == Some(codec);
        if !self.publishing() || !configured || data.is_empty() {
            return;
        }
        let ticks_per_ms = i64::from(VIDEO_TIMESCALE / 1000);
        self.events.push_back(RtmpEvent::Media(AccessUnit {
            codec,
            pts: (ms + i64::from(composition_time)) * ticks_per_ms,
            dts: ms * ticks_per_ms,
            keyframe,
            payload: data,
        }));
    }

    fn handle_audio(&mut self, message: &Message, ctx: Context) -> Result<(), RtmpError> {
        let tag = flv::parse_audio_tag(&message.payload)
            .map_err(|err| ctx.tag_error("FLV audio tag", err))?;
        let ms = self.audio_time.unwrap(message.timestamp);
        match tag {
            AudioTag::AacSequenceHeader(asc) => {
                let config = AacConfig::from_asc(&asc).map_err(|source| RtmpError::Config {
                    what: "AAC sequence header",
                    offset: ctx.offset,
                    source,
                })?;
                if self.audio_config.as_ref() != Some(&config) {
                    if self.publishing() {
                        self.events
                            .push_back(RtmpEvent::AudioConfig(config.clone()));
                    }
                    self.audio_config = Some(config);
                    self.audio_format = None;
                    self.aac_clock.reset();
                }
            }
            AudioTag::Mp3(frames) => self.push_mp3(ms, frames),
            AudioTag::AacRaw(frame) => {
                let Some(config) = &self.audio_config else {
                    return Ok(());
                };
                if !self.publishing() || frame.is_empty() {
                    return Ok(());
                }
                let pts = self
                    .aac_clock
                    .pts(ms, config.sample_rate, config.frame_samples());
                self.events.push_back(RtmpEvent::Media(AccessUnit {
                    codec: Codec::Aac,
                    pts,
                    dts: pts,
                    keyframe: true,
                    payload: frame,
                }));
            }
        }
        Ok(())
    }

    /// Reports the MPEG audio frames of one MP3 tag (usually one), each with a pts on its
    /// sample rate, evened out by the same clock as AAC (frames are a fixed number of samples
    /// apart; RTMP milliseconds jitter).
    fn push_mp3(&mut self, ms: i64, frames: Bytes) {
        let mut pos = 0;
        let mut samples_before = 0i64;
        while pos < frames.len() {
            let rest = frames.get(pos..).unwrap_or_default();
            let header = match MpegAudioHeader::parse(rest) {
                Ok(Some(header)) if header.frame_bytes <= rest.len() => header,
                // A damaged or cut frame: the rest of the tag cannot be framed. It is dropped
                // and counted rather than ending the session (the decoder would only skip it).
                _ => {
                    self.bad_audio_tags += 1;
                    return;
                }
            };
            let format = AudioFormat::from_mpeg_audio(&header);
            if self.audio_format != Some(format) {
                if self.publishing() {
                    self.events.push_back(RtmpEvent::AudioFormat(format));
                }
                self.audio_format = Some(format);
                self.audio_config = None;
                self.aac_clock.reset();
            }
            let frame = frames.slice(pos..pos + header.frame_bytes);
            pos += header.frame_bytes;
            // The tag's time belongs to its first frame; the ones after it follow by their
            // sample counts.
            let frame_ms = ms + media::rescale(samples_before, header.sample_rate, 1000);
            samples_before += i64::from(header.samples);
            let pts = self
                .aac_clock
                .pts(frame_ms, header.sample_rate, header.samples);
            if self.publishing() {
                self.events.push_back(RtmpEvent::Media(AccessUnit {
                    codec: format.codec,
                    pts,
                    dts: pts,
                    keyframe: true,
                    payload: frame,
                }));
            }
        }
    }

    /// Acknowledgement (§5.4.3) each time another window of bytes has arrived.
    fn acknowledge(&mut self) {
        let Some(window) = self.peer_window else {
            return;
        };
        if self.bytes_received - self.acknowledged >= u64::from(window) {
            self.acknowledged = self.bytes_received;
            // The sequence number is the byte count so far, wrapping at 32 bits.
            let sequence = (self.bytes_received as u32).to_be_bytes();
            self.send(CSID_CONTROL, message_type::ACKNOWLEDGEMENT, 0, &sequence);
        }
    }

    fn send(&mut self, csid: u8, type_id: u8, stream_id: u32, payload: &[u8]) {
        chunk::write_message(
            &mut self.transmit,
            self.out_chunk_size,
            csid,
            type_id,
            stream_id,
            0,
            payload,
        );
    }

    fn send_command(&mut self, values: &[Amf0Value]) {
        self.send_values(CSID_COMMAND, 0, values);
    }

    fn send_values(&mut self, csid: u8, stream_id: u32, values: &[Amf0Value]) {
        // alloc: commands are a handful per connection.
        let mut payload = Vec::new();
        for value in values {
            amf0::encode(value, &mut payload);
        }
        self.send(csid, message_type::COMMAND_AMF0, stream_id, &payload);
    }

    fn send_status(&mut self, stream_id: u32, level: &str, code: &str, description: &str) {
        self.send_values(
            CSID_STATUS,
            stream_id,
            &[
                Amf0Value::String("onStatus".into()),
                Amf0Value::Number(0.0),
                Amf0Value::Null,
                status_object(level, code, description),
            ],
        );
    }
}

fn status_properties(level: &str, code: &str, description: &str) -> Vec<(String, Amf0Value)> {
    vec![
        ("level".into(), Amf0Value::String(level.into())),
        ("code".into(), Amf0Value::String(code.into())),
        ("description".into(), Amf0Value::String(description.into())),
    ]
}

fn status_object(level: &str, code: &str, description: &str) -> Amf0Value {
    Amf0Value::Object(status_properties(level, code, description))
}

/// The keys of `onMetaData` that describe an audio track (FLV v10.1 E.5, onMetaData).
const AUDIO_METADATA_KEYS: [&str; 5] = [
    "audiocodecid",
    "audiodatarate",
    "audiosamplerate",
    "audiosamplesize",
    "stereo",
];

/// For a data message `[@setDataFrame,] onMetaData, {properties}`: whether the properties list
/// an audio track. `None` for any other data message.
fn metadata_lists_audio(values: &[Amf0Value]) -> Option<bool> {
    let at = values
        .iter()
        .position(|v| v.as_str() == Some("onMetaData"))?;
    let properties = match values.get(at + 1)? {
        Amf0Value::Object(properties) | Amf0Value::EcmaArray(properties) => properties,
        _ => return None,
    };
    Some(properties.iter().any(|(key, value)| {
        AUDIO_METADATA_KEYS.contains(&key.as_str())
            && !matches!(value, Amf0Value::Null | Amf0Value::Undefined)
    }))
}

#[cfg(test)]
mod metadata_tests {
    use super::*;

    fn meta(properties: Vec<(&str, Amf0Value)>) -> Amf0Value {
        Amf0Value::EcmaArray(
            properties
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    #[test]
    fn onmetadata_says_whether_audio_will_come() {
        let set_data_frame = |properties| {
            vec![
                Amf0Value::String("@setDataFrame".into()),
                Amf0Value::String("onMetaData".into()),
                meta(properties),
            ]
        };
        // ffmpeg -an: video keys only.
        let video_only = set_data_frame(vec![
            ("width", Amf0Value::Number(640.0)),
            ("videocodecid", Amf0Value::Number(7.0)),
        ]);
        assert_eq!(metadata_lists_audio(&video_only), Some(false));
        let with_audio = set_data_frame(vec![
            ("videocodecid", Amf0Value::Number(7.0)),
            ("audiocodecid", Amf0Value::Number(10.0)),
        ]);
        assert_eq!(metadata_lists_audio(&with_audio), Some(true));
        // Some encoders write the key with a null value when there is no audio.
        let null_audio = set_data_frame(vec![("audiocodecid", Amf0Value::Null)]);
        assert_eq!(metadata_lists_audio(&null_audio), Some(false));
        // Plain onMetaData with an object, and data messages that are not metadata.
        let plain = vec![
            Amf0Value::String("onMetaData".into()),
            Amf0Value::Object(vec![("stereo".into(), Amf0Value::Boolean(true))]),
        ];
        assert_eq!(metadata_lists_audio(&plain), Some(true));
        assert_eq!(
            metadata_lists_audio(&[Amf0Value::String("onTextData".into())]),
            None
        );
        assert_eq!(
            metadata_lists_audio(&[Amf0Value::String("onMetaData".into())]),
            None
        );
    }
}
