//! End-to-end harness: starts the real `ipgate` binary (built by
//! `cargo build -p ipgate`, which `tests/run.sh` does first) as a control
//! plane and as enforcers on loopback, against real SQLite files and a real
//! PostgreSQL, and talks to them as users do: gRPC for the admin API, HTTP
//! from chosen 127.0.0.x source addresses through the proxy.

pub mod admin;
pub mod backend;
pub mod docs;
pub mod events;
pub mod http;
pub mod link;
pub mod peers;
pub mod process;
pub mod skip;
pub mod timing;
pub mod tools;
pub mod upstream;
pub mod world;

use std::{future::Future, time::Duration};

pub use backend::Backend;
pub use process::{ControlPlane, Enforcer};
pub use world::World;

/// Owner token every test control plane is bootstrapped with.
pub const OWNER_TOKEN: &str = "ipg_admin_e2eOwnerTokenForTestsOnly0000000000000000000";
/// Enforcer token every test control plane is bootstrapped with.
pub const ENFORCER_TOKEN: &str = "ipg_enf_e2eEnforcerTokenForTestsOnly00000000000000000";

/// Polls `check` every 20 ms until it yields `Some`, or panics after
/// `timeout` saying what was awaited. Returns the value and how long it took.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = tokio::time::Instant::now();
    loop {
        if let Some(value) = check().await {
            return (value, started.elapsed());
        }
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Declares `sqlite::<name>` and `postgres::<name>` tests that run the
/// async scenario `<name>(backend)` on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(ipgate_tests::Backend::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    if let Some(backend) = ipgate_tests::Backend::postgres().await {
                        super::$scenario(backend).await;
                    }
                }
            )*
        }
    };
}
