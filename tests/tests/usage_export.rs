//! `ExportUsageLogs` streams the usage log as CSV in bounded memory, and
//! the file opens cleanly in Python's `csv` module with every awkward cell
//! intact and every formula-looking cell neutralised.
//!
//! On SQLite the log holds 1,000,000 rows, reported the way enforcers
//! report them (`ReportEvents` with the enforcer token, 10,000 events per
//! batch, the control plane's limit), and the control plane's resident
//! memory (`VmRSS`) is sampled before and during the export: it must grow by
//! less than 100 MB. SQLite is where the million-row run happens; on
//! PostgreSQL the same checks run on 20,000 rows.

use std::{
    io::Write,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use ipgate_shared::proto::{
    admin::v1::{CreateApiKeyRequest, CreateApiRequest, ExportUsageLogsRequest},
    sync::v1::UsageEvent,
};
use ipgate_tests::{
    Backend, ControlPlane,
    events::{self, event},
    tools,
};

/// Events per `ReportEvents` batch: the control plane's limit.
const BATCH: usize = 10_000;
/// The most the control plane's RSS may grow while exporting.
const RSS_BUDGET_KIB: u64 = 100 * 1024;

/// Rows with text a CSV writer must quote or neutralise. (path, label)
const AWKWARD: &[(&str, &str)] = &[
    ("=cmd()", "=cmd()"),
    ("/a,b", "comma, inside"),
    ("/say \"hi\"", "quote \" inside"),
    ("/two\nlines", "line\nbreak"),
    ("/plus", "+SUM(A1:A2)"),
    ("/minus", "-1+2"),
    ("/at", "@HYPERLINK(\"x\")"),
];

/// What Python's csv module saw, printed as JSON by [`PYTHON`].
const PYTHON: &str = r#"
import csv, json, sys
with open(sys.argv[1], newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f, strict=True))
header = rows[0]
body = rows[1:]
widths = sorted({len(r) for r in rows})
dangerous = [c for r in body for c in r if c[:1] in ("=", "+", "-", "@")]
path_i, label_i = header.index("path"), header.index("matched_label")
awkward = [[r[path_i], r[label_i]] for r in body if r[path_i] != "/"]
print(json.dumps({"rows": len(rows), "header": header, "widths": widths,
                  "dangerous": dangerous[:10], "awkward": awkward}))
"#;

