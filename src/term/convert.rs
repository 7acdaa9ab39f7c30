//! Conversions between terms and Rust values, and the [`term!`](crate::term!)
//! macro.
//!
//! Into terms (`From`): integers of every width, floats, `bool` (the atoms
//! `true`/`false`), `&str`/`String` (binaries: Elixir strings), [`Atom`],
//! [`Pid`], [`Bytes`], `Vec<T>` (lists), tuples of up to 8 elements,
//! `HashMap`/`BTreeMap` (maps), `Option<T>` (`nil` for `None`, as Elixir).
//!
//! Out of terms (`TryFrom<Term>` and `TryFrom<&Term>`): the same types; a
//! failure is a [`ConvertError`] saying what was expected and what was found.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};

use bytes::Bytes;
use num_bigint::BigInt;
use num_traits::ToPrimitive;

use super::{Atom, Binary, Map, Pid, Port, Reference, Term};

/// A failed conversion: what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found}")]
pub struct ConvertError {
    /// What the conversion needed.
    pub expected: &'static str,
    /// What the term was (its kind and, when short, its text).
    pub found: String,
}

impl ConvertError {
    /// An error for `found` not being `expected`.
    pub fn new(expected: &'static str, found: &Term) -> ConvertError {
        let text = found.to_string();
        let found = if text.chars().count() <= 60 {
            format!("{} {}", found.kind(), text)
        } else {
            let short: String = text.chars().take(57).collect();
            format!("{} {short}...", found.kind())
        };
        ConvertError { expected, found }
    }
}

// ---- into terms ----

macro_rules! from_small_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Term {
            fn from(i: $t) -> Term {
                Term::Int(i64::from(i))
            }
        }
    )*};
}
from_small_int!(i8, i16, i32, i64, u8, u16, u32);

macro_rules! from_wide_int {
    ($($t:ty),*) => {$(
        impl From<$t> for Term {
            fn from(i: $t) -> Term {
                match i64::try_from(i) {
                    Ok(i) => Term::Int(i),
                    Err(_) => Term::BigInt(Box::new(BigInt::from(i))),
                }
            }
        }
    )*};
}
from_wide_int!(u64, i128, u128, usize, isize);

impl From<BigInt> for Term {
    fn from(b: BigInt) -> Term {
        match b.to_i64() {
            Some(i) => Term::Int(i),
            None => Term::BigInt(Box::new(b)),
        }
    }
}

impl From<f64> for Term {
    fn from(f: f64) -> Term {
        Term::Float(f)
    }
}

impl From<f32> for Term {
    fn from(f: f32) -> Term {
        Term::Float(f64::from(f))
    }
}

impl From<bool> for Term {
    fn from(b: bool) -> Term {
        Term::Atom(Atom::from(if b { "true" } else { "false" }))
    }
}

impl From<Atom> for Term {
    fn from(a: Atom) -> Term {
        Term::Atom(a)
    }
}

