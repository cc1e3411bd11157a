//! Rendering answers: canonical proto3 JSON for scripts (`--json`, the same
//! JSON grpcurl prints), and for people, tables and short detail blocks.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use anyhow::Context;
use comfy_table::{Table, presets};
use ipgate_shared::proto::{FILE_DESCRIPTOR_SET, admin::v1};
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

/// A response message of the admin API, known by its full protobuf name.
pub trait Proto: prost::Message + Sized {
    /// Full protobuf name, e.g. `ipgate.admin.v1.Api`.
    const NAME: &'static str;
}

macro_rules! admin_messages {
    ($($message:ident),* $(,)?) => {
        $(impl Proto for v1::$message {
            const NAME: &'static str = concat!("ipgate.admin.v1.", stringify!($message));
        })*
    };
}

admin_messages!(
    CreateTenantResponse,
    ListTenantsResponse,
    CreateTokenResponse,
    ListTokensResponse,
    Token,
    Api,
    ListApisResponse,
    DeleteApiResponse,
    ApiAllowlistResponse,
    CreateApiKeyResponse,
    ApiKey,
    ListApiKeysResponse,
    RotateApiKeyResponse,
    ApiKeyAllowlistResponse,
    TestAccessResponse,
    QueryUsageLogsResponse,
    ExportUsageLogsChunk,
    ListAuditEventsResponse,
    RevisionStatus,
    Allowlist,
    ListEnforcersResponse,
);

/// Where and how answers are printed, and how long a write waits for
/// its propagation (`--wait`).
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// Print canonical JSON instead of tables.
    pub json: bool,
    /// `--wait`: how long a write waits until every enforcer has it.
    pub wait: Option<Duration>,
}

impl Output {
    /// Output in JSON (`--json`) or for people.
    pub fn new(json: bool, wait: Option<Duration>) -> Self {
        Output { json, wait }
    }

    /// What a write request says about waiting (`--wait`).
    pub fn wait_for_propagation(&self) -> Option<v1::WaitForPropagation> {
        self.wait.map(|w| v1::WaitForPropagation {
            deadline: prost_types::Duration::try_from(w).ok(),
        })
    }

    /// After a write printed its result: says where its propagation stands,
    /// and fails when it was not live everywhere by the deadline.
    pub fn receipt(&self, propagation: Option<&v1::Propagation>) -> anyhow::Result<()> {
        let Some(p) = propagation else {
            return Ok(());
        };
        if p.live {
            if !self.json {
                println!(
                    "Live on every enforcer ({} of {}) at revision {}.",
                    p.enforcers_acked, p.enforcers_expected, p.revision
                );
            }
            return Ok(());
        }
        let mut behind: Vec<String> = p
            .lagging
            .iter()
            .map(|e| format!("{} (at revision {})", e.id, e.acked_revision))
            .collect();
        behind.extend(p.nacked.iter().map(|e| {
            let reason = e.last_nack.as_ref().map_or("", |n| n.reason.as_str());
            format!("{} (refused it: {reason})", e.id)
        }));
        if p.enforcers_expected == 0 {
            anyhow::bail!(
                "committed at revision {}, but no enforcer is connected to take it",
                p.revision
            );
        }
        anyhow::bail!(
            "committed at revision {}, but not live by the deadline: {} of {} enforcers have it; not yet: {}",
            p.revision,
            p.enforcers_acked,
            p.enforcers_expected,
            behind.join(", ")
        )
    }

    /// Prints `message` as JSON when `--json` was given, or else runs `human`.
    pub fn print<M: Proto>(&self, message: &M, human: impl FnOnce(&M)) -> anyhow::Result<()> {
        if self.json {
            println!("{}", to_json(message, true)?);
        } else {
            human(message);
        }
        Ok(())
    }
}

fn pool() -> anyhow::Result<&'static DescriptorPool> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("the built-in protobuf descriptors do not load: {e}"))
}

/// `message` as canonical proto3 JSON: lowerCamelCase names, enums by name,
/// 64-bit integers as strings, timestamps in RFC 3339, default values left
/// out — what grpcurl prints.
pub fn to_json<M: Proto>(message: &M, pretty: bool) -> anyhow::Result<String> {
    let descriptor = pool()?
        .get_message_by_name(M::NAME)
        .with_context(|| format!("no descriptor for {}", M::NAME))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .with_context(|| format!("cannot re-read a {}", M::NAME))?;
    let options = SerializeOptions::new();
    let mut out = Vec::new();
    if pretty {
        let mut ser = serde_json::Serializer::pretty(&mut out);
        dynamic.serialize_with_options(&mut ser, &options)?;
    } else {
        let mut ser = serde_json::Serializer::new(&mut out);
        dynamic.serialize_with_options(&mut ser, &options)?;
    }
    Ok(String::from_utf8(out)?)
}

/// Reads canonical proto3 JSON (what `--json` prints) into a message.
pub fn from_json<M: Proto + Default>(json: &str) -> anyhow::Result<M> {
    let descriptor = pool()?
        .get_message_by_name(M::NAME)
        .with_context(|| format!("no descriptor for {}", M::NAME))?;
    let mut de = serde_json::Deserializer::from_str(json);
    let dynamic = DynamicMessage::deserialize(descriptor, &mut de)?;
    de.end()?;
    Ok(dynamic.transcode_to::<M>()?)
}

// === tables ===

/// A borderless table with upper-case headers, columns two spaces apart.
pub fn table<'a>(header: impl IntoIterator<Item = &'a str>) -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table.set_header(header.into_iter().collect::<Vec<_>>());
    table
}

