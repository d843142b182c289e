//! Hand-written declarations of the part of libsrt 1.5's C API (`srt/srt.h`,
//! `srt/logging_api.h`) this crate uses. Kept by hand rather than generated so the build needs
//! no libclang; [`SrtTraceStats`]'s layout is checked against the C header's `offsetof` values
//! in the tests below.

#![allow(non_camel_case_types, dead_code, clippy::upper_case_acronyms)]

use libc::{c_char, c_int, c_void, sockaddr};

pub type SRTSOCKET = i32;
pub const SRT_INVALID_SOCK: SRTSOCKET = -1;
pub const SRT_ERROR: c_int = -1;

// enum SRT_SOCKSTATUS
pub const SRTS_INIT: c_int = 1;
pub const SRTS_OPENED: c_int = 2;
pub const SRTS_LISTENING: c_int = 3;
pub const SRTS_CONNECTING: c_int = 4;
pub const SRTS_CONNECTED: c_int = 5;
pub const SRTS_BROKEN: c_int = 6;
pub const SRTS_CLOSING: c_int = 7;
pub const SRTS_CLOSED: c_int = 8;
pub const SRTS_NONEXIST: c_int = 9;

// enum SRT_SOCKOPT (the ones used)
pub const SRTO_SNDSYN: c_int = 1;
pub const SRTO_RCVSYN: c_int = 2;
pub const SRTO_UDP_RCVBUF: c_int = 9;
pub const SRTO_REUSEADDR: c_int = 15;
pub const SRTO_LATENCY: c_int = 23;
pub const SRTO_PASSPHRASE: c_int = 26;
pub const SRTO_PBKEYLEN: c_int = 27;
pub const SRTO_KMSTATE: c_int = 28;
pub const SRTO_CONNTIMEO: c_int = 36;
pub const SRTO_RCVLATENCY: c_int = 43;
pub const SRTO_PEERLATENCY: c_int = 44;
pub const SRTO_STREAMID: c_int = 46;
pub const SRTO_PAYLOADSIZE: c_int = 49;
pub const SRTO_TRANSTYPE: c_int = 50;
pub const SRTO_ENFORCEDENCRYPTION: c_int = 53;
pub const SRTO_PEERIDLETIMEO: c_int = 55;

pub const SRTT_LIVE: c_int = 0;

// enum SRT_EPOLL_OPT
pub const SRT_EPOLL_IN: c_int = 0x1;
pub const SRT_EPOLL_OUT: c_int = 0x4;
pub const SRT_EPOLL_ERR: c_int = 0x8;
// enum SRT_EPOLL_FLAGS
pub const SRT_EPOLL_ENABLE_EMPTY: i32 = 1;

// SRT_ERRNO values this crate tells apart.
pub const SRT_EASYNCSND: c_int = 6001;
pub const SRT_EASYNCRCV: c_int = 6002;
pub const SRT_ETIMEOUT: c_int = 6003;
pub const SRT_ECONNREJ: c_int = 1002;

/// `SRT_REJC_PREDEFINED`: reject codes 1000 + an HTTP status (access_control.h).
pub const SRT_REJC_PREDEFINED: c_int = 1000;

/// `SRT_EPOLL_EVENT`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SRT_EPOLL_EVENT {
    pub fd: SRTSOCKET,
    pub events: c_int,
}

/// `srt_listen_callback_fn`.
pub type srt_listen_callback_fn = unsafe extern "C" fn(
    opaque: *mut c_void,
    ns: SRTSOCKET,
    hsversion: c_int,
    peeraddr: *const sockaddr,
    streamid: *const c_char,
) -> c_int;

/// `SRT_LOG_HANDLER_FN`.
pub type SRT_LOG_HANDLER_FN = unsafe extern "C" fn(
    opaque: *mut c_void,
    level: c_int,
    file: *const c_char,
    line: c_int,
    area: *const c_char,
    message: *const c_char,
);