impl From<&str> for Term {
    fn from(s: &str) -> Term {
        Term::Binary(Binary::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Term {
    fn from(s: String) -> Term {
        Term::Binary(Binary::from(s))
    }
}

impl From<&String> for Term {
    fn from(s: &String) -> Term {
        Term::from(s.as_str())
    }
}

impl From<Bytes> for Term {
    fn from(b: Bytes) -> Term {
        Term::Binary(b.into())
    }
}

impl From<Binary> for Term {
    fn from(b: Binary) -> Term {
        Term::Binary(b)
    }
}

impl From<Pid> for Term {
    fn from(p: Pid) -> Term {
        Term::Pid(p)
    }
}

impl From<Port> for Term {
    fn from(p: Port) -> Term {
        Term::Port(p)
    }
}

impl From<Reference> for Term {
    fn from(r: Reference) -> Term {
        Term::Ref(Box::new(r))
    }
}

impl From<Map> for Term {
    fn from(m: Map) -> Term {
        Term::Map(m)
    }
}

impl<T: Into<Term>> From<Vec<T>> for Term {
    fn from(v: Vec<T>) -> Term {
        Term::List(v.into_iter().map(Into::into).collect())
    }
}

impl<T: Into<Term>> From<Option<T>> for Term {
    /// `None` is the atom `nil`, as in Elixir.
    fn from(o: Option<T>) -> Term {
        match o {
            Some(v) => v.into(),
            None => Term::Atom(Atom::from("nil")),
        }
    }
}

impl<K: Into<Term>, V: Into<Term>, S: BuildHasher> From<HashMap<K, V, S>> for Term {
    fn from(m: HashMap<K, V, S>) -> Term {
        Term::map(m.into_iter().map(|(k, v)| (k.into(), v.into())))
    }
}

impl<K: Into<Term>, V: Into<Term>> From<BTreeMap<K, V>> for Term {
    fn from(m: BTreeMap<K, V>) -> Term {
        Term::map(m.into_iter().map(|(k, v)| (k.into(), v.into())))
    }
}

impl From<()> for Term {
    /// The empty tuple `{}`.
    fn from(_: ()) -> Term {
        Term::Tuple(Vec::new())
    }
}

macro_rules! tuple_impls {
    ($( ($($n:tt $t:ident),+) )*) => {$(
        impl<$($t: Into<Term>),+> From<($($t,)+)> for Term {
            fn from(t: ($($t,)+)) -> Term {
                Term::Tuple(vec![$(t.$n.into()),+])
            }
        }

        impl<$($t: FromTerm),+> TryFrom<Term> for ($($t,)+) {
            type Error = ConvertError;
            fn try_from(t: Term) -> Result<Self, ConvertError> {
                const N: usize = [$($n),+].len();
                match t {
                    Term::Tuple(v) if v.len() == N => {
                        let mut it = v.into_iter();
                        Ok(($(
                            match it.next() {
                                Some(e) => <$t as FromTerm>::from_term(e)?,
                                None => return Err(ConvertError {
                                    expected: concat!("tuple of ", stringify!($n)),
                                    found: String::new(),
                                }),
                            },
                        )+))
                    }
                    other => Err(ConvertError::new(tuple_name(N), &other)),
                }
            }
        }
    )*};
}

fn tuple_name(n: usize) -> &'static str {
    const NAMES: [&str; 9] = [
        "tuple of 0",
        "tuple of 1",
        "tuple of 2",
        "tuple of 3",
        "tuple of 4",
        "tuple of 5",
        "tuple of 6",
        "tuple of 7",
        "tuple of 8",
    ];
    NAMES.get(n).copied().unwrap_or("tuple")
}

tuple_impls! {
    (0 A)
    (0 A, 1 B)
    (0 A, 1 B, 2 C)
    (0 A, 1 B, 2 C, 3 D)
    (0 A, 1 B, 2 C, 3 D, 4 E)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G)
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H)
}

// ---- out of terms ----

/// Conversion out of a term: every `TryFrom<Term>` of this module, and
/// [`Term`] itself (which always converts), so that `Vec<Term>` or
/// `(Pid, Term)` convert too.
pub trait FromTerm: Sized {
    /// Converts `t`, or says what was expected and found.
    fn from_term(t: Term) -> Result<Self, ConvertError>;
}

impl FromTerm for Term {
    fn from_term(t: Term) -> Result<Term, ConvertError> {
        Ok(t)
    }
}

macro_rules! from_term_via_try_from {
    ($($t:ty),*) => {$(
        impl FromTerm for $t {
            fn from_term(t: Term) -> Result<$t, ConvertError> {
                <$t>::try_from(t)
            }
        }
    )*};
}
from_term_via_try_from!(
    i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, usize, isize, f64, bool, BigInt, Atom, Pid,
    Reference, Bytes, Map, String
);

impl<T: FromTerm> FromTerm for Vec<T> {
    fn from_term(t: Term) -> Result<Vec<T>, ConvertError> {
        Vec::try_from(t)
    }
}

