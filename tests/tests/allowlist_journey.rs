//! The walking skeleton end to end: an allowlist change travels from the
//! admin API to the enforcer's decision and back into the usage log, on
//! SQLite and on PostgreSQL, with the real binaries on loopback.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use ipgate_shared::proto::admin::v1::{
    Allowlist, AllowlistEntry, AllowlistWriteOptions, CreateApiKeyRequest, CreateApiRequest,
    GetApiKeyRequest, GetRevisionStatusRequest, QueryUsageLogsRequest, SetApiAllowlistRequest,
    SetApiKeyAllowlistRequest, UsageLogEntry,
};
use ipgate_tests::{
    Backend, ControlPlane, Enforcer, eventually,
    http::{self, Response},
    process::AdminClient,
    upstream::{self, UPSTREAM_BODY},
};

const KEY_BODY: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API key's allowlist"}}"#;
const API_BODY: &str = r#"{"error":{"code":"IP_NOT_ALLOWED","message":"Request IP address is not in the API's allowlist"}}"#;

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

fn ack_lockout() -> AllowlistWriteOptions {
    AllowlistWriteOptions {
        validate_only: false,
        acknowledge_lockout_risk: true,
    }
}

fn list(cidrs: &[&str]) -> Option<Allowlist> {
    Some(Allowlist {
        entries: cidrs
            .iter()
            .map(|c| AllowlistEntry {
                cidr: (*c).to_owned(),
                ..Default::default()
            })
            .collect(),
        report_only: false,
    })
}

/// An API `orders`, one key for it, an enforcer proxying it, all synced.
struct World {
    cp: ControlPlane,
    admin: AdminClient,
    enforcer: Enforcer,
    key: String,
    key_id: String,
}

