//! The distribution header (131, 68), its atom cache, and fragmented messages (131, 69 / 70).
