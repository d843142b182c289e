//! corecast engine: the core plan, the stream hub, the segment store, io_uring HTTP delivery and
//! the control API.

pub mod delivery;
pub mod store;
