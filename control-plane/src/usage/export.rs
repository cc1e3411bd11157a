//! `ExportUsageLogs`: the usage log as CSV (RFC 4180: quoted by the `csv`
//! crate, CRLF line ends, a header row), newest first, streamed in chunks
//! that end at row ends.
//!
//! Memory stays bounded whatever the size of the log: rows are read by
//! keyset pagination a page at a time, a chunk is sent once it passes
//! [`CHUNK_BYTES`], and the channel to the client holds a few chunks, so a
//! slow reader holds the reading back instead of filling memory.

use std::{pin::Pin, sync::Arc};

use ipgate_shared::{proto::admin::v1 as admin, time};
use tokio::sync::mpsc;
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::Status;

use super::query::{KIND_DROPPED, KIND_REQUEST};
use crate::{
    status::status,
    store::{DroppedRecord, Store, TenantId, UsageCursor, UsageFilter, UsageRecord},
};

/// Rows read from the database per query.
pub const PAGE_ROWS: u32 = 5000;
/// A chunk is sent once it holds at least this many bytes (and ends at a row end).
pub const CHUNK_BYTES: usize = 128 * 1024;
/// Chunks waiting for the client before reading pauses.
pub const CHANNEL_CHUNKS: usize = 4;
/// The header row's columns; each one added later (`door`, then
/// `client_ip_source`, then the gap columns from `kind` on) came last, so
/// columns read by position before it stay where they were.
///
/// `kind` is `request` for a decided request and `dropped` for a gap: a
/// row saying enforcer `enforcer_id` dropped `dropped_allowed` allowed and
/// `dropped_blocked` blocked requests between `time` and `dropped_until`.
/// A gap leaves the request columns empty; a request leaves the gap
/// columns empty.
pub const COLUMNS: [&str; 17] = [
    "time",
    "request_id",
    "api",
    "api_key_id",
    "method",
    "path",
    "status_code",
    "client_ip",
    "reason",
    "matched_label",
    "enforcer_id",
    "door",
    "client_ip_source",
    "kind",
    "dropped_allowed",
    "dropped_blocked",
    "dropped_until",
];

/// The stream of chunks a client reads.
pub type ChunkStream =
    Pin<Box<dyn Stream<Item = Result<admin::ExportUsageLogsChunk, Status>> + Send>>;

