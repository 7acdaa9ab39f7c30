//! Properties and limits of the codec that need no other implementation:
//! round trips, bounded decoding of hostile input, and conversions.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::arb_term;
use erldist::{term, Atom, DecodeErrorKind, DecodeOptions, Decoder, Pid, Term};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn decode_of_encode_is_the_same_term(t in arb_term()) {
        let bytes = t.encode().unwrap();
        let back = Term::decode(&bytes).unwrap();
        prop_assert!(back.exact_eq(&t), "{t:?} came back as {back:?}");
        // And encoding is stable: the decoded term writes the same bytes.
        prop_assert_eq!(back.encode().unwrap(), bytes);
    }

    #[test]
    fn parse_of_display_is_the_same_term(t in arb_term()) {
        let text = t.to_string();
        let back: Term = text.parse().map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert!(back.exact_eq(&t), "{text} parsed as {back}");
        let alt = format!("{t:#}");
        let back: Term = alt.parse().map_err(|e| TestCaseError::fail(format!("{alt}: {e}")))?;
        prop_assert!(back.exact_eq(&t), "{alt} parsed as {back}");
    }

    #[test]
    fn compressed_round_trips(t in arb_term()) {
        let bytes = erldist::Encoder::new().compressed(6).encode(&t).unwrap();
        prop_assert!(Term::decode(&bytes).unwrap().exact_eq(&t));
    }

    #[test]
    fn every_strict_prefix_of_an_encoding_fails(t in arb_term()) {
        let bytes = t.encode().unwrap();
        // Every prefix of a big term costs quadratic time; a few hundred
        // prefixes of each term are enough.
        let step = (bytes.len() / 300).max(1);
        for n in (0..bytes.len()).step_by(step) {
            prop_assert!(Term::decode(&bytes[..n]).is_err(), "prefix {n} of {bytes:?} decoded");
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Some(b) = bytes.first_mut() { *b = 131; }
        let _ = Term::decode(&bytes);
    }

    #[test]
    fn order_is_total_and_consistent(a in arb_term(), b in arb_term()) {
        prop_assert_eq!(a.cmp(&b), b.cmp(&a).reverse());
        prop_assert_eq!(a == b, a.cmp(&b).is_eq());
        if a.exact_eq(&b) { prop_assert!(a == b); }
    }
}

#[test]
fn binaries_share_the_input_buffer() {
    let payload = vec![7u8; 4096];
    let bytes = bytes::Bytes::from(
        term!({data, (bytes::Bytes::from(payload))})
            .encode()
            .unwrap(),
    );
    let t = Term::decode_bytes(&bytes).unwrap();
    let bin = t.as_tuple().unwrap()[1].as_binary().unwrap();
    let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
    assert!(
        range.contains(&(bin.as_ptr() as usize)),
        "binary was copied"
    );
}

#[test]
fn huge_length_fields_are_errors_not_allocations() {
    // Each claims 4 GiB of elements in a few bytes.
    for tag in [104u8, 105, 107, 108, 109, 110, 111, 116, 77] {
        let input = [131, tag, 0xff, 0xff, 0xff, 0xff, 0, 0, 0];
        assert!(Term::decode(&input).is_err(), "tag {tag}");
    }
    let e = Term::decode(&[131, 108, 0xff, 0xff, 0xff, 0xff, 106]).unwrap_err();
    assert!(matches!(
        e.kind,
        DecodeErrorKind::LengthTooLarge {
            claimed: 0xffff_ffff,
            ..
        }
    ));
    // A compressed term that claims far more than it inflates to.
    let e = Term::decode(&[131, 80, 0xff, 0xff, 0xff, 0xff, 0x78, 0x9c, 3, 0]).unwrap_err();
    assert!(matches!(e.kind, DecodeErrorKind::Compression(_)), "{e}");
}

#[test]
fn nested_lists_cannot_reserve_more_than_the_input() {
    // 1000 nested lists, each claiming as many elements as bytes remain.
    let mut input = vec![131];
    for i in 0..1000u32 {
        let remaining = (1000 - i) * 5 + 1;
        input.push(108);
        input.extend_from_slice(&remaining.to_be_bytes());
    }
    input.push(106);
    // It is malformed (the lists are short of elements) and fails quickly.
    assert!(Term::decode(&input).is_err());
}

