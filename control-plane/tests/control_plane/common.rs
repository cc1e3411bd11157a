//! Shared test harness: a fresh database per test (a SQLite file in a
//! temporary directory, or a new database in the test PostgreSQL), a
//! control plane on 127.0.0.1:0, and clients carrying a token.

use std::{future::Future, net::SocketAddr, time::Duration};

use ipgate_control_plane::{Config, Running, start};
use ipgate_shared::proto::{
    admin::v1::admin_service_client::AdminServiceClient,
    sync::v1::sync_service_client::SyncServiceClient,
};
use sqlx::{Connection, Executor, postgres::PgConnection};
use tempfile::TempDir;
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::Channel,
};

/// Owner token every test control plane is bootstrapped with.
pub const OWNER: &str = "ipg_admin_testOwnerTokenForTheControlPlaneSuite000000";
/// Enforcer token every test control plane is bootstrapped with.
pub const ENFORCER: &str = "ipg_enf_testEnforcerTokenForTheControlPlaneSuite00000";

/// A test's own, empty database.
pub struct Db {
    url: String,
    _dir: Option<TempDir>,
}

impl Db {
    /// A new SQLite file in a temporary directory (in a subdirectory that
    /// does not exist yet, so opening it must create it).
    pub fn sqlite() -> Db {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("state/ipgate.db").display());
        Db {
            url,
            _dir: Some(dir),
        }
    }

    /// A new database in the PostgreSQL named by `IPGATE_TEST_POSTGRES_URL`;
    /// `None` (skip, and say so) when it is unset, except under `CI=true`,
    /// where it fails.
    pub async fn postgres() -> Option<Db> {
        let Ok(admin_url) = std::env::var("IPGATE_TEST_POSTGRES_URL") else {
            skip(
                "no PostgreSQL: IPGATE_TEST_POSTGRES_URL is not set (tests/run.sh sets it once \
                 tests/postgres.sh has started one; by hand: `eval \"$(tests/postgres.sh start)\"`)",
            );
            return None;
        };
        let name = format!("ipgate_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the test PostgreSQL at {admin_url}: {e}"));
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create a test database");
        let base = admin_url
            .rsplit_once('/')
            .map_or(admin_url.as_str(), |(base, _)| base);
        Some(Db {
            url: format!("{base}/{name}"),
            _dir: None,
        })
    }

    /// The `--database` URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The configuration tests start from: loopback port 0, the test
    /// tokens, a short heartbeat.
    pub fn config(&self) -> Config {
        let mut config = Config::with_database(self.url());
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        config.bootstrap_token = Some(OWNER.to_owned());
        config.bootstrap_enforcer_token = Some(ENFORCER.to_owned());
        config.heartbeat_interval = Duration::from_millis(300);
        config
    }

    /// A control plane on this database.
    pub async fn start(&self) -> Running {
        start(self.config()).await.expect("start the control plane")
    }
}

/// Records that the running test skips, for `reason`; panics instead under
/// `CI=true`. A skip passes for cargo, which hides what passing tests print,
/// so it is written straight to stderr (libtest captures only the print
/// macros) and appended to the file `tests/run.sh` names in
/// `IPGATE_TEST_SKIP_LOG`, which it sums up at the end of the run.
#[track_caller]
pub fn skip(reason: &str) {
    use std::io::Write;
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true, so this test may not skip: {reason}"
    );
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed test)")
        .to_owned();
    let line = format!("control_plane {test}: {reason}");
    let _ = writeln!(std::io::stderr(), "SKIPPED {line}");
    if let Some(path) = std::env::var_os("IPGATE_TEST_SKIP_LOG") {
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| file.write_all(format!("{line}\n").as_bytes()));
    }
}

/// Declares `sqlite::<name>` and `postgres::<name>` tests running the async
/// scenario `<name>(db: Db)` on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::common::Db::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if let Some(db) = $crate::common::Db::postgres().await {
                        super::$scenario(db).await;
                    }
                }
            )*
        }
    };
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

/// An admin client.
pub type Admin = AdminServiceClient<InterceptedService<Channel, Bearer>>;
/// A sync client.
pub type Sync = SyncServiceClient<InterceptedService<Channel, Bearer>>;