async fn export_streams_in_bounded_memory(backend: Backend) {
    if !tools::available(&["python3"]) {
        return;
    }
    let rows = match backend {
        Backend::Sqlite { .. } => 1_000_000,
        Backend::Postgres { .. } => 20_000,
    };
    let cp = ControlPlane::start(&backend);
    let mut admin = cp.admin().await;
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await
        .expect("create API");
    let key_id = admin
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            name: "busy key".into(),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner()
        .key
        .expect("key")
        .id;

    // The usage log: the awkward rows, then plain ones, times spread over
    // the last hours.
    let started = Instant::now();
    let sync = cp.sync().await;
    let now = SystemTime::now();
    let plain = |i: usize| -> UsageEvent {
        let blocked = i.is_multiple_of(7);
        UsageEvent {
            status_code: if blocked { 403 } else { 200 },
            reason: if blocked {
                "IP_NOT_ALLOWED_KEY"
            } else {
                "ALLOWED"
            }
            .into(),
            ..event(
                "orders",
                &key_id,
                &format!("198.51.100.{}", i % 250 + 1),
                now - Duration::from_millis(i as u64 * 10),
            )
        }
    };
    let mut batch: Vec<UsageEvent> = AWKWARD
        .iter()
        .map(|(path, label)| UsageEvent {
            path: (*path).into(),
            matched_label: (*label).into(),
            ..event("orders", &key_id, "203.0.113.9", now)
        })
        .collect();
    // One batch in flight while the next is built.
    let mut in_flight: Option<tokio::task::JoinHandle<()>> = None;
    for i in AWKWARD.len()..=rows {
        if i < rows {
            batch.push(plain(i));
        }
        if batch.len() == BATCH || (i == rows && !batch.is_empty()) {
            let events = std::mem::take(&mut batch);
            let mut sync = sync.clone();
            if let Some(previous) = in_flight.take() {
                previous.await.expect("report task");
            }
            in_flight = Some(tokio::spawn(async move {
                events::report(&mut sync, events).await;
            }));
        }
    }
    if let Some(last) = in_flight {
        last.await.expect("report task");
    }
    let ingest = started.elapsed();
    println!("{rows} usage rows reported in {ingest:?}");

    // RSS before and, sampled every 10 ms on a thread, during the export.
    let pid = cp.pid();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = tools::rss_kib(pid);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            let mut samples = 0u64;
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(tools::rss_kib(pid), Ordering::Relaxed);
                samples += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            samples
        })
    };
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("usage.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).expect("csv file"));
    let export_started = Instant::now();
    let mut stream = admin
        .export_usage_logs(ExportUsageLogsRequest::default())
        .await
        .expect("start the export")
        .into_inner();
    let (mut chunks, mut bytes) = (0u64, 0u64);
    while let Some(chunk) = stream.message().await.expect("an export chunk") {
        assert!(
            chunk.csv.is_empty() || chunk.csv.ends_with('\n'),
            "chunks end at row ends"
        );
        chunks += 1;
        bytes += chunk.csv.len() as u64;
        file.write_all(chunk.csv.as_bytes()).expect("write csv");
    }
    file.flush().expect("flush csv");
    let exported_in = export_started.elapsed();
    done.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("sampler");
    let peak = peak.load(Ordering::Relaxed);
    let growth = peak.saturating_sub(before);
    println!(
        "export of {rows} rows: {bytes} bytes in {chunks} chunks in {exported_in:?}; \
         control plane VmRSS {} MiB before, {} MiB peak during ({samples} samples): +{} MiB (budget {} MiB)",
        before / 1024,
        peak / 1024,
        growth / 1024,
        RSS_BUDGET_KIB / 1024
    );
    assert!(
        growth < RSS_BUDGET_KIB,
        "RSS grew by {growth} KiB during the export"
    );

    // Python's csv module reads it cleanly.
    let out = Command::new("python3")
        .args(["-c", PYTHON])
        .arg(&path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3 could not read the export: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("python's report");
    assert_eq!(seen["rows"], rows + 1, "a header row and one row per event");
    assert_eq!(
        seen["widths"].as_array().map(Vec::len),
        Some(1),
        "every row as wide as the header: {seen}"
    );
    let header: Vec<&str> = seen["header"]
        .as_array()
        .expect("header")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    println!("header: {header:?}");
    for column in [
        "request_id",
        "time",
        "api",
        "api_key_id",
        "method",
        "path",
        "status_code",
        "client_ip",
        "reason",
        "matched_label",
    ] {
        assert!(
            header.contains(&column),
            "the header lacks {column}: {header:?}"
        );
    }
    assert_eq!(
        seen["dangerous"],
        serde_json::json!([]),
        "no cell starts with = + - @"
    );
    let awkward: Vec<(String, String)> =
        serde_json::from_value(seen["awkward"].clone()).expect("awkward rows");
    assert_eq!(awkward.len(), AWKWARD.len(), "{awkward:?}");
    for (path, label) in AWKWARD {
        let neutral = |s: &str| -> String {
            if s.starts_with(['=', '+', '-', '@']) {
                format!("'{s}")
            } else {
                s.to_owned()
            }
        };
        assert!(
            awkward.contains(&(neutral(path), neutral(label))),
            "({path:?}, {label:?}) should read back as ({:?}, {:?}): {awkward:?}",
            neutral(path),
            neutral(label)
        );
    }
}

ipgate_tests::on_both_backends!(export_streams_in_bounded_memory);
