//! libx264 driver (being written).
