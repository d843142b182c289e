//! The RTMP chunk stream (RTMP 1.0 §5.3): splitting messages into chunks and joining them again.
//!
//! The reader takes all four chunk header types, chunk stream ids 2 to 65599, any chunk size
//! from 1 to 2^31-1, extended timestamps (also the repeated one on type-3 chunks, which ffmpeg,
//! librtmp and OBS send) and interleaved messages on several chunk streams. Timestamps stay
//! 32-bit here; the media layer unwraps them.

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};

use super::RtmpError;

/// The chunk size both sides start with (§5.4.1).
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Messages longer than this are refused (the length field allows 16 MiB - 1): the largest
/// keyframes of a 4K live stream are around 2 MiB.
pub const MAX_MESSAGE_LEN: u32 = 8 * 1024 * 1024;
/// Chunk streams a client may have open at once; real clients use 3 to 6.
const MAX_CHUNK_STREAMS: usize = 64;
const EXTENDED_TIMESTAMP: u32 = 0x00ff_ffff;

/// One complete message (§5.4, §6.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub csid: u32,
    pub type_id: u8,
    pub stream_id: u32,
    /// Milliseconds, 32-bit, wrapping.
    pub timestamp: u32,
    pub payload: Bytes,
}

/// What a chunk stream remembers of its last header, for the compressed header types.
#[derive(Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    /// Delta of the last type-1/2 header, or the timestamp of a type-0 header (what a type-3
    /// header that starts a new message adds, as ffmpeg and librtmp write and read it).
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// Whether the last header had an extended timestamp: type-3 chunks then repeat it.
    extended: bool,
    has_header: bool,
    /// The message being assembled; `None` between messages.
    partial: Option<BytesMut>,
}

/// Joins chunks into messages.
#[derive(Debug)]
pub struct ChunkReader {
    chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
}

impl Default for ChunkReader {
    fn default() -> Self {
        ChunkReader {
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
        }
    }
}

/// The result of reading one chunk.
#[derive(Debug)]
pub struct Chunk {
    /// Bytes of input the chunk took.
    pub len: usize,
    /// The message this chunk completed, if it did.
    pub message: Option<Message>,
}

impl ChunkReader {
    /// The client's chunk size (Set Chunk Size, §5.4.1): 1 to 2^31-1.
    pub fn set_chunk_size(&mut self, size: u32, offset: u64) -> Result<(), RtmpError> {
        if size == 0 || size > 0x7fff_ffff {
            return Err(RtmpError::Chunk {
                csid: 2,
                offset,
                reason: format!("Set Chunk Size {size} outside 1..=2147483647"),
            });
        }
        self.chunk_size = size;
        Ok(())
    }

    /// Abort Message (§5.4.2): drops the partly received message of `csid`.
    pub fn abort(&mut self, csid: u32) {
        if let Some(stream) = self.streams.get_mut(&csid) {
            stream.partial = None;
        }
    }

