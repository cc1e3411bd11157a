//! `ipgate logs`: read the usage log a page at a time, or export it as CSV.
//!
//! `logs export` streams the server's CSV chunks as they arrive: to the file
//! given with `-o` (then a one-line summary goes to stderr), or else to
//! stdout. With `--json` and no `-o`, each chunk is printed as one JSON
//! object per line (`{"csv": "…"}`), as grpcurl prints a server stream.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context;
use clap::{Args, Subcommand};
use ipgate_shared::proto::admin::v1::{
    DroppedRequests, ExportUsageLogsChunk, ExportUsageLogsRequest, QueryUsageLogsRequest,
    QueryUsageLogsResponse, UsageLogEntry,
};
use prost_types::Timestamp;

use super::{
    Admin, Output,
    apis::print_next_page,
    output::{or_dash, print_table, table, time, to_json},
    time::parse_time_or_ago,
};

/// Filters shared by `query` and `export`; each left out matches anything.
#[derive(Args, Debug, Clone)]
pub struct Filters {
    /// Only requests to this API (slug).
    #[arg(long, default_value = "", hide_default_value = true)]
    api: String,
    /// Only requests that presented this key (id).
    #[arg(long, default_value = "", hide_default_value = true)]
    key: String,
    /// Only requests with this HTTP method.
    #[arg(long, default_value = "", hide_default_value = true)]
    method: String,
    /// Only requests answered with this HTTP status code (0: any).
    #[arg(long, default_value_t = 0)]
    status: u32,
    /// Only requests with this reason (IP_NOT_ALLOWED_KEY, INVALID_API_KEY, …), or ALLOWED_ANY / BLOCKED_ANY.
    #[arg(long, default_value = "", hide_default_value = true)]
    reason: String,
    /// Only requests from this address or CIDR range.
    #[arg(long, default_value = "", hide_default_value = true)]
    ip: String,
    /// Only requests that came through this door of the enforcer: proxy, ext_authz, auth_request or check (or unknown: events whose enforcer did not say).
    #[arg(long, default_value = "", hide_default_value = true)]
    door: String,
    /// Only requests whose client address was found here: peer, x-forwarded-for, forwarded, client-ip-header, named (the check door's caller), or a trusted proxy's header that could not be followed: unknown-hop, malformed, conflicting, too-many-hops, too-few-hops (or unknown: events whose enforcer did not say).
    #[arg(long, default_value = "", hide_default_value = true)]
    ip_source: String,
    /// Only requests this enforcer reported (its --enforcer-id), and only its gaps.
    #[arg(long, default_value = "", hide_default_value = true)]
    enforcer: String,
    /// Only requests (request) or only gaps: requests an enforcer dropped (dropped).
    #[arg(long, default_value = "", hide_default_value = true)]
    kind: String,
    /// From this time on: a duration ago (`24h`, `7d`) or an RFC 3339 time.
    #[arg(long, value_parser = parse_time_or_ago)]
    since: Option<Timestamp>,
    /// Before this time: a duration ago (`1h`) or an RFC 3339 time.
    #[arg(long, value_parser = parse_time_or_ago)]
    until: Option<Timestamp>,
}

