//! Terms into Rust values.

use ::serde::de::{
    self, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess, VariantAccess,
    Visitor,
};
use num_bigint::BigInt;
use num_traits::ToPrimitive;

use super::term_impl::{with_incoming, ATOM_TOKEN, TERM_TOKEN};
use super::Error;
use crate::term::{Map, Term};

/// The serde `Deserializer` that reads a [`Term`]; see the
/// [module documentation](super) for the mapping.
/// [`from_term`](super::from_term) is the usual way to use it.
#[derive(Debug)]
pub struct Deserializer {
    term: Term,
}

impl Deserializer {
    /// A deserializer reading `term`.
    pub fn new(term: Term) -> Deserializer {
        Deserializer { term }
    }

    fn mismatch(&self, expected: &str) -> Error {
        Error::mismatch(expected, &self.term)
    }

    fn big(&self) -> Option<BigInt> {
        match &self.term {
            Term::Int(i) => Some(BigInt::from(*i)),
            Term::BigInt(b) => Some((**b).clone()),
            _ => None,
        }
    }

    /// The integer, as a `T`.
    fn int<T>(&self, ty: &'static str, conv: impl Fn(&BigInt) -> Option<T>) -> Result<T, Error> {
        let b = self.big().ok_or_else(|| self.mismatch(ty))?;
        conv(&b).ok_or_else(|| Error::OutOfRange {
            value: b.to_string(),
            ty,
        })
    }

    /// The text of a binary, a charlist or an atom.
    fn text(self, expected: &str) -> Result<String, Error> {
        match self.term {
            Term::Binary(b) => String::from_utf8(b.to_vec())
                .map_err(|_| Error::mismatch(expected, &Term::Binary(b))),
            Term::Atom(a) => Ok(a.as_str().to_owned()),
            Term::ByteList(b) => Ok(b.iter().map(|&c| char::from(c)).collect()),
            Term::List(ref v) => {
                let chars: Option<String> = v
                    .iter()
                    .map(|c| {
                        c.as_i64()
                            .and_then(|i| u32::try_from(i).ok())
                            .and_then(char::from_u32)
                    })
                    .collect();
                chars.ok_or_else(|| Error::mismatch(expected, &self.term))
            }
            other => Err(Error::mismatch(expected, &other)),
        }
    }

    fn is_none(&self) -> bool {
        self.term.is_atom("nil") || self.term.is_atom("undefined")
    }
}

impl<'de> de::Deserializer<'de> for Deserializer {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.term {
            Term::Int(i) => v.visit_i64(i),
            Term::BigInt(ref b) => match (b.to_i128(), b.to_u128()) {
                (Some(i), _) => v.visit_i128(i),
                (_, Some(u)) => v.visit_u128(u),
                _ => Err(self.mismatch("an integer of at most 128 bits")),
            },
            Term::Float(f) => v.visit_f64(f),
            Term::Atom(a) => match a.as_str() {
                "true" => v.visit_bool(true),
                "false" => v.visit_bool(false),
                "nil" => v.visit_none(),
                name => v.visit_str(name),
            },
            Term::Binary(b) => match String::from_utf8(b.to_vec()) {
                Ok(s) => v.visit_string(s),
                Err(e) => v.visit_byte_buf(e.into_bytes()),
            },
            Term::List(items) | Term::Tuple(items) => v.visit_seq(Seq::new(items)),
            Term::ByteList(b) => v.visit_seq(Seq::new(
                b.iter().map(|&x| Term::Int(i64::from(x))).collect(),
            )),
            Term::Map(m) => v.visit_map(MapAcc::new(m, false)),
            _ => Err(self.mismatch(
                "a number, atom, binary, list, tuple or map (use a Term field for other terms)",
            )),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match &self.term {
            Term::Atom(a) if a.as_str() == "true" => v.visit_bool(true),
            Term::Atom(a) if a.as_str() == "false" => v.visit_bool(false),
            _ => Err(self.mismatch("a boolean (true or false)")),
        }
    }

