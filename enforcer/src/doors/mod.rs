//! The enforcer's front doors: each reads a request into a
//! [`DecisionInput`](crate::state::DecisionInput) — every HTTP door the same
//! way, through [`request`] — asks
//! [`Enforcer::decide`](crate::state::Enforcer::decide) and answers.

pub mod auth;
pub mod check;
pub mod ext_authz;
mod forward;
pub mod limits;
pub mod proxy;
pub mod request;
pub mod request_id;
pub mod token;
pub mod upstream;
mod websocket;
