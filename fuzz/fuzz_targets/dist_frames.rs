//! Bytes after the handshake, as a connection reads them: `[Len:u32]`
//! frames cut by `framing::decode_frame`, each read by a `DistDecoder`
//! (distribution header, atom cache, fragments, control message and
//! payload), with small limits so the fuzzer reaches them.
//!
//! The first input byte picks the framing (pass-through, header, header
//! with fragments). Every frame must give a message, nothing yet, or an
//! error, never a panic; the limits must hold; every message must encode
//! (`DistEncoder`) and decode back to the same message.
#![no_main]

mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::dist_frames(data));
