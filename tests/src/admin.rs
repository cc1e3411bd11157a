//! Small builders and checks for admin API calls, shared by the topology
//! tests: allowlists from CIDR strings, write options, status codes.

use std::{fmt::Debug, net::IpAddr, time::SystemTime};

use ipgate_shared::proto::admin::v1::{
    Allowlist, AllowlistEntry, AllowlistWriteOptions, ExportUsageLogsRequest,
    GetRevisionStatusRequest,
};
use tonic::{Code, Status};

use crate::process::AdminClient;

/// An address from text.
pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

/// A list of unlabelled, permanent entries.
pub fn entries(cidrs: &[&str]) -> Option<Allowlist> {
    Some(Allowlist {
        entries: cidrs.iter().map(|c| entry(c, "")).collect(),
        report_only: false,
    })
}

/// One entry with a label.
pub fn entry(cidr: &str, label: &str) -> AllowlistEntry {
    AllowlistEntry {
        cidr: cidr.to_owned(),
        label: label.to_owned(),
        ..Default::default()
    }
}

/// One entry that stops matching at `expires_at`.
pub fn expiring(cidr: &str, label: &str, expires_at: SystemTime) -> AllowlistEntry {
    AllowlistEntry {
        expires_at: Some(timestamp(expires_at)),
        ..entry(cidr, label)
    }
}

/// Write options that store even when active callers would be blocked:
/// for tests that block callers on purpose and are not about lockout.
pub fn ack() -> Option<AllowlistWriteOptions> {
    Some(AllowlistWriteOptions {
        validate_only: false,
        acknowledge_lockout_risk: true,
    })
}

/// Write options for a dry run.
pub fn dry_run() -> Option<AllowlistWriteOptions> {
    Some(AllowlistWriteOptions {
        validate_only: true,
        acknowledge_lockout_risk: false,
    })
}

/// The CIDRs of a list as stored, in order.
pub fn cidrs(list: Option<&Allowlist>) -> Vec<String> {
    list.map(|l| l.entries.iter().map(|e| e.cidr.clone()).collect())
        .unwrap_or_default()
}

/// A protobuf timestamp.
pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    ipgate_shared::time::to_timestamp(t)
}

/// The control plane's current revision.
pub async fn current_revision(admin: &mut AdminClient) -> u64 {
    admin
        .get_revision_status(GetRevisionStatusRequest::default())
        .await
        .expect("revision status")
        .into_inner()
        .current_revision
}

/// Asserts a call failed with `code`; returns the status.
#[track_caller]
pub fn expect_code<T: Debug>(
    result: Result<tonic::Response<T>, Status>,
    code: Code,
    what: &str,
) -> Status {
    match result {
        Ok(response) => panic!(
            "{what}: expected {code:?}, got an answer: {:?}",
            response.get_ref()
        ),
        Err(status) => {
            assert_eq!(status.code(), code, "{what}: {status:?}");
            status
        }
    }
}

/// `ExportUsageLogs` read to the end: the whole CSV, or the first error
/// (whether it came when the stream opened or in it).
pub async fn export_csv(
    admin: &mut AdminClient,
    request: ExportUsageLogsRequest,
) -> Result<String, Status> {
    let mut stream = admin.export_usage_logs(request).await?.into_inner();
    let mut csv = String::new();
    while let Some(chunk) = stream.message().await? {
        csv.push_str(&chunk.csv);
    }
    Ok(csv)
}
