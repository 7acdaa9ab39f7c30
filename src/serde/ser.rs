//! Rust values into terms.

use ::serde::ser::{self, Serialize};

use super::term_impl::{take_outgoing, ATOM_TOKEN, TERM_TOKEN};
use super::Error;
use crate::term::{Atom, Term};

/// The serde `Serializer` whose output is a [`Term`]; see the
/// [module documentation](super) for the mapping. [`to_term`](super::to_term)
/// is the usual way to use it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Serializer;

fn atom(name: &str) -> Result<Term, Error> {
    Ok(Term::Atom(Atom::try_new(name)?))
}

fn float(f: f64) -> Result<Term, Error> {
    if f.is_finite() {
        Ok(Term::Float(f))
    } else {
        Err(Error::NonFiniteFloat(f))
    }
}

impl ser::Serializer for Serializer {
    type Ok = Term;
    type Error = Error;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = SeqBuilder;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = MapBuilder;

    fn serialize_bool(self, v: bool) -> Result<Term, Error> {
        Ok(Term::from(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Term, Error> {
        Ok(Term::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<Term, Error> {
        Ok(Term::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<Term, Error> {
        Ok(Term::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<Term, Error> {
        Ok(Term::from(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Term, Error> {
        Ok(Term::from(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Term, Error> {
        Ok(Term::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<Term, Error> {
        Ok(Term::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<Term, Error> {
        Ok(Term::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<Term, Error> {
        Ok(Term::from(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Term, Error> {
        Ok(Term::from(v))
    }
    fn serialize_f32(self, v: f32) -> Result<Term, Error> {
        float(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<Term, Error> {
        float(v)
    }
    fn serialize_char(self, v: char) -> Result<Term, Error> {
        Ok(Term::Int(i64::from(u32::from(v))))
    }
    fn serialize_str(self, v: &str) -> Result<Term, Error> {
        Ok(Term::binary(v.as_bytes().to_vec()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Term, Error> {
        Ok(Term::binary(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Term, Error> {
        atom("nil")
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Term, Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Term, Error> {
        atom("nil")
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Term, Error> {
        atom("nil")
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Term, Error> {
        atom(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Term, Error> {
        if name == TERM_TOKEN {
            if let Some(t) = take_outgoing() {
                return Ok(t);
            }
        } else if name == ATOM_TOKEN {
            return match value.serialize(self)? {
                Term::Binary(b) => atom(&String::from_utf8_lossy(&b)),
                other => Ok(other),
            };
        }
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Term, Error> {
        Ok(Term::Tuple(vec![atom(variant)?, value.serialize(self)?]))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, Error> {
        Ok(SeqBuilder::new(false, None, len.unwrap_or(0)))
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, Error> {
        Ok(SeqBuilder::new(true, None, len))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<SeqBuilder, Error> {
        Ok(SeqBuilder::new(true, None, len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, Error> {
        Ok(SeqBuilder::new(true, Some(atom(variant)?), len))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapBuilder, Error> {
        Ok(MapBuilder::new(None, len.unwrap_or(0)))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<MapBuilder, Error> {
        Ok(MapBuilder::new(None, len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<MapBuilder, Error> {
        Ok(MapBuilder::new(Some(atom(variant)?), len))
    }
}

/// Builds a list or a tuple (with a tag first, for tuple variants).
#[derive(Debug)]
pub struct SeqBuilder {
    tuple: bool,
    items: Vec<Term>,
}

impl SeqBuilder {
    fn new(tuple: bool, tag: Option<Term>, len: usize) -> SeqBuilder {
        let mut items = Vec::with_capacity(len.min(4096) + usize::from(tag.is_some()));
        items.extend(tag);
        SeqBuilder { tuple, items }
    }
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.items
            .push(crate::term::deep(|| value.serialize(Serializer))?);
        Ok(())
    }
    fn done(self) -> Term {
        if self.tuple {
            Term::Tuple(self.items)
        } else {
            Term::List(self.items)
        }
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Term;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<Term, Error> {
        Ok(self.done())
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = Term;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<Term, Error> {
        Ok(self.done())
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Term;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<Term, Error> {
        Ok(self.done())
    }
}

impl ser::SerializeTupleVariant for SeqBuilder {
    type Ok = Term;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.push(value)
    }
    fn end(self) -> Result<Term, Error> {
        Ok(self.done())
    }
}

/// Builds a map (wrapped in `{tag, map}` for struct variants).
#[derive(Debug)]
pub struct MapBuilder {
    tag: Option<Term>,
    entries: Vec<(Term, Term)>,
    key: Option<Term>,
}

impl MapBuilder {
    fn new(tag: Option<Term>, len: usize) -> MapBuilder {
        MapBuilder {
            tag,
            entries: Vec::with_capacity(len.min(4096)),
            key: None,
        }
    }
    fn field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        let value = crate::term::deep(|| value.serialize(Serializer))?;
        self.entries.push((atom(key)?, value));
        Ok(())
    }
    fn done(self) -> Term {
        let map = Term::map(self.entries);
        match self.tag {
            Some(tag) => Term::Tuple(vec![tag, map]),
            None => map,
        }
    }
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Term;
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(key.serialize(Serializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| <Error as ser::Error>::custom("map value without a key"))?;
        let value = crate::term::deep(|| value.serialize(Serializer))?;
        self.entries.push((key, value));
        Ok(())
    }
    fn end(self) -> Result<Term, Error> {
        Ok(self.done())
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Term;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<Term, Error> {
        Ok(self.done())
    }
}

impl ser::SerializeStructVariant for MapBuilder {
    type Ok = Term;
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<Term, Error> {
        Ok(self.done())
    }
}
