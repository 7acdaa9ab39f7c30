//! Erlang terms in Rust and their External Term Format.
//!
//! [`Term`] models every kind of term a BEAM node can send. The submodules
//! each do one job:
//!
//! - `atom`: interned [`Atom`]s;
//! - `binary`: [`Binary`], a binary's bytes (small ones held in place);
//! - `decode` / `encode`: the external format (`binary_to_term/1`,
//!   `term_to_binary/2` with `{minor_version, 2}`);
//! - `order`: Erlang's term order as [`Ord`], and equality;
//! - `text`: `Display` as `~w` (and `~p` with `{:#}`), `FromStr`;
//! - `convert`: conversions between terms and Rust values, and [`term!`](crate::term!).

mod atom;
mod binary;
mod convert;
mod decode;
mod encode;
mod order;
mod tags;
mod text;

pub use atom::{Atom, AtomBudget, AtomError, ATOM_TABLE_LIMIT, MAX_ATOM_CHARS};
pub use binary::{Binary, INLINE_BINARY};
#[doc(hidden)]
pub use convert::{__binary, BinPart};
pub use convert::{ConvertError, FromTerm};
pub use decode::{DecodeError, DecodeErrorKind, DecodeOptions, Decoder, DEFAULT_MAX_DEPTH};
pub use encode::{EncodeError, Encoded, Encoder};
pub use text::ParseError;

use bytes::Bytes;
use num_bigint::BigInt;

/// Runs `f`, first moving to a fresh stack segment when less than 128 KiB of
/// stack remain. Every recursive walk over terms goes through this at each
/// compound term, so no depth of nesting can overflow the stack.
#[inline]
pub(crate) fn deep<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(128 * 1024, 2 * 1024 * 1024, f)
}

/// An Erlang term.
///
/// Each variant is one kind of term. A few kinds have two shapes on the wire
/// and here too: a proper list of small integers 0..=255 may be a
/// [`Term::ByteList`] (the compact string form, `STRING_EXT`) or a
/// [`Term::List`]; an integer that fits in `i64` is always a [`Term::Int`],
/// a larger one a [`Term::BigInt`]. Equality and ordering treat the shapes
/// of one kind alike.
///
/// Equality (`==`) and [`Ord`] are Erlang's `==` and term order: `1 == 1.0`.
/// For Erlang's exact match (`=:=`, under which `1` and `1.0` differ, as map
/// keys do) use [`Term::exact_eq`] and [`Term::exact_cmp`].
///
/// ```
/// use erldist::{term, Term};
/// let t = term!({ok, [1, 2], #{name => <<"kate">>}});
/// assert_eq!(t.to_string(), "{ok,[1,2],#{name => <<107,97,116,101>>}}");
/// let back = Term::decode(&t.encode().unwrap()).unwrap();
/// assert!(back.exact_eq(&t));
/// ```
pub enum Term {
    /// An integer that fits in 64 bits.
    Int(i64),
    /// An integer that does not fit in 64 bits. Values that fit are
    /// [`Term::Int`]; build through [`Term::from`] to keep that rule.
    BigInt(Box<BigInt>),
    /// A float (Erlang floats are finite).
    Float(f64),
    /// An atom.
    Atom(Atom),
    /// A binary. Up to [`INLINE_BINARY`] bytes are held in place; decoding
    /// shares the input buffer for longer ones instead of copying.
    Binary(Binary),
    /// A bitstring whose length is not a whole number of bytes.
    BitBinary(Box<BitBinary>),
    /// A tuple.
    Tuple(Vec<Term>),
    /// A proper list; the empty list is `[]` (nil).
    List(Vec<Term>),
    /// A proper list of integers 0..=255, stored as bytes (Erlang's compact
    /// string form, `STRING_EXT`).
    ByteList(Bytes),
    /// A list whose tail is not a list: `[1, 2 | 3]`.
    ImproperList(Box<ImproperList>),
    /// A map, its entries in the order they were built or received.
    Map(Map),
    /// A process identifier.
    Pid(Pid),
    /// A port identifier.
    Port(Port),
    /// A reference.
    Ref(Box<Reference>),
    /// A fun: external (`fun M:F/A`) or local (a closure, kept as received).
    Fun(Box<Fun>),
}