/// `struct CBytePerfMon` (`SRT_TRACEBSTATS`) of libsrt 1.5.1, field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
#[allow(non_snake_case)]
pub struct SrtTraceStats {
    pub msTimeStamp: i64,
    pub pktSentTotal: i64,
    pub pktRecvTotal: i64,
    pub pktSndLossTotal: c_int,
    pub pktRcvLossTotal: c_int,
    pub pktRetransTotal: c_int,
    pub pktSentACKTotal: c_int,
    pub pktRecvACKTotal: c_int,
    pub pktSentNAKTotal: c_int,
    pub pktRecvNAKTotal: c_int,
    pub usSndDurationTotal: i64,
    pub pktSndDropTotal: c_int,
    pub pktRcvDropTotal: c_int,
    pub pktRcvUndecryptTotal: c_int,
    pub byteSentTotal: u64,
    pub byteRecvTotal: u64,
    pub byteRcvLossTotal: u64,
    pub byteRetransTotal: u64,
    pub byteSndDropTotal: u64,
    pub byteRcvDropTotal: u64,
    pub byteRcvUndecryptTotal: u64,

    pub pktSent: i64,
    pub pktRecv: i64,
    pub pktSndLoss: c_int,
    pub pktRcvLoss: c_int,
    pub pktRetrans: c_int,
    pub pktRcvRetrans: c_int,
    pub pktSentACK: c_int,
    pub pktRecvACK: c_int,
    pub pktSentNAK: c_int,
    pub pktRecvNAK: c_int,
    pub mbpsSendRate: f64,
    pub mbpsRecvRate: f64,
    pub usSndDuration: i64,
    pub pktReorderDistance: c_int,
    pub pktRcvAvgBelatedTime: f64,
    pub pktRcvBelated: i64,
    pub pktSndDrop: c_int,
    pub pktRcvDrop: c_int,
    pub pktRcvUndecrypt: c_int,
    pub byteSent: u64,
    pub byteRecv: u64,
    pub byteRcvLoss: u64,
    pub byteRetrans: u64,
    pub byteSndDrop: u64,
    pub byteRcvDrop: u64,
    pub byteRcvUndecrypt: u64,

    pub usPktSndPeriod: f64,
    pub pktFlowWindow: c_int,
    pub pktCongestionWindow: c_int,
    pub pktFlightSize: c_int,
    pub msRTT: f64,
    pub mbpsBandwidth: f64,
    pub byteAvailSndBuf: c_int,
    pub byteAvailRcvBuf: c_int,
    pub mbpsMaxBW: f64,
    pub byteMSS: c_int,
    pub pktSndBuf: c_int,
    pub byteSndBuf: c_int,
    pub msSndBuf: c_int,
    pub msSndTsbPdDelay: c_int,
    pub pktRcvBuf: c_int,
    pub byteRcvBuf: c_int,
    pub msRcvBuf: c_int,
    pub msRcvTsbPdDelay: c_int,
    pub pktSndFilterExtraTotal: c_int,
    pub pktRcvFilterExtraTotal: c_int,
    pub pktRcvFilterSupplyTotal: c_int,
    pub pktRcvFilterLossTotal: c_int,
    pub pktSndFilterExtra: c_int,
    pub pktRcvFilterExtra: c_int,
    pub pktRcvFilterSupply: c_int,
    pub pktRcvFilterLoss: c_int,
    pub pktReorderTolerance: c_int,

    pub pktSentUniqueTotal: i64,
    pub pktRecvUniqueTotal: i64,
    pub byteSentUniqueTotal: u64,
    pub byteRecvUniqueTotal: u64,
    pub pktSentUnique: i64,
    pub pktRecvUnique: i64,
    pub byteSentUnique: u64,
    pub byteRecvUnique: u64,
}