    /// Reads one chunk from the front of `input`; `Ok(None)` when it is not all there yet.
    /// `offset` is the position of `input` in the connection, for error messages.
    pub fn read_chunk(&mut self, input: &[u8], offset: u64) -> Result<Option<Chunk>, RtmpError> {
        let Some(&first) = input.first() else {
            return Ok(None);
        };
        let fmt = first >> 6;
        let (csid, mut pos) = match first & 0x3f {
            0 => match input.get(1) {
                Some(&byte) => (64 + u32::from(byte), 2),
                None => return Ok(None),
            },
            1 => match input.get(1..3) {
                Some(&[low, high]) => (64 + u32::from(low) + 256 * u32::from(high), 3),
                _ => return Ok(None),
            },
            id => (u32::from(id), 1),
        };
        let fail = |reason: String| RtmpError::Chunk {
            csid,
            offset,
            reason,
        };
        let header_len = [11, 7, 3, 0][usize::from(fmt)];
        let Some(header) = input.get(pos..pos + header_len) else {
            return Ok(None);
        };
        pos += header_len;
        let u24 = |at: usize| u32::from_be_bytes([0, header[at], header[at + 1], header[at + 2]]);

        if !self.streams.contains_key(&csid) && self.streams.len() >= MAX_CHUNK_STREAMS {
            return Err(fail(format!(
                "more than {MAX_CHUNK_STREAMS} chunk streams in use"
            )));
        }
        let stream = self.streams.entry(csid).or_default();
        if fmt != 0 && !stream.has_header {
            return Err(fail(format!(
                "type {fmt} chunk header on a chunk stream that never had a type 0 header"
            )));
        }
        if fmt != 3 && stream.partial.is_some() {
            return Err(fail(format!(
                "type {fmt} chunk header while a {}-byte message is incomplete",
                stream.length
            )));
        }

        let time_field = if fmt == 3 {
            if stream.extended {
                EXTENDED_TIMESTAMP
            } else {
                0
            }
        } else {
            u24(0)
        };
        let extended = if fmt == 3 {
            stream.extended
        } else {
            time_field == EXTENDED_TIMESTAMP
        };
        let time_value = if extended {
            let Some(bytes) = input.get(pos..pos + 4) else {
                return Ok(None);
            };
            pos += 4;
            u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
        } else {
            time_field
        };

        let (length, type_id) = match fmt {
            0 | 1 => (u24(3), header[6]),
            _ => (stream.length, stream.type_id),
        };
        if length > MAX_MESSAGE_LEN {
            return Err(fail(format!(
                "message of {length} bytes (type {type_id}) exceeds the {MAX_MESSAGE_LEN}-byte limit"
            )));
        }
        let received = stream.partial.as_ref().map_or(0, |partial| partial.len());
        let remaining = length as usize - received;
        let payload_len = remaining.min(self.chunk_size as usize);
        let Some(payload) = input.get(pos..pos + payload_len) else {
            return Ok(None);
        };
        pos += payload_len;

        // The whole chunk is here: commit the header.
        match fmt {
            0 => {
                stream.timestamp = time_value;
                stream.delta = time_value;
                stream.stream_id =
                    u32::from_le_bytes([header[7], header[8], header[9], header[10]]);
            }
            1 | 2 => {
                stream.timestamp = stream.timestamp.wrapping_add(time_value);
                stream.delta = time_value;
            }
            _ => {
                if stream.partial.is_none() {
                    stream.timestamp = stream.timestamp.wrapping_add(stream.delta);
                }
            }
        }
        if fmt != 3 {
            stream.extended = extended;
        }
        stream.length = length;
        stream.type_id = type_id;
        stream.has_header = true;

        let message = if stream.partial.is_none() && payload_len == length as usize {
            Some(Bytes::copy_from_slice(payload))
        } else {
            // alloc: one buffer per multi-chunk message; it becomes the media payload as is.
            let partial = stream
                .partial
                .get_or_insert_with(|| BytesMut::with_capacity(length as usize));
            partial.extend_from_slice(payload);
            if partial.len() == length as usize {
                stream.partial.take().map(BytesMut::freeze)
            } else {
                None
            }
        };
        Ok(Some(Chunk {
            len: pos,
            message: message.map(|payload| Message {
                csid,
                type_id,
                stream_id: stream.stream_id,
                timestamp: stream.timestamp,
                payload,
            }),
        }))
    }
}