macro_rules! try_int {
    ($($t:ty),*) => {$(
        impl TryFrom<&Term> for $t {
            type Error = ConvertError;
            fn try_from(t: &Term) -> Result<$t, ConvertError> {
                let v = match t {
                    Term::Int(i) => <$t>::try_from(*i).ok(),
                    Term::BigInt(b) => <$t>::try_from(&**b).ok(),
                    _ => None,
                };
                v.ok_or_else(|| ConvertError::new(concat!("integer fitting ", stringify!($t)), t))
            }
        }

        impl TryFrom<Term> for $t {
            type Error = ConvertError;
            fn try_from(t: Term) -> Result<$t, ConvertError> {
                <$t>::try_from(&t)
            }
        }
    )*};
}
try_int!(i8, i16, i32, i64, i128, u8, u16, u32, u64, u128, usize, isize);

impl TryFrom<&Term> for BigInt {
    type Error = ConvertError;
    fn try_from(t: &Term) -> Result<BigInt, ConvertError> {
        match t {
            Term::Int(i) => Ok(BigInt::from(*i)),
            Term::BigInt(b) => Ok((**b).clone()),
            _ => Err(ConvertError::new("integer", t)),
        }
    }
}

impl TryFrom<Term> for BigInt {
    type Error = ConvertError;
    fn try_from(t: Term) -> Result<BigInt, ConvertError> {
        BigInt::try_from(&t)
    }
}

impl TryFrom<&Term> for f64 {
    type Error = ConvertError;
    /// A float, or an integer (converted, as Erlang's `float/1`).
    fn try_from(t: &Term) -> Result<f64, ConvertError> {
        match t {
            Term::Float(f) => Ok(*f),
            Term::Int(i) => Ok(*i as f64),
            Term::BigInt(b) => b.to_f64().ok_or_else(|| ConvertError::new("number", t)),
            _ => Err(ConvertError::new("number", t)),
        }
    }
}

impl TryFrom<Term> for f64 {
    type Error = ConvertError;
    fn try_from(t: Term) -> Result<f64, ConvertError> {
        f64::try_from(&t)
    }
}

impl TryFrom<&Term> for bool {
    type Error = ConvertError;
    fn try_from(t: &Term) -> Result<bool, ConvertError> {
        match t {
            Term::Atom(a) if a.as_str() == "true" => Ok(true),
            Term::Atom(a) if a.as_str() == "false" => Ok(false),
            _ => Err(ConvertError::new("true or false", t)),
        }
    }
}

impl TryFrom<Term> for bool {
    type Error = ConvertError;
    fn try_from(t: Term) -> Result<bool, ConvertError> {
        bool::try_from(&t)
    }
}

impl TryFrom<&Term> for Atom {
    type Error = ConvertError;
    fn try_from(t: &Term) -> Result<Atom, ConvertError> {
        t.as_atom().ok_or_else(|| ConvertError::new("atom", t))
    }
}

impl TryFrom<Term> for Atom {
    type Error = ConvertError;
    fn try_from(t: Term) -> Result<Atom, ConvertError> {
        Atom::try_from(&t)
    }
}

impl TryFrom<&Term> for Pid {
    type Error = ConvertError;
    fn try_from(t: &Term) -> Result<Pid, ConvertError> {
        t.as_pid()
            .copied()
            .ok_or_else(|| ConvertError::new("pid", t))
    }
}

impl TryFrom<Term> for Pid {
    type Error = ConvertError;
    fn try_from(t: Term) -> Result<Pid, ConvertError> {
        Pid::try_from(&t)
    }
}

impl TryFrom<Term> for Reference {
    type Error = ConvertError;
    fn try_from(t: Term) -> Result<Reference, ConvertError> {
        match t {
            Term::Ref(r) => Ok(*r),
            other => Err(ConvertError::new("reference", &other)),
        }
    }
}

impl TryFrom<Term> for Bytes {
    type Error = ConvertError;
    /// The bytes of a binary.
    fn try_from(t: Term) -> Result<Bytes, ConvertError> {
        match t {
            Term::Binary(b) => Ok(b.into()),
            other => Err(ConvertError::new("binary", &other)),
        }
    }
}