/// Starts exporting `tenant`'s usage log matching `filter`.
pub fn start(store: Arc<Store>, tenant: TenantId, filter: UsageFilter) -> ChunkStream {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    tokio::spawn(async move {
        if let Err(error) = export(&store, tenant, &filter, &tx).await {
            // The client may be gone already; then nobody needs the status.
            let _ = tx.send(Err(error)).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

type Sender = mpsc::Sender<Result<admin::ExportUsageLogsChunk, Status>>;

async fn export(
    store: &Store,
    tenant: TenantId,
    filter: &UsageFilter,
    tx: &Sender,
) -> Result<(), Status> {
    let mut chunk = Chunk::new();
    chunk.row(COLUMNS)?;
    let mut cursor: Option<UsageCursor> = None;
    let mut rows_sent = 0u64;
    loop {
        let rows = store
            .query_usage(tenant, filter, cursor, PAGE_ROWS)
            .await
            .map_err(|e| status(e.into()))?;
        let Some(last) = rows.last() else { break };
        cursor = Some(UsageCursor {
            time_ms: last.time_ms,
            id: last.id,
        });
        let full_page = rows.len() == PAGE_ROWS as usize;
        for row in &rows {
            chunk.record(row)?;
            if chunk.len() >= CHUNK_BYTES && !send(tx, &mut chunk).await? {
                return Ok(());
            }
        }
        rows_sent += rows.len() as u64;
        if !full_page {
            break;
        }
    }
    send(tx, &mut chunk).await?;
    tracing::debug!(rows = rows_sent, "usage log exported");
    Ok(())
}

/// Sends what the chunk holds; false when the client has gone.
async fn send(tx: &Sender, chunk: &mut Chunk) -> Result<bool, Status> {
    let csv = chunk.take()?;
    if csv.is_empty() {
        return Ok(true);
    }
    Ok(tx
        .send(Ok(admin::ExportUsageLogsChunk { csv }))
        .await
        .is_ok())
}

/// CSV text being gathered for one chunk.
struct Chunk {
    writer: csv::Writer<Vec<u8>>,
}

impl Chunk {
    fn new() -> Self {
        Chunk {
            writer: csv::WriterBuilder::new()
                .terminator(csv::Terminator::CRLF)
                .from_writer(Vec::with_capacity(CHUNK_BYTES + 8 * 1024)),
        }
    }

    /// Bytes gathered so far (give or take the writer's small buffer).
    fn len(&self) -> usize {
        self.writer.get_ref().len()
    }

    fn row<'a>(&mut self, cells: impl IntoIterator<Item = &'a str>) -> Result<(), Status> {
        let cells: Vec<String> = cells.into_iter().map(neutralise).collect();
        self.writer.write_record(&cells).map_err(csv_failed)
    }

    fn record(&mut self, row: &UsageRecord) -> Result<(), Status> {
        let UsageRecord {
            id: _,
            request_id,
            time_ms,
            api,
            api_key_id,
            method,
            path,
            status,
            client_ip,
            reason,
            matched_label,
            enforcer_id,
            door,
            client_ip_source,
            dropped,
        } = row;
        let at = |ms| humantime::format_rfc3339_millis(time::from_millis(ms)).to_string();
        let time = at(*time_ms);
        let (kind, status, allowed, blocked, until) = match dropped {
            None => (
                KIND_REQUEST,
                status.to_string(),
                String::new(),
                String::new(),
                String::new(),
            ),
            Some(DroppedRecord {
                allowed,
                blocked,
                last_ms,
            }) => (
                KIND_DROPPED,
                String::new(),
                allowed.to_string(),
                blocked.to_string(),
                at(*last_ms),
            ),
        };
        self.row([
            time.as_str(),
            request_id,
            api,
            api_key_id,
            method,
            path,
            status.as_str(),
            client_ip,
            reason,
            matched_label,
            enforcer_id,
            door,
            client_ip_source,
            kind,
            allowed.as_str(),
            blocked.as_str(),
            until.as_str(),
        ])
    }

    /// The text gathered, ending at a row end; the chunk starts over empty.
    fn take(&mut self) -> Result<String, Status> {
        let full = std::mem::replace(self, Chunk::new());
        let bytes = full
            .writer
            .into_inner()
            .map_err(|e| csv_failed(e.into_error()))?;
        // Every cell came from a Rust string: the bytes are UTF-8.
        String::from_utf8(bytes).map_err(|_| Status::internal("CSV export produced invalid UTF-8"))
    }
}

/// A cell a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, or a
/// leading tab or carriage return) gets a leading `'`, so it is shown as text.
pub fn neutralise(cell: &str) -> String {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}"),
        _ => cell.to_owned(),
    }
}

fn csv_failed(error: impl std::fmt::Display) -> Status {
    tracing::error!(%error, "CSV export failed");
    Status::internal("CSV export failed; the control plane's log says more")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(neutralise("=cmd()"), "'=cmd()");
        assert_eq!(neutralise("+1"), "'+1");
        assert_eq!(neutralise("-1"), "'-1");
        assert_eq!(neutralise("@x"), "'@x");
        assert_eq!(neutralise("\tx"), "'\tx");
        assert_eq!(neutralise("/orders"), "/orders");
        assert_eq!(neutralise(""), "");
    }

    #[test]
    fn chunks_end_at_row_ends_and_quote_per_rfc_4180() {
        let mut chunk = Chunk::new();
        chunk.row(["a,b", "say \"hi\"", "line\nbreak"]).unwrap();
        let text = chunk.take().unwrap();
        assert_eq!(text, "\"a,b\",\"say \"\"hi\"\"\",\"line\nbreak\"\r\n");
        assert!(chunk.take().unwrap().is_empty());
    }
}
