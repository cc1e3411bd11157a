//! The enforcer's front doors: each reads a request into a
//! [`DecisionInput`](crate::state::DecisionInput) — every HTTP door the same
//! way, through [`request`] — asks
//! [`Enforcer::decide`](crate::state::Enforcer::decide) and answers.

pub mod auth;
pub mod check;
pub mod ext_authz;
pub mod limits;
pub mod proxy;
pub mod request;
pub mod token;
