//! A rung's bounded queue of scaled pictures waiting for its encoder, and the drop policy when
//! the encoder falls behind.
//!
//! Slots are allocated once (`capacity` of them) and cycle between the free list and the queue,
//! so a running rung allocates nothing. When the queue is full:
//! - an ordinary frame is dropped on arrival (it is never scaled, which also saves the work);
//! - a segment's first frame (its IDR must exist, or the rung's segments would not line up) is
//!   queued anyway, in the slot of the newest ordinary frame, which is dropped instead.
//!
//! Dropping the newest rather than the oldest keeps what is queued contiguous from the encoder's
//! point of view and costs one frame of motion smoothness per drop; the rung's lag stays bounded
//! by `capacity` frames either way.

use std::collections::VecDeque;

/// One queued picture.
#[derive(Debug)]
pub struct Queued<T> {
    pub slot: T,
    /// The picture starts a segment: the encoder must make it an IDR.
    pub starts_segment: bool,
}

/// What [`FrameQueue::reserve`] gives for an arriving frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Reservation<T> {
    /// Fill this slot and [`FrameQueue::push`] it.
    Slot(T),
    /// The queue is full and the frame is dropped (counted).
    Dropped,
}

/// See the module docs.
#[derive(Debug)]
pub struct FrameQueue<T> {
    free: Vec<T>,
    queued: VecDeque<Queued<T>>,
    dropped: u64,
}

impl<T> FrameQueue<T> {
    /// A queue over these slots; its capacity is their number.
    pub fn new(slots: Vec<T>) -> Self {
        let capacity = slots.len();
        FrameQueue {
            free: slots,
            queued: VecDeque::with_capacity(capacity),
            dropped: 0,
        }
    }

    /// A slot for an arriving frame, or `Dropped` by the policy above.
    pub fn reserve(&mut self, starts_segment: bool) -> Reservation<T> {
        if let Some(slot) = self.free.pop() {
            return Reservation::Slot(slot);
        }
        if !starts_segment {
            self.dropped += 1;
            return Reservation::Dropped;
        }
        // Full, and this frame must be encoded: evict the newest ordinary frame, or, if every
        // queued frame starts a segment (segments one frame long), the oldest.
        let victim = self
            .queued
            .iter()
            .rposition(|queued| !queued.starts_segment)
            .unwrap_or(0);
        match self.queued.remove(victim) {
            Some(evicted) => {
                self.dropped += 1;
                Reservation::Slot(evicted.slot)
            }
            // No slots at all (a queue built with none): nothing can be kept.
            None => {
                self.dropped += 1;
                Reservation::Dropped
            }
        }
    }

    /// Queues a slot filled after [`Self::reserve`].
    pub fn push(&mut self, slot: T, starts_segment: bool) {
        self.queued.push_back(Queued {
            slot,
            starts_segment,
        });
    }

    /// The oldest queued picture, for the encoder.
    pub fn pop(&mut self) -> Option<Queued<T>> {
        self.queued.pop_front()
    }

    /// The oldest queued picture, without taking it.
    pub fn front(&self) -> Option<&Queued<T>> {
        self.queued.front()
    }

    /// Gives a slot back once its picture has been encoded.
    pub fn recycle(&mut self, slot: T) {
        self.free.push(slot);
    }

    pub fn len(&self) -> usize {
        self.queued.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queued.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.free.is_empty()
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(queue: &mut FrameQueue<u32>, frame: u32, starts_segment: bool) -> bool {
        match queue.reserve(starts_segment) {
            Reservation::Slot(_) => {
                queue.push(frame, starts_segment);
                true
            }
            Reservation::Dropped => false,
        }
    }

    #[test]
    fn a_full_queue_drops_ordinary_frames_but_keeps_segment_starts() {
        let mut queue = FrameQueue::new(vec![0u32; 3]);
        assert!(fill(&mut queue, 1, true));
        assert!(fill(&mut queue, 2, false));
        assert!(fill(&mut queue, 3, false));
        assert!(queue.is_full());
        // An ordinary frame arriving at a full queue is dropped.
        assert!(!fill(&mut queue, 4, false));
        assert_eq!(queue.dropped(), 1);
        // A segment start takes the newest ordinary frame's place.
        assert!(fill(&mut queue, 5, true));
        assert_eq!(queue.dropped(), 2);
        let order: Vec<(u32, bool)> = std::iter::from_fn(|| queue.pop())
            .map(|q| (q.slot, q.starts_segment))
            .collect();
        assert_eq!(order, vec![(1, true), (2, false), (5, true)]);
    }

    #[test]
    fn slots_cycle_without_growing() {
        let mut queue = FrameQueue::new(vec![10u32, 11]);
        for frame in 0..100 {
            let Reservation::Slot(slot) = queue.reserve(frame % 30 == 0) else {
                panic!("a drained queue always has room");
            };
            queue.push(slot, frame % 30 == 0);
            let queued = queue.pop().unwrap();
            queue.recycle(queued.slot);
        }
        assert_eq!((queue.len(), queue.dropped()), (0, 0));
        let mut slots = queue.free.clone();
        slots.sort_unstable();
        assert_eq!(slots, vec![10, 11]);
    }

    #[test]
    fn a_queue_of_segment_starts_evicts_the_oldest() {
        let mut queue = FrameQueue::new(vec![0u32; 2]);
        assert!(fill(&mut queue, 1, true));
        assert!(fill(&mut queue, 2, true));
        assert!(fill(&mut queue, 3, true));
        let order: Vec<u32> = std::iter::from_fn(|| queue.pop()).map(|q| q.slot).collect();
        assert_eq!(order, vec![2, 3]);
        assert_eq!(queue.dropped(), 1);
    }
}