impl Clone for Term {
    fn clone(&self) -> Term {
        match self {
            Term::Int(i) => Term::Int(*i),
            Term::BigInt(b) => Term::BigInt(b.clone()),
            Term::Float(f) => Term::Float(*f),
            Term::Atom(a) => Term::Atom(*a),
            Term::Binary(b) => Term::Binary(b.clone()),
            Term::BitBinary(b) => Term::BitBinary(b.clone()),
            Term::ByteList(b) => Term::ByteList(b.clone()),
            Term::Pid(p) => Term::Pid(*p),
            Term::Port(p) => Term::Port(*p),
            Term::Ref(r) => Term::Ref(r.clone()),
            Term::Tuple(v) => deep(|| Term::Tuple(v.clone())),
            Term::List(v) => deep(|| Term::List(v.clone())),
            Term::ImproperList(l) => deep(|| Term::ImproperList(l.clone())),
            Term::Map(m) => deep(|| Term::Map(m.clone())),
            Term::Fun(f) => deep(|| Term::Fun(f.clone())),
        }
    }
}

impl std::fmt::Debug for Term {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Term::Int(i) => f.debug_tuple("Int").field(i).finish(),
            Term::BigInt(b) => f.debug_tuple("BigInt").field(b).finish(),
            Term::Float(x) => f.debug_tuple("Float").field(x).finish(),
            Term::Atom(a) => f.debug_tuple("Atom").field(a).finish(),
            Term::Binary(b) => f.debug_tuple("Binary").field(b).finish(),
            Term::BitBinary(b) => f.debug_tuple("BitBinary").field(b).finish(),
            Term::ByteList(b) => f.debug_tuple("ByteList").field(b).finish(),
            Term::Pid(p) => f.debug_tuple("Pid").field(p).finish(),
            Term::Port(p) => f.debug_tuple("Port").field(p).finish(),
            Term::Ref(r) => f.debug_tuple("Ref").field(r).finish(),
            Term::Tuple(v) => deep(|| f.debug_tuple("Tuple").field(v).finish()),
            Term::List(v) => deep(|| f.debug_tuple("List").field(v).finish()),
            Term::ImproperList(l) => deep(|| f.debug_tuple("ImproperList").field(l).finish()),
            Term::Map(m) => deep(|| f.debug_tuple("Map").field(m).finish()),
            Term::Fun(x) => deep(|| f.debug_tuple("Fun").field(x).finish()),
        }
    }
}

/// A bitstring: `bytes`, of which the last byte holds only `bits` bits
/// (the high ones).
#[derive(Clone, Debug)]
pub struct BitBinary {
    /// The bytes, the last one partly used.
    pub bytes: Bytes,
    /// How many bits of the last byte belong to the bitstring, 1..=8.
    pub bits: u8,
}

/// A list whose tail is not a list: `[elems... | tail]`.
#[derive(Clone, Debug)]
pub struct ImproperList {
    /// The elements before the `|` (at least one).
    pub elems: Vec<Term>,
    /// The tail after the `|`: any term that is not a list.
    pub tail: Term,
}

/// A map. Entries keep the order in which they were received (so decoding
/// and encoding what OTP produced gives the same bytes) or inserted; the
/// encoder writes maps of up to 32 keys in key order, as OTP does.
#[derive(Clone, Debug, Default)]
pub struct Map {
    /// The entries, keys distinct under [`Term::exact_eq`].
    pub entries: Vec<(Term, Term)>,
}

impl Map {
    /// An empty map.
    pub fn new() -> Map {
        Map::default()
    }

    /// The value under `key` (matched exactly: `1` and `1.0` are different
    /// keys, as in Erlang maps).
    pub fn get(&self, key: &Term) -> Option<&Term> {
        self.entries
            .iter()
            .find(|(k, _)| k.exact_eq(key))
            .map(|(_, v)| v)
    }

