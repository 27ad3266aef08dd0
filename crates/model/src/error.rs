//! The one validation error: which field, and what was expected.

use std::fmt;

/// A problem with one field of an object, for people: the cluster turns it
/// into a 400 whose body names `field` and carries `message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The REST (camelCase) name of the offending field, e.g. `portAddress`.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "field `{}`: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}
