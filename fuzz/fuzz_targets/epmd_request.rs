//! Arbitrary bytes into the EPMD server's request parser, as a client
//! would send them: `Request::decode` streaming over the input fed in
//! chunks, and `Request::decode_exact` on the whole.
//!
//! Whatever decodes must encode back to the bytes it came from (a
//! request's encoding is canonical, but for the one optional trailing NUL
//! after a name, which `epmd_srv.c` accepts and the encoder does not
//! write), and decode again to the same request.
#![no_main]

mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::epmd_request(data));
