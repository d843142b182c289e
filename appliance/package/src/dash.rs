//! DASH MPD writer (ISO/IEC 23009-1).
