//! Allowlist changes as the admin API makes them: edits of a stored list
//! ([`Edit`]) and who a new list would start blocking ([`Lockout`]). Pure
//! domain logic: the store runs both before the write's transaction, so a
//! 24-hour look at the usage log never holds the write lock.

mod edit;
mod lockout;

pub use edit::Edit;
pub use lockout::{CallerActivity, LOCKOUT_WINDOW, Lockout, MAX_LISTED_CALLERS, plural, preview};
