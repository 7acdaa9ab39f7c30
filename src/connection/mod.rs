//! Connections between nodes after the handshake: framing, ticks, the
//! distribution header with its atom cache, fragments, and control
//! messages.
//!
//! - [`framing`]: 4-byte frames, ticks, the pass-through (`p`) payload form;
//! - [`driver`]: the tokio side: `connect`, `accept`, `serve`, one task per
//!   connection, the connection table;
//! - `reader`: reading the socket so that a streaming peer's writes join
//!   up (see its documentation);
//! - [`dist_header`] and [`control`]: codecs for the distribution header
//!   and the control messages.

pub mod control;
pub mod dist_header;
pub mod driver;
pub mod framing;
pub(crate) mod reader;
