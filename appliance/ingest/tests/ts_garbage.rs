//! Hostile input: random bytes, and the ffmpeg corpus with flipped bits, lost, duplicated and
//! reordered packets, fed in random slices. Nothing may panic, every error is counted, and
//! whatever comes out still keeps the AccessUnit rules. Deterministic (a fixed xorshift seed),
//! so a failure reproduces.

mod ts_support;

use corecast_ingest::ts::{TsDemuxer, TsEvent};
use media::Codec;
use ts_support::{CORPUS, demux, units};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn check_units(events: &[TsEvent]) {
    for event in events {
        if let TsEvent::Media(unit) = event {
            assert!(unit.dts <= unit.pts, "{unit:?}");
            assert!(!unit.payload.is_empty());
            if unit.codec == Codec::H264 {
                let mut rest = &unit.payload[..];
                while !rest.is_empty() {
                    let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    assert!(len > 0 && 4 + len <= rest.len(), "bad NAL length");
                    rest = &rest[4 + len..];
                }
            }
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let mut demuxer = TsDemuxer::new();
    for round in 0..200 {
        // Bias towards sync bytes and packet-shaped input so deeper layers are reached.
        let len = rng.below(4000) as usize;
        let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        for at in (0..len).step_by(188) {
            if rng.below(4) != 0 {
                data[at] = 0x47;
                if at + 3 < len && rng.below(2) == 0 {
                    // PAT, PMT-ish or ES PIDs.
                    let pid = [0u16, 0x1000, 0x100, 0x101][rng.below(4) as usize];
                    data[at + 1] = (data[at + 1] & 0xe0) | (pid >> 8) as u8;
                    data[at + 2] = pid as u8;
                }
            }
        }
        demuxer.handle_bytes(&data);
        let events: Vec<TsEvent> = std::iter::from_fn(|| demuxer.poll_event()).collect();
        check_units(&events);
        if round % 50 == 0 {
            demuxer.handle_end_of_stream();
        }
    }
    assert!(demuxer.counters().skipped_bytes > 0);
}

#[test]
fn damaged_corpus_is_survived_and_counted() {
    let (clean, _) = demux(CORPUS, 1316);
    let clean_video = units(&clean, Codec::H264).len();
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    let packets: Vec<&[u8]> = CORPUS.chunks(188).collect();
    for round in 0..20 {
        let mut damaged = Vec::with_capacity(CORPUS.len());
        for packet in &packets {
            match rng.below(1000) {
                0..=4 => continue, // lost
                5..=7 => {
                    damaged.extend_from_slice(packet); // duplicated
                    damaged.extend_from_slice(packet);
                }
                8..=9 => damaged.extend_from_slice(&packet[..rng.below(188) as usize]), // cut
                _ => damaged.extend_from_slice(packet),
            }
        }
        for _ in 0..(round * 20) {
            let at = rng.below(damaged.len() as u64) as usize;
            damaged[at] ^= 1 << rng.below(8);
        }
        let mut demuxer = TsDemuxer::new();
        let mut events = Vec::new();
        let mut rest = &damaged[..];
        while !rest.is_empty() {
            let take = (1 + rng.below(3000) as usize).min(rest.len());
            demuxer.handle_bytes(&rest[..take]);
            events.extend(std::iter::from_fn(|| demuxer.poll_event()));
            rest = &rest[take..];
        }
        demuxer.handle_end_of_stream();
        events.extend(std::iter::from_fn(|| demuxer.poll_event()));
        check_units(&events);
        let counters = demuxer.counters();
        assert!(
            counters.errors() > 0,
            "round {round}: damage went unnoticed"
        );
        let video = units(&events, Codec::H264).len();
        // A lost keyframe costs its GOP (units before config), a damaged PES its frame.
        let seen = video + counters.units_before_config as usize;
        assert!(
            seen > clean_video / 2 && video <= clean_video + 5,
            "round {round}: {video} of {clean_video} video units ({counters:?})"
        );
    }
}
