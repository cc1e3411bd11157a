//! Route scopes that paths cannot trick: the proxy door decides on the
//! path's normal form and forwards that same form, so no spelling of a
//! scoped route reaches the upstream without the scope.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use ipgate_enforcer::Running;
use ipgate_shared::{
    Allowlist, ApiConfig, KeyConfig, RouteRule, SecretHash, key::NewKey, proto::sync::v1 as wire,
};

use crate::{
    proxy::{Seen, upstream},
    raw,
    support::*,
};

const SCOPE_BODY: &str = r#"{"error":{"code":"INSUFFICIENT_SCOPE","message":"API key does not have the scope this route requires"}}"#;
const BAD_PATH_BODY: &str = r#"{"error":{"code":"BAD_PATH","message":"The request path is ambiguous: it holds an encoded slash or backslash, a control character, invalid percent-encoding or dot segments above the root"}}"#;

/// API `orders` whose `GET /admin` needs scope `admin`; key `plain` lacks
/// it, key `admin` has it.
struct Stage {
    running: Running,
    _session: Session,
    proxy: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    plain: NewKey,
    admin: NewKey,
}

fn key(key: &NewKey, scopes: &[&str]) -> wire::KeyConfig {
    wire::KeyConfig::from(&KeyConfig {
        id: key.id,
        api: "orders".parse().unwrap(),
        secret_hash: SecretHash::of(&key.secret),
        scopes: scopes.iter().map(|s| s.parse().unwrap()).collect(),
        expires_at: None,
        allowlist: Allowlist::default(),
        previous_secrets: vec![],
    })
}

async fn stage(fake: &mut FakeControlPlane) -> Stage {
    let (upstream_addr, seen) = upstream().await;
    let upstream = format!("http://{upstream_addr}");
    let running = ipgate_enforcer::start(config(
        fake.addr,
        &["--upstream", &upstream, "--api", "orders"],
    ))
    .await
    .unwrap();
    let mut session = fake.next_session().await;
    let api = wire::ApiConfig::from(&ApiConfig {
        slug: "orders".parse().unwrap(),
        enabled: true,
        allowlist: Allowlist::default(),
        routes: vec![RouteRule::new("GET", "/admin", "admin").unwrap()],
    });
    let (plain, admin) = (NewKey::generate(), NewKey::generate());
    session.send(chunk(
        1,
        0,
        true,
        vec![api],
        vec![key(&plain, &["orders:read"]), key(&admin, &["admin"])],
    ));
    assert_eq!(session.expect_ack().await, 1);
    Stage {
        proxy: running.proxy_addr.expect("proxy door running"),
        running,
        _session: session,
        seen,
        plain,
        admin,
    }
}

