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

    /// The bad fields a status carries one violation each for: the first
    /// [`DETAILED_FIELDS`].
    pub fn detailed(&self) -> &[BadField] {
        &self.fields[..self.fields.len().min(DETAILED_FIELDS)]
    }

    fn summary(&self) -> String {
        let parts: Vec<String> = self
            .fields
            .iter()
            .take(SUMMED_UP_FIELDS)
            .map(|f| format!("{}: {}", f.field, f.description))
            .collect();
        let more = self.fields.len().saturating_sub(SUMMED_UP_FIELDS);
        let more = match more {
            0 => String::new(),
            n => format!(
                "; and {n} more bad field{} ({} named in the details)",
                if n == 1 { "" } else { "s" },
                self.detailed().len()
            ),
        };
        format!("invalid request: {}{more}", parts.join("; "))
    }
}

/// Field violations a status carries at most. A status travels in HTTP/2
/// trailers, which clients cap (16 KiB by default in hyper): a batch of
/// 1,000 bad events listed whole made the client drop the connection, and
/// with it the caller's other calls. The first ones show what to fix.
pub const DETAILED_FIELDS: usize = 20;
/// Bad fields the status message spells out, for clients that show only it.
const SUMMED_UP_FIELDS: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_with_many_bad_fields_names_the_first_and_counts_the_rest() {
        let mut invalid = InvalidRequest::default();
        for i in 0..1000 {
            invalid.add(
                format!("events[{i}].client_ip"),
                "\"x\" is not an IP address",
            );
        }
        assert_eq!(invalid.detailed().len(), DETAILED_FIELDS);
        assert_eq!(invalid.detailed()[19].field, "events[19].client_ip");
        let message = invalid.to_string();
        assert!(
            message.starts_with("invalid request: events[0].client_ip: "),
            "{message}"
        );
        assert!(message.contains("events[4].client_ip"), "{message}");
        assert!(!message.contains("events[5].client_ip"), "{message}");
        assert!(
            message.ends_with("; and 995 more bad fields (20 named in the details)"),
            "{message}"
        );
    }

    #[test]
    fn a_request_with_few_bad_fields_names_them_all() {
        let mut invalid = InvalidRequest::field("a", "bad");
        invalid.add("b", "worse");
        assert_eq!(invalid.detailed().len(), 2);
        assert_eq!(invalid.to_string(), "invalid request: a: bad; b: worse");
    }
}