/// Appends `payload` as one message in chunks of `chunk_size`: a type-0 header, then type-3
/// headers. `csid` must be 2..=63 (we only send on low chunk streams).
pub fn write_message(
    out: &mut Vec<u8>,
    chunk_size: u32,
    csid: u8,
    type_id: u8,
    stream_id: u32,
    timestamp: u32,
    payload: &[u8],
) {
    debug_assert!((2..64).contains(&csid));
    let extended = timestamp >= EXTENDED_TIMESTAMP;
    let time_field = if extended {
        EXTENDED_TIMESTAMP
    } else {
        timestamp
    };
    out.push(csid);
    out.extend_from_slice(&time_field.to_be_bytes()[1..]);
    // Our messages are commands of a few hundred bytes.
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    if extended {
        out.extend_from_slice(&timestamp.to_be_bytes());
    }
    let mut chunks = payload.chunks(chunk_size.max(1) as usize);
    if let Some(first) = chunks.next() {
        out.extend_from_slice(first);
    }
    for chunk in chunks {
        out.push(0xc0 | csid);
        if extended {
            out.extend_from_slice(&timestamp.to_be_bytes());
        }
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(reader: &mut ChunkReader, mut input: &[u8]) -> Vec<Message> {
        let mut messages = Vec::new();
        while let Some(chunk) = reader.read_chunk(input, 0).unwrap() {
            messages.extend(chunk.message);
            input = &input[chunk.len..];
        }
        assert!(input.is_empty(), "{} bytes left", input.len());
        messages
    }

    #[test]
    fn spec_example_one_header_types_0_2_3() {
        // §5.3.2.2 example 1: four audio messages of 32 bytes on csid 3, timestamp 1000 then
        // deltas of 20: type 0, type 2, then type 3 twice.
        let mut input = vec![0x03, 0x00, 0x03, 0xe8, 0x00, 0x00, 0x20, 0x08, 1, 0, 0, 0];
        input.extend([1; 32]);
        input.extend([0x83, 0x00, 0x00, 0x14]);
        input.extend([2; 32]);
        input.extend([0xc3]);
        input.extend([3; 32]);
        input.extend([0xc3]);
        input.extend([4; 32]);
        let messages = read_all(&mut ChunkReader::default(), &input);
        let times: Vec<u32> = messages.iter().map(|m| m.timestamp).collect();
        assert_eq!(times, [1000, 1020, 1040, 1060]);
        assert!(messages.iter().all(|m| m.type_id == 8 && m.stream_id == 1));
        assert_eq!(messages[3].payload[..], [4; 32]);
    }

    #[test]
    fn spec_example_two_message_split_into_chunks() {
        // §5.3.2.2 example 2: a 307-byte video message in chunks of 128: type 0, type 3, type 3.
        let payload: Vec<u8> = (0..307u32).map(|i| i as u8).collect();
        let mut input = Vec::new();
        write_message(&mut input, 128, 4, 9, 1, 1000, &payload);
        assert_eq!(input.len(), 12 + 307 + 2);
        assert_eq!(input[12 + 128], 0xc4);
        let messages = read_all(&mut ChunkReader::default(), &input);
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].payload[..], payload[..]);
        assert_eq!(messages[0].timestamp, 1000);
    }

    #[test]
    fn type_1_header_and_two_and_three_byte_chunk_stream_ids() {
        let mut reader = ChunkReader::default();
        // csid 64 + 10 (one extra byte), type 0 then a type 1 with a new length and type.
        let mut input = vec![0x00, 10, 0, 0, 5, 0, 0, 2, 9, 1, 0, 0, 0, 0xaa, 0xbb];
        input.extend([0x40, 10, 0, 0, 7, 0, 0, 1, 8, 0xcc]);
        // csid 65599 (two extra bytes: 65599 - 64 = 255 + 256 * 255).
        input.extend([0x01, 0xff, 0xff, 0, 0, 9, 0, 0, 1, 20, 0, 0, 0, 0, 0xdd]);
        let messages = read_all(&mut reader, &input);
        assert_eq!(messages[0].csid, 74);
        assert_eq!((messages[1].timestamp, messages[1].type_id), (12, 8));
        assert_eq!(messages[1].payload[..], [0xcc]);
        assert_eq!(messages[2].csid, 65_599);
    }

    #[test]
    fn extended_timestamps_repeat_on_type_3_chunks() {
        let payload = [7u8; 200];
        let mut input = Vec::new();
        write_message(&mut input, 128, 6, 9, 1, 0x0100_0000, &payload);
        // Type 0 with 0xffffff + extended, then a type 3 chunk with the extended field again.
        assert_eq!(&input[1..4], &[0xff, 0xff, 0xff]);
        assert_eq!(&input[12 + 4 + 128..12 + 4 + 128 + 5], &[0xc6, 1, 0, 0, 0]);
        let mut reader = ChunkReader::default();
        let messages = read_all(&mut reader, &input);
        assert_eq!(messages[0].timestamp, 0x0100_0000);
        assert_eq!(messages[0].payload.len(), 200);
        // A following type-3 chunk that starts a message adds the remembered "delta", which
        // after a type 0 header is its timestamp (ffmpeg's reading); it also carries the
        // extended field.
        let mut next = vec![0xc6, 1, 0, 0, 0];
        next.extend([1; 128]);
        next.extend([0xc6, 1, 0, 0, 0]);
        next.extend([1; 72]);
        let messages = read_all(&mut reader, &next);
        assert_eq!(messages[0].timestamp, 0x0200_0000);
    }

    #[test]
    fn interleaved_messages_and_abort() {
        let mut reader = ChunkReader::default();
        reader.set_chunk_size(4, 0).unwrap();
        let mut input = vec![0x04, 0, 0, 0, 0, 0, 8, 9, 1, 0, 0, 0, 1, 1, 1, 1];
        input.extend([0x05, 0, 0, 0, 0, 0, 6, 8, 1, 0, 0, 0, 2, 2, 2, 2]);
        input.extend([0xc4, 1, 1, 1, 1]);
        input.extend([0xc5, 2, 2]);
        let messages = read_all(&mut reader, &input);
        assert_eq!(messages.len(), 2);
        assert_eq!((messages[0].csid, messages[0].payload.len()), (4, 8));
        assert_eq!((messages[1].csid, messages[1].payload.len()), (5, 6));

        let half = [0x04, 0, 0, 0, 0, 0, 8, 9, 1, 0, 0, 0, 1, 1, 1, 1];
        assert!(read_all(&mut reader, &half).is_empty());
        reader.abort(4);
        let fresh = [0x04, 0, 0, 0, 0, 0, 2, 9, 1, 0, 0, 0, 5, 5];
        assert_eq!(read_all(&mut reader, &fresh)[0].payload[..], [5, 5]);
    }

    #[test]
    fn partial_input_is_need_more_not_an_error() {
        let mut input = Vec::new();
        write_message(&mut input, 128, 3, 20, 0, 0, &[9; 300]);
        let mut reader = ChunkReader::default();
        for len in 0..12 + 128 {
            assert!(
                reader.read_chunk(&input[..len], 0).unwrap().is_none(),
                "{len}"
            );
        }
    }

    #[test]
    fn bad_headers_are_errors_with_the_chunk_stream() {
        let mut reader = ChunkReader::default();
        let err = reader
            .read_chunk(&[0x43, 0, 0, 0, 0, 0, 1, 8], 77)
            .unwrap_err();
        assert!(err.to_string().contains("csid 3"), "{err}");
        assert!(err.to_string().contains("offset 77"), "{err}");
        let huge = [0x03, 0, 0, 0, 0xff, 0xff, 0xff, 9, 1, 0, 0, 0];
        let err = reader.read_chunk(&huge, 0).unwrap_err().to_string();
        assert!(err.contains("16777215 bytes"), "{err}");
        assert!(reader.set_chunk_size(0, 0).is_err());
        assert!(reader.set_chunk_size(0x8000_0000, 0).is_err());
        assert!(reader.read_chunk(&[0x01 << 6 | 1], 0).unwrap().is_none());
        let err = reader.read_chunk(&[0xc7, 1], 0).unwrap_err();
        assert!(err.to_string().contains("never had a type 0"), "{err}");
    }
}
