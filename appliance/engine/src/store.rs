//! The segment store: every object a viewer can fetch — init segments, segments, LL-HLS parts,
//! rendered playlists and MPDs — held in RAM as immutable, ref-counted bytes.
//!
//! One writer per stream (the stream's packager, on the hub's core) publishes batches of
//! changes; any number of delivery cores read without taking a lock. Each stream's objects sit in
//! an [`ArcSwap`]'d map that the writer replaces whole (copy on write: a live stream has a few
//! dozen objects, and a batch is published a few times per second), so a reader sees either the
//! old or the new set, never half a batch. A stored object hands out [`Bytes`] views: 30,000
//! viewers of one segment share one buffer.
//!
//! Parking: a delivery core that must wait for an object that does not exist yet (an LL-HLS
//! blocking reload, a part not yet written) registers a notifier with [`SegmentStore::subscribe`];
//! every publish bumps [`SegmentStore::generation`] and calls each notifier once (typically a
//! write to that core's eventfd), so waiting requests are retried when something new exists,
//! never polled.
//!
//! Viewers: each stream carries a counter of the connections whose most recent request was for
//! it. Delivery holds a [`ViewerTicket`] per connection (an `Arc` of that counter: +1 when
//! made, −1 when dropped) and moves it with [`SegmentStore::lookup_viewed`]; no lock, no
//! allocation, and a stream removed and published again starts a fresh count.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use bytes::Bytes;

/// The path prefix every stream object lives under: `/live/<stream>/<object path>`.
pub const LIVE_PREFIX: &str = "/live/";

/// How an object may be cached by players and CDNs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CachePolicy {
    /// Never changes once published (segments, parts, init segments).
    Immutable,
    /// Replaced as the stream advances (playlists, MPDs): cacheable for `max_age_secs`.
    Live { max_age_secs: u32 },
    /// Must be revalidated on every use (e.g. a playlist that has ended or an error).
    NoCache,
}

/// One published object.
#[derive(Clone, Debug)]
pub struct StoredObject {
    pub body: Bytes,
    pub content_type: &'static str,
    pub cache: CachePolicy,
    /// Distinct for every version ever published under any path of this store.
    pub etag: u64,
}

impl StoredObject {
    pub fn new(body: Bytes, content_type: &'static str, cache: CachePolicy) -> Self {
        StoredObject {
            body,
            content_type,
            cache,
            etag: 0,
        }
    }
}

/// Content types of the objects we publish.
pub mod content_type {
    pub const HLS_PLAYLIST: &str = "application/vnd.apple.mpegurl";
    pub const DASH_MPD: &str = "application/dash+xml";
    pub const MP4_VIDEO: &str = "video/mp4";
    pub const MP4_AUDIO: &str = "audio/mp4";
    pub const MPEG_TS: &str = "video/mp2t";
    pub const JPEG: &str = "image/jpeg";
}

/// One change in a publish batch. Paths are relative to the stream (`source/12.m4s`).
#[derive(Clone, Debug)]
pub enum StoreChange {
    Put { path: String, object: StoredObject },
    Remove { path: String },
}

type ObjectMap = HashMap<Box<str>, StoredObject>;
type Notifier = Arc<dyn Fn() + Send + Sync>;

/// The objects of one stream.
#[derive(Debug, Default)]
struct StreamObjects {
    objects: ArcSwap<ObjectMap>,
    viewers: Arc<AtomicU64>,
}

/// One connection counted as a viewer of one stream; the count drops when this does.
#[derive(Debug)]
pub struct ViewerTicket {
    counter: Arc<AtomicU64>,
}

impl ViewerTicket {
    fn new(counter: &Arc<AtomicU64>) -> ViewerTicket {
        counter.fetch_add(1, Ordering::Relaxed);
        ViewerTicket {
            counter: counter.clone(),
        }
    }
}

impl Drop for ViewerTicket {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::Relaxed);
    }
}

/// See the module docs.
pub struct SegmentStore {
    streams: ArcSwap<HashMap<Box<str>, Arc<StreamObjects>>>,
    generation: AtomicU64,
    next_etag: AtomicU64,
    notifiers: ArcSwap<Vec<Notifier>>,
}

