//! Conversions between terms and Rust values.

/// A failed conversion: what was expected and what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found}")]
pub struct ConvertError {
    /// What the conversion needed.
    pub expected: &'static str,
    /// What the term was.
    pub found: String,
}