/// A two-column "Field: value" block, for one object.
pub fn details() -> Table {
    let mut table = Table::new();
    table.load_style(presets::NOTHING);
    table
}

/// Prints a table without padding at the left edge or trailing spaces.
pub fn print_table(mut table: Table) {
    let columns = table.column_count();
    for (i, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, if i + 1 == columns { 0 } else { 2 }));
    }
    println!("{}", table.trim_fmt());
}

// === values ===

/// A timestamp in RFC 3339 (UTC, seconds), or `-` when unset.
pub fn time(t: Option<&prost_types::Timestamp>) -> String {
    match t.and_then(|t| SystemTime::try_from(*t).ok()) {
        Some(t) => humantime::format_rfc3339_seconds(t).to_string(),
        None => "-".to_owned(),
    }
}

/// A timestamp with how far it is from now: `2026-01-02T10:00:00Z (in 2h)`.
pub fn time_relative(t: Option<&prost_types::Timestamp>) -> String {
    let Some(at) = t.and_then(|t| SystemTime::try_from(*t).ok()) else {
        return "-".to_owned();
    };
    let now = SystemTime::now();
    let relative = match at.duration_since(now) {
        Ok(ahead) => format!("in {}", coarse(ahead)),
        Err(behind) => format!("{} ago", coarse(behind.duration())),
    };
    format!("{} ({relative})", humantime::format_rfc3339_seconds(at))
}

/// A duration to the minute, in at most two units: `45s`, `5m`, `1h 30m`, `3d 2h`.
fn coarse(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    if s < 60 {
        return format!("{s}s");
    }
    let m = (s + 30) / 60;
    let (days, hours, minutes) = (m / 1440, m / 60 % 24, m % 60);
    match (days, hours, minutes) {
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// `text`, or `-` when empty.
pub fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

/// Prints a secret that the control plane shows only once.
pub fn print_secret(what: &str, secret: &str) {
    println!();
    println!("  {secret}");
    println!();
    println!(
        "This {what} is shown only now: the control plane keeps only its hash. Store it somewhere safe."
    );
}

/// Says a write was only checked.
pub fn print_dry_run() {
    println!("Dry run: the request is valid; nothing was stored and the revision did not move.");
}

// === allowlists, shared by APIs and keys ===

/// Prints an allowlist's mode and entries.
pub fn print_allowlist(list: Option<&v1::Allowlist>) {
    let empty = v1::Allowlist::default();
    let list = list.unwrap_or(&empty);
    if list.entries.is_empty() {
        println!("Allowlist: empty (every address may pass)");
        return;
    }
    let mode = if list.report_only {
        "report-only: evaluated and logged as WOULD_BLOCK_IP, nothing blocked"
    } else {
        "enforced"
    };
    let n = list.entries.len();
    let noun = if n == 1 { "entry" } else { "entries" };
    println!("Allowlist: {n} {noun}, {mode}");
    let mut t = table(["CIDR", "LABEL", "EXPIRES", "ADDED", "ADDED BY"]);
    for e in &list.entries {
        t.add_row([
            e.cidr.clone(),
            or_dash(&e.label),
            if e.expires_at.is_some() {
                time_relative(e.expires_at.as_ref())
            } else {
                "never".to_owned()
            },
            time(e.created_at.as_ref()),
            or_dash(&e.created_by),
        ]);
    }
    print_table(t);
}

/// A one-cell summary of an allowlist for list tables.
pub fn allowlist_summary(list: Option<&v1::Allowlist>) -> String {
    match list {
        None => "-".to_owned(),
        Some(l) if l.entries.is_empty() => "-".to_owned(),
        Some(l) => {
            let n = l.entries.len();
            let noun = if n == 1 { "entry" } else { "entries" };
            if l.report_only {
                format!("{n} {noun} (report-only)")
            } else {
                format!("{n} {noun}")
            }
        }
    }
}

/// Prints who an allowlist change would start blocking, if anyone.
pub fn print_lockout(preview: Option<&v1::LockoutPreview>) {
    let Some(p) = preview.filter(|p| p.total_callers > 0 || !p.callers.is_empty()) else {
        println!("Lockout check: no caller seen in the last 24 h would be blocked.");
        return;
    };
    let total = p.total_callers.max(p.callers.len() as u32);
    let noun = if total == 1 { "address" } else { "addresses" };
    println!(
        "Lockout risk: {total} {noun} seen since {} would start being blocked:",
        time(p.since.as_ref())
    );
    print_callers(&p.callers);
    if (total as usize) > p.callers.len() {
        println!("… and {} more.", total as usize - p.callers.len());
    }
}

/// Prints callers at risk of being locked out.
pub fn print_callers(callers: &[v1::LockedOutCaller]) {
    let mut t = table(["CLIENT IP", "REQUESTS", "LAST SEEN"]);
    for c in callers {
        t.add_row([
            c.client_ip.clone(),
            c.requests.to_string(),
            time_relative(c.last_seen.as_ref()),
        ]);
    }
    print_table(t);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::coarse;

    #[test]
    fn durations_read_to_the_minute() {
        let cases = [
            (12, "12s"),
            (90, "2m"),
            (5400, "1h 30m"),
            (7200, "2h"),
            (30 * 86_400 - 1, "30d"),
            (3 * 86_400 + 7500, "3d 2h"),
        ];
        for (secs, text) in cases {
            assert_eq!(coarse(Duration::from_secs(secs)), text, "{secs}s");
        }
    }
}