    /// Sets `key` to `value`, replacing and returning an existing value.
    pub fn insert(&mut self, key: Term, value: Term) -> Option<Term> {
        for entry in &mut self.entries {
            if entry.0.exact_eq(&key) {
                return Some(std::mem::replace(&mut entry.1, value));
            }
        }
        if self.entries.len() < SMALL_MAP {
            // Small maps stay in key order, as OTP keeps them (and writes
            // them), so encoding needs no sort.
            let at = self
                .entries
                .iter()
                .position(|(k, _)| k.exact_cmp(&key).is_gt())
                .unwrap_or(self.entries.len());
            self.entries.insert(at, (key, value));
        } else {
            self.entries.push((key, value));
        }
        None
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &Term) -> Option<Term> {
        let at = self.entries.iter().position(|(k, _)| k.exact_eq(key))?;
        Some(self.entries.remove(at).1)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Iterates over the entries in their stored order.
    pub fn iter(&self) -> impl Iterator<Item = (&Term, &Term)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl FromIterator<(Term, Term)> for Map {
    /// A map from entries; a later entry with the same key replaces an
    /// earlier one, as `maps:from_list/1` does.
    fn from_iter<I: IntoIterator<Item = (Term, Term)>>(iter: I) -> Map {
        let mut entries: Vec<(Term, Term)> = iter.into_iter().collect();
        if entries.len() <= SMALL_MAP {
            // A stable sort keeps equal keys in input order: keep the last.
            entries.sort_by(|a, b| a.0.exact_cmp(&b.0));
            let mut out: Vec<(Term, Term)> = Vec::with_capacity(entries.len());
            for e in entries {
                match out.last_mut() {
                    Some(last) if last.0.exact_eq(&e.0) => *last = e,
                    _ => out.push(e),
                }
            }
            return Map { entries: out };
        }
        // Large maps: drop earlier duplicates, in linear time.
        let mut seen: std::collections::HashMap<ExactKey<'_>, usize> =
            std::collections::HashMap::with_capacity(entries.len());
        let mut keep = vec![true; entries.len()];
        for (i, (k, _)) in entries.iter().enumerate() {
            if let Some(prev) = seen.insert(ExactKey(k), i) {
                keep[prev] = false;
            }
        }
        let mut keep = keep.into_iter();
        entries.retain(|_| keep.next().unwrap_or(true));
        Map { entries }
    }
}

/// The most keys OTP keeps in a small (sorted) map.
pub(crate) const SMALL_MAP: usize = 32;

/// A term compared by exact match (`=:=`), as map keys are. Its hash is
/// the term's, which `=:=` refines, so equal keys hash alike.
struct ExactKey<'a>(&'a Term);

impl PartialEq for ExactKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0.exact_eq(other.0)
    }
}

impl Eq for ExactKey<'_> {}

impl std::hash::Hash for ExactKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

/// A process identifier: `<node.id.serial>` of a node incarnation
/// (`creation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pid {
    /// The node the process lives on.
    pub node: Atom,
    /// The process number.
    pub id: u32,
    /// The serial (with `id`, the process's identity on the node).
    pub serial: u32,
    /// The node's incarnation.
    pub creation: u32,
}

/// Prints as a term does: `#Pid<node.id.serial.creation>`.
impl std::fmt::Display for Pid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&Term::Pid(*self), f)
    }
}

/// A port identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Port {
    /// The node the port belongs to.
    pub node: Atom,
    /// The port number (up to 64 bits with `V4_PORT_EXT`).
    pub id: u64,
    /// The node's incarnation.
    pub creation: u32,
}

/// A reference: up to five 32-bit words, unique on a node incarnation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// The node that made the reference.
    pub node: Atom,
    /// The node's incarnation.
    pub creation: u32,
    len: u8,
    words: [u32; 5],
}

impl Reference {
    /// The most words a reference has.
    pub const MAX_WORDS: usize = 5;