/// `ipgate logs …`
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show decided requests, newest first, one page at a time.
    Query {
        #[command(flatten)]
        filters: Filters,
        /// Most rows per page (1-1000; 0 means the server's default, 100).
        #[arg(long, default_value_t = 0)]
        limit: u32,
        /// Continue from a previous page (the token printed under it).
        #[arg(long, default_value = "", hide_default_value = true)]
        page_token: String,
    },
    /// Export decided requests as CSV (RFC 4180, header row), newest first.
    ///
    /// The CSV streams as it arrives: to the file given with `-o` (a one-line
    /// summary then goes to stderr), or else to stdout. With `--json` and no
    /// `-o`, each chunk is one JSON object per line (`{"csv": "…"}`), as
    /// grpcurl prints the stream; `jq -j .csv` joins them back into the file.
    Export {
        #[command(flatten)]
        filters: Filters,
        /// Write the CSV to this file instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

/// Runs one `logs` subcommand.
pub async fn run(mut client: Admin, out: Output, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Query {
            filters: f,
            limit,
            page_token,
        } => {
            let response = client
                .query_usage_logs(QueryUsageLogsRequest {
                    api: f.api,
                    api_key_id: f.key,
                    method: f.method,
                    status_code: f.status,
                    page_size: limit,
                    page_token,
                    reason: f.reason,
                    client_ip: f.ip,
                    start_time: f.since,
                    end_time: f.until,
                    door: f.door,
                    client_ip_source: f.ip_source,
                    enforcer_id: f.enforcer,
                    kind: f.kind,
                })
                .await?
                .into_inner();
            out.print(&response, print_entries)
        }
        Command::Export { filters: f, output } => {
            let request = ExportUsageLogsRequest {
                api: f.api,
                api_key_id: f.key,
                method: f.method,
                status_code: f.status,
                reason: f.reason,
                client_ip: f.ip,
                start_time: f.since,
                end_time: f.until,
                door: f.door,
                client_ip_source: f.ip_source,
                enforcer_id: f.enforcer,
                kind: f.kind,
            };
            let stream = client.export_usage_logs(request).await?.into_inner();
            export(stream, output.as_deref(), out).await
        }
    }
}

async fn export(
    stream: tonic::Streaming<ExportUsageLogsChunk>,
    path: Option<&Path>,
    out: Output,
) -> anyhow::Result<()> {
    let Some(path) = path else {
        let mut stdout = std::io::stdout().lock();
        return copy(stream, &mut stdout, out.json).await.map(|_| ());
    };
    // Written beside the target and renamed at the end, so a failed export
    // never leaves a truncated file under the name asked for.
    let partial = partial_path(path);
    let file = std::fs::File::create(&partial).with_context(|| {
        format!(
            "cannot write {} (creating {} failed)",
            path.display(),
            partial.display()
        )
    })?;
    let mut sink = std::io::BufWriter::new(file);
    let copied = copy(stream, &mut sink, false).await;
    let finished = copied.and_then(|rows| {
        sink.flush()?;
        std::fs::rename(&partial, path).with_context(|| {
            format!("cannot rename {} to {}", partial.display(), path.display())
        })?;
        Ok(rows)
    });
    match finished {
        Ok(rows) => {
            let n = rows.saturating_sub(1);
            let noun = if n == 1 { "row" } else { "rows" };
            eprintln!("Exported {n} {noun} to {}.", path.display());
            Ok(())
        }
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            Err(e.context(format!(
                "the export to {} did not finish; no file was written",
                path.display()
            )))
        }
    }
}

/// Writes every chunk to `sink` (as JSON lines with `json`); returns the
/// CSV records seen, the header row included.
async fn copy(
    mut stream: tonic::Streaming<ExportUsageLogsChunk>,
    sink: &mut impl std::io::Write,
    json: bool,
) -> anyhow::Result<usize> {
    let mut rows = RowCounter::default();
    while let Some(chunk) = stream.message().await? {
        if json {
            writeln!(sink, "{}", to_json(&chunk, false)?)?;
        } else {
            sink.write_all(chunk.csv.as_bytes())?;
        }
        rows.feed(&chunk.csv);
    }
    sink.flush()?;
    Ok(rows.rows)
}

/// `dir/blocked.csv` -> `dir/.blocked.csv.partial`.
fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "export".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.partial"))
}

/// Counts CSV records (RFC 4180: line ends inside quotes do not end a record).
#[derive(Default)]
struct RowCounter {
    rows: usize,
    quoted: bool,
}

impl RowCounter {
    fn feed(&mut self, text: &str) {
        for b in text.bytes() {
            match b {
                b'"' => self.quoted = !self.quoted,
                b'\n' if !self.quoted => self.rows += 1,
                _ => {}
            }
        }
    }
}

