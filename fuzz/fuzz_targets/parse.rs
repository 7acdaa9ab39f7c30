//! Arbitrary UTF-8 into `str::parse::<Term>()`; whatever parses must print
//! (`Display`, `~w`) as text that parses back to an `exact_eq` term.
//! Terms over 1 MiB in the external format are not printed: fifteen bytes
//! of text can ask for a 64 MiB bitstring (`<<1:536870911>>`), and
//! printing and parsing that back takes time in proportion to its size,
//! which the fuzzer would report as a timeout.
#![no_main]

use erldist::Term;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(term) = text.parse::<Term>() else {
        return;
    };
    if term.encode().is_ok_and(|b| b.len() > 1 << 20) {
        return;
    }
    let printed = term.to_string();
    let again = printed
        .parse::<Term>()
        .unwrap_or_else(|e| panic!("printed term {printed:?} does not parse: {e}"));
    assert!(
        again.exact_eq(&term),
        "text round trip changed the term: {printed:?}"
    );
});