    /// A reference from its words (up to 5, in wire order; OTP accepts
    /// even none); `None` when there are too many.
    pub fn new(node: Atom, creation: u32, ids: &[u32]) -> Option<Reference> {
        if ids.len() > Self::MAX_WORDS {
            return None;
        }
        let mut words = [0; 5];
        words[..ids.len()].copy_from_slice(ids);
        Some(Reference {
            node,
            creation,
            len: ids.len() as u8,
            words,
        })
    }

    /// A reference of the first `len` of `words`, without the copy of a
    /// slice of unknown length that [`Reference::new`] makes; `None` when
    /// `len` is over 5. The words past `len` are cleared, as `new` leaves
    /// them (equality and hashing see all five).
    #[inline]
    pub(crate) fn of_words(
        node: Atom,
        creation: u32,
        len: u16,
        mut words: [u32; 5],
    ) -> Option<Reference> {
        let len = u8::try_from(len)
            .ok()
            .filter(|&l| usize::from(l) <= Self::MAX_WORDS)?;
        for w in words.iter_mut().skip(usize::from(len)) {
            *w = 0;
        }
        Some(Reference {
            node,
            creation,
            len,
            words,
        })
    }

    /// A reference of three words, as OTP makes them.
    pub(crate) const fn three(node: Atom, creation: u32, ids: [u32; 3]) -> Reference {
        Reference {
            node,
            creation,
            len: 3,
            words: [ids[0], ids[1], ids[2], 0, 0],
        }
    }

    /// The reference's words, in wire order.
    pub fn ids(&self) -> &[u32] {
        &self.words[..usize::from(self.len).min(Self::MAX_WORDS)]
    }
}

/// A fun.
#[derive(Clone, Debug)]
pub enum Fun {
    /// `fun Module:Function/Arity`.
    Export {
        /// The module.
        module: Atom,
        /// The function.
        function: Atom,
        /// The arity.
        arity: u8,
    },
    /// A closure made on some node, kept as received so it can be sent on.
    Local(LocalFun),
}

/// A local fun (`NEW_FUN_EXT`), with every field of the wire form.
#[derive(Clone, Debug)]
pub struct LocalFun {
    /// The fun's arity.
    pub arity: u8,
    /// The MD5 of the module's code where the fun was made.
    pub uniq: [u8; 16],
    /// The fun's index in the module's fun table.
    pub index: u32,
    /// The module that defines the fun.
    pub module: Atom,
    /// The old index (an integer on the wire).
    pub old_index: u32,
    /// The old uniq (an integer on the wire).
    pub old_uniq: u32,
    /// The process that made the fun.
    pub pid: Pid,
    /// The captured variables.
    pub free_vars: Vec<Term>,
}

impl Term {
    /// The empty list, `[]`.
    pub const NIL: Term = Term::List(Vec::new());

    /// An atom term.
    pub fn atom(name: &str) -> Term {
        Term::Atom(Atom::from(name))
    }

    /// A binary term holding `bytes`.
    pub fn binary(bytes: impl Into<Binary>) -> Term {
        Term::Binary(bytes.into())
    }

    /// A tuple term.
    pub fn tuple(elems: Vec<Term>) -> Term {
        Term::Tuple(elems)
    }

    /// A proper list term.
    pub fn list(elems: Vec<Term>) -> Term {
        Term::List(elems)
    }

    /// A list with a tail: proper when `tail` is a list, improper otherwise.
    pub fn list_with_tail(mut elems: Vec<Term>, tail: Term) -> Term {
        if elems.is_empty() {
            return tail;
        }
        match tail {
            Term::List(rest) => {
                elems.extend(rest);
                Term::List(elems)
            }
            Term::ByteList(rest) => {
                elems.extend(rest.iter().map(|&b| Term::Int(i64::from(b))));
                Term::List(elems)
            }
            Term::ImproperList(rest) => {
                let ImproperList { elems: more, tail } = *rest;
                elems.extend(more);
                Term::ImproperList(Box::new(ImproperList { elems, tail }))
            }
            tail => Term::ImproperList(Box::new(ImproperList { elems, tail })),
        }
    }

