//! Rust values to and from Erlang terms with [serde](https://serde.rs)
//! (the `serde` feature).
//!
//! [`to_term`] and [`from_term`] convert between any `Serialize` /
//! `Deserialize` value and a [`Term`]; [`to_bytes`] and [`from_bytes`] go
//! on to the External Term Format (`term_to_binary/1` bytes). The bytes
//! functions build a [`Term`] in between.
//!
//! The mapping is the one an Elixir developer expects:
//!
//! | Rust (serde data model)          | Term                                   |
//! |----------------------------------|----------------------------------------|
//! | `bool`                           | `true` / `false`                       |
//! | integers of any width (`i128`, `u128` too) | integer (big when needed)    |
//! | `f32`, `f64`                     | float (must be finite)                 |
//! | `char`                           | integer code point                     |
//! | `String`, `&str`                 | binary (UTF-8)                         |
//! | bytes (`serialize_bytes`, `serde_bytes`) | binary                         |
//! | `Option::None`                   | `nil`                                  |
//! | `Option::Some(v)`                | `v`                                    |
//! | `()` and unit structs            | `nil`                                  |
//! | newtype struct `S(v)`            | `v`                                    |
//! | sequences (`Vec`, sets, ...)     | list                                   |
//! | tuples, tuple structs            | tuple                                  |
//! | maps                             | map (keys as they serialize: `String` keys are binaries) |
//! | structs                          | map with atom keys: `%{name: "kate"}`  |
//! | enum unit variant `E::Ok`        | atom `'Ok'` (the variant name as is)   |
//! | newtype variant `E::V(x)`        | `{'V', x}`                             |
//! | tuple variant `E::V(a, b)`       | `{'V', a, b}`                          |
//! | struct variant `E::V { a }`      | `{'V', %{a: ...}}`                     |
//! | [`Term`]                         | the term itself, untouched             |
//! | [`Atom`]                         | the atom                               |
//!
//! Variant names are used as written in Rust; rename them to Elixir's
//! style with serde's attributes, e.g. `#[serde(rename_all = "snake_case")]`
//! on the enum (`E::NotFound` then is `:not_found`).
//!
//! On the way in, decoding is a little more forgiving, as Elixir and Erlang
//! data come in several shapes:
//!
//! - `None` is `nil` or `undefined`;
//! - strings are binaries, charlists (lists of code points) or atoms (so
//!   a map with atom keys reads into a `HashMap<String, _>`);
//! - bytes are binaries or lists of bytes;
//! - floats accept integers (`1` for `1.0`);
//! - fixed-size tuples accept lists of that length as well;
//! - enum unit variants are atoms or binaries;
//! - structs read from maps with atom or binary keys, and ignore an
//!   Elixir struct's `__struct__` key.
//!
//! Elixir structs: [`to_term_struct`] (or the [`ElixirStruct`] wrapper, for a
//! struct nested in another value) adds the `__struct__` key, so that the
//! value is a `%MyApp.User{}` on the Elixir side.
//!
//! A [`Term`] field keeps any term as it is, both ways (pids, references,
//! funs, improper lists included) when converting with this module. With
//! another serde format (e.g. JSON) a [`Term`] serializes in a lossy,
//! generic shape (atoms and binaries as strings, pids as their text) and
//! deserializes from any self-describing data.
//!
//! Limits: serde's `#[serde(flatten)]` serializes fields through a map, so
//! flattened fields get binary keys, not atoms; and buffering serde
//! attributes (`flatten`, `untagged`, internally tagged enums) on the way
//! in see a [`Term`] field through the generic shape, not untouched.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use erldist::{term, Term};
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! struct User {
//!     name: String,
//!     age: u32,
//!     email: Option<String>,
//! }
//!
//! let kate = User { name: "kate".into(), age: 33, email: None };
//! let t = erldist::to_term(&kate).unwrap();
//! assert_eq!(t.to_string(), "#{age => 33,email => nil,name => <<107,97,116,101>>}");
//! assert_eq!(erldist::from_term::<User>(t).unwrap(), kate);
//!
//! let s = erldist::to_term_struct(&kate, "MyApp.User").unwrap();
//! assert!(s.as_map().unwrap().get(&Term::atom("__struct__")).unwrap().is_atom("Elixir.MyApp.User"));
//! ```

mod de;
mod error;
mod ser;
mod term_impl;

pub use de::Deserializer;
pub use error::Error;
pub use ser::Serializer;

use crate::term::{Atom, Map, Term};

/// Converts `value` to a term.
///
/// # Errors
/// When `value` cannot be a term: a non-finite float, a too-long atom, or an
/// error from `value`'s `Serialize` implementation.
pub fn to_term<T: ::serde::Serialize + ?Sized>(value: &T) -> Result<Term, Error> {
    value.serialize(Serializer)
}

/// Converts a term to a `T`.
///
/// # Errors
/// When the term does not have the shape `T` needs; the error says what was
/// expected and what was found.
pub fn from_term<T: ::serde::de::DeserializeOwned>(term: Term) -> Result<T, Error> {
    T::deserialize(Deserializer::new(term))
}

/// Converts `value` to External Term Format bytes, as `term_to_binary/1`
/// writes them (through a [`Term`]).
///
/// # Errors
/// As [`to_term`], or when encoding fails.
pub fn to_bytes<T: ::serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, Error> {
    Ok(to_term(value)?.encode()?)
}

/// Converts External Term Format bytes (from `term_to_binary/1`) to a `T`
/// (through a [`Term`]).
///
/// # Errors
/// When the bytes do not decode, or as [`from_term`].
pub fn from_bytes<T: ::serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    from_term(Term::decode(bytes)?)
}