async fn world(backend: &Backend) -> World {
    let upstream = upstream::start().await;
    let cp = ControlPlane::start(backend);
    let mut admin = cp.admin().await;
    admin
        .create_api(CreateApiRequest {
            slug: "orders".into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await
        .expect("create API");
    let created = admin
        .create_api_key(CreateApiKeyRequest {
            api: "orders".into(),
            name: "first key".into(),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner();
    let enforcer = Enforcer::start(&cp, "orders", upstream);
    let world = World {
        key_id: created.key.expect("key").id,
        key: created.secret,
        cp,
        admin,
        enforcer,
    };
    eventually(
        Duration::from_secs(15),
        "the enforcer to sync the key",
        || async { (world.call("127.0.0.2", &world.key).await.status == 200).then_some(()) },
    )
    .await;
    world
}

impl World {
    async fn call(&self, from: &str, key: &str) -> Response {
        http::get(
            ip(from),
            self.enforcer.proxy_addr,
            "/orders/7?expand=1",
            &[("x-api-key", key)],
        )
        .await
    }

    async fn set_key_list(&mut self, cidrs: &[&str]) -> u64 {
        self.admin
            .set_api_key_allowlist(SetApiKeyAllowlistRequest {
                id: self.key_id.clone(),
                allowlist: list(cidrs),
                // These tests block callers on purpose.
                options: Some(ack_lockout()),
                ..Default::default()
            })
            .await
            .expect("set key allowlist")
            .into_inner()
            .key
            .expect("the key as stored")
            .revision
    }

    async fn usage(&mut self, filter: QueryUsageLogsRequest) -> Vec<UsageLogEntry> {
        self.admin
            .query_usage_logs(filter)
            .await
            .expect("query usage logs")
            .into_inner()
            .entries
    }
}

/// Empty list: everyone through. One address listed: others get the exact
/// 403 within a second, the listed one passes. Bad keys: 401 from anywhere.
/// An API list blocks before authentication.
async fn allowlist_changes_reach_the_enforcer(backend: Backend) {
    let mut w = world(&backend).await;

    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let res = w.call(from, &w.key).await;
        assert_eq!(res.status, 200, "{from} with an empty allowlist: {res:?}");
        assert!(res.body.starts_with(UPSTREAM_BODY), "{res:?}");
        assert!(
            res.body.contains("request-id="),
            "upstream sees the request id: {res:?}"
        );
    }

    let written = Instant::now();
    w.set_key_list(&["127.0.0.2"]).await;
    let (blocked, _) = eventually(
        Duration::from_secs(10),
        "127.0.0.3 to be blocked",
        || async {
            let res = w.call("127.0.0.3", &w.key).await;
            (res.status == 403).then_some(res)
        },
    )
    .await;
    let propagation = written.elapsed();
    println!("allowlist change blocked a caller {propagation:?} after the write returned");
    // docs/sync-protocol.md's propagation contract (target well under one second), not a
    // speed benchmark: the figure is measured and printed above.
    assert!(propagation < Duration::from_secs(1), "took {propagation:?}");
    assert_eq!(blocked.body, KEY_BODY);
    assert_eq!(blocked.header("content-type"), "application/json");
    assert_eq!(blocked.header("x-ipgate-client-ip"), "127.0.0.3");
    assert!(!blocked.header("x-request-id").is_empty());
    assert_eq!(w.call("127.0.0.2", &w.key).await.status, 200);

    // An invalid key is 401 whatever the address.
    // The last character changed: to `x`, unless it already is one.
    let last = if w.key.ends_with('x') { 'y' } else { 'x' };
    let forged = format!("{}{last}", &w.key[..w.key.len() - 1]);
    for from in ["127.0.0.2", "127.0.0.3"] {
        for key in ["", "not-a-key", forged.as_str()] {
            let res = w.call(from, key).await;
            assert_eq!(res.status, 401, "{from} with {key:?}: {res:?}");
            assert!(res.body.contains("INVALID_API_KEY"), "{res:?}");
        }
    }

    // The API list blocks before authentication: 403, even with a bad key.
    w.admin
        .set_api_allowlist(SetApiAllowlistRequest {
            slug: "orders".into(),
            allowlist: list(&["127.0.0.2"]),
            options: Some(ack_lockout()),
            ..Default::default()
        })
        .await
        .expect("set API allowlist");
    let (res, _) = eventually(Duration::from_secs(10), "the API list to apply", || async {
        let res = w.call("127.0.0.4", "not-a-key").await;
        (res.status == 403).then_some(res)
    })
    .await;
    assert_eq!(res.body, API_BODY);
    assert_eq!(w.call("127.0.0.2", "not-a-key").await.status, 401);
    assert_eq!(w.call("127.0.0.2", &w.key).await.status, 200);
}

/// The blocked request is in the usage log with everything an operator
/// filters on, and filters by status and by key work.
async fn blocked_requests_land_in_the_usage_log(backend: Backend) {
    let mut w = world(&backend).await;
    w.set_key_list(&["127.0.0.2"]).await;
    let (blocked, _) = eventually(Duration::from_secs(10), "the block", || async {
        let res = w.call("127.0.0.3", &w.key).await;
        (res.status == 403).then_some(res)
    })
    .await;
    let request_id = blocked.header("x-request-id").to_owned();

    let filter = QueryUsageLogsRequest {
        status_code: 403,
        ..Default::default()
    };
    let (entry, _) = eventually(
        Duration::from_secs(10),
        "the blocked request in the usage log",
        || {
            let mut admin = w.admin.clone();
            let filter = filter.clone();
            let request_id = request_id.clone();
            async move {
                let entries = admin
                    .query_usage_logs(filter)
                    .await
                    .ok()?
                    .into_inner()
                    .entries;
                entries.into_iter().find(|e| e.request_id == request_id)
            }
        },
    )
    .await;
    assert_eq!(entry.api, "orders");
    assert_eq!(entry.api_key_id, w.key_id);
    assert_eq!(entry.method, "GET");
    // The query string is not logged: it may carry secrets.
    assert_eq!(entry.path, "/orders/7");
    assert_eq!(entry.status_code, 403);
    assert_eq!(entry.client_ip, "127.0.0.3");
    assert_eq!(entry.reason, "IP_NOT_ALLOWED_KEY");
    assert!(entry.time.is_some());

    // Filters: by status, by key, by method.
    let only_403 = w.usage(filter).await;
    assert!(!only_403.is_empty() && only_403.iter().all(|e| e.status_code == 403));
    let allowed = w
        .usage(QueryUsageLogsRequest {
            status_code: 200,
            ..Default::default()
        })
        .await;
    assert!(!allowed.is_empty() && allowed.iter().all(|e| e.status_code == 200));
    let unknown_key = w.call("127.0.0.2", "not-a-key").await;
    assert_eq!(unknown_key.status, 401);
    let by_key = w
        .usage(QueryUsageLogsRequest {
            api_key_id: w.key_id.clone(),
            ..Default::default()
        })
        .await;
    assert!(by_key.iter().all(|e| e.api_key_id == w.key_id));
    assert!(by_key.iter().any(|e| e.request_id == request_id));
    let posts = w
        .usage(QueryUsageLogsRequest {
            method: "POST".into(),
            ..Default::default()
        })
        .await;
    assert!(posts.is_empty(), "no POST was made: {posts:?}");
    // Newest first.
    let all = w.usage(QueryUsageLogsRequest::default()).await;
    let times: Vec<_> = all.iter().map(|e| e.time.expect("time")).collect();
    assert!(
        times
            .windows(2)
            .all(|p| (p[0].seconds, p[0].nanos) >= (p[1].seconds, p[1].nanos))
    );
}

/// Killing the control plane: the enforcer keeps deciding from its last
/// index, and after a restart it picks up a new change; nothing written
/// before the kill is lost.
async fn the_enforcer_outlives_a_control_plane_crash(backend: Backend) {
    let mut w = world(&backend).await;
    let before = w.set_key_list(&["127.0.0.2"]).await;
    eventually(Duration::from_secs(10), "the block", || async {
        (w.call("127.0.0.3", &w.key).await.status == 403).then_some(())
    })
    .await;
    // Let at least one usage batch land before the crash.
    eventually(Duration::from_secs(10), "a stored usage event", || {
        let mut admin = w.admin.clone();
        async move {
            let entries = admin
                .query_usage_logs(QueryUsageLogsRequest::default())
                .await
                .ok()?
                .into_inner()
                .entries;
            (!entries.is_empty()).then_some(())
        }
    })
    .await;
    let logged_before = w.usage(QueryUsageLogsRequest::default()).await.len();

    w.cp.kill();
    for _ in 0..3 {
        assert_eq!(w.call("127.0.0.2", &w.key).await.status, 200);
        assert_eq!(w.call("127.0.0.3", &w.key).await.status, 403);
    }

    w.cp.restart();
    w.admin = w.cp.admin().await;
    let key = w
        .admin
        .get_api_key(GetApiKeyRequest {
            id: w.key_id.clone(),
        })
        .await
        .expect("the key survived")
        .into_inner();
    let cidrs: Vec<String> = key
        .allowlist
        .expect("list")
        .entries
        .into_iter()
        .map(|e| e.cidr)
        .collect();
    assert_eq!(cidrs, ["127.0.0.2/32"]);
    assert!(w.usage(QueryUsageLogsRequest::default()).await.len() >= logged_before);

    let after = w.set_key_list(&["127.0.0.3"]).await;
    assert!(
        after > before,
        "revisions keep growing across restarts: {after} after {before}"
    );
    eventually(
        Duration::from_secs(15),
        "the change after the restart",
        || async { (w.call("127.0.0.3", &w.key).await.status == 200).then_some(()) },
    )
    .await;
    assert_eq!(w.call("127.0.0.2", &w.key).await.status, 403);
    let status = w
        .admin
        .get_revision_status(GetRevisionStatusRequest { revision: after })
        .await
        .expect("revision status")
        .into_inner();
    assert!(status.current_revision >= after);
}

ipgate_tests::on_both_backends!(
    allowlist_changes_reach_the_enforcer,
    blocked_requests_land_in_the_usage_log,
    the_enforcer_outlives_a_control_plane_crash,
);
