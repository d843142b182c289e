//! The session against GStreamer's rtmp2sink (1.22) as byte vectors: its command order and
//! arguments, and how its chunk writer encodes a timestamp that steps back. What rtmp2sink sends
//! was read from tests/data/gst122_rtmp2sink_publish.bin and from its chunk writer
//! (gst/rtmp2/rtmp/rtmpchunkstream.c).

use media::Codec;

use super::{
    AAC_48K_STEREO_ASC, Pair, TestClient, X264_720P_RECORD, aac_body, avc_body, code, commands,
    hex, media, nal, name,
};
use crate::rtmp::RtmpEvent;
use crate::rtmp::amf0::{self, Amf0Value};

/// An AMF0 message (command 20 or data 18) with an explicit transaction id, on `csid`.
fn amf0_message(
    client: &mut TestClient,
    csid: u32,
    type_id: u8,
    stream_id: u32,
    ts: u32,
    values: &[Amf0Value],
) -> Vec<u8> {
    let mut payload = Vec::new();
    for value in values {
        amf0::encode(value, &mut payload);
    }
    client.message(csid, type_id, stream_id, ts, &payload)
}

fn rtmp2_command(
    client: &mut TestClient,
    stream_id: u32,
    name: &str,
    rest: &[Amf0Value],
) -> Vec<u8> {
    let mut values = vec![Amf0Value::String(name.into())];
    values.extend_from_slice(rest);
    amf0_message(client, 3, 20, stream_id, 0, &values)
}

/// flvmux's metadata as rtmp2sink forwards it: `@setDataFrame`, `onMetaData`, ECMA array.
fn set_data_frame(client: &mut TestClient, ts: u32) -> Vec<u8> {
    let metadata = Amf0Value::EcmaArray(vec![
        ("videocodecid".into(), Amf0Value::Number(7.0)),
        ("width".into(), Amf0Value::Number(640.0)),
        ("height".into(), Amf0Value::Number(360.0)),
        ("framerate".into(), Amf0Value::Number(30.0)),
        ("audiocodecid".into(), Amf0Value::Number(10.0)),
        (
            "metadatacreator".into(),
            Amf0Value::String("GStreamer 1.22.0 FLV muxer".into()),
        ),
    ]);
    let values = [
        Amf0Value::String("@setDataFrame".into()),
        Amf0Value::String("onMetaData".into()),
        metadata,
    ];
    amf0_message(client, 4, 18, 1, ts, &values)
}

#[test]
fn rtmp2sink_style_publish_exchange() {
    let mut pair = Pair::new();
    pair.feed(&TestClient::c0_c1()).unwrap();

    // connect (transaction 1, no objectEncoding), then the client's own Window Acknowledgement
    // Size, before any answer. rtmp2sink keeps the default 128-byte chunks until after publish.
    let connect_object = Amf0Value::Object(vec![
        ("app".into(), Amf0Value::String("live".into())),
        ("type".into(), Amf0Value::String("nonprivate".into())),
        (
            "flashVer".into(),
            Amf0Value::String("LNX 10,0,32,18".into()),
        ),
        (
            "tcUrl".into(),
            Amf0Value::String("rtmp://127.0.0.1:1935/live".into()),
        ),
    ]);
    let mut bytes = rtmp2_command(
        &mut pair.client,
        0,
        "connect",
        &[Amf0Value::Number(1.0), connect_object],
    );
    bytes.extend(pair.client.message(2, 5, 0, 0, &5_000_000u32.to_be_bytes()));
    pair.feed(&bytes).unwrap();
    let replies = pair.take_commands();
    assert_eq!(replies.len(), 1);
    assert_eq!(name(&replies[0]), "_result");
    assert_eq!(replies[0][1], Amf0Value::Number(1.0));
    assert_eq!(code(&replies[0]), "NetConnection.Connect.Success");
    assert_eq!(
        replies[0][3].property("objectEncoding"),
        Some(&Amf0Value::Number(0.0))
    );

    // releaseStream and FCPublish with transaction 0 (no answer expected), createStream with 2,
    // all three in one write.
    let key = Amf0Value::String("gst".into());
    let zero = Amf0Value::Number(0.0);
    let mut bytes = rtmp2_command(
        &mut pair.client,
        0,
        "releaseStream",
        &[zero.clone(), Amf0Value::Null, key.clone()],
    );
    bytes.extend(rtmp2_command(
        &mut pair.client,
        0,
        "FCPublish",
        &[zero.clone(), Amf0Value::Null, key.clone()],
    ));
    bytes.extend(rtmp2_command(
        &mut pair.client,
        0,
        "createStream",
        &[Amf0Value::Number(2.0), Amf0Value::Null],
    ));
    pair.feed(&bytes).unwrap();
    let replies = pair.take_commands();
    let names: Vec<&str> = replies.iter().map(|c| name(c)).collect();
    assert_eq!(names, ["onFCPublish", "_result"]);
    assert_eq!(replies[1][1], Amf0Value::Number(2.0));
    assert_eq!(replies[1][3], Amf0Value::Number(1.0));

    // publish (transaction 0) on the new stream, on chunk stream 3 like the other commands.
    let publish = rtmp2_command(
        &mut pair.client,
        1,
        "publish",
        &[
            zero.clone(),
            Amf0Value::Null,
            key.clone(),
            Amf0Value::String("live".into()),
        ],
    );
    pair.feed(&publish).unwrap();
    assert_eq!(
        pair.events,
        [RtmpEvent::PublishRequested {
            app: "live".into(),
            stream_key: "gst".into()
        }]
    );
    pair.server.accept_publish();
    pair.drain();
    let status = pair.take_commands();
    assert_eq!(code(&status[0]), "NetStream.Publish.Start");

    // Only now Set Chunk Size (here 128, the default, as rtmp2sink sends it), then metadata,
    // the sequence headers, and media on chunk streams 6 (video) and 5 (audio).
    let mut bytes = pair.client.set_chunk_size(128);
    bytes.extend(set_data_frame(&mut pair.client, 0));
    bytes.extend(
        pair.client
            .message(6, 9, 1, 0, &avc_body(1, 0, 0, &hex(X264_720P_RECORD))),
    );
    bytes.extend(
        pair.client
            .message(5, 8, 1, 0, &aac_body(0, &AAC_48K_STEREO_ASC)),
    );
    // A keyframe longer than one chunk, then frames and audio with type-1 headers.
    bytes.extend(
        pair.client
            .message(6, 9, 1, 0, &avc_body(1, 1, 0, &nal(&[0x65; 300]))),
    );
    for (index, ts) in [33u32, 66, 100].into_iter().enumerate() {
        let len = 40 + index;
        bytes.extend(
            pair.client
                .message(6, 9, 1, ts, &avc_body(2, 1, 0, &nal(&vec![0x41; len]))),
        );
    }
    for ts in [0u32, 21, 43, 64, 85] {
        bytes.extend(pair.client.message(5, 8, 1, ts, &aac_body(1, &[0x21; 30])));
    }
    // flvmux repeats the metadata mid-stream; rtmp2sink sends it with a type-2 header.
    bytes.extend(set_data_frame(&mut pair.client, 100));
    pair.feed(&bytes).unwrap();
    let video = media(&pair.events, Codec::H264);
    let video_dts: Vec<i64> = video.iter().map(|u| u.dts).collect();
    assert_eq!(video_dts, [0, 33 * 90, 66 * 90, 100 * 90]);
    assert!(video[0].keyframe && !video[1].keyframe);
    let audio = media(&pair.events, Codec::Aac);
    let audio_pts: Vec<i64> = audio.iter().map(|u| u.pts).collect();
    assert_eq!(audio_pts, [0, 1024, 2048, 3072, 4096]);

    // At EOS: FCUnpublish, then deleteStream with the stream *name* (not the id).
    let mut bytes = rtmp2_command(
        &mut pair.client,
        0,
        "FCUnpublish",
        &[zero.clone(), Amf0Value::Null, key.clone()],
    );
    bytes.extend(rtmp2_command(
        &mut pair.client,
        0,
        "deleteStream",
        &[zero, Amf0Value::Null, key],
    ));
    pair.feed(&bytes).unwrap();
    let unpublished = pair
        .events
        .iter()
        .filter(|e| **e == RtmpEvent::Unpublished)
        .count();
    assert_eq!(unpublished, 1);
    assert_eq!(pair.events.last(), Some(&RtmpEvent::Unpublished));
    assert!(
        !commands(&pair.replies).iter().any(|c| name(c) == "_error"),
        "a stop command was refused"
    );
}

