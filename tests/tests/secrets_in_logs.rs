//! Secrets never reach a log: the real binaries, given URLs and tokens that
//! carry secrets, log them with the secrets replaced by `***` and tokens cut
//! to their kind.

use std::time::Duration;

use ipgate_tests::{Backend, ControlPlane, Enforcer, eventually, upstream};

/// The test PostgreSQL's URL with a password in its userinfo and in its
/// query, and a client key path, plus the secrets to look for. The test
/// server trusts local connections, so any password does; a URL that
/// brings its own password keeps it.
fn with_secrets(url: &str) -> (String, [String; 2]) {
    let (scheme, rest) = url.split_once("://").expect("a database URL");
    let (userinfo, place) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (user, password) = userinfo
        .split_once(':')
        .map_or((userinfo, "pw-in-url-7f3a9c"), |(u, p)| (u, p));
    let key = "sslkey-secret-2d9e";
    let url = format!(
        "{scheme}://{user}:{password}@{place}?sslmode=disable&password={password}\
         &sslkey=/keys/{key}.pem&application_name=ipgate-e2e"
    );
    (url, [password.to_owned(), key.to_owned()])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_url_is_logged_without_its_secrets() {
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let (url, secrets) = with_secrets(backend.url());
    let cp = ControlPlane::start_on(&url, &[]);
    let log = cp.log();
    let ready = log
        .lines()
        .find(|l| l.contains("database ready"))
        .unwrap_or_else(|| panic!("no `database ready` line in:\n{log}"));
    let (scheme, rest) = url.split_once("://").expect("URL");
    let user = rest.split(':').next().unwrap_or_default();
    for shown in [
        format!("database={scheme}://{user}:***@"),
        "?sslmode=disable&password=***&sslkey=***&application_name=ipgate-e2e".to_owned(),
    ] {
        assert!(ready.contains(&shown), "{shown:?} missing from: {ready}");
    }
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "{secret:?} logged:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_urls_and_tokens_are_logged_without_their_secrets() {
    let backend = Backend::sqlite();
    let cp = ControlPlane::start(&backend);
    let password = "cp-secret-5e21b0";
    let token_secret = "NotTheRightSecret0000000000000000000000000000";
    let enforcer = Enforcer::start_at(
        &format!("http://ops:{password}@{}", cp.addr),
        "orders",
        upstream::start().await,
        &format!("ipg_enf_{token_secret}"),
    );
    // The control plane refuses the token; the enforcer says which it sent.
    let (refused, _) = eventually(
        Duration::from_secs(20),
        "the refusal in the log",
        || async {
            enforcer
                .log()
                .lines()
                .find(|l| l.contains("refused this enforcer"))
                .map(str::to_owned)
        },
    )
    .await;
    for shown in [
        format!("control_plane=http://ops:***@{}", cp.addr),
        "token=ipg_enf_…".to_owned(),
    ] {
        assert!(
            refused.contains(&shown),
            "{shown:?} missing from: {refused}"
        );
    }
    let log = enforcer.log();
    for secret in [password, token_secret] {
        assert!(!log.contains(secret), "{secret:?} logged:\n{log}");
    }
}
