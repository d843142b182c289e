//! Unit tests of the demuxer.