/// rtmp2sink writes a timestamp that steps back as a type-1/2 header whose delta is the u32
/// difference: -10 ms is 0xfffffff6, which needs the extended field, repeated on the type-3
/// continuation chunk. The session must read a step back of 10 ms, not 49.7 days forward.
#[test]
fn rtmp2sink_backwards_delta_is_a_step_back() {
    let mut pair = Pair::new();
    pair.publish("gst");
    pair.server.accept_publish();
    pair.drain();
    let mut bytes = pair.client.set_chunk_size(128);
    // Sequence header at 1000 ms with a type-0 header (abs time), keyframe at +0, frame at +33.
    bytes.extend(
        pair.client
            .message(6, 9, 1, 1000, &avc_body(1, 0, 0, &hex(X264_720P_RECORD))),
    );
    bytes.extend(
        pair.client
            .message(6, 9, 1, 1000, &avc_body(1, 1, 0, &nal(&[0x65; 50]))),
    );
    bytes.extend(
        pair.client
            .message(6, 9, 1, 1033, &avc_body(2, 1, 0, &nal(&[0x41; 50]))),
    );
    // Then 1023 ms, written by hand the way rtmp2sink does: a 200-byte message on chunk
    // stream 6, type-1 header, delta 0xffffff + extended 0xfffffff6, then a type-3 chunk that
    // repeats the extended field.
    let body = avc_body(2, 1, 0, &nal(&[0x41; 195]));
    let mut message = vec![0x46, 0xff, 0xff, 0xff];
    message.extend(&(body.len() as u32).to_be_bytes()[1..]);
    message.push(9);
    message.extend(0xffff_fff6u32.to_be_bytes());
    message.extend(&body[..128]);
    message.push(0xc6);
    message.extend(0xffff_fff6u32.to_be_bytes());
    message.extend(&body[128..]);
    bytes.extend(&message);
    // And 1056 ms: type 1, delta 33 (from 1023), no extended field.
    let body = avc_body(2, 1, 0, &nal(&[0x41; 20]));
    let mut message = vec![0x46, 0, 0, 33];
    message.extend(&(body.len() as u32).to_be_bytes()[1..]);
    message.push(9);
    message.extend(&body);
    bytes.extend(&message);
    pair.feed(&bytes).unwrap();
    let video_ms: Vec<i64> = media(&pair.events, Codec::H264)
        .iter()
        .map(|u| u.dts / 90)
        .collect();
    assert_eq!(video_ms, [1000, 1033, 1023, 1056]);
}