impl std::fmt::Debug for SegmentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentStore")
            .field("streams", &self.streams.load().len())
            .field("generation", &self.generation())
            .finish()
    }
}

impl Default for SegmentStore {
    fn default() -> Self {
        Self::new()
    }
}

impl SegmentStore {
    pub fn new() -> Self {
        SegmentStore {
            streams: ArcSwap::from_pointee(HashMap::new()),
            generation: AtomicU64::new(0),
            next_etag: AtomicU64::new(1),
            notifiers: ArcSwap::from_pointee(Vec::new()),
        }
    }

    /// Looks up a request path such as `/live/demo/source/12.m4s` (no query string).
    pub fn lookup(&self, path: &str) -> Option<StoredObject> {
        let rest = path.strip_prefix(LIVE_PREFIX)?;
        let (stream, object) = rest.split_once('/')?;
        self.lookup_in(stream, object)
    }

    /// Looks up an object of one stream by its relative path.
    pub fn lookup_in(&self, stream: &str, object: &str) -> Option<StoredObject> {
        let streams = self.streams.load();
        let entry = streams.get(stream)?;
        entry.objects.load().get(object).cloned()
    }

    /// Like [`lookup`](Self::lookup), and also moves the connection's viewer ticket to the
    /// stream the path names (or drops it when the path names no existing stream).
    pub fn lookup_viewed(
        &self,
        path: &str,
        ticket: &mut Option<ViewerTicket>,
    ) -> Option<StoredObject> {
        let Some((stream, object)) = path
            .strip_prefix(LIVE_PREFIX)
            .and_then(|rest| rest.split_once('/'))
        else {
            *ticket = None;
            return None;
        };
        let streams = self.streams.load();
        let Some(entry) = streams.get(stream) else {
            *ticket = None;
            return None;
        };
        let same = ticket
            .as_ref()
            .is_some_and(|held| Arc::ptr_eq(&held.counter, &entry.viewers));
        if !same {
            *ticket = Some(ViewerTicket::new(&entry.viewers));
        }
        entry.objects.load().get(object).cloned()
    }

    /// Connections whose most recent request was for this stream.
    pub fn viewers(&self, stream: &str) -> u64 {
        self.streams
            .load()
            .get(stream)
            .map_or(0, |entry| entry.viewers.load(Ordering::Relaxed))
    }

    /// Whether a stream has any objects (it is live, or ended but still listed).
    pub fn has_stream(&self, stream: &str) -> bool {
        self.streams.load().contains_key(stream)
    }

    /// Names of the streams that have objects.
    pub fn stream_names(&self) -> Vec<String> {
        self.streams.load().keys().map(|k| k.to_string()).collect()
    }

    /// Publishes a batch of changes to one stream atomically, then wakes parked readers.
    /// Must be called from one thread per stream (the stream's packager): a second concurrent
    /// writer of the same stream could lose a batch.
    pub fn apply(&self, stream: &str, changes: Vec<StoreChange>) {
        if changes.is_empty() {
            return;
        }
        let entry = self.stream_entry(stream);
        let mut objects: ObjectMap = (**entry.objects.load()).clone();
        for change in changes {
            match change {
                StoreChange::Put { path, mut object } => {
                    object.etag = self.next_etag.fetch_add(1, Ordering::Relaxed);
                    objects.insert(path.into_boxed_str(), object);
                }
                StoreChange::Remove { path } => {
                    objects.remove(path.as_str());
                }
            }
        }
        entry.objects.store(Arc::new(objects));
        self.published();
    }

    /// Removes every object of a stream: its URLs answer 404 from now on. Viewers mid-download
    /// keep their views of the bytes until they finish.
    pub fn remove_stream(&self, stream: &str) {
        let mut removed = false;
        self.streams.rcu(|streams| {
            let mut next = (**streams).clone();
            removed = next.remove(stream).is_some();
            next
        });
        if removed {
            self.published();
        }
    }

    /// Bumped on every publish; a parked request compares it to decide whether to look again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Registers a callback run after every publish (from the publishing thread: keep it to a
    /// wake-up such as an eventfd write).
    pub fn subscribe(&self, notify: Arc<dyn Fn() + Send + Sync>) {
        self.notifiers.rcu(|list| {
            let mut next = (**list).clone();
            next.push(notify.clone());
            next
        });
    }

