//! ipgate's shared domain: the generated protos, allowlist entries and their
//! rules, API keys, the compiled index and the one decision function every
//! front door calls.
//!
//! This crate has no network, no database and no async runtime: the control
//! plane and the enforcer meet here and in `proto/`, never in each other.

pub mod allowlist;
pub mod api;
pub mod convert;
pub mod decision;
pub mod entry;
pub mod index;
pub mod key;
pub mod path;
pub mod proto;
pub mod redact;
pub mod revision;
pub mod time;
pub mod usage;

pub use allowlist::{Allowlist, AllowlistError, ListRules, RawEntry, Violation};
pub use api::{ApiConfig, ApiSlug, RouteRule, Scope};
pub use decision::{Decision, PresentedKey, Reason, Request, decide};
pub use entry::{Cidr, CidrError, Entry, EntryError, Label, normalize_ip};
pub use index::{Change, Index};
pub use key::{KeyConfig, KeyFormatError, KeyId, PreviousSecret, SecretHash};
pub use path::BadPath;
pub use revision::{EnforcerId, Revision};
pub use usage::{ClientIpSource, Door};