async fn channel(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect to the control plane")
}

fn bearer(token: Option<&str>) -> Bearer {
    Bearer(token.map(|t| format!("Bearer {t}").parse().expect("ascii token")))
}

/// An admin client with `token` (none when `None`).
pub async fn admin_with(addr: SocketAddr, token: Option<&str>) -> Admin {
    AdminServiceClient::with_interceptor(channel(addr).await, bearer(token))
}

/// An admin client with the owner token.
pub async fn admin(addr: SocketAddr) -> Admin {
    admin_with(addr, Some(OWNER)).await
}

/// A sync client with `token` (none when `None`).
pub async fn sync_with(addr: SocketAddr, token: Option<&str>) -> Sync {
    SyncServiceClient::with_interceptor(channel(addr).await, bearer(token))
}

/// Polls `check` every 20 ms until it yields `Some`, or panics after
/// `timeout` naming what was awaited.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A second tenant, made by the default tenant's owner: (its id, its owner's secret).
pub async fn new_tenant(addr: SocketAddr, id: &str) -> String {
    use ipgate_shared::proto::admin::v1::CreateTenantRequest;
    admin(addr)
        .await
        .create_tenant(CreateTenantRequest {
            id: id.into(),
            name: format!("Tenant {id}"),
            ..Default::default()
        })
        .await
        .expect("create a tenant")
        .into_inner()
        .owner_secret
}

/// A new token of `role` made by the owner `owner`: its secret.
pub async fn new_token(
    owner: &mut Admin,
    role: ipgate_shared::proto::admin::v1::TokenRole,
) -> String {
    use ipgate_shared::proto::admin::v1::CreateTokenRequest;
    owner
        .create_token(CreateTokenRequest {
            name: format!("{role:?} token"),
            role: role.into(),
            validate_only: false,
        })
        .await
        .expect("create a token")
        .into_inner()
        .secret
}

/// The status code of a call's error, or `Ok` when it succeeded.
pub fn code<T>(result: Result<tonic::Response<T>, tonic::Status>) -> tonic::Code {
    match result {
        Ok(_) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

/// A usage event as an enforcer reports it.
pub fn usage_event(
    api: &str,
    key: &str,
    client_ip: &str,
    reason: &str,
    at: std::time::SystemTime,
) -> ipgate_shared::proto::sync::v1::UsageEvent {
    let status = match reason {
        "ALLOWED" | "WOULD_BLOCK_IP" | "UNSYNCED_FAIL_OPEN" => 200,
        "INVALID_API_KEY" => 401,
        "API_NOT_FOUND" => 404,
        "API_DISABLED" | "NOT_SYNCED" => 503,
        _ => 403,
    };
    ipgate_shared::proto::sync::v1::UsageEvent {
        request_id: uuid::Uuid::new_v4().to_string(),
        time: Some(ipgate_shared::time::to_timestamp(at)),
        api: api.into(),
        api_key_id: key.into(),
        method: "GET".into(),
        path: "/orders".into(),
        status_code: status,
        client_ip: client_ip.into(),
        reason: reason.into(),
        matched_label: String::new(),
        door: ipgate_shared::proto::sync::v1::Door::Check.into(),
        client_ip_source: ipgate_shared::proto::sync::v1::ClientIpSource::Named.into(),
        ..Default::default()
    }
}

/// Reports `events` as the enforcer `enforcer-1` holding `token`, in batches of 1,000.
pub async fn report(
    addr: SocketAddr,
    token: &str,
    events: Vec<ipgate_shared::proto::sync::v1::UsageEvent>,
) {
    let mut sync = sync_with(addr, Some(token)).await;
    for batch in events.chunks(1000) {
        sync.report_events(ipgate_shared::proto::sync::v1::ReportEventsRequest {
            batch_id: uuid::Uuid::new_v4().to_string(),
            enforcer_id: "enforcer-1".into(),
            events: batch.to_vec(),
            dropped_allowed: 0,
            dropped_blocked: 0,
            first_dropped: None,
            last_dropped: None,
            ..Default::default()
        })
        .await
        .expect("report usage events");
    }
}