/// The atom Elixir uses for `module`: `"MyApp.User"` is `Elixir.MyApp.User`;
/// a name already starting with `Elixir.` is kept.
fn elixir_module(module: &str) -> Result<Atom, Error> {
    let name = if module.starts_with("Elixir.") {
        module.to_owned()
    } else {
        format!("Elixir.{module}")
    };
    Ok(Atom::try_new(&name)?)
}

/// Converts `value`, which must become a map (a struct does), to an Elixir
/// struct of module `module` (`"MyApp.User"` or `"Elixir.MyApp.User"`): the
/// map gets the key `__struct__` with the module's atom.
///
/// # Errors
/// As [`to_term`], or when `value` is not a map.
pub fn to_term_struct<T: ::serde::Serialize + ?Sized>(
    value: &T,
    module: &str,
) -> Result<Term, Error> {
    let module = elixir_module(module)?;
    match to_term(value)? {
        Term::Map(mut m) => {
            m.insert(Term::atom("__struct__"), Term::Atom(module));
            Ok(Term::Map(m))
        }
        other => Err(Error::mismatch(
            "a map (a struct) for an Elixir struct",
            &other,
        )),
    }
}

/// A value serialized as an Elixir struct: `ElixirStruct("MyApp.User",
/// &user)` is `%MyApp.User{...}`. Use it for a struct inside another
/// value; [`to_term_struct`] for the top level.
///
/// ```
/// use erldist::serde::ElixirStruct;
/// #[derive(serde::Serialize)]
/// struct User { name: String }
/// let u = User { name: "kate".into() };
/// let t = erldist::to_term(&vec![ElixirStruct("MyApp.User", &u)]).unwrap();
/// assert_eq!(t.to_string(), "[#{'__struct__' => 'Elixir.MyApp.User',name => <<107,97,116,101>>}]");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ElixirStruct<'a, T: ?Sized>(pub &'a str, pub &'a T);

impl<T: ::serde::Serialize + ?Sized> ::serde::Serialize for ElixirStruct<'_, T> {
    fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let term = to_term_struct(self.1, self.0).map_err(::serde::ser::Error::custom)?;
        term.serialize(serializer)
    }
}

/// The `__struct__` module of an Elixir struct term (`"Elixir.MyApp.User"`),
/// if `term` is one.
pub fn struct_module(term: &Term) -> Option<&'static str> {
    let m: &Map = term.as_map()?;
    m.get(&Term::atom("__struct__"))?
        .as_atom()
        .map(|a| a.as_str())
}
