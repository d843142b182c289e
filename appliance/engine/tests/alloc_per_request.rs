//! Goal 3 of issue 4, as a test: after warm-up, the delivery worker makes no heap allocation per
//! request. A counting global allocator (the system allocator plus
//! `engine::alloc_count::record_allocation`, which counts only on threads marked as delivery
//! workers) wraps this test binary; keep-alive clients then ask for segments, playlists, init
//! segments, HEADs, conditional GETs, ranges and unknown paths, and the worker's count must not
//! move. Built only with the engine's `count-allocations` feature (`make test` runs it:
//! `cargo test -p corecast-engine --features count-allocations --test alloc_per_request`).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use corecast_engine::alloc_count::delivery_allocations;
use corecast_engine::delivery::{DeliveryConfig, DeliveryWorker};
use corecast_engine::store::{CachePolicy, SegmentStore, StoreChange, StoredObject, content_type};

struct CountingAllocator;

// SAFETY: every call is forwarded unchanged to the system allocator; counting touches only a
// const thread-local and relaxed atomics, and never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        corecast_engine::alloc_count::record_allocation();
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        corecast_engine::alloc_count::record_allocation();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, i.e. from `System`, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        corecast_engine::alloc_count::record_allocation();
        // SAFETY: as for `dealloc`, and `new_size` is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const WORKER: usize = 0;

fn store() -> Arc<SegmentStore> {
    let store = Arc::new(SegmentStore::new());
    let put = |path: &str, len: usize, kind, cache| StoreChange::Put {
        path: path.into(),
        object: StoredObject::new(Bytes::from(vec![7u8; len]), kind, cache),
    };
    store.apply(
        "demo",
        vec![
            put(
                "source/1.m4s",
                300_000,
                content_type::MP4_VIDEO,
                CachePolicy::Immutable,
            ),
            put(
                "source/init.mp4",
                700,
                content_type::MP4_VIDEO,
                CachePolicy::Immutable,
            ),
            put(
                "source/index.m3u8",
                600,
                content_type::HLS_PLAYLIST,
                CachePolicy::Live { max_age_secs: 1 },
            ),
        ],
    );
    store
}

/// Sends one request and reads the whole answer; returns the status.
fn ask(reader: &mut BufReader<TcpStream>, request: &str, head_only: bool) -> u16 {
    reader
        .get_mut()
        .write_all(request.as_bytes())
        .expect("write");
    let mut line = String::new();
    reader.read_line(&mut line).expect("status line");
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut length = 0usize;
    loop {
        line.clear();
        reader.read_line(&mut line).expect("header");
        if line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().expect("length");
        }
    }
    if !head_only && status != 304 {
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).expect("body");
    }
    status
}

fn requests() -> Vec<(String, bool, u16)> {
    let get = |path: &str, extra: &str| format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n");
    vec![
        (get("/live/demo/source/1.m4s", ""), false, 200),
        (get("/live/demo/source/index.m3u8", ""), false, 200),
        (get("/live/demo/source/init.mp4", ""), false, 200),
        (
            "HEAD /live/demo/source/1.m4s HTTP/1.1\r\nHost: t\r\n\r\n".to_owned(),
            true,
            200,
        ),
        (
            get("/live/demo/source/1.m4s", "Range: bytes=1000-1999\r\n"),
            false,
            206,
        ),
        (get("/live/demo/source/404.m4s", ""), false, 404),
    ]
}

#[test]
fn keep_alive_requests_make_no_allocation_on_the_delivery_thread() {
    let store = store();
    let config = DeliveryConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        max_connections_per_worker: 64,
        recv_buffers: 64,
        ..DeliveryConfig::default()
    };
    let worker = match DeliveryWorker::spawn(WORKER, None, config, store.clone()) {
        Ok(worker) => worker,
        Err(e) => panic!("delivery worker: {e}"),
    };
    let addr = worker.local_addr();
    let mut clients: Vec<BufReader<TcpStream>> = (0..8)
        .map(|_| {
            let stream = TcpStream::connect(addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            BufReader::new(stream)
        })
        .collect();
    let plan = requests();
    // Warm-up: every slot answers every kind once (its head buffer grows to size here).
    for client in &mut clients {
        for (request, head_only, status) in &plan {
            assert_eq!(ask(client, request, *head_only), *status, "{request}");
        }
    }
    let etag_request = {
        // A conditional GET with the object's own ETag: 304.
        let probe = &mut clients[0];
        probe
            .get_mut()
            .write_all(b"HEAD /live/demo/source/1.m4s HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("write");
        let mut etag = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            probe.read_line(&mut line).expect("header");
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("etag")
            {
                etag = value.trim().to_owned();
            }
        }
        assert!(!etag.is_empty(), "the segment has an ETag");
        format!("GET /live/demo/source/1.m4s HTTP/1.1\r\nHost: t\r\nIf-None-Match: {etag}\r\n\r\n")
    };
    for client in &mut clients {
        assert_eq!(ask(client, &etag_request, false), 304);
    }

    let before = delivery_allocations(WORKER);
    let mut answered = 0u64;
    for _ in 0..50 {
        for client in &mut clients {
            for (request, head_only, status) in &plan {
                assert_eq!(ask(client, request, *head_only), *status);
                answered += 1;
            }
            assert_eq!(ask(client, &etag_request, false), 304);
            answered += 1;
        }
    }
    let allocations = delivery_allocations(WORKER) - before;
    assert_eq!(
        allocations, 0,
        "{allocations} allocations on the delivery thread for {answered} requests"
    );
    // The counter is live: the worker thread is counted at all (its start-up allocated).
    assert!(
        delivery_allocations(WORKER) > 0,
        "the worker thread was never counted"
    );
    worker.stop();
}
