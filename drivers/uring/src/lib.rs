//! io_uring reactor (being written).
