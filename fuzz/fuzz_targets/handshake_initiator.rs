//! The initiator's handshake states (`erldist::handshake::state`) driven by
//! arbitrary peer bytes, cut into `[Len:u16]` packets as the driver cuts
//! them.
//!
//! The first input byte picks the setup: a static or dynamic local name,
//! whether the arbiter still waits for this attempt (the answer to
//! `alive`), and whether the harness writes the right digest into the
//! peer's ack (so the fuzzer can reach a completed handshake at all).
//! Every step must return a value or an error, never panic; a handshake
//! completes only with the right digest and with the dialled peer.
#![no_main]

mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::handshake_initiator(data));