    fn stream_entry(&self, stream: &str) -> Arc<StreamObjects> {
        if let Some(entry) = self.streams.load().get(stream) {
            return entry.clone();
        }
        let entry = Arc::new(StreamObjects::default());
        self.streams.rcu(|streams| {
            let mut next = (**streams).clone();
            next.entry(stream.into()).or_insert_with(|| entry.clone());
            next
        });
        self.streams
            .load()
            .get(stream)
            .cloned()
            // The rcu above inserted it, and only this stream's single writer removes it.
            .unwrap_or(entry)
    }

    fn published(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        for notify in self.notifiers.load().iter() {
            notify();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn object(body: &'static [u8]) -> StoredObject {
        StoredObject::new(
            Bytes::from_static(body),
            content_type::MP4_VIDEO,
            CachePolicy::Immutable,
        )
    }

    #[test]
    fn publish_lookup_remove() {
        let store = SegmentStore::new();
        assert!(store.lookup("/live/a/source/1.m4s").is_none());
        store.apply(
            "a",
            vec![StoreChange::Put {
                path: "source/1.m4s".into(),
                object: object(b"one"),
            }],
        );
        let found = store.lookup("/live/a/source/1.m4s").expect("published");
        assert_eq!(&found.body[..], b"one");
        assert!(store.lookup("/live/b/source/1.m4s").is_none());
        assert!(store.lookup("/other/a/source/1.m4s").is_none());
        assert!(store.lookup("/live/a").is_none());

        store.apply(
            "a",
            vec![
                StoreChange::Remove {
                    path: "source/1.m4s".into(),
                },
                StoreChange::Put {
                    path: "source/2.m4s".into(),
                    object: object(b"two"),
                },
            ],
        );
        assert!(store.lookup("/live/a/source/1.m4s").is_none());
        let two = store.lookup("/live/a/source/2.m4s").expect("published");
        assert_ne!(two.etag, found.etag);
        // A reader holding a view keeps it after removal.
        store.remove_stream("a");
        assert!(store.lookup("/live/a/source/2.m4s").is_none());
        assert_eq!(&two.body[..], b"two");
        assert!(!store.has_stream("a"));
    }

    #[test]
    fn viewer_tickets_follow_the_latest_request() {
        let store = SegmentStore::new();
        for stream in ["a", "b"] {
            store.apply(
                stream,
                vec![StoreChange::Put {
                    path: "index.m3u8".into(),
                    object: object(b"#EXTM3U"),
                }],
            );
        }
        let mut first = None;
        let mut second = None;
        assert!(
            store
                .lookup_viewed("/live/a/index.m3u8", &mut first)
                .is_some()
        );
        assert!(
            store
                .lookup_viewed("/live/a/missing.m4s", &mut second)
                .is_none()
        );
        assert_eq!(
            store.viewers("a"),
            2,
            "a 404 inside a live stream still counts"
        );
        assert!(
            store
                .lookup_viewed("/live/a/index.m3u8", &mut first)
                .is_some()
        );
        assert_eq!(
            store.viewers("a"),
            2,
            "a repeat request does not count twice"
        );
        store.lookup_viewed("/live/b/index.m3u8", &mut second);
        assert_eq!((store.viewers("a"), store.viewers("b")), (1, 1));
        store.lookup_viewed("/live/nope/index.m3u8", &mut second);
        assert_eq!(store.viewers("b"), 0);
        assert!(second.is_none());
        drop(first);
        assert_eq!(store.viewers("a"), 0);
        assert_eq!(store.viewers("nope"), 0);
    }

    #[test]
    fn publish_wakes_subscribers_and_bumps_generation() {
        let store = SegmentStore::new();
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        store.subscribe(Arc::new(move || {
            w.fetch_add(1, Ordering::Relaxed);
        }));
        let g0 = store.generation();
        store.apply(
            "s",
            vec![StoreChange::Put {
                path: "x".into(),
                object: object(b"x"),
            }],
        );
        assert_eq!(woken.load(Ordering::Relaxed), 1);
        assert!(store.generation() > g0);
        store.apply("s", vec![]);
        assert_eq!(
            woken.load(Ordering::Relaxed),
            1,
            "empty batch publishes nothing"
        );
    }
}
