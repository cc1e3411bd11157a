//! Optimistic concurrency: an object's etag is the revision of its last
//! change, and a write that names a stale one is refused (`ABORTED`)
//! rather than overwriting someone else's change.

use ipgate_shared::Revision;

/// The etag a write expects the object to have; `None` writes unconditionally.
pub type Expected = Option<Revision>;

/// A write named an etag the object no longer has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "etag {given} is stale: the object changed at revision {current}; read it again and reapply your change"
)]
pub struct StaleEtag {
    pub given: Revision,
    pub current: Revision,
}

/// Refuses a write whose etag is not the object's current revision.
pub fn check(expected: Expected, current: Revision) -> Result<(), StaleEtag> {
    match expected {
        Some(given) if given != current => Err(StaleEtag { given, current }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_different_etag_is_stale() {
        let (r3, r4) = (Revision::new(3), Revision::new(4));
        assert_eq!(check(None, r4), Ok(()));
        assert_eq!(check(Some(r4), r4), Ok(()));
        assert_eq!(
            check(Some(r3), r4),
            Err(StaleEtag {
                given: r3,
                current: r4
            })
        );
    }
}