/// Runs `f` on a thread with a stack of `size` bytes; its result.
fn on_stack<R: Send>(size: usize, f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(size)
            .spawn_scoped(s, f)
            .unwrap()
            .join()
            .unwrap()
    })
}

/// Drops, prints, compares and encodes a term of the given depth on a
/// thread with a 2 MiB stack (what tokio gives its workers).
fn on_small_stack(f: impl FnOnce() + Send) {
    on_stack(2 << 20, f)
}

/// A decoder for terms up to 70,000 levels deep.
fn deep_decoder() -> Decoder<'static> {
    Decoder::new().options(DecodeOptions {
        max_depth: 70_000,
        ..DecodeOptions::default()
    })
}

fn nested(depth: usize) -> Vec<u8> {
    let mut v = vec![131];
    for _ in 0..depth {
        v.extend_from_slice(&[104, 1]);
    }
    v.extend_from_slice(&[97, 1]);
    v
}

/// A term of nested one-entry maps, `#{1 => #{1 => ... 1}}`.
fn nested_maps(depth: usize) -> Vec<u8> {
    let mut v = vec![131];
    for _ in 0..depth {
        v.extend_from_slice(&[116, 0, 0, 0, 1, 97, 1]);
    }
    v.extend_from_slice(&[97, 1]);
    v
}

/// A term of nested one-element lists, `[[[... a]]]`.
fn nested_lists(depth: usize) -> Vec<u8> {
    let mut v = vec![131];
    for _ in 0..depth {
        v.extend_from_slice(&[108, 0, 0, 0, 1]);
    }
    v.extend_from_slice(&[119, 1, b'a']);
    v.resize(v.len() + depth, 106);
    v
}

#[test]
fn terms_of_the_default_depth_drop_on_a_small_stack() {
    // Dropping is plain recursion; maps take the most stack a level.
    on_small_stack(|| {
        let deepest = erldist::term::DEFAULT_MAX_DEPTH;
        for bytes in [nested_maps(deepest), nested_lists(deepest)] {
            let t = Term::decode(&bytes).unwrap();
            assert_eq!(t.encode().unwrap(), bytes);
            drop(t);
        }
        let e = Term::decode(&nested_maps(deepest + 1)).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::TooDeep(deepest));
    });
}

#[test]
fn nesting_is_bounded_and_safe_at_the_default_depth() {
    on_small_stack(|| {
        let deepest = erldist::term::DEFAULT_MAX_DEPTH;
        let t = Term::decode(&nested(deepest)).unwrap();
        let again = t.clone();
        assert_eq!(t, again);
        assert_eq!(t.encode().unwrap(), nested(deepest));
        let _ = t.to_string();
        drop(t);
        let e = Term::decode(&nested(deepest + 1)).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::TooDeep(deepest));
        // A million levels fail fast, without recursion.
        let e = Term::decode(&nested(1_000_000)).unwrap_err();
        assert_eq!(e.kind, DecodeErrorKind::TooDeep(deepest));
    });
    let shallow = Decoder::new().options(DecodeOptions {
        max_depth: 3,
        ..DecodeOptions::default()
    });
    assert!(shallow.decode(&nested(3)).is_ok());
    assert!(shallow.decode(&nested(4)).is_err());
}

#[test]
fn atom_cache_references_resolve_through_the_given_cache() {
    let cache = [Atom::from("net_kernel"), Atom::from("ok")];
    let body = bytes::Bytes::from_static(&[104, 2, 82, 0, 82, 1]);
    let (t, end) = Decoder::new()
        .atom_cache(&cache)
        .decode_body(&body, 0)
        .unwrap();
    assert_eq!(t, term!({net_kernel, ok}));
    assert_eq!(end, body.len());
    let e = Decoder::new().decode_body(&body, 0).unwrap_err();
    assert_eq!((e.offset, e.kind), (2, DecodeErrorKind::AtomCacheMiss(0)));
}

