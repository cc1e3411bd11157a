//! A fault hook for the fault-injection tests, compiled only with the
//! `fault-injection` cargo feature (never in a release build):
//! `IPGATE_FAULT_CORRUPT_REVISION=N` makes every update at revision N fail
//! validation when it arrives, as a poison update would.

use std::sync::OnceLock;

use ipgate_shared::proto::sync::v1::{self as wire, StreamResponse, change, stream_response::Kind};

/// The revision to corrupt, read once from the environment.
fn target() -> Option<u64> {
    static TARGET: OnceLock<Option<u64>> = OnceLock::new();
    *TARGET.get_or_init(|| {
        std::env::var("IPGATE_FAULT_CORRUPT_REVISION")
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

/// Says loudly that the hook is armed, so that a test (or anyone who
/// finds this build where it should not be) can see it in the log.
pub(super) fn announce() {
    if let Some(revision) = target() {
        tracing::warn!(
            revision,
            "fault hook armed: every update at this revision will be refused"
        );
    }
}

/// An API whose allowlist entry is not canonical: it fails validation.
fn poison() -> wire::ApiConfig {
    wire::ApiConfig {
        slug: "poisoned".into(),
        enabled: true,
        allowlist: Some(wire::Allowlist {
            entries: vec![wire::Entry {
                cidr: "203.0.113.5/24".into(),
                label: "fault hook".into(),
                expires_at: None,
            }],
            report_only: false,
        }),
        routes: vec![],
    }
}

/// `message`, corrupted when it carries the target revision.
pub(super) fn corrupt(mut message: StreamResponse) -> StreamResponse {
    let Some(target) = target() else {
        return message;
    };
    match &mut message.kind {
        Some(Kind::Delta(delta)) if delta.revision == target => {
            delta.changes.push(wire::Change {
                kind: Some(change::Kind::PutApi(poison())),
            });
        }
        Some(Kind::Snapshot(chunk)) if chunk.revision == target => chunk.apis.push(poison()),
        _ => {}
    }
    message
}