impl TryFrom<Term> for Binary {
    type Error = ConvertError;
    /// The bytes of a binary.
    fn try_from(t: Term) -> Result<Binary, ConvertError> {
        match t {
            Term::Binary(b) => Ok(b),
            other => Err(ConvertError::new("binary", &other)),
        }
    }
}

impl TryFrom<Term> for Map {
    type Error = ConvertError;
    fn try_from(t: Term) -> Result<Map, ConvertError> {
        match t {
            Term::Map(m) => Ok(m),
            other => Err(ConvertError::new("map", &other)),
        }
    }
}

impl TryFrom<&Term> for String {
    type Error = ConvertError;
    /// A UTF-8 binary (an Elixir string), or a list of Unicode code points
    /// (an Erlang string).
    fn try_from(t: &Term) -> Result<String, ConvertError> {
        const EXPECTED: &str = "string (UTF-8 binary or list of characters)";
        match t {
            Term::Binary(b) => {
                String::from_utf8(b.to_vec()).map_err(|_| ConvertError::new(EXPECTED, t))
            }
            Term::ByteList(b) => Ok(b.iter().map(|&c| char::from(c)).collect()),
            Term::List(v) => v
                .iter()
                .map(|e| match e {
                    Term::Int(i) => u32::try_from(*i).ok().and_then(char::from_u32),
                    _ => None,
                })
                .collect::<Option<String>>()
                .ok_or_else(|| ConvertError::new(EXPECTED, t)),
            _ => Err(ConvertError::new(EXPECTED, t)),
        }
    }
}

impl Term {
    /// The term as a person reads it: the text of a string (a UTF-8 binary,
    /// as Elixir sends, or a list of characters), anything else as `~w`
    /// prints it.
    ///
    /// ```
    /// use erldist::{term, Term};
    /// assert_eq!(Term::from("hi").to_text(), "hi");
    /// assert_eq!(term!({ok, 1}).to_text(), "{ok,1}");
    /// ```
    pub fn to_text(&self) -> String {
        String::try_from(self).unwrap_or_else(|_| self.to_string())
    }
}

impl TryFrom<Term> for String {
    type Error = ConvertError;
    fn try_from(t: Term) -> Result<String, ConvertError> {
        String::try_from(&t)
    }
}

impl<T: FromTerm> TryFrom<Term> for Vec<T> {
    type Error = ConvertError;
    /// The elements of a proper list.
    fn try_from(t: Term) -> Result<Vec<T>, ConvertError> {
        match t {
            Term::List(v) => v.into_iter().map(T::from_term).collect(),
            Term::ByteList(b) => b
                .iter()
                .map(|&c| T::from_term(Term::Int(i64::from(c))))
                .collect(),
            other => Err(ConvertError::new("proper list", &other)),
        }
    }
}

impl Term {
    /// Converts to `Option<T>`: the atoms `nil` and `undefined` are `None`;
    /// anything else converts to `T`. (A `TryFrom` impl for `Option<T>`
    /// would collide with the standard library's.)
    ///
    /// ```
    /// use erldist::Term;
    /// assert_eq!(Term::atom("nil").try_into_option::<i64>().unwrap(), None);
    /// assert_eq!(Term::from(5).try_into_option::<i64>().unwrap(), Some(5));
    /// ```
    pub fn try_into_option<T: FromTerm>(self) -> Result<Option<T>, ConvertError> {
        if self.is_atom("nil") || self.is_atom("undefined") {
            return Ok(None);
        }
        T::from_term(self).map(Some)
    }
}

impl<K, V, S> TryFrom<Term> for HashMap<K, V, S>
where
    K: FromTerm + Eq + Hash,
    V: FromTerm,
    S: BuildHasher + Default,
{
    type Error = ConvertError;
    fn try_from(t: Term) -> Result<HashMap<K, V, S>, ConvertError> {
        match t {
            Term::Map(m) => m
                .entries
                .into_iter()
                .map(|(k, v)| Ok((K::from_term(k)?, V::from_term(v)?)))
                .collect(),
            other => Err(ConvertError::new("map", &other)),
        }
    }
}