#[test]
fn integers_take_the_smallest_form() {
    let enc = |i: i64| Term::from(i).encode().unwrap();
    assert_eq!(enc(0), [131, 97, 0]);
    assert_eq!(enc(255), [131, 97, 255]);
    assert_eq!(enc(256), [131, 98, 0, 0, 1, 0]);
    assert_eq!(enc(-1), [131, 98, 255, 255, 255, 255]);
    assert_eq!(enc(1 << 31), [131, 110, 4, 0, 0, 0, 0, 128]);
    assert_eq!(enc(i64::MIN), [131, 110, 8, 1, 0, 0, 0, 0, 0, 0, 0, 128]);
    let big = Term::from(num_bigint::BigInt::from(1) << 3000u32);
    assert_eq!(&big.encode().unwrap()[..3], [131, 111, 0]);
    assert!(Term::decode(&big.encode().unwrap()).unwrap().exact_eq(&big));
}

#[test]
fn equality_is_erlangs_and_exactness_is_separate() {
    assert_eq!(Term::from(1), Term::from(1.0));
    assert!(!Term::from(1).exact_eq(&Term::from(1.0)));
    assert!(Term::from(1) < Term::atom("a"));
    assert_eq!(
        Term::ByteList(bytes::Bytes::from_static(b"ab")),
        term!([97, 98])
    );
    // Maps keep 1 and 1.0 apart, as Erlang's do.
    let m = Term::map([(Term::from(1), term!(a)), (Term::from(1.0), term!(b))]);
    assert_eq!(m.as_map().unwrap().len(), 2);
    // Small maps are written in key order whatever the insertion order.
    let a = term!(#{b => 2, a => 1}).encode().unwrap();
    let b = term!(#{a => 1, b => 2}).encode().unwrap();
    assert_eq!(a, b);
}

#[test]
fn conversions_both_ways() {
    assert_eq!(i32::try_from(Term::from(-5)).unwrap(), -5);
    assert!(u8::try_from(Term::from(300)).is_err());
    assert!(bool::try_from(Term::atom("true")).unwrap());
    assert_eq!(String::try_from(Term::from("kate")).unwrap(), "kate");
    assert_eq!(String::try_from(term!([104, 105])).unwrap(), "hi");
    assert_eq!(
        Vec::<i64>::try_from(term!([1, 2, 3])).unwrap(),
        vec![1, 2, 3]
    );
    let (a, b): (Atom, f64) = term!({ok, 1.5}).try_into().unwrap();
    assert_eq!((a.as_str(), b), ("ok", 1.5));
    let m: HashMap<String, i64> = HashMap::from([("a".into(), 1)]);
    let back: HashMap<String, i64> = Term::from(m.clone()).try_into().unwrap();
    assert_eq!(back, m);
    let bm: BTreeMap<i64, bool> = BTreeMap::from([(1, true)]);
    assert_eq!(
        BTreeMap::<i64, bool>::try_from(Term::from(bm.clone())).unwrap(),
        bm
    );
    assert_eq!(Term::from(None::<i32>), Term::atom("nil"));
    assert_eq!(Term::from(Some(3)), Term::from(3));
    assert_eq!(
        Term::atom("undefined").try_into_option::<i64>().unwrap(),
        None
    );
    let pid = Pid {
        node: Atom::from("a@b"),
        id: 1,
        serial: 2,
        creation: 3,
    };
    assert_eq!(Pid::try_from(Term::from(pid)).unwrap(), pid);
    let e = i64::try_from(Term::atom("oops")).unwrap_err();
    assert_eq!(e.expected, "integer fitting i64");
    assert!(e.found.starts_with("atom"), "{e}");
    let e = <(i64, i64)>::try_from(term!({1, 2, 3})).unwrap_err();
    assert_eq!(e.expected, "tuple of 2");
    assert_eq!(u128::try_from(Term::from(u128::MAX)).unwrap(), u128::MAX);
}

#[test]
fn the_term_macro_builds_every_shape() {
    let name = String::from("kate");
    let t = term!({ok, [1, -2, 3.5], #{name => (name.clone()), "k" => <<1, 2>>}, [a | b], <<"hi">>, <<>>, true, []});
    let v = t.as_tuple().unwrap();
    assert!(v[0].is_atom("ok"));
    assert_eq!(
        v[1],
        Term::List(vec![Term::from(1), Term::from(-2), Term::from(3.5)])
    );
    let m = v[2].as_map().unwrap();
    assert_eq!(m.get(&Term::atom("name")), Some(&Term::from("kate")));
    assert_eq!(m.get(&Term::from("k")), Some(&Term::binary(vec![1u8, 2])));
    assert_eq!(
        v[3],
        Term::list_with_tail(vec![Term::atom("a")], Term::atom("b"))
    );
    assert_eq!(v[4], Term::from("hi"));
    assert_eq!(v[5], Term::binary(Vec::<u8>::new()));
    assert!(v[6].is_atom("true"));
    assert!(v[7].is_nil());
}

#[test]
fn atom_cache_references_are_written_for_the_atoms_asked() {
    let t = term!({net_kernel, [ok, other], #{ok => net_kernel}});
    let cache = [Atom::from("net_kernel"), Atom::from("ok")];
    let mut out = Vec::new();
    erldist::Encoder::new()
        .encode_body_with_atom_refs(&t, &mut out, &mut |a| {
            cache.iter().position(|c| *c == a).map(|i| i as u8)
        })
        .unwrap();
    assert_eq!(
        &out[..4],
        [104, 3, 82, 0],
        "the first atom is a cache reference"
    );
    let (back, end) = Decoder::new()
        .atom_cache(&cache)
        .decode_body(&bytes::Bytes::from(out.clone()), 0)
        .unwrap();
    assert!(back.exact_eq(&t));
    assert_eq!(end, out.len());
}

#[test]
fn lists_of_integers_with_other_terms_between_decode_as_written() {
    // Integers of each width in runs longer and shorter than the decoder's
    // block, broken by an atom, a big integer, a tuple and a list, and
    // lists ending in a run, in another term and in an improper tail.
    let elems: Vec<Term> = (0..70i64)
        .map(|i| match i % 23 {
            7 => term!(x),
            15 => Term::from(i128::from(i) << 70),
            19 => term!({(i), [(i)]}),
            _ if i % 3 == 0 => Term::Int(i),
            _ if i % 3 == 1 => Term::Int(-1_000_000 * i),
            _ => Term::Int(255),
        })
        .collect();
    let mut lists = vec![Term::list(elems.clone())];
    for n in [1, 15, 16, 17, 33] {
        // Not all bytes, so not a STRING_EXT.
        lists.push(Term::list(
            (0..n).map(|i| Term::Int(i * 300 - 500)).collect(),
        ));
        lists.push(Term::list_with_tail(
            (0..n).map(|i| Term::Int(i * 1000)).collect(),
            Term::Int(-1),
        ));
    }
    lists.push(Term::list(vec![Term::Int(1), Term::Int(2), term!(end)]));
    for t in lists {
        let bytes = t.encode().unwrap();
        let back = Term::decode(&bytes).unwrap();
        assert!(back.exact_eq(&t), "{t} came back as {back}");
    }
    // A run cut short by the end of the input is an error, not a panic.
    let cut = [131, 108, 0, 0, 0, 3, 97, 1, 98, 0, 0];
    assert!(Term::decode(&cut).is_err());
}

#[test]
fn references_of_every_length_decode_and_longer_ones_are_errors() {
    for len in 0..=5u16 {
        let mut bytes = vec![131, 90];
        bytes.extend_from_slice(&len.to_be_bytes());
        bytes.extend_from_slice(&[119, 1, b'n', 0, 0, 0, 7]);
        for w in 0..u32::from(len) {
            bytes.extend_from_slice(&(w * 1000 + 1).to_be_bytes());
        }
        let Term::Ref(r) = Term::decode(&bytes).unwrap() else {
            panic!("not a reference: {len} words");
        };
        let want: Vec<u32> = (0..u32::from(len)).map(|w| w * 1000 + 1).collect();
        assert_eq!(r.ids(), &want[..]);
        assert_eq!(r.creation, 7);
    }
    let mut six = vec![131, 90, 0, 6, 119, 1, b'n', 0, 0, 0, 7];
    six.extend_from_slice(&[0; 24]);
    let e = Term::decode(&six).unwrap_err();
    assert!(matches!(e.kind, DecodeErrorKind::BadReference(6)), "{e}");
}

/// Whether `t` (up to 70,000 levels deep) encodes on a 256 KiB stack,
/// the encoder growing its stack as it goes, and decodes back the same.
/// Call it on a large stack: the term is decoded and dropped there, and
/// dropping is plain recursion.
fn encodes_on_a_small_stack(t: &Term) -> bool {
    let bytes = on_stack(256 << 10, || t.encode().unwrap());
    deep_decoder()
        .decode(&bytes)
        .is_ok_and(|back| back.exact_eq(t))
}

/// Terms 60,000 levels deep whose nested term is last in its list at
/// every level but one in sixteen, where it is in the middle, in every
/// phase: the encoder loops over the first kind and calls itself for the
/// second, so each phase puts the calls at other depths. None may run out
/// of a 256 KiB stack.
#[test]
fn terms_nested_last_and_in_the_middle_encode_in_every_phase_on_a_small_stack() {
    on_stack(512 << 20, || {
        for phase in 0..16 {
            let mut t = term!(bottom);
            for level in 0..60_000usize {
                t = if level % 16 == phase {
                    Term::list(vec![t, term!(x)])
                } else {
                    Term::list(vec![t])
                };
            }
            assert!(encodes_on_a_small_stack(&t), "phase {phase}");
        }
    });
}

/// The decoder grows its stack as it goes too: terms 60,000 levels deep,
/// nested as tuples and lists (maps and funs take another path), decode
/// on a 256 KiB stack when the limit allows it. (They are built and
/// dropped on a large stack.)
#[test]
fn terms_far_deeper_than_the_default_decode_on_a_small_stack() {
    on_stack(512 << 20, || {
        let mut t = term!(bottom);
        for level in 0..60_000 {
            t = match level % 3 {
                0 => Term::tuple(vec![term!(node), Term::Int(level), t]),
                1 => Term::list(vec![t]),
                _ => Term::list(vec![Term::Int(level), t, term!(x)]),
            };
        }
        let bytes = t.encode().unwrap();
        let back = on_stack(256 << 10, || deep_decoder().decode(&bytes).unwrap());
        assert!(back.exact_eq(&t));
    });
}

/// A term `depth` levels deep, the nested term in every position: last
/// in a tuple or a list, in the middle of a list, a map's value.
fn mixed_nesting(depth: usize) -> Term {
    let mut t = term!(bottom);
    for level in 0..depth {
        let i = level as i64;
        t = match level % 5 {
            0 => Term::tuple(vec![term!(node), Term::Int(i), t]),
            1 => Term::list(vec![t]),
            2 => Term::list(vec![Term::Int(i * 1000), t, term!(x)]),
            3 => Term::list(vec![Term::Int(i), Term::Int(i + 1), t]),
            _ => Term::tuple(vec![term!(m), Term::map([(term!(k), t)])]),
        };
    }
    t
}

#[test]
fn terms_nested_in_every_position_encode_at_the_default_depth_on_a_small_stack() {
    on_small_stack(|| {
        let deepest = erldist::term::DEFAULT_MAX_DEPTH;
        // Each level of mixed_nesting is one or two levels of the term.
        let t = mixed_nesting(deepest / 2 - 1);
        let bytes = t.encode().unwrap();
        let back = Term::decode(&bytes).unwrap();
        assert!(back.exact_eq(&t));
        drop((t, back));
        for n in [1, 2, 3, 5, 16, 17, 40] {
            let t = mixed_nesting(n);
            let back = Term::decode(&t.encode().unwrap()).unwrap();
            assert!(back.exact_eq(&t), "{t} came back as {back}");
        }
    });
    // Far deeper, encoded on a 256 KiB stack: the encoder grows its stack
    // as it goes. (The term is built, decoded and dropped on a large
    // stack: dropping is plain recursion.)
    on_stack(512 << 20, || {
        assert!(encodes_on_a_small_stack(&mixed_nesting(30_000)));
    });
    // The depth limit counts tuples and lists alike.
    let nested_tuples = (0..5).fold(term!(a), |t, _| Term::tuple(vec![t]));
    let enc = |d| erldist::Encoder::new().max_depth(d).encode(&nested_tuples);
    assert!(enc(5).is_ok());
    assert!(matches!(enc(4), Err(erldist::EncodeError::TooDeep(4))));
    let nested_lists = (0..5).fold(term!(a), |t, _| Term::list(vec![Term::Int(1), t]));
    let enc = |d| erldist::Encoder::new().max_depth(d).encode(&nested_lists);
    assert!(enc(5).is_ok());
    assert!(matches!(enc(4), Err(erldist::EncodeError::TooDeep(4))));
}