    /// A bitstring of `bytes` whose last byte holds `bits` bits (1..=8);
    /// with 8 bits, or no bytes, it is a binary. `None` if `bits` is out of
    /// range.
    pub fn bitstring(bytes: impl Into<Bytes>, bits: u8) -> Option<Term> {
        let bytes = bytes.into();
        if !(1..=8).contains(&bits) {
            return None;
        }
        if bits == 8 || bytes.is_empty() {
            return Some(Term::Binary(bytes.into()));
        }
        Some(Term::BitBinary(Box::new(BitBinary { bytes, bits })))
    }

    /// A map term from entries (later duplicates replace earlier ones).
    pub fn map(entries: impl IntoIterator<Item = (Term, Term)>) -> Term {
        Term::Map(entries.into_iter().collect())
    }

    /// Whether this is the empty list.
    pub fn is_nil(&self) -> bool {
        matches!(self, Term::List(v) if v.is_empty())
            || matches!(self, Term::ByteList(b) if b.is_empty())
    }

    /// The atom, if this is one.
    pub fn as_atom(&self) -> Option<Atom> {
        match self {
            Term::Atom(a) => Some(*a),
            _ => None,
        }
    }

    /// Whether this is the atom `name`.
    pub fn is_atom(&self, name: &str) -> bool {
        matches!(self, Term::Atom(a) if a.as_str() == name)
    }

    /// The tuple's elements, if this is a tuple.
    pub fn as_tuple(&self) -> Option<&[Term]> {
        match self {
            Term::Tuple(t) => Some(t),
            _ => None,
        }
    }

    /// The binary's bytes, if this is a binary.
    pub fn as_binary(&self) -> Option<&Binary> {
        match self {
            Term::Binary(b) => Some(b),
            _ => None,
        }
    }

    /// The integer, if this is one that fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Term::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The pid, if this is one.
    pub fn as_pid(&self) -> Option<&Pid> {
        match self {
            Term::Pid(p) => Some(p),
            _ => None,
        }
    }

    /// The map, if this is one.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Term::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The elements of a proper list (a byte list is widened), or `None`
    /// if this is not a proper list.
    pub fn list_elems(&self) -> Option<std::borrow::Cow<'_, [Term]>> {
        match self {
            Term::List(v) => Some(std::borrow::Cow::Borrowed(v)),
            Term::ByteList(b) => Some(std::borrow::Cow::Owned(
                b.iter().map(|&x| Term::Int(i64::from(x))).collect(),
            )),
            _ => None,
        }
    }

    /// A short description of the term's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Term::Int(_) | Term::BigInt(_) => "integer",
            Term::Float(_) => "float",
            Term::Atom(_) => "atom",
            Term::Binary(_) => "binary",
            Term::BitBinary(_) => "bitstring",
            Term::Tuple(_) => "tuple",
            Term::List(v) if v.is_empty() => "empty list",
            Term::ByteList(b) if b.is_empty() => "empty list",
            Term::List(_) | Term::ByteList(_) => "list",
            Term::ImproperList(_) => "improper list",
            Term::Map(_) => "map",
            Term::Pid(_) => "pid",
            Term::Port(_) => "port",
            Term::Ref(_) => "reference",
            Term::Fun(_) => "fun",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_of_words_is_the_one_new_makes_whatever_the_unused_words_hold() {
        let node = Atom::from("n@h");
        for len in 0..=5u16 {
            let ids: Vec<u32> = (1..=u32::from(len)).collect();
            let made = Reference::of_words(node, 7, len, [1, 2, 3, 4, 5]).unwrap();
            assert_eq!(Some(made), Reference::new(node, 7, &ids), "{len} words");
            assert_eq!(made.ids(), &ids[..]);
        }
        assert_eq!(Reference::of_words(node, 7, 6, [0; 5]), None);
        assert_eq!(Reference::of_words(node, 7, 256, [0; 5]), None);
    }
}
