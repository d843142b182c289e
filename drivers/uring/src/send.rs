//! Per-slot send state: a reusable head buffer and one body view, sent as two iovecs.
//!
//! The `msghdr` and iovecs the kernel reads live here too, in a boxed slice that never moves,
//! and nothing in an entry may change while its send is in flight (`in_flight`), which is what
//! makes pushing the `SENDMSG` sound.

use bytes::Bytes;

pub(crate) struct SendState {
    pub(crate) head: Vec<u8>,
    head_sent: usize,
    body: Option<Bytes>,
    body_sent: usize,
    iov: [libc::iovec; 2],
    pub(crate) msg: libc::msghdr,
    pub(crate) in_flight: bool,
    pub(crate) zero_copy: bool,
    /// Bytes the in-flight op was asked to send.
    pub(crate) requested: u32,
    /// Result of a zero-copy send's first CQE, reported when its notification arrives.
    pub(crate) zc_result: i32,
}

impl SendState {
    fn new() -> SendState {
        SendState {
            head: Vec::new(),
            head_sent: 0,
            body: None,
            body_sent: 0,
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 2],
            // SAFETY: msghdr is plain old data; all-zero is "no name, no iovecs, no control".
            msg: unsafe { std::mem::zeroed() },
            in_flight: false,
            zero_copy: false,
            requested: 0,
            zc_result: 0,
        }
    }

    pub(crate) fn pending(&self) -> usize {
        let body_left = self
            .body
            .as_ref()
            .map_or(0, |b| b.len().saturating_sub(self.body_sent));
        self.head.len().saturating_sub(self.head_sent) + body_left
    }

    pub(crate) fn set_body(&mut self, body: Bytes) {
        self.body = Some(body);
        self.body_sent = 0;
    }

    /// Points the msghdr at what is left, at most `max_bytes`. Returns the byte count.
    pub(crate) fn prepare(&mut self, max_bytes: usize) -> usize {
        let mut budget = max_bytes;
        let mut count = 0;
        let head_rest = self.head.get(self.head_sent..).unwrap_or_default();
        let head_len = head_rest.len().min(budget);
        if head_len > 0 {
            self.iov[count] = libc::iovec {
                iov_base: head_rest.as_ptr() as *mut libc::c_void,
                iov_len: head_len,
            };
            count += 1;
            budget -= head_len;
        }
        if let Some(body) = &self.body {
            let body_rest = body.get(self.body_sent..).unwrap_or_default();
            let body_len = body_rest.len().min(budget);
            if body_len > 0 {
                self.iov[count] = libc::iovec {
                    iov_base: body_rest.as_ptr() as *mut libc::c_void,
                    iov_len: body_len,
                };
                count += 1;
                budget -= body_len;
            }
        }
        self.msg.msg_iov = self.iov.as_mut_ptr();
        self.msg.msg_iovlen = count;
        max_bytes - budget
    }

    /// Accounts `sent` bytes; once everything is out, clears the head (keeping its capacity)
    /// and drops the body view so the store's buffer is released promptly.
    pub(crate) fn advance(&mut self, sent: usize) {
        let head_left = self.head.len().saturating_sub(self.head_sent);
        let from_head = sent.min(head_left);
        self.head_sent += from_head;
        self.body_sent += sent - from_head;
        if self.pending() == 0 {
            self.reset();
        }
    }

    pub(crate) fn reset(&mut self) {
        self.head.clear();
        self.head_sent = 0;
        self.body = None;
        self.body_sent = 0;
        self.msg.msg_iovlen = 0;
    }
}

/// One [`SendState`] per slot of the file table; never resized (the msghdrs must not move).
pub(crate) struct SendTable {
    pub(crate) states: Box<[SendState]>,
}

impl SendTable {
    pub(crate) fn new(slots: u32) -> SendTable {
        SendTable {
            states: (0..slots).map(|_| SendState::new()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_caps_and_advance_walks_head_then_body() {
        let mut state = SendState::new();
        state.head.extend_from_slice(b"HEAD");
        state.set_body(Bytes::from_static(b"0123456789"));
        assert_eq!(state.pending(), 14);
        assert_eq!(state.prepare(6), 6);
        assert_eq!(state.msg.msg_iovlen, 2);
        assert_eq!(state.iov[0].iov_len, 4);
        assert_eq!(state.iov[1].iov_len, 2);
        state.advance(3);
        assert_eq!(state.pending(), 11);
        assert_eq!(state.prepare(100), 11);
        assert_eq!(state.iov[0].iov_len, 1);
        assert_eq!(state.iov[1].iov_len, 10);
        state.advance(5);
        assert_eq!(state.prepare(100), 6);
        assert_eq!(state.msg.msg_iovlen, 1);
        // SAFETY: the iovec points into the body, which is alive and 6 bytes from its end.
        let rest = unsafe { std::slice::from_raw_parts(state.iov[0].iov_base as *const u8, 6) };
        assert_eq!(rest, b"456789");
        state.advance(6);
        assert_eq!(state.pending(), 0);
        assert!(state.head.is_empty() && state.body.is_none());
    }
}
