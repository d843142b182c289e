//! FFmpeg driver (being written).
