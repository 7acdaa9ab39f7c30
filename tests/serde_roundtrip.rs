//! The `serde` feature: Rust values to terms and back, the mapping an
//! Elixir developer expects, Term pass-through and error messages.
#![cfg(feature = "serde")]

use std::collections::{BTreeMap, HashMap};

use erldist::serde::{struct_module, ElixirStruct, Error};
use erldist::{from_bytes, from_term, term, to_bytes, to_term, to_term_struct, Atom, Pid, Term};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct User {
    name: String,
    age: u32,
    email: Option<String>,
    tags: Vec<String>,
    role: Role,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
#[serde(rename_all = "snake_case")]
enum Role {
    Admin,
    Guest,
    Member(u32),
    Pair(i8, String),
    Custom { level: u8, label: String },
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Everything {
    b: bool,
    i8_: i8,
    u64_: u64,
    i128_: i128,
    u128_: u128,
    f: f64,
    f32_: f32,
    c: char,
    s: String,
    #[serde(with = "serde_bytes_like")]
    bytes: Vec<u8>,
    unit: (),
    tuple: (i32, String, bool),
    nested: Vec<Option<User>>,
    map: BTreeMap<String, Vec<i64>>,
    int_keys: HashMap<i32, String>,
    newtype: Meters,
    roles: Vec<Role>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Meters(f64);

/// `serialize_bytes` / `deserialize_bytes`, as `serde_bytes` does.
mod serde_bytes_like {
    use serde::{Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
        }
        d.deserialize_byte_buf(V)
    }
}

fn kate() -> User {
    User {
        name: "kate".into(),
        age: 33,
        email: None,
        tags: vec!["a".into(), "b".into()],
        role: Role::Member(7),
    }
}

fn everything() -> Everything {
    Everything {
        b: true,
        i8_: -5,
        u64_: u64::MAX,
        i128_: i128::MIN,
        u128_: u128::MAX,
        f: 1.5,
        f32_: 0.25,
        c: 'é',
        s: "héllo".into(),
        bytes: vec![0, 255, 1],
        unit: (),
        tuple: (-1, "x".into(), false),
        nested: vec![Some(kate()), None],
        map: [("k".to_string(), vec![1, -2, i64::MAX])].into(),
        int_keys: [(1, "one".to_string()), (2, "two".to_string())].into(),
        newtype: Meters(3.0),
        roles: vec![
            Role::Admin,
            Role::Guest,
            Role::Member(1),
            Role::Pair(-1, "p".into()),
            Role::Custom {
                level: 9,
                label: "l".into(),
            },
        ],
    }
}

#[test]
fn a_struct_is_a_map_with_atom_keys() {
    let t = to_term(&kate()).unwrap();
    let expected = term!(#{
        name => <<"kate">>,
        age => 33,
        email => nil,
        tags => [<<"a">>, <<"b">>],
        role => {member, 7}
    });
    assert!(t.exact_eq(&expected), "{t}");
    assert_eq!(from_term::<User>(t).unwrap(), kate());
}

#[test]
fn enums_are_atoms_and_tagged_tuples() {
    assert!(to_term(&Role::Admin).unwrap().is_atom("admin"));
    assert!(to_term(&Role::Member(3))
        .unwrap()
        .exact_eq(&term!({member, 3})));
    assert!(to_term(&Role::Pair(1, "x".into()))
        .unwrap()
        .exact_eq(&term!({pair, 1, <<"x">>})));
    let custom = Role::Custom {
        level: 2,
        label: "y".into(),
    };
    let t = to_term(&custom).unwrap();
    assert!(
        t.exact_eq(&term!({custom, #{level => 2, label => <<"y">>}})),
        "{t}"
    );
    assert_eq!(from_term::<Role>(t).unwrap(), custom);
    // Without renaming, the variant name is used as is.
    #[derive(Serialize)]
    enum Plain {
        NotFound,
    }
    assert!(to_term(&Plain::NotFound).unwrap().is_atom("NotFound"));
}

#[test]
fn everything_round_trips_through_terms_and_bytes() {
    let v = everything();
    let t = to_term(&v).unwrap();
    assert_eq!(from_term::<Everything>(t.clone()).unwrap(), v);
    let bytes = to_bytes(&v).unwrap();
    assert_eq!(bytes, t.encode().unwrap());
    assert_eq!(from_bytes::<Everything>(&bytes).unwrap(), v);

    let m = t.as_map().unwrap();
    let get = |k: &str| m.get(&Term::atom(k)).unwrap();
    assert!(get("b").is_atom("true"));
    assert!(get("unit").is_atom("nil"));
    assert!(get("c").exact_eq(&Term::Int(233)));
    assert!(get("u128_").exact_eq(&Term::from(u128::MAX)));
    assert!(get("bytes").exact_eq(&Term::binary(vec![0u8, 255, 1])));
    assert!(get("tuple").exact_eq(&term!({-1, <<"x">>, false})));
    assert!(get("newtype").exact_eq(&Term::Float(3.0)));
    assert!(get("int_keys").exact_eq(&term!(#{1 => <<"one">>, 2 => <<"two">>})));
    assert!(get("map").exact_eq(&term!(#{<<"k">> => [1, -2, 9223372036854775807i64]})));
}

#[test]
fn what_elixir_sends_is_accepted() {
    // nil and undefined are None; a charlist is a string; atom keys read
    // into a String-keyed map; an integer is a float.
    #[derive(Deserialize, Debug, PartialEq)]
    struct In {
        a: Option<i32>,
        b: Option<i32>,
        name: String,
        keys: HashMap<String, i32>,
        f: f64,
        role: Role,
        bytes: serde_bytes_like_vec::Bytes,
    }
    mod serde_bytes_like_vec {
        #[derive(Debug, PartialEq)]
        pub struct Bytes(pub Vec<u8>);
        impl<'de> serde::Deserialize<'de> for Bytes {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
                super::serde_bytes_like::deserialize(d).map(Bytes)
            }
        }
    }
    let t = term!(#{
        a => nil,
        b => undefined,
        name => "kate",
        keys => #{x => 1, <<"y">> => 2},
        f => 2,
        role => <<"guest">>,
        bytes => [1, 2, 3]
    });
    let mut m = t.as_map().unwrap().clone();
    m.insert(Term::atom("__struct__"), Term::atom("Elixir.In"));
    let t = Term::Map(m);
    let v: In = from_term(t).unwrap();
    assert_eq!(v.a, None);
    assert_eq!(v.b, None);
    assert_eq!(v.name, "kate");
    assert_eq!(v.keys, [("x".into(), 1), ("y".into(), 2)].into());
    assert_eq!(v.f, 2.0);
    assert_eq!(v.role, Role::Guest);
    assert_eq!(v.bytes.0, vec![1, 2, 3]);
}

#[test]
fn elixir_structs_get_a_struct_key() {
    let t = to_term_struct(&kate(), "MyApp.User").unwrap();
    assert_eq!(struct_module(&t), Some("Elixir.MyApp.User"));
    let same = to_term_struct(&kate(), "Elixir.MyApp.User").unwrap();
    assert!(t.exact_eq(&same));
    // Reading it back ignores __struct__, even with deny_unknown_fields.
    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        name: String,
        age: u32,
        email: Option<String>,
        tags: Vec<String>,
        role: Role,
    }
    from_term::<Strict>(t.clone()).unwrap();
    assert_eq!(from_term::<User>(t).unwrap(), kate());

    // Nested, with the wrapper.
    #[derive(Serialize)]
    struct Team<'a> {
        lead: ElixirStruct<'a, User>,
    }
    let k = kate();
    let team = to_term(&Team {
        lead: ElixirStruct("MyApp.User", &k),
    })
    .unwrap();
    let lead = team.as_map().unwrap().get(&Term::atom("lead")).unwrap();
    assert_eq!(struct_module(lead), Some("Elixir.MyApp.User"));

    // Not a map: an error.
    let err = to_term_struct(&5, "MyApp.User").unwrap_err();
    assert_eq!(
        err.to_string(),
        "expected a map (a struct) for an Elixir struct, found integer 5"
    );
}

#[test]
fn a_term_field_passes_through_untouched() {
    #[derive(Serialize, Deserialize, Debug)]
    struct Envelope {
        from: Term,
        payload: Term,
        kind: Atom,
        list: Vec<Term>,
    }
    let pid = Term::Pid(Pid {
        node: Atom::new("a@b"),
        id: 1,
        serial: 2,
        creation: 3,
    });
    let payload = Term::list_with_tail(vec![Term::Float(1.0), term!({x, [1 | 2]})], term!(tail));
    let env = Envelope {
        from: pid.clone(),
        payload: payload.clone(),
        kind: Atom::new("call"),
        list: vec![term!(ok), Term::binary(vec![0xffu8])],
    };
    let t = to_term(&env).unwrap();
    let m = t.as_map().unwrap();
    assert!(m.get(&Term::atom("from")).unwrap().exact_eq(&pid));
    assert!(m.get(&Term::atom("payload")).unwrap().exact_eq(&payload));
    assert!(m.get(&Term::atom("kind")).unwrap().is_atom("call"));
    let back: Envelope = from_bytes(&t.encode().unwrap()).unwrap();
    assert!(back.from.exact_eq(&pid));
    assert!(back.payload.exact_eq(&payload));
    assert_eq!(back.kind, Atom::new("call"));
    assert!(Term::List(back.list).exact_eq(&term!([ok, <<255>>])));
    // A bare term too.
    assert!(to_term(&pid).unwrap().exact_eq(&pid));
    assert!(from_term::<Term>(payload.clone())
        .unwrap()
        .exact_eq(&payload));
}

#[test]
fn a_term_in_another_format_is_generic() {
    let t = term!(#{name => <<"kate">>, ok => true, n => [1, 2.5], none => nil});
    let json = serde_json::to_value(&t).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"name": "kate", "ok": true, "n": [1, 2.5], "none": null})
    );
    let back: Term = serde_json::from_value(json).unwrap();
    assert!(back.exact_eq(&term!(#{<<"name">> => <<"kate">>, <<"ok">> => true, <<"n">> => [1, 2.5], <<"none">> => nil})), "{back}");
}

#[test]
fn errors_say_what_was_expected_and_found() {
    let msg = |t: Term| -> String {
        match from_term::<User>(t) {
            Err(e) => e.to_string(),
            Ok(u) => panic!("decoded {u:?}"),
        }
    };
    assert_eq!(
        msg(term!([1, 2])),
        "expected a map (struct User), found list [1,2]"
    );
    assert_eq!(
        msg(term!(#{name => 5})),
        "expected a string (a binary, charlist or atom), found integer 5"
    );
    assert_eq!(
        msg(term!(#{name => <<"k">>, age => -1})),
        "integer -1 out of range for u32"
    );
    assert_eq!(msg(term!(#{name => <<"k">>})), "missing field `age`");
    assert_eq!(
        from_term::<Role>(term!(boss)).unwrap_err().to_string(),
        "unknown variant `boss`, expected one of `admin`, `guest`, `member`, `pair`, `custom`"
    );
    assert_eq!(
        from_term::<Role>(term!({member, 1, 2}))
            .unwrap_err()
            .to_string(),
        "expected a {member, value} tuple, found tuple {member,1,2}"
    );
    assert_eq!(
        from_term::<(i32, i32)>(term!({1, 2, 3})).unwrap_err(),
        Error::Length {
            expected: 2,
            found: 3
        }
    );
    assert_eq!(
        from_term::<bool>(term!(yes)).unwrap_err().to_string(),
        "expected a boolean (true or false), found atom yes"
    );
    assert_eq!(
        to_term(&f64::NAN).unwrap_err().to_string(),
        "float NaN is not finite (Erlang floats are)"
    );
    assert!(matches!(
        from_bytes::<i32>(&[131, 97]),
        Err(Error::Decode(_))
    ));
    // The error works with serde's error traits.
    fn is_ser<E: serde::ser::Error>() {}
    fn is_de<E: serde::de::Error>() {}
    is_ser::<Error>();
    is_de::<Error>();
}

#[test]
fn integers_of_every_width() {
    assert!(to_term(&u128::MAX)
        .unwrap()
        .exact_eq(&"340282366920938463463374607431768211455".parse().unwrap()));
    assert_eq!(from_term::<i128>(Term::from(i128::MIN)).unwrap(), i128::MIN);
    assert_eq!(from_term::<u64>(Term::from(u64::MAX)).unwrap(), u64::MAX);
    assert_eq!(from_term::<u8>(Term::Int(255)).unwrap(), 255);
    assert_eq!(
        from_term::<u8>(Term::Int(256)).unwrap_err().to_string(),
        "integer 256 out of range for u8"
    );
    assert_eq!(from_term::<char>(Term::Int(0x1F600)).unwrap(), '😀');
    assert_eq!(from_term::<()>(term!(nil)).unwrap(), ());
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Random {
    s: String,
    n: i128,
    u: u64,
    f: f64,
    o: Option<Vec<(i16, String)>>,
    m: BTreeMap<String, Option<bool>>,
    e: Vec<Role>,
    c: char,
}

fn arb_role() -> impl proptest::strategy::Strategy<Value = Role> {
    use proptest::prelude::*;
    prop_oneof![
        Just(Role::Admin),
        Just(Role::Guest),
        any::<u32>().prop_map(Role::Member),
        (any::<i8>(), ".*").prop_map(|(a, b)| Role::Pair(a, b)),
        (any::<u8>(), ".*").prop_map(|(level, label)| Role::Custom { level, label }),
    ]
}

proptest::proptest! {
    #[test]
    fn random_values_round_trip_through_bytes(
        s in ".*",
        n in proptest::prelude::any::<i128>(),
        u in proptest::prelude::any::<u64>(),
        f in -1e300f64..1e300,
        o in proptest::option::of(proptest::collection::vec((proptest::prelude::any::<i16>(), ".*"), 0..4)),
        m in proptest::collection::btree_map(".*", proptest::option::of(proptest::prelude::any::<bool>()), 0..4),
        e in proptest::collection::vec(arb_role(), 0..4),
        c in proptest::prelude::any::<char>(),
    ) {
        let v = Random { s, n, u, f, o, m, e, c };
        let bytes = to_bytes(&v).unwrap();
        proptest::prop_assert_eq!(from_bytes::<Random>(&bytes).unwrap(), v);
    }
}
