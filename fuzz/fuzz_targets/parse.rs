//! Arbitrary UTF-8 into `str::parse::<Term>()`; whatever parses must print
//! (`Display`, `~w`) as text that parses back to an `exact_eq` term. The
//! check is `harness::parse`, which `tests/fuzz_regressions.rs` replays.
#![no_main]

mod harness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| harness::parse(data));
