//! `ipgate logs query` and `ipgate logs export`.

use serde_json::Value;

use crate::support::{Env, ipgate_command, s};

/// An API, a key allowed from 203.0.113.0/24, and traffic: 2 allowed
/// requests, 3 blocked by the key's list, 1 with a bad key.
fn traffic(env: &Env) -> (String, String) {
    env.ipgate(&["apis", "create", "orders"]).ok();
    let key = env.json(&[
        "keys",
        "create",
        "--api",
        "orders",
        "--name",
        "k",
        "--allow",
        "203.0.113.0/24=Office",
    ]);
    let id = s(&key, "/key/id").to_owned();
    let secret = s(&key, "/secret").to_owned();
    env.wait_live();
    for (ip, path, want) in [
        ("203.0.113.5", "/a", 200),
        ("203.0.113.6", "/b", 200),
        ("198.51.100.7", "/c", 403),
        ("198.51.100.7", "/d", 403),
        ("198.51.100.8", "/=cmd()", 403),
    ] {
        assert_eq!(
            env.request("orders", &secret, ip, path),
            want,
            "{ip} {path}"
        );
    }
    assert_eq!(
        env.request("orders", "ipg_live_nope", "203.0.113.5", "/"),
        401
    );
    env.wait_logged(&[], 6);
    (id, secret)
}

fn rows(v: &Value) -> &Vec<Value> {
    v["entries"].as_array().expect("entries")
}

#[test]
fn the_usage_log_is_queried_with_filters() {
    let env = Env::start();
    let (id, _) = traffic(&env);

    let blocked = env.json(&["logs", "query", "--status", "403", "--since", "1h"]);
    assert_eq!(rows(&blocked).len(), 3, "{blocked:#}");
    assert!(rows(&blocked).iter().all(|r| r["statusCode"] == 403));
    assert_eq!(s(&blocked, "/entries/0/reason"), "IP_NOT_ALLOWED_KEY");

    let by_key = env.json(&["logs", "query", "--key", &id, "--reason", "ALLOWED_ANY"]);
    assert_eq!(rows(&by_key).len(), 2, "{by_key:#}");
    assert_eq!(s(&by_key, "/entries/0/matchedLabel"), "Office");
    let by_ip = env.json(&[
        "logs",
        "query",
        "--ip",
        "198.51.100.0/24",
        "--api",
        "orders",
    ]);
    assert_eq!(rows(&by_ip).len(), 3, "{by_ip:#}");
    let by_method = env.json(&["logs", "query", "--method", "POST"]);
    assert!(by_method.get("entries").is_none(), "{by_method:#}");
    let future = env.json(&["logs", "query", "--since", "2999-01-01T00:00:00Z"]);
    assert!(future.get("entries").is_none(), "{future:#}");
    let past = env.json(&["logs", "query", "--until", "2000-01-01T00:00:00+02:00"]);
    assert!(past.get("entries").is_none(), "{past:#}");
    // A misspelt API is not an empty log.
    let typo = env.ipgate(&["logs", "query", "--api", "orderz"]);
    let err = typo.failed();
    assert!(
        err.contains("NOT_FOUND") && err.contains("API \"orderz\" not found"),
        "{err}"
    );

    // pages
    let first = env.json(&["logs", "query", "--limit", "4"]);
    assert_eq!(rows(&first).len(), 4);
    let token = s(&first, "/nextPageToken");
    let second = env.json(&["logs", "query", "--limit", "4", "--page-token", token]);
    assert_eq!(rows(&second).len(), 2, "{second:#}");

    let human = env.ipgate(&["logs", "query", "--status", "403"]);
    let out = human.ok();
    let header = out.lines().next().expect("a header");
    assert!(
        header.starts_with("TIME") && header.contains("CLIENT IP"),
        "{out}"
    );
    assert!(
        out.contains("198.51.100.7") && out.contains("IP_NOT_ALLOWED_KEY"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 4, "a header and three rows: {out}");
}

#[test]
fn the_usage_log_exports_to_csv() {
    let env = Env::start();
    let (id, _) = traffic(&env);

    // to a file, read back with a CSV parser
    let run = env.ipgate(&["logs", "export", "--status", "403", "-o", "blocked.csv"]);
    run.ok();
    assert!(
        run.stderr.contains("Exported 3 rows to blocked.csv"),
        "{run:?}"
    );
    let mut reader = csv::Reader::from_path(env.dir.path().join("blocked.csv")).expect("csv file");
    let headers = reader.headers().expect("header row").clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name} in {headers:?}"))
    };
    let (ip, status, path) = (column("client_ip"), column("status_code"), column("path"));
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    assert_eq!(records.len(), 3);
    assert!(records.iter().all(|r| &r[status] == "403"));
    assert!(records.iter().any(|r| &r[ip] == "198.51.100.8"));
    // a cell a spreadsheet would run comes out neutralised
    assert!(
        records.iter().all(|r| !r[path].starts_with('=')),
        "{records:?}"
    );

    // to stdout, with filters
    let run = env.ipgate(&["logs", "export", "--key", &id, "--reason", "ALLOWED_ANY"]);
    let out = run.ok();
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    assert_eq!(reader.records().count(), 2, "{out}");

    // --json: one chunk object per line, as grpcurl prints a stream
    let run = env.ipgate(&["logs", "export", "--json"]);
    let out = run.ok();
    let mut csv_text = String::new();
    for line in out.lines() {
        let chunk: Value = serde_json::from_str(line).expect("one JSON object per line");
        csv_text.push_str(chunk["csv"].as_str().expect("csv field"));
    }
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    assert_eq!(reader.records().count(), 6, "{csv_text}");

    // an unwritable file is an error, not a silent success
    let out = ipgate_command(env.dir.path())
        .args(["logs", "export", "-o", "/nonexistent/dir/x.csv"])
        .env("IPGATE_ADDR", &env.addr)
        .env("IPGATE_TOKEN", crate::support::OWNER_TOKEN)
        .output()
        .expect("run ipgate");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/dir/x.csv"));
}
