//! Allowlist changes as the admin API makes them: edits of a stored list
//! ([`Edit`]) and who a new list would start blocking ([`Lockout`]). Pure
//! domain logic; the store runs it inside the write's transaction.

mod edit;
pub(crate) mod lockout;

pub use edit::Edit;
pub use lockout::{CallerActivity, LOCKOUT_WINDOW, Lockout, MAX_LISTED_CALLERS, preview};
