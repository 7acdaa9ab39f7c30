//! `Serialize` and `Deserialize` for [`Term`] and [`Atom`].
//!
//! A [`Term`] passes through this module's serializer and deserializer
//! untouched: it announces itself as a newtype struct with a private name
//! (as `serde_json`'s `RawValue` does), and hands the term over in a
//! thread-local slot. Other formats see a generic, lossy shape instead.

use std::cell::RefCell;
use std::fmt;

use ::serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use ::serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use num_bigint::BigInt;
use num_traits::ToPrimitive;

use crate::term::{Atom, Term};

/// The newtype-struct name a [`Term`] serializes and deserializes under.
pub(crate) const TERM_TOKEN: &str = "$erldist::private::Term";
/// The newtype-struct name an [`Atom`] serializes and deserializes under.
pub(crate) const ATOM_TOKEN: &str = "$erldist::private::Atom";

thread_local! {
    /// A term on its way out: `Term::serialize` to erldist's serializer.
    static OUT: RefCell<Option<Term>> = const { RefCell::new(None) };
    /// A term on its way in: erldist's deserializer to `Term::deserialize`.
    static IN: RefCell<Option<Term>> = const { RefCell::new(None) };
}

fn put(slot: &'static std::thread::LocalKey<RefCell<Option<Term>>>, t: Option<Term>) {
    slot.with(|s| *s.borrow_mut() = t);
}

fn take(slot: &'static std::thread::LocalKey<RefCell<Option<Term>>>) -> Option<Term> {
    slot.with(|s| s.borrow_mut().take())
}

/// The term `Term::serialize` handed over, if any.
pub(crate) fn take_outgoing() -> Option<Term> {
    take(&OUT)
}

/// Hands `t` to `Term::deserialize` while `f` runs (the slot is empty
/// again afterwards, whatever `f` did).
pub(crate) fn with_incoming<R>(t: Term, f: impl FnOnce() -> R) -> R {
    put(&IN, Some(t));
    let r = f();
    put(&IN, None);
    r
}

impl Serialize for Term {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // erldist's serializer takes the stashed term; any other serializes
        // `Generic`, which clears the slot.
        put(&OUT, Some(self.clone()));
        let r = serializer.serialize_newtype_struct(TERM_TOKEN, &Generic(self));
        put(&OUT, None);
        r
    }
}

/// A term in serde's generic data model, for other formats.
struct Generic<'a>(&'a Term);

impl Serialize for Generic<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        put(&OUT, None);
        generic(self.0, s)
    }
}

fn generic<S: Serializer>(t: &Term, s: S) -> Result<S::Ok, S::Error> {
    struct G<'a>(&'a Term);
    impl Serialize for G<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            crate::term::deep(|| generic(self.0, s))
        }
    }
    match t {
        Term::Int(i) => s.serialize_i64(*i),
        Term::BigInt(b) => match (b.to_i128(), b.to_u128()) {
            (Some(i), _) => s.serialize_i128(i),
            (_, Some(u)) => s.serialize_u128(u),
            _ => s.serialize_str(&b.to_string()),
        },
        Term::Float(f) => s.serialize_f64(*f),
        Term::Atom(a) => match a.as_str() {
            "true" => s.serialize_bool(true),
            "false" => s.serialize_bool(false),
            "nil" => s.serialize_none(),
            name => s.serialize_str(name),
        },
        Term::Binary(b) => match std::str::from_utf8(b) {
            Ok(text) => s.serialize_str(text),
            Err(_) => s.serialize_bytes(b),
        },
        Term::Tuple(v) | Term::List(v) => {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for e in v {
                seq.serialize_element(&G(e))?;
            }
            seq.end()
        }
        Term::ByteList(b) => {
            let mut seq = s.serialize_seq(Some(b.len()))?;
            for e in b.iter() {
                seq.serialize_element(e)?;
            }
            seq.end()
        }
        Term::Map(m) => {
            let mut map = s.serialize_map(Some(m.len()))?;
            for (k, v) in m.iter() {
                map.serialize_entry(&G(k), &G(v))?;
            }
            map.end()
        }
        other => s.serialize_str(&other.to_string()),
    }
}

impl<'de> Deserialize<'de> for Term {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Term, D::Error> {
        d.deserialize_newtype_struct(TERM_TOKEN, TermVisitor)
    }
}

/// Builds a term from erldist's deserializer (the stashed term) or from any
/// self-describing format.
struct TermVisitor;

impl<'de> Visitor<'de> for TermVisitor {
    type Value = Term;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any term")
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Term, D::Error> {
        match take(&IN) {
            Some(t) => Ok(t),
            None => d.deserialize_any(TermVisitor),
        }
    }
    fn visit_bool<E>(self, v: bool) -> Result<Term, E> {
        Ok(Term::from(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Term, E> {
        Ok(Term::from(v))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Term, E> {
        Ok(Term::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Term, E> {
        Ok(Term::from(v))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Term, E> {
        Ok(Term::from(BigInt::from(v)))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Term, E> {
        if v.is_finite() {
            Ok(Term::Float(v))
        } else {
            Err(E::custom(format!("float {v} is not finite")))
        }
    }
    fn visit_char<E>(self, v: char) -> Result<Term, E> {
        Ok(Term::Int(i64::from(u32::from(v))))
    }
    fn visit_str<E>(self, v: &str) -> Result<Term, E> {
        Ok(Term::binary(v.as_bytes().to_vec()))
    }
    fn visit_string<E>(self, v: String) -> Result<Term, E> {
        Ok(Term::binary(v.into_bytes()))
    }
    fn visit_bytes<E>(self, v: &[u8]) -> Result<Term, E> {
        Ok(Term::binary(v.to_vec()))
    }
    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Term, E> {
        Ok(Term::binary(v))
    }
    fn visit_none<E>(self) -> Result<Term, E> {
        Ok(Term::atom("nil"))
    }
    fn visit_unit<E>(self) -> Result<Term, E> {
        Ok(Term::atom("nil"))
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Term, D::Error> {
        Term::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Term, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(e) = crate::term::deep(|| seq.next_element::<Term>())? {
            v.push(e);
        }
        Ok(Term::List(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Term, A::Error> {
        let mut v = Vec::with_capacity(map.size_hint().unwrap_or(0).min(4096));
        while let Some(e) = crate::term::deep(|| map.next_entry::<Term, Term>())? {
            v.push(e);
        }
        Ok(Term::map(v))
    }
}

impl Serialize for Atom {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_struct(ATOM_TOKEN, self.as_str())
    }
}

impl<'de> Deserialize<'de> for Atom {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Atom, D::Error> {
        struct AtomVisitor;
        impl<'de> Visitor<'de> for AtomVisitor {
            type Value = Atom;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an atom")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Atom, D::Error> {
                d.deserialize_str(self)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Atom, E> {
                Atom::try_new(v).map_err(E::custom)
            }
        }
        d.deserialize_newtype_struct(ATOM_TOKEN, AtomVisitor)
    }
}
