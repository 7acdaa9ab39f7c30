//! Arbitrary UTF-8 into `str::parse::<Term>()`; whatever parses must print
//! (`Display`, `~w`) as text that parses back to an `exact_eq` term.
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
    let printed = term.to_string();
    let again = printed
        .parse::<Term>()
        .unwrap_or_else(|e| panic!("printed term {printed:?} does not parse: {e}"));
    assert!(
        again.exact_eq(&term),
        "text round trip changed the term: {printed:?}"
    );
});