unsafe extern "C" {
    pub fn srt_startup() -> c_int;
    pub fn srt_getversion() -> u32;
    pub fn srt_create_socket() -> SRTSOCKET;
    pub fn srt_bind(u: SRTSOCKET, name: *const sockaddr, namelen: c_int) -> c_int;
    pub fn srt_listen(u: SRTSOCKET, backlog: c_int) -> c_int;
    pub fn srt_accept(u: SRTSOCKET, addr: *mut sockaddr, addrlen: *mut c_int) -> SRTSOCKET;
    pub fn srt_listen_callback(
        lsn: SRTSOCKET,
        hook_fn: Option<srt_listen_callback_fn>,
        hook_opaque: *mut c_void,
    ) -> c_int;
    pub fn srt_connect(u: SRTSOCKET, name: *const sockaddr, namelen: c_int) -> c_int;
    pub fn srt_close(u: SRTSOCKET) -> c_int;
    pub fn srt_getpeername(u: SRTSOCKET, name: *mut sockaddr, namelen: *mut c_int) -> c_int;
    pub fn srt_getsockname(u: SRTSOCKET, name: *mut sockaddr, namelen: *mut c_int) -> c_int;
    pub fn srt_getsockflag(
        u: SRTSOCKET,
        opt: c_int,
        optval: *mut c_void,
        optlen: *mut c_int,
    ) -> c_int;
    pub fn srt_setsockflag(u: SRTSOCKET, opt: c_int, optval: *const c_void, optlen: c_int)
    -> c_int;
    pub fn srt_send(u: SRTSOCKET, buf: *const c_char, len: c_int) -> c_int;
    pub fn srt_recv(u: SRTSOCKET, buf: *mut c_char, len: c_int) -> c_int;
    pub fn srt_getlasterror_str() -> *const c_char;
    pub fn srt_getlasterror(errno_loc: *mut c_int) -> c_int;
    pub fn srt_clearlasterror();
    pub fn srt_bstats(u: SRTSOCKET, perf: *mut SrtTraceStats, clear: c_int) -> c_int;
    pub fn srt_getsockstate(u: SRTSOCKET) -> c_int;
    pub fn srt_epoll_create() -> c_int;
    pub fn srt_epoll_add_usock(eid: c_int, u: SRTSOCKET, events: *const c_int) -> c_int;
    pub fn srt_epoll_remove_usock(eid: c_int, u: SRTSOCKET) -> c_int;
    pub fn srt_epoll_uwait(
        eid: c_int,
        fds_set: *mut SRT_EPOLL_EVENT,
        fds_size: c_int,
        ms_timeout: i64,
    ) -> c_int;
    pub fn srt_epoll_set(eid: c_int, flags: i32) -> i32;
    pub fn srt_epoll_release(eid: c_int) -> c_int;
    pub fn srt_setloglevel(ll: c_int);
    pub fn srt_setloghandler(opaque: *mut c_void, handler: Option<SRT_LOG_HANDLER_FN>);
    pub fn srt_getrejectreason(sock: SRTSOCKET) -> c_int;
    pub fn srt_setrejectreason(sock: SRTSOCKET, value: c_int) -> c_int;
    pub fn srt_rejectreason_str(id: c_int) -> *const c_char;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// Offsets printed by a C program compiled against /usr/include/srt/srt.h of
    /// libsrt-openssl-dev 1.5.1 (`offsetof(SRT_TRACEBSTATS, ...)`, x86-64): a field left out
    /// or mistyped above moves every later one.
    #[test]
    fn trace_stats_layout_matches_the_c_header() {
        assert_eq!(size_of::<SrtTraceStats>(), 496);
        assert_eq!(offset_of!(SrtTraceStats, pktRcvLossTotal), 28);
        assert_eq!(offset_of!(SrtTraceStats, pktRetransTotal), 32);
        assert_eq!(offset_of!(SrtTraceStats, pktRcvDropTotal), 68);
        assert_eq!(offset_of!(SrtTraceStats, byteRecvTotal), 88);
        assert_eq!(offset_of!(SrtTraceStats, mbpsRecvRate), 192);
        assert_eq!(offset_of!(SrtTraceStats, msRTT), 328);
        assert_eq!(offset_of!(SrtTraceStats, msRcvTsbPdDelay), 392);
        assert_eq!(offset_of!(SrtTraceStats, pktRecvUniqueTotal), 440);
        assert_eq!(offset_of!(SrtTraceStats, byteRecvUnique), 488);
        assert_eq!(size_of::<SRT_EPOLL_EVENT>(), 8);
    }
}