impl<K, V> TryFrom<Term> for BTreeMap<K, V>
where
    K: FromTerm + Ord,
    V: FromTerm,
{
    type Error = ConvertError;
    fn try_from(t: Term) -> Result<BTreeMap<K, V>, ConvertError> {
        match t {
            Term::Map(m) => m
                .entries
                .into_iter()
                .map(|(k, v)| Ok((K::from_term(k)?, V::from_term(v)?)))
                .collect(),
            other => Err(ConvertError::new("map", &other)),
        }
    }
}

/// A part of a binary in [`term!`](crate::term!)'s `<<...>>`: a string
/// (its UTF-8 bytes) or an integer (one byte, as Erlang truncates).
#[doc(hidden)]
pub trait BinPart {
    fn put(self, out: &mut Vec<u8>);
}

impl BinPart for &str {
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

macro_rules! bin_part_int {
    ($($t:ty),*) => {$(
        impl BinPart for $t {
            fn put(self, out: &mut Vec<u8>) {
                out.push(self as u8);
            }
        }
    )*};
}
bin_part_int!(i32, i64, u8, u32, u64, usize);

#[doc(hidden)]
pub fn __binary(parts: impl FnOnce(&mut Vec<u8>)) -> Term {
    let mut v = Vec::new();
    parts(&mut v);
    Term::Binary(Binary::from(v))
}

/// Builds a [`Term`] from Erlang-like syntax in one expression.
///
/// - `ok` → the atom `ok` (any identifier); `true`/`false` too;
/// - `42`, `-7`, `1.5`, `"text"` → integers, floats, and binaries (Elixir
///   strings);
/// - `{a, b}` → tuples, `[a, b]` → lists, `[h | t]` → lists with a tail,
///   `#{k => v}` → maps;
/// - `<<"bin">>`, `<<1, 2, 3>>` → binaries;
/// - `(expr)` → any Rust expression converted with [`Term::from`].
///
/// ```
/// use erldist::term;
/// let name = "kate";
/// let t = term!({ok, [1, 2], #{name => (name), age => -3, tags => [a | b]}});
/// assert_eq!(t.to_string(), "{ok,[1,2],#{age => -3,name => <<107,97,116,101>>,tags => [a|b]}}");
/// ```
#[macro_export]
macro_rules! term {
    // Sequences: collect the tokens of one element up to a comma.
    (@seq [$($done:expr),*] []) => { ::std::vec![$($done),*] };
    (@seq [$($done:expr),*] [$($cur:tt)+]) => { ::std::vec![$($done,)* $crate::term!($($cur)+)] };
    (@seq [$($done:expr),*] [$($cur:tt)+] , $($rest:tt)*) => {
        $crate::term!(@seq [$($done,)* $crate::term!($($cur)+)] [] $($rest)*)
    };
    // A binary's commas do not separate elements: take it whole.
    (@seq [$($done:expr),*] [$($cur:tt)*] << $($rest:tt)*) => {
        $crate::term!(@seqbin [$($done),*] [$($cur)*] [] $($rest)*)
    };
    (@seqbin [$($done:expr),*] [$($cur:tt)*] [$($bin:tt)*] >> $($rest:tt)*) => {
        $crate::term!(@seq [$($done),*] [$($cur)* << $($bin)* >>] $($rest)*)
    };
    (@seqbin [$($done:expr),*] [$($cur:tt)*] [$($bin:tt)*] $next:tt $($rest:tt)*) => {
        $crate::term!(@seqbin [$($done),*] [$($cur)*] [$($bin)* $next] $($rest)*)
    };
    (@seq [$($done:expr),*] [$($cur:tt)*] $next:tt $($rest:tt)*) => {
        $crate::term!(@seq [$($done),*] [$($cur)* $next] $($rest)*)
    };
    // Lists with a tail: split at `|`.
    (@list [$($head:tt)*] | $($tail:tt)+) => {
        $crate::Term::list_with_tail($crate::term!(@seq [] [] $($head)*), $crate::term!($($tail)+))
    };
    (@list [$($head:tt)*] $next:tt $($rest:tt)*) => {
        $crate::term!(@list [$($head)* $next] $($rest)*)
    };
    (@list [$($head:tt)*]) => { $crate::Term::List($crate::term!(@seq [] [] $($head)*)) };
    // Map entries: `key => value`, separated by commas. `@mapk` collects
    // a key up to `=>`, `@mapv` its value up to `,`.
    (@mapk [$($done:expr),*] []) => { $crate::Term::map(::std::vec![$($done),*]) };
    (@mapk [$($done:expr),*] [$($k:tt)+] => $($rest:tt)*) => {
        $crate::term!(@mapv [$($done),*] [$($k)+] [] $($rest)*)
    };
    (@mapk [$($done:expr),*] [$($k:tt)*] << $($rest:tt)*) => {
        $crate::term!(@mapkbin [$($done),*] [$($k)*] [] $($rest)*)
    };
    (@mapkbin [$($done:expr),*] [$($k:tt)*] [$($bin:tt)*] >> $($rest:tt)*) => {
        $crate::term!(@mapk [$($done),*] [$($k)* << $($bin)* >>] $($rest)*)
    };
    (@mapkbin [$($done:expr),*] [$($k:tt)*] [$($bin:tt)*] $next:tt $($rest:tt)*) => {
        $crate::term!(@mapkbin [$($done),*] [$($k)*] [$($bin)* $next] $($rest)*)
    };
    (@mapk [$($done:expr),*] [$($k:tt)*] $next:tt $($rest:tt)*) => {
        $crate::term!(@mapk [$($done),*] [$($k)* $next] $($rest)*)
    };
    (@mapv [$($done:expr),*] [$($k:tt)+] [$($v:tt)+]) => {
        $crate::Term::map(::std::vec![$($done,)* ($crate::term!($($k)+), $crate::term!($($v)+))])
    };
    (@mapv [$($done:expr),*] [$($k:tt)+] [$($v:tt)+] , $($rest:tt)*) => {
        $crate::term!(@mapk [$($done,)* ($crate::term!($($k)+), $crate::term!($($v)+))] [] $($rest)*)
    };
    (@mapv [$($done:expr),*] [$($k:tt)+] [$($v:tt)*] << $($rest:tt)*) => {
        $crate::term!(@mapvbin [$($done),*] [$($k)+] [$($v)*] [] $($rest)*)
    };
    (@mapvbin [$($done:expr),*] [$($k:tt)+] [$($v:tt)*] [$($bin:tt)*] >> $($rest:tt)*) => {
        $crate::term!(@mapv [$($done),*] [$($k)+] [$($v)* << $($bin)* >>] $($rest)*)
    };
    (@mapvbin [$($done:expr),*] [$($k:tt)+] [$($v:tt)*] [$($bin:tt)*] $next:tt $($rest:tt)*) => {
        $crate::term!(@mapvbin [$($done),*] [$($k)+] [$($v)*] [$($bin)* $next] $($rest)*)
    };
    (@mapv [$($done:expr),*] [$($k:tt)+] [$($v:tt)*] $next:tt $($rest:tt)*) => {
        $crate::term!(@mapv [$($done),*] [$($k)+] [$($v)* $next] $($rest)*)
    };
    // Terms.
    ({ $($inner:tt)* }) => { $crate::Term::Tuple($crate::term!(@seq [] [] $($inner)*)) };
    ([ $($inner:tt)* ]) => { $crate::term!(@list [] $($inner)*) };
    (# { $($inner:tt)* }) => { $crate::term!(@mapk [] [] $($inner)*) };
    (<< >>) => { $crate::Term::Binary($crate::Binary::new()) };
    (<< $($part:tt),+ >>) => {
        $crate::term::__binary(|out| { $( $crate::term::BinPart::put($part, out); )+ })
    };
    (- $lit:literal) => { $crate::Term::from(-$lit) };
    (( $e:expr )) => { $crate::Term::from($e) };
    ($lit:literal) => { $crate::Term::from($lit) };
    ($atom:ident) => { $crate::Term::Atom($crate::Atom::from(stringify!($atom))) };
}
