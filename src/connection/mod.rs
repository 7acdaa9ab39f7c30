//! Connections between nodes after the handshake: framing, ticks, the
//! distribution header with its atom cache, fragments, and control
//! messages.

pub mod control;
pub mod dist_header;
pub mod driver;
pub mod framing;
