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

/// `--door` filters by the enforcer's door a request came through, and the
/// table shows it; a door that does not exist is the server's field
/// violation.
#[test]
fn the_usage_log_is_filtered_by_door() {
    let env = Env::start();
    traffic(&env); // six requests through the check door
    assert_eq!(env.proxy_request("/through-the-proxy"), 401);
    env.wait_logged(&["--door", "proxy"], 1);

    let proxy = env.json(&["logs", "query", "--door", "proxy"]);
    assert_eq!(rows(&proxy).len(), 1, "{proxy:#}");
    assert_eq!(s(&proxy, "/entries/0/door"), "proxy");
    assert_eq!(s(&proxy, "/entries/0/path"), "/through-the-proxy");
    let check = env.json(&["logs", "query", "--door", "check"]);
    assert_eq!(rows(&check).len(), 6, "{check:#}");
    assert!(
        rows(&check).iter().all(|r| r["door"] == "check"),
        "{check:#}"
    );
    let neither = env.json(&["logs", "query", "--door", "ext_authz"]);
    assert!(neither.get("entries").is_none(), "{neither:#}");

    let out = env
        .ipgate(&["logs", "query", "--door", "proxy"])
        .ok()
        .to_owned();
    let mut lines = out.lines();
    let header = lines.next().expect("a header");
    let row = lines.next().expect("a row");
    let column = header
        .find("DOOR")
        .unwrap_or_else(|| panic!("no DOOR column: {out}"));
    assert_eq!(row.get(column..column + 5), Some("proxy"), "{out}");
    assert_eq!(lines.count(), 0, "one row: {out}");

    let csv_text = env
        .ipgate(&["logs", "export", "--door", "check"])
        .ok()
        .to_owned();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let door = reader
        .headers()
        .expect("header row")
        .iter()
        .position(|h| h == "door")
        .expect("a door column");
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    assert_eq!(records.len(), 6, "{csv_text}");
    assert!(records.iter().all(|r| &r[door] == "check"), "{csv_text}");

    let err = env
        .ipgate(&["logs", "query", "--door", "nginx"])
        .failed()
        .to_owned();
    assert!(err.starts_with("error: INVALID_ARGUMENT"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("  door: ") && l.contains("\"nginx\" is not a door")),
        "{err}"
    );
}

/// `--ip-source` filters by where the client address came from, on query
/// and export; the table shows an IP SOURCE column when a row's source says
/// more than `peer` or `named`, and leaves it out otherwise; a source that
/// does not exist is the server's field violation.
#[test]
fn the_usage_log_is_filtered_by_client_ip_source() {
    let env = Env::start();
    traffic(&env); // six requests through the check door: named
    // From 127.0.0.1, a trusted proxy to this enforcer: a header that names
    // a client, one that cannot be followed, and none.
    let followed = [("x-forwarded-for", "198.51.100.20")];
    assert_eq!(env.proxy_request_with("/followed", &followed), 401);
    let malformed = [("x-forwarded-for", "198.51.100.20, not-an-address")];
    assert_eq!(env.proxy_request_with("/malformed", &malformed), 401);
    assert_eq!(env.proxy_request("/plain"), 401);
    env.wait_logged(&["--door", "proxy"], 3);

    let bad_header = env.json(&["logs", "query", "--ip-source", "malformed"]);
    assert_eq!(rows(&bad_header).len(), 1, "{bad_header:#}");
    assert_eq!(s(&bad_header, "/entries/0/clientIpSource"), "malformed");
    assert_eq!(s(&bad_header, "/entries/0/path"), "/malformed");
    // Decided on the trusted proxy's own address, not on what it forwarded.
    assert_eq!(s(&bad_header, "/entries/0/clientIp"), "127.0.0.1");
    let followed = env.json(&["logs", "query", "--ip-source", "x-forwarded-for"]);
    assert_eq!(rows(&followed).len(), 1, "{followed:#}");
    assert_eq!(s(&followed, "/entries/0/clientIp"), "198.51.100.20");
    let named = env.json(&["logs", "query", "--ip-source", "named"]);
    assert_eq!(rows(&named).len(), 6, "{named:#}");
    assert!(
        rows(&named).iter().all(|r| r["door"] == "check"),
        "{named:#}"
    );
    let peer = env.json(&["logs", "query", "--ip-source", "peer"]);
    assert_eq!(rows(&peer).len(), 1, "{peer:#}");
    assert_eq!(s(&peer, "/entries/0/path"), "/plain");

    // The proxy's rows: the column is there, each row says its source.
    let out = env
        .ipgate(&["logs", "query", "--door", "proxy"])
        .ok()
        .to_owned();
    let mut lines = out.lines();
    let header = lines.next().expect("a header");
    let column = header
        .find("IP SOURCE")
        .unwrap_or_else(|| panic!("no IP SOURCE column: {out}"));
    let shown: Vec<(&str, &str)> = lines
        .take(3)
        .map(|row| {
            let source = row[column..].split_whitespace().next().unwrap_or("");
            let path = row.split_whitespace().find(|w| w.starts_with('/'));
            (path.unwrap_or(""), source)
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("/plain", "peer"),
            ("/malformed", "malformed"),
            ("/followed", "x-forwarded-for")
        ],
        "{out}"
    );
    // The check door's rows say nothing a reader needs: no column.
    for plain in [&["--door", "check"][..], &["--ip-source", "peer"]] {
        let mut args = vec!["logs", "query"];
        args.extend_from_slice(plain);
        let out = env.ipgate(&args).ok().to_owned();
        let header = out.lines().next().expect("a header");
        assert!(header.contains("CLIENT IP"), "{out}");
        assert!(!header.contains("IP SOURCE"), "{plain:?}: {out}");
    }

    let csv_text = env
        .ipgate(&["logs", "export", "--ip-source", "MALFORMED"])
        .ok()
        .to_owned();
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header = reader.headers().expect("header row").clone();
    // Appended after door, and kept there when the gap columns came.
    assert_eq!(header.get(12), Some("client_ip_source"), "{header:?}");
    let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("record")).collect();
    assert_eq!(records.len(), 1, "{csv_text}");
    assert_eq!(records[0].get(12), Some("malformed"), "{csv_text}");

    let err = env
        .ipgate(&["logs", "query", "--ip-source", "X-Real-IP"])
        .failed()
        .to_owned();
    assert!(err.starts_with("error: INVALID_ARGUMENT"), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("  client_ip_source: ")
            && l.contains("\"X-Real-IP\" is not a client-address source")),
        "{err}"
    );
}
