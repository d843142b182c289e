//! RTMP publisher sessions (server side): handshake, chunk stream, AMF0 commands and FLV
//! audio/video tags, turned into [`media::AccessUnit`]s.
//!
//! Specs: Adobe RTMP 1.0 (handshake §5.2, chunk stream §5.3, protocol control messages §5.4,
//! messages §6, commands §7), AMF0 (Adobe AMF0 spec), FLV tag bodies (Adobe Video File Format
//! Spec v10.1, E.4.2.1 and E.4.2.2). The layers, bottom up: [`handshake`], [`chunk`], [`amf0`],
//! [`flv`], and the session that runs the command exchange and maps media time.
//!
//! Not supported: RTMPE/RTMPS handshakes (TLS is for a proxy in front), playing (this is
//! the publish side only), AMF3 values, aggregate messages, Enhanced RTMP FourCC codecs (each
//! refused with an error that names it). See docs/ingest-rtmp.md.

pub mod amf0;
pub mod chunk;
pub mod flv;
pub mod handshake;
mod session;

#[cfg(test)]
mod tests;

pub use session::RtmpSession;

use media::{AacConfig, AccessUnit, AudioFormat, MediaError, TrackConfig};

/// Errors that end one RTMP session. Each says what was wrong and where: chunk stream id,
/// byte offset in the connection (counted from the first handshake byte), message type.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtmpError {
    #[error("RTMP protocol: {0}")]
    Protocol(String),
    #[error("RTMP handshake: {0}")]
    Handshake(String),
    #[error("RTMP chunk stream csid {csid} at offset {offset}: {reason}")]
    Chunk {
        csid: u32,
        offset: u64,
        reason: String,
    },
    /// A message that did not parse: a bad AMF0 command, a short control message, a malformed
    /// FLV tag body.
    #[error(
        "RTMP {what} (message type {message_type}, csid {csid}, offset {offset}, \
         timestamp {timestamp} ms): {reason}"
    )]
    Message {
        what: &'static str,
        message_type: u8,
        csid: u32,
        offset: u64,
        timestamp: u32,
        reason: String,
    },
    /// A codec we do not take, e.g. "FLV video codec id 12" or "FLV sound format 11 (Speex)".
    #[error("unsupported {codec} (csid {csid}, offset {offset})")]
    UnsupportedCodec {
        codec: String,
        csid: u32,
        offset: u64,
    },
    /// An AVC, HEVC, AV1 or AAC sequence header that does not parse.
    #[error("{what} at offset {offset}: {source}")]
    Config {
        what: &'static str,
        offset: u64,
        #[source]
        source: MediaError,
    },
}

/// Why a publish request was refused; decides the status sent to the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishRejection {
    /// The stream name is live already (`NetStream.Publish.BadName`).
    NameInUse,
    /// The app or name is not one we serve (`NetStream.Publish.BadName`).
    BadName,
}

/// What a session reports to the engine.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RtmpEvent {
    /// The client asked to publish `stream_key` under `app` (e.g. app `live`, key `demo`).
    /// The engine answers with [`RtmpSession::accept_publish`] or
    /// [`RtmpSession::reject_publish`]; media before that answer is not reported.
    PublishRequested {
        app: String,
        stream_key: String,
    },
    /// The video track's parameters: [`TrackConfig::Avc`] from a legacy AVC sequence header,
    /// [`TrackConfig::Hevc`] or [`TrackConfig::Av1`] from an Enhanced RTMP SequenceStart.
    VideoConfig(TrackConfig),
    AudioConfig(AacConfig),
    /// The audio track is MP3 (FLV SoundFormat 2 or 14), with the sample rate and channels of
    /// its frame headers: reported before its first unit and when they change. Its units are
    /// [`media::Codec::Mp3`] frames, pts on `sample_rate`; the engine transcodes them to AAC.
    AudioFormat(AudioFormat),
    Media(AccessUnit),
    /// The client stopped publishing (FCUnpublish / deleteStream / closeStream).
    Unpublished,
}
