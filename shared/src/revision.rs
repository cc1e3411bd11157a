//! Revisions of the control plane's change log, and enforcer identities.

use std::{fmt, str::FromStr};

/// A position in the change log: every admin write commits exactly one, and
/// they only grow. Revision 0 means "nothing yet".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(u64);

impl Revision {
    /// The revision before any write.
    pub const ZERO: Revision = Revision(0);

    /// Wraps a raw revision number.
    pub const fn new(n: u64) -> Self {
        Revision(n)
    }

    /// The raw number, for the wire and the database.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The revision right after this one.
    pub const fn next(self) -> Revision {
        Revision(self.0 + 1)
    }
}

impl From<u64> for Revision {
    fn from(n: u64) -> Self {
        Revision(n)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Name an enforcer reports itself by: 1-128 printable ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnforcerId(String);

/// Why a string is not an [`EnforcerId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("enforcer id must be 1-128 printable ASCII characters without spaces, got {0:?}")]
pub struct InvalidEnforcerId(pub String);

impl FromStr for EnforcerId {
    type Err = InvalidEnforcerId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(EnforcerId(s.to_owned()))
        } else {
            Err(InvalidEnforcerId(s.to_owned()))
        }
    }
}

impl EnforcerId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnforcerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_order_and_step() {
        assert!(Revision::new(2) > Revision::new(1));
        assert_eq!(Revision::ZERO.next(), Revision::new(1));
        assert_eq!(Revision::new(7).to_string(), "7");
    }

    #[test]
    fn enforcer_ids_are_printable_ascii() {
        assert!("enforcer-1.example".parse::<EnforcerId>().is_ok());
        assert!("".parse::<EnforcerId>().is_err());
        assert!("has space".parse::<EnforcerId>().is_err());
        assert!("x".repeat(129).parse::<EnforcerId>().is_err());
    }
}