#[tokio::test]
async fn no_spelling_of_a_scoped_route_reaches_the_upstream_without_the_scope() {
    let mut fake = FakeControlPlane::start().await;
    let s = stage(&mut fake).await;

    // The seven spellings that used to get through, HEAD for GET, and a
    // few more; each answer as written down here.
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/hello/../admin", 403, SCOPE_BODY),
        ("GET", "/%61dmin", 403, SCOPE_BODY),
        ("GET", "//admin", 403, SCOPE_BODY),
        ("GET", "/./admin", 403, SCOPE_BODY),
        ("GET", "/ADMIN", 403, SCOPE_BODY),
        ("GET", "/admin%2f", 400, BAD_PATH_BODY),
        ("GET", "/hello/..%2fadmin", 400, BAD_PATH_BODY),
        ("HEAD", "/admin", 403, ""),
        ("GET", "/admin;jsessionid=1/users", 403, SCOPE_BODY),
        ("GET", "/hello/%2e%2e/Admin?x=1", 403, SCOPE_BODY),
        ("GET", "/hello/..;/admin", 400, BAD_PATH_BODY),
        ("GET", "/../admin", 400, BAD_PATH_BODY),
        ("GET", "/x/%252e%252e/admin", 400, BAD_PATH_BODY),
        ("GET", "/hello\\..\\admin", 400, BAD_PATH_BODY),
        ("OPTIONS", "*", 400, BAD_PATH_BODY),
        // An authority-form target names no path: not read as `/`.
        ("CONNECT", "api.test:443", 400, BAD_PATH_BODY),
    ];
    let mut wrong = Vec::new();
    for &(method, target, status, body) in cases {
        let head = raw::request(method, target, &s.plain.secret, &[]);
        let answer = raw::send(s.proxy, &head).await;
        // A HEAD answer has the headers of the GET one and no body.
        if answer.status != status || answer.body != body {
            wrong.push(format!(
                "{method} {target}: {} {:?}, expected {status} {body:?}",
                answer.status, answer.body
            ));
        }
        if answer.status >= 400 && answer.header("content-type") != Some("application/json") {
            wrong.push(format!("{method} {target}: not JSON: {}", answer.head));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    let seen = s.seen.lock().unwrap().clone();
    assert!(seen.is_empty(), "the upstream saw {seen:?}");

    // Refused paths are decisions like any other, in the usage log.
    eventually("the BAD_PATH refusals in the usage log", || async {
        let refused: Vec<_> = fake
            .events()
            .into_iter()
            .filter(|e| e.reason == "BAD_PATH")
            .collect();
        refused.len() == 8
            && refused.iter().all(|e| e.status_code == 400)
            && refused.iter().any(|e| e.path == "/admin%2f")
    })
    .await;
    // The others are logged in their normal form.
    assert!(
        fake.events()
            .iter()
            .any(|e| e.reason == "INSUFFICIENT_SCOPE" && e.path == "/admin" && e.method == "HEAD")
    );
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_upstream_gets_the_path_that_was_decided_on() {
    let mut fake = FakeControlPlane::start().await;
    let s = stage(&mut fake).await;

    let targets = [
        // The admin key may; the upstream sees the one spelling.
        (
            &s.admin.secret,
            "/hello/../%61dmin/./users//7?q=a%2Fb&x=..",
            "/admin/users/7?q=a%2Fb&x=..",
        ),
        (
            &s.plain.secret,
            "/orders/%7e%37?page=2",
            "/orders/~7?page=2",
        ),
        (&s.plain.secret, "/caf%c3%a9/", "/caf%C3%A9/"),
        (&s.plain.secret, "/administrator", "/administrator"),
    ];
    for (key, target, _) in targets {
        let answer = raw::send(s.proxy, &raw::get(target, key, &[])).await;
        assert_eq!(answer.status, 201, "{target}: {answer:?}");
    }
    let seen: Vec<String> = s
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.uri.clone())
        .collect();
    let expected: Vec<&str> = targets.iter().map(|(_, _, upstream)| *upstream).collect();
    assert_eq!(seen, expected);
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn failing_open_before_the_first_snapshot_never_forwards_a_bad_path() {
    let fake = FakeControlPlane::start().await;
    let (upstream_addr, seen) = upstream().await;
    let upstream = format!("http://{upstream_addr}");
    let running = ipgate_enforcer::start(config(
        fake.addr,
        &[
            "--upstream",
            &upstream,
            "--api",
            "orders",
            "--fail-open-until-synced",
        ],
    ))
    .await
    .unwrap();
    let proxy = running.proxy_addr.expect("proxy door running");

    let answer = raw::send(proxy, &raw::get("/a/../../etc/passwd", "", &[])).await;
    assert_eq!((answer.status, answer.body.as_str()), (400, BAD_PATH_BODY));
    assert!(seen.lock().unwrap().is_empty(), "the upstream saw it");
    // Everything else is let through, in normal form.
    let answer = raw::send(proxy, &raw::get("/orders/./7", "", &[])).await;
    assert_eq!(answer.status, 201);
    let seen: Vec<String> = seen.lock().unwrap().iter().map(|r| r.uri.clone()).collect();
    assert_eq!(seen, ["/orders/7"]);
    running.shutdown().await.unwrap();
}
