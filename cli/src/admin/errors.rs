//! Failed calls, told readably: the gRPC code and message, every field
//! violation on its own line, the addresses a lockout would hit, and what to
//! do next.

use std::fmt::{self, Write as _};

use ipgate_shared::redact;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.reason` of a write refused because it would block active callers.
pub const LOCKOUT_RISK: &str = "LOCKOUT_RISK";

/// The control plane could not be reached at all.
#[derive(Debug)]
pub struct Unreachable {
    pub addr: String,
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "cannot reach the control plane at {}: {}\n\
             Is it running? Point --addr (or IPGATE_ADDR) at its gRPC address.",
            redact::url(&self.addr),
            chain(&*self.source)
        )
    }
}

impl std::error::Error for Unreachable {}

/// A call the control plane answered with an error status.
#[derive(Debug)]
pub struct Failed {
    pub addr: String,
    pub status: Status,
}

impl fmt::Display for Failed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(&self.status, &self.addr))
    }
}

impl std::error::Error for Failed {}

/// Attaches the address to a status, so it can be told with hints.
pub fn attach_addr(error: anyhow::Error, addr: &str) -> anyhow::Error {
    match error.downcast::<Status>() {
        Ok(status) => Failed {
            addr: addr.to_owned(),
            status,
        }
        .into(),
        Err(other) => other,
    }
}

/// The text printed for any error of an admin subcommand (after `error: `).
pub fn render(error: &anyhow::Error) -> String {
    if let Some(failed) = error.downcast_ref::<Failed>() {
        return failed.to_string();
    }
    if let Some(status) = error.downcast_ref::<Status>() {
        return describe(status, "the control plane");
    }
    format!("{error:#}")
}

/// The canonical name of a code, as in the gRPC spec: `INVALID_ARGUMENT`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn describe(status: &Status, addr: &str) -> String {
    let details = status.get_error_details();
    let mut out = String::new();
    let code = code_name(status.code());
    let message = status.message().trim();

    let violations = details
        .bad_request()
        .map(|b| b.field_violations.as_slice())
        .unwrap_or_default();
    let lockout = details
        .error_info()
        .is_some_and(|info| info.reason == LOCKOUT_RISK);
    if lockout {
        describe_lockout(&mut out, code, message, &details);
    } else if violations.is_empty() {
        let _ = write!(out, "{code}: {message}");
        describe_other_details(&mut out, &details);
    } else {
        let n = violations.len();
        let noun = if n == 1 { "field" } else { "fields" };
        let _ = write!(out, "{code}: {n} invalid {noun}");
        for v in violations {
            let _ = write!(out, "\n  {}: {}", v.field, v.description);
        }
    }
    if let Some(hint) = hint(status.code(), &redact::url(addr), lockout) {
        let _ = write!(out, "\n{hint}");
    }
    out
}

/// The addresses a refused write would have locked out: one
/// `PreconditionFailure` violation per address (subject: the address), and
/// the total in the `ErrorInfo` metadata. Without those, the server's message.
fn describe_lockout(out: &mut String, code: &str, message: &str, details: &ErrorDetails) {
    let callers = details
        .precondition_failure()
        .map(|pf| pf.violations.as_slice())
        .unwrap_or_default();
    if callers.is_empty() {
        let _ = write!(out, "{code}: {LOCKOUT_RISK}: {message}");
        return;
    }
    let total = details
        .error_info()
        .and_then(|info| info.metadata.get("total"))
        .and_then(|t| t.parse::<usize>().ok())
        .unwrap_or(callers.len())
        .max(callers.len());
    let noun = if total == 1 { "address" } else { "addresses" };
    let _ = write!(
        out,
        "{code}: {LOCKOUT_RISK}: this change would start blocking {total} {noun} that made allowed requests in the last 24 hours; nothing was stored"
    );
    for v in callers {
        // The description names the address itself; fall back to the subject.
        if v.description.starts_with(&v.subject) {
            let _ = write!(out, "\n  {}", v.description);
        } else if v.description.is_empty() {
            let _ = write!(out, "\n  {}", v.subject);
        } else {
            let _ = write!(out, "\n  {}: {}", v.subject, v.description);
        }
    }
    if total > callers.len() {
        let _ = write!(out, "\n  … and {} more", total - callers.len());
    }
}

fn describe_other_details(out: &mut String, details: &ErrorDetails) {
    if let Some(info) = details.error_info() {
        let _ = write!(out, "\nreason: {}", info.reason);
        let mut metadata: Vec<_> = info.metadata.iter().collect();
        metadata.sort();
        for (key, value) in metadata {
            let _ = write!(out, "\n  {key}: {value}");
        }
    }
    if let Some(pf) = details.precondition_failure() {
        for v in &pf.violations {
            let _ = write!(out, "\n  {} {}: {}", v.r#type, v.subject, v.description);
        }
    }
    if let Some(resource) = details.resource_info() {
        let _ = write!(
            out,
            "\n  {} {}: {}",
            resource.resource_type, resource.resource_name, resource.description
        );
    }
    if let Some(localized) = details.localized_message() {
        let _ = write!(out, "\n{}", localized.message);
    }
    if let Some(help) = details.help() {
        for link in &help.links {
            let _ = write!(out, "\nsee {}: {}", link.description, link.url);
        }
    }
}

/// What the operator can do about a code.
fn hint(code: Code, addr: &str, lockout: bool) -> Option<String> {
    Some(match code {
        Code::FailedPrecondition if lockout => "Preview the change with --dry-run; to store it anyway, \
             repeat it with --acknowledge-lockout-risk."
            .to_owned(),
        Code::Unauthenticated => "Check the admin token: --token or IPGATE_TOKEN \
             (with `ipgate dev`: export IPGATE_TOKEN=$(cat .ipgate/admin-token))."
            .to_owned(),
        Code::PermissionDenied => {
            "This token's role does not allow this call (viewer reads; editor also writes; owner also manages tokens).".to_owned()
        }
        Code::Aborted => "The object changed since its etag was read: read it again and retry with the new --etag \
             (or without --etag to write unconditionally)."
            .to_owned(),
        Code::Unavailable => format!(
            "The control plane at {addr} is not answering. Is it running? Point --addr (or IPGATE_ADDR) at its gRPC address."
        ),
        Code::Unimplemented => format!(
            "The control plane at {addr} does not implement this call; it may be older than this ipgate."
        ),
        _ => return None,
    })
}

fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    text
}
