//! Route scopes that paths cannot trick, tried as a new user would: a route
//! rule set through the admin API, a key without its scope, and every
//! spelling of the route sent through the real enforcer's proxy; plus the
//! proxy's limits on request heads, set the way an operator sets them.

use std::time::Duration;

use ipgate_shared::proto::admin::v1::{RouteRule, RouteRules, UpdateApiRequest};
use ipgate_tests::{
    Backend, Enforcer, eventually,
    upstream::UPSTREAM_BODY,
    world::{API, PROPAGATION, World},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const SCOPE_BODY: &str = r#"{"error":{"code":"INSUFFICIENT_SCOPE","message":"API key does not have the scope this route requires"}}"#;
const BAD_PATH_BODY: &str = r#"{"error":{"code":"BAD_PATH","message":"The request path is ambiguous: it holds an encoded slash or backslash, a control character, invalid percent-encoding or dot segments above the root"}}"#;

fn admin_rule(prefix: &str) -> Option<RouteRules> {
    Some(RouteRules {
        rules: vec![RouteRule {
            method: "GET".into(),
            path_prefix: prefix.into(),
            scope: "admin".into(),
        }],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_a_scoped_route_gets_past_its_rule() {
    let mut w = World::start(&Backend::sqlite()).await;

    // A prefix without a safe normal form is refused when written...
    let refused = w
        .admin
        .update_api(UpdateApiRequest {
            slug: API.into(),
            routes: admin_rule("/admin%2f"),
            ..Default::default()
        })
        .await
        .expect_err("an encoded slash in a prefix");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(refused.message().contains("encoded"), "{refused:?}");
    // ...and one with a normal form is stored in it.
    let api = w
        .admin
        .update_api(UpdateApiRequest {
            slug: API.into(),
            routes: admin_rule("/%61dmin/"),
            ..Default::default()
        })
        .await
        .expect("a rule on /admin")
        .into_inner();
    assert_eq!(api.routes[0].path_prefix, "/admin/");

    let (first, _) = eventually(PROPAGATION, "the rule on the enforcer", || async {
        let res = w.request("127.0.0.1", "GET", "/admin", &w.key).await;
        (res.status == 403).then_some(res)
    })
    .await;
    assert_eq!(first.body, SCOPE_BODY);

    // The key has no scope `admin`: each spelling answers as written here,
    // and none reaches the upstream.
    let cases = [
        ("GET", "/hello/../admin", 403, SCOPE_BODY),
        ("GET", "/%61dmin", 403, SCOPE_BODY),
        ("GET", "//admin", 403, SCOPE_BODY),
        ("GET", "/./admin", 403, SCOPE_BODY),
        ("GET", "/ADMIN", 403, SCOPE_BODY),
        ("GET", "/admin%2f", 400, BAD_PATH_BODY),
        ("GET", "/hello/..%2fadmin", 400, BAD_PATH_BODY),
        ("HEAD", "/admin", 403, ""),
    ];
    let mut wrong = Vec::new();
    for (method, path, status, body) in cases {
        let res = w.request("127.0.0.1", method, path, &w.key).await;
        if res.status != status || res.body != body || res.body.starts_with(UPSTREAM_BODY) {
            wrong.push(format!(
                "{method} {path}: {} {:?}, expected {status} {body:?}",
                res.status, res.body
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // A refused path is in the usage log like any decision.
    let refused = w
        .request("127.0.0.1", "GET", "/a/%2e%2e/../admin", &w.key)
        .await;
    assert_eq!(refused.status, 400);
    let logged = w.logged(refused.header("x-request-id")).await;
    assert_eq!(
        (
            logged.reason.as_str(),
            logged.status_code,
            logged.path.as_str()
        ),
        ("BAD_PATH", 400, "/a/%2e%2e/../admin")
    );

    // Allowed requests reach the upstream with the path decided on.
    let res = w
        .request("127.0.0.1", "GET", "/hello/../orders/%37?page=../2", &w.key)
        .await;
    assert_eq!(res.status, 200);
    assert!(
        res.body
            .starts_with(&format!("{UPSTREAM_BODY} GET /orders/7?page=../2 ")),
        "{}",
        res.body
    );
}

/// Sends `head` and the blank line on a fresh connection; the answer's
/// status and body.
async fn send_raw(proxy: std::net::SocketAddr, head: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(proxy).await.expect("connect");
    let _ = stream
        .write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .await;
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(PROPAGATION, stream.read_to_end(&mut bytes)).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    (status.unwrap_or(0), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_limits_request_heads() {
    let w = World::start(&Backend::sqlite()).await;
    // A second enforcer with a short head timeout, set through its variable.
    let enforcer = Enforcer::start_with_envs(
        &w.cp,
        API,
        w.upstream,
        &[("IPGATE_HEADER_READ_TIMEOUT", "700ms")],
    );
    let proxy = enforcer.proxy_addr;
    let get = |extra: &str| {
        format!(
            "GET /orders HTTP/1.1\r\nHost: e2e\r\nX-API-Key: {}{extra}",
            w.key
        )
    };
    eventually(PROPAGATION, "the second enforcer to sync", || async {
        (send_raw(proxy, &get("")).await.0 == 200).then_some(())
    })
    .await;

    let big = format!("\r\nX-Big: {}", "v".repeat(70_000));
    let (status, body) = send_raw(proxy, &get(&big)).await;
    assert_eq!(status, 431);
    assert!(body.contains(r#""code":"HEADERS_TOO_LARGE""#), "{body}");

    // Host, X-API-Key and Connection, and 98 more: 101.
    let many: String = (0..98).map(|i| format!("\r\nX-H{i}: 1")).collect();
    let (status, body) = send_raw(proxy, &get(&many)).await;
    assert_eq!(status, 431);
    assert!(body.contains(r#""code":"TOO_MANY_HEADERS""#), "{body}");

    // A byte at a time: closed, with no answer, after the timeout, while
    // another client is served.
    let started = tokio::time::Instant::now();
    let slow = tokio::spawn(async move {
        let stream = TcpStream::connect(proxy).await.expect("connect");
        let (mut reader, mut writer) = stream.into_split();
        let feed = async {
            for byte in "GET /orders HTTP/1.1\r\nX-Slow: "
                .bytes()
                .chain([b'a'; 200])
            {
                if writer.write_all(&[byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            std::future::pending::<()>().await;
        };
        let mut buf = [0u8; 256];
        tokio::select! {
            () = feed => unreachable!("feeding ends only by failing"),
            read = reader.read(&mut buf) => read.map_or(0, |n| n),
        }
    });
    assert_eq!(send_raw(proxy, &get("")).await.0, 200);
    let answered = tokio::time::timeout(PROPAGATION, slow)
        .await
        .expect("the slow connection is closed")
        .expect("the slow client ran");
    assert_eq!(answered, 0, "closed without an answer");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700) && took < Duration::from_secs(5),
        "closed after {took:?}"
    );
}