    fn deserialize_i8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_i8(self.int("i8", |b| b.to_i8())?)
    }
    fn deserialize_i16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_i16(self.int("i16", |b| b.to_i16())?)
    }
    fn deserialize_i32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_i32(self.int("i32", |b| b.to_i32())?)
    }
    fn deserialize_i64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_i64(self.int("i64", |b| b.to_i64())?)
    }
    fn deserialize_i128<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_i128(self.int("i128", |b| b.to_i128())?)
    }
    fn deserialize_u8<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u8(self.int("u8", |b| b.to_u8())?)
    }
    fn deserialize_u16<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u16(self.int("u16", |b| b.to_u16())?)
    }
    fn deserialize_u32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u32(self.int("u32", |b| b.to_u32())?)
    }
    fn deserialize_u64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u64(self.int("u64", |b| b.to_u64())?)
    }
    fn deserialize_u128<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_u128(self.int("u128", |b| b.to_u128())?)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_f64(v)
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match &self.term {
            Term::Float(f) => v.visit_f64(*f),
            Term::Int(i) => v.visit_f64(*i as f64),
            Term::BigInt(b) => v.visit_f64(b.to_f64().unwrap_or(f64::INFINITY)),
            _ => Err(self.mismatch("a float")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        if let Some(c) = self
            .term
            .as_i64()
            .and_then(|i| u32::try_from(i).ok())
            .and_then(char::from_u32)
        {
            return v.visit_char(c);
        }
        let s = self.text("a character (an integer code point or a one-character string)")?;
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => v.visit_char(c),
            _ => Err(Error::Mismatch {
                expected: "a character".into(),
                found: format!("string {s:?}"),
            }),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_string(self.text("a string (a binary, charlist or atom)")?)
    }
    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.term {
            Term::Binary(b) => v.visit_byte_buf(b.to_vec()),
            Term::ByteList(b) => v.visit_byte_buf(b.to_vec()),
            Term::List(ref items) => {
                let bytes: Option<Vec<u8>> = items
                    .iter()
                    .map(|t| t.as_i64().and_then(|i| u8::try_from(i).ok()))
                    .collect();
                match bytes {
                    Some(b) => v.visit_byte_buf(b),
                    None => Err(self.mismatch("bytes (a binary)")),
                }
            }
            _ => Err(self.mismatch("bytes (a binary)")),
        }
    }
    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        self.deserialize_bytes(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        if self.is_none() {
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        if self.term.is_atom("nil") {
            v.visit_unit()
        } else {
            Err(self.mismatch("nil"))
        }
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, Error> {
        if name == TERM_TOKEN {
            return with_incoming(self.term, || {
                v.visit_newtype_struct(Deserializer::new(Term::NIL))
            });
        }
        if name == ATOM_TOKEN && !matches!(self.term, Term::Atom(_)) {
            return Err(self.mismatch("an atom"));
        }
        v.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.term {
            Term::List(items) => v.visit_seq(Seq::new(items)),
            Term::ByteList(b) => v.visit_seq(Seq::new(
                b.iter().map(|&x| Term::Int(i64::from(x))).collect(),
            )),
            other => Err(Error::mismatch("a list", &other)),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, Error> {
        let items = match self.term {
            Term::Tuple(items) | Term::List(items) => items,
            Term::ByteList(b) => b.iter().map(|&x| Term::Int(i64::from(x))).collect(),
            other => return Err(Error::mismatch(format!("a tuple of {len}"), &other)),
        };
        if items.len() != len {
            return Err(Error::Length {
                expected: len,
                found: items.len(),
            });
        }
        v.visit_seq(Seq::new(items))
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        len: usize,
        v: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.term {
            Term::Map(m) => v.visit_map(MapAcc::new(m, false)),
            other => Err(Error::mismatch("a map", &other)),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match self.term {
            Term::Map(m) => v.visit_map(MapAcc::new(m, true)),
            other => Err(Error::mismatch(format!("a map (struct {name})"), &other)),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        match self.term {
            Term::Atom(_) | Term::Binary(_) => v.visit_enum(Enum {
                tag: self.term,
                rest: Vec::new(),
            }),
            Term::Tuple(mut items) if !items.is_empty() => {
                let tag = items.remove(0);
                v.visit_enum(Enum { tag, rest: items })
            }
            other => Err(Error::mismatch(
                format!("an atom or a {{tag, ...}} tuple (enum {name})"),
                &other,
            )),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        match self.term {
            Term::Int(i) if i >= 0 => v.visit_u64(i as u64),
            _ => v.visit_string(self.text("an identifier (an atom or a string)")?),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Error> {
        v.visit_unit()
    }
}

impl<'de> IntoDeserializer<'de, Error> for Deserializer {
    type Deserializer = Deserializer;
    fn into_deserializer(self) -> Deserializer {
        self
    }
}

/// The elements of a list or tuple.
struct Seq {
    items: std::vec::IntoIter<Term>,
}

impl Seq {
    fn new(items: Vec<Term>) -> Seq {
        Seq {
            items: items.into_iter(),
        }
    }
}

impl<'de> SeqAccess<'de> for Seq {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some(t) => crate::term::deep(|| seed.deserialize(Deserializer::new(t))).map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The entries of a map.
struct MapAcc {
    entries: std::vec::IntoIter<(Term, Term)>,
    value: Option<Term>,
}

impl MapAcc {
    /// For a struct, the `__struct__` key of an Elixir struct is skipped.
    fn new(m: Map, for_struct: bool) -> MapAcc {
        let mut entries = m.entries;
        if for_struct {
            entries.retain(|(k, _)| !k.is_atom("__struct__"));
        }
        MapAcc {
            entries: entries.into_iter(),
            value: None,
        }
    }
}

impl<'de> MapAccess<'de> for MapAcc {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((k, v)) => {
                self.value = Some(v);
                crate::term::deep(|| seed.deserialize(Deserializer::new(k))).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let v = self
            .value
            .take()
            .ok_or_else(|| <Error as de::Error>::custom("map value without a key"))?;
        crate::term::deep(|| seed.deserialize(Deserializer::new(v)))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// An enum: its tag (an atom, or a binary) and the rest of its tuple.
struct Enum {
    tag: Term,
    rest: Vec<Term>,
}

impl<'de> EnumAccess<'de> for Enum {
    type Error = Error;
    type Variant = Variant;
    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Variant), Error> {
        let tag = match &self.tag {
            Term::Atom(_) | Term::Binary(_) => self.tag,
            _ => {
                return Err(Error::mismatch(
                    "an atom (an enum variant's tag)",
                    &self.tag,
                ))
            }
        };
        let value = seed.deserialize(Deserializer::new(tag.clone()))?;
        Ok((
            value,
            Variant {
                tag,
                rest: self.rest,
            },
        ))
    }
}

struct Variant {
    tag: Term,
    rest: Vec<Term>,
}

impl Variant {
    fn found(mut self) -> Term {
        self.rest.insert(0, self.tag);
        Term::Tuple(self.rest)
    }
}

impl<'de> VariantAccess<'de> for Variant {
    type Error = Error;
    fn unit_variant(self) -> Result<(), Error> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            let what = format!("the atom {}", self.tag);
            Err(Error::mismatch(what, &self.found()))
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        if self.rest.len() != 1 {
            let what = format!("a {{{}, value}} tuple", self.tag);
            return Err(Error::mismatch(what, &self.found()));
        }
        let mut rest = self.rest;
        let v = rest.pop().unwrap_or(Term::NIL);
        seed.deserialize(Deserializer::new(v))
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, v: V) -> Result<V::Value, Error> {
        if self.rest.len() != len {
            let what = format!("a {{{}, ...}} tuple of {} elements", self.tag, len + 1);
            return Err(Error::mismatch(what, &self.found()));
        }
        v.visit_seq(Seq::new(self.rest))
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Error> {
        if !matches!(self.rest.as_slice(), [Term::Map(_)]) {
            let what = format!("a {{{}, %{{...}}}} tuple", self.tag);
            return Err(Error::mismatch(what, &self.found()));
        }
        let mut rest = self.rest;
        match rest.pop() {
            Some(Term::Map(m)) => v.visit_map(MapAcc::new(m, true)),
            _ => Err(<Error as de::Error>::custom("struct variant without a map")),
        }
    }
}
