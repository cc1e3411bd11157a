//! The request-validation error: every bad field of a request, each with
//! its path (`allowlist.entries[2].cidr`) and what is wrong with it. It
//! becomes `INVALID_ARGUMENT` with one field violation per bad field.

use std::fmt;

/// One bad field of a request: its path (`allowlist.entries[2].cidr`) and
/// what is wrong with it, as shown to the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadField {
    pub field: String,
    pub description: String,
}

/// A request that cannot be served as given; one entry per bad field.
#[derive(Clone, Debug, Default, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.summary())]
pub struct InvalidRequest {
    pub fields: Vec<BadField>,
}

impl InvalidRequest {
    /// A request with one bad field.
    pub fn field(field: impl Into<String>, description: impl fmt::Display) -> Self {
        let mut invalid = InvalidRequest::default();
        invalid.add(field, description);
        invalid
    }

    /// Notes one more bad field.
    pub fn add(&mut self, field: impl Into<String>, description: impl fmt::Display) {
        self.fields.push(BadField {
            field: field.into(),
            description: description.to_string(),
        });
    }

    /// Keeps the value of `result`, or notes its error against `field`.
    pub fn check<T, E: fmt::Display>(
        &mut self,
        field: impl Into<String>,
        result: Result<T, E>,
    ) -> Option<T> {
        result.map_err(|e| self.add(field, e)).ok()
    }

    /// `value` when no field was bad, otherwise every bad field at once.
    pub fn or_value<T>(self, value: impl FnOnce() -> Option<T>) -> Result<T, InvalidRequest> {
        if self.fields.is_empty() {
            // Every `check` succeeded, so the parts are all there.
            value().ok_or(self)
        } else {
            Err(self)
        }
    }

    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.description))
            .collect();
        format!("invalid request: {}", parts.join("; "))
    }
}