fn print_entries(r: &QueryUsageLogsResponse) {
    if r.entries.is_empty() {
        println!("No requests match.");
        return;
    }
    // The table is wide already, and most addresses are simply the peer's
    // or the caller's: the column shows only when some row's source says
    // more (a header followed, or one that could not be).
    let sources = r
        .entries
        .iter()
        .any(|e| source_worth_showing(&e.client_ip_source));
    let mut header = vec![
        "TIME",
        "API",
        "KEY",
        "METHOD",
        "PATH",
        "STATUS",
        "CLIENT IP",
    ];
    if sources {
        header.push("IP SOURCE");
    }
    header.extend(["REASON", "MATCHED", "DOOR", "REQUEST ID"]);
    let mut t = table(header);
    for e in &r.entries {
        if let Some(d) = &e.dropped {
            t.add_row(gap_row(e, d, sources));
            continue;
        }
        let mut row = vec![
            time(e.time.as_ref()),
            e.api.clone(),
            or_dash(&e.api_key_id),
            e.method.clone(),
            e.path.clone(),
            e.status_code.to_string(),
            e.client_ip.clone(),
        ];
        if sources {
            row.push(e.client_ip_source.clone());
        }
        row.extend([
            e.reason.clone(),
            or_dash(&e.matched_label),
            e.door.clone(),
            e.request_id.clone(),
        ]);
        t.add_row(row);
    }
    print_table(t);
    print_next_page(&r.next_page_token);
}

/// A gap as a table row: its counts and span where the path goes, the
/// reason column saying DROPPED.
fn gap_row(e: &UsageLogEntry, d: &DroppedRequests, sources: bool) -> Vec<String> {
    let what = format!(
        "{} allowed + {} blocked requests dropped by enforcer {} until {}",
        d.allowed,
        d.blocked,
        e.enforcer_id,
        time(d.last_time.as_ref())
    );
    let dash = || "-".to_owned();
    let mut row = vec![
        time(e.time.as_ref()),
        dash(),
        dash(),
        dash(),
        what,
        dash(),
        dash(),
    ];
    if sources {
        row.push(dash());
    }
    row.extend(["DROPPED".to_owned(), dash(), dash(), dash()]);
    row
}

/// Whether a client-address source tells a reader anything: `peer` and
/// `named` are where a door finds an address without any forwarding header,
/// and `unknown` says nothing; a header followed, or one that could not be,
/// is worth a column.
fn source_worth_showing(source: &str) -> bool {
    !matches!(source, "peer" | "named" | "unknown" | "")
}

#[cfg(test)]
mod tests {
    use ipgate_shared::proto::admin::v1::{DroppedRequests, UsageLogEntry};

    use super::{RowCounter, gap_row, source_worth_showing};

    #[test]
    fn a_gap_row_says_what_was_dropped_where_the_path_goes() {
        let at = |seconds| prost_types::Timestamp { seconds, nanos: 0 };
        let entry = UsageLogEntry {
            time: Some(at(1_800_000_000)),
            enforcer_id: "web-1".into(),
            kind: "dropped".into(),
            ..Default::default()
        };
        let dropped = DroppedRequests {
            first_time: Some(at(1_800_000_000)),
            last_time: Some(at(1_800_000_060)),
            allowed: 7,
            blocked: 3,
        };
        let row = gap_row(&entry, &dropped, false);
        assert_eq!(row.len(), 11, "as wide as a request row");
        assert_eq!(row[0], "2027-01-15T08:00:00Z");
        assert_eq!(
            row[4],
            "7 allowed + 3 blocked requests dropped by enforcer web-1 until 2027-01-15T08:01:00Z"
        );
        assert_eq!(row[7], "DROPPED");
        assert_eq!(gap_row(&entry, &dropped, true).len(), 12);
    }

    #[test]
    fn only_sources_that_say_something_earn_a_column() {
        for plain in ["peer", "named", "unknown", ""] {
            assert!(!source_worth_showing(plain), "{plain}");
        }
        for telling in [
            "x-forwarded-for",
            "malformed",
            "unknown-hop",
            "too-few-hops",
        ] {
            assert!(source_worth_showing(telling), "{telling}");
        }
    }

    #[test]
    fn quoted_line_ends_do_not_count() {
        let mut c = RowCounter::default();
        c.feed("a,b\n\"x\ny\",\"");
        c.feed("q\"\"\"\n1,2\n");
        assert_eq!(c.rows, 3);
    }
}
