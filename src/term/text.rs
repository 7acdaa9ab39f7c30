//! Terms as text: `Display` as `io_lib:format("~w", [T])`, `{:#}` as `~p`
//! on one line, and `FromStr` for that syntax.

use std::fmt;
use std::str::FromStr;

use super::Term;

/// A syntax error in term text, with its place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    /// The line (from 1).
    pub line: usize,
    /// The column (from 1, in characters).
    pub column: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

impl FromStr for Term {
    type Err = ParseError;
    fn from_str(_s: &str) -> Result<Term, ParseError> {
        Err(ParseError {
            line: 1,
            column: 1,
            message: "not yet".into(),
        })
    }
}
