//! The enforcer's front doors: each turns a request into a
//! [`DecisionInput`](crate::state::DecisionInput), asks
//! [`Enforcer::decide`](crate::state::Enforcer::decide) and answers.

pub mod check;
mod forward;
pub mod limits;
pub mod proxy;
pub mod request_id;
pub mod upstream;
mod websocket;
