//! Arbitrary bytes into `Decoder::decode_body` (no version byte, as terms
//! follow a distribution header), from offset 0.
#![no_main]

use bytes::Bytes;
use erldist::{Decoder, Encoder, Term};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let input = Bytes::copy_from_slice(data);
    let Ok((term, end)) = Decoder::new().decode_body(&input, 0) else {
        return;
    };
    assert!(
        end <= data.len(),
        "end offset {end} past the input ({})",
        data.len()
    );
    let mut body = Vec::new();
    Encoder::new()
        .encode_body(&term, &mut body)
        .unwrap_or_else(|e| panic!("decoded term does not encode: {e}"));
    let body = Bytes::from(body);
    let (again, used) = Decoder::new()
        .decode_body(&body, 0)
        .unwrap_or_else(|e| panic!("re-encoded body does not decode: {e}"));
    assert_eq!(used, body.len(), "re-encoded body not consumed whole");
    assert!(again.exact_eq(&term), "round trip changed the term");
    // With the version byte, the same term.
    let full = term.encode().expect("encode with version byte");
    assert!(Term::decode(&full).expect("decode").exact_eq(&term));
});
