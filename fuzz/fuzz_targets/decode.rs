//! Arbitrary bytes into `Term::decode` and `Term::decode_bytes`.
//!
//! Both must agree; whatever decodes must encode, and the encoding must
//! decode to an `exact_eq` term.
#![no_main]

use bytes::Bytes;
use erldist::Term;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let copied = Term::decode(data);
    let shared = Term::decode_bytes(&Bytes::copy_from_slice(data));
    match (&copied, &shared) {
        (Ok(a), Ok(b)) => assert!(a.exact_eq(b), "decode and decode_bytes differ"),
        (Err(a), Err(b)) => assert_eq!(a, b, "decode and decode_bytes fail differently"),
        _ => panic!("decode gave {copied:?}, decode_bytes gave {shared:?}"),
    }
    let Ok(term) = copied else { return };
    let encoded = term
        .encode()
        .unwrap_or_else(|e| panic!("decoded term does not encode: {e}"));
    let again =
        Term::decode(&encoded).unwrap_or_else(|e| panic!("re-encoded term does not decode: {e}"));
    assert!(again.exact_eq(&term), "round trip changed the term");
    // Encoding is canonical: the second encoding is the same bytes.
    let encoded2 = again.encode().expect("second encode");
    assert_eq!(encoded, encoded2, "encoding is not stable");
});
