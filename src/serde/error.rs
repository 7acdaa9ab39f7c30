//! The error of serde conversions.

use std::fmt::Display;

use crate::term::{AtomError, ConvertError, DecodeError, EncodeError, Term};

/// What went wrong converting between Rust values and terms.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The term does not have the shape the Rust type needs.
    #[error("expected {expected}, found {found}")]
    Mismatch {
        /// What the Rust type needed.
        expected: String,
        /// What the term was: its kind and (shortened) text.
        found: String,
    },
    /// An integer that does not fit the Rust type.
    #[error("integer {value} out of range for {ty}")]
    OutOfRange {
        /// The integer.
        value: String,
        /// The Rust type.
        ty: &'static str,
    },
    /// A tuple or list with the wrong number of elements.
    #[error("expected {expected} elements, found {found}")]
    Length {
        /// How many elements the Rust type needed.
        expected: usize,
        /// How many there were.
        found: usize,
    },
    /// A float that is NaN or infinite: Erlang floats are finite.
    #[error("float {0} is not finite (Erlang floats are)")]
    NonFiniteFloat(f64),
    /// An atom could not be made (too long, or the table is full).
    #[error(transparent)]
    Atom(#[from] AtomError),
    /// The bytes did not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The term did not encode.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// A message from a `Serialize` or `Deserialize` implementation (a
    /// missing field, an unknown variant, ...).
    #[error("{0}")]
    Custom(String),
}

impl Error {
    /// A mismatch: `found` is not `expected`.
    pub fn mismatch(expected: impl Into<String>, found: &Term) -> Error {
        // ConvertError knows how to describe a term briefly.
        let c = ConvertError::new("", found);
        Error::Mismatch {
            expected: expected.into(),
            found: c.found,
        }
    }
}

impl ::serde::ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Error {
        Error::Custom(msg.to_string())
    }
}

impl ::serde::de::Error for Error {
    fn custom<T: Display>(msg: T) -> Error {
        Error::Custom(msg.to_string())
    }
}
