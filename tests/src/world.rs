//! The usual stage of a topology test: a control plane, an API `orders`
//! with one key, an enforcer proxying `orders` to a stand-in upstream, all
//! synced — plus requests through the proxy from chosen 127.0.0.x sources.

use std::{net::SocketAddr, time::Duration};

use ipgate_shared::proto::admin::v1::{
    CreateApiKeyRequest, CreateApiRequest, GetRevisionStatusRequest, QueryUsageLogsRequest,
    UsageLogEntry,
};

use crate::{
    Backend, ControlPlane, Enforcer,
    admin::{current_revision, ip},
    eventually,
    http::{self, Response},
    process::AdminClient,
    upstream,
};

/// API slug of the stage.
pub const API: &str = "orders";
/// How long a change may take to reach the enforcer before a test gives up
/// (docs/sync-protocol.md's worst case; the target is well under a second).
pub const PROPAGATION: Duration = Duration::from_secs(10);

/// Creates API `orders` and one key for it: the key's (secret, id).
pub async fn create_orders_with_key(admin: &mut AdminClient) -> (String, String) {
    admin
        .create_api(CreateApiRequest {
            slug: API.into(),
            name: "Orders".into(),
            ..Default::default()
        })
        .await
        .expect("create API");
    let created = admin
        .create_api_key(CreateApiKeyRequest {
            api: API.into(),
            name: "first key".into(),
            ..Default::default()
        })
        .await
        .expect("create key")
        .into_inner();
    (created.secret, created.key.expect("key").id)
}

/// A control plane, API `orders`, one key for it and an enforcer, synced.
pub struct World {
    pub cp: ControlPlane,
    /// Owner of the default tenant.
    pub admin: AdminClient,
    pub enforcer: Enforcer,
    pub upstream: SocketAddr,
    /// The key's secret.
    pub key: String,
    pub key_id: String,
}

impl World {
    /// Starts everything and waits until the enforcer lets the key through
    /// (from 127.0.0.1).
    pub async fn start(backend: &Backend) -> World {
        Self::start_with(backend, &[]).await
    }

    /// Like [`World::start`], with more control-plane flags.
    pub async fn start_with(backend: &Backend, control_plane_args: &[&str]) -> World {
        Self::start_with_args(backend, control_plane_args, &[]).await
    }

    /// Like [`World::start`], with more control-plane and enforcer flags.
    pub async fn start_with_args(
        backend: &Backend,
        control_plane_args: &[&str],
        enforcer_args: &[&str],
    ) -> World {
        let upstream = upstream::start().await;
        let cp = ControlPlane::start_with(backend, control_plane_args);
        let mut admin = cp.admin().await;
        let (key, key_id) = create_orders_with_key(&mut admin).await;
        let enforcer = Enforcer::start_with(&cp, API, upstream, enforcer_args, &[]);
        let world = World {
            key_id,
            key,
            cp,
            admin,
            enforcer,
            upstream,
        };
        world.wait_for("127.0.0.1", &world.key, 200).await;
        world
    }

    /// `GET /orders/7` from `from` with `key` in `X-API-Key` (none when empty).
    pub async fn call(&self, from: &str, key: &str) -> Response {
        self.request(from, "GET", "/orders/7", key).await
    }

    /// A request through the proxy from `from`.
    pub async fn request(&self, from: &str, method: &str, path: &str, key: &str) -> Response {
        let headers: &[(&str, &str)] = if key.is_empty() {
            &[]
        } else {
            &[("x-api-key", key)]
        };
        http::request(ip(from), self.enforcer.proxy_addr, method, path, headers).await
    }

    /// Polls `GET /orders/7` from `from` with `key` until it answers
    /// `status` (changes reach the enforcer asynchronously).
    pub async fn wait_for(&self, from: &str, key: &str, status: u16) -> Response {
        let what = format!("{from} to get {status}");
        eventually(PROPAGATION, &what, || async {
            let res = self.call(from, key).await;
            (res.status == status).then_some(res)
        })
        .await
        .0
    }

    /// Waits until the control plane's current revision is live: applied
    /// and acknowledged by the enforcer (`GetRevisionStatus`).
    pub async fn wait_live(&self) {
        let mut admin = self.admin.clone();
        let revision = current_revision(&mut admin).await;
        let what = format!("revision {revision} to be live on the enforcer");
        eventually(PROPAGATION, &what, || {
            let mut admin = admin.clone();
            async move {
                let status = admin
                    .get_revision_status(GetRevisionStatusRequest { revision })
                    .await
                    .ok()?
                    .into_inner();
                (status.live && status.enforcers_acked >= 1).then_some(())
            }
        })
        .await;
    }

    /// The usage-log entry of the request with `request_id`, once stored.
    pub async fn logged(&self, request_id: &str) -> UsageLogEntry {
        let what = format!("request {request_id} in the usage log");
        eventually(PROPAGATION, &what, || {
            let mut admin = self.admin.clone();
            async move {
                let page = admin
                    .query_usage_logs(QueryUsageLogsRequest {
                        page_size: 1000,
                        ..Default::default()
                    })
                    .await
                    .ok()?
                    .into_inner();
                page.entries
                    .into_iter()
                    .find(|e| e.request_id == request_id)
            }
        })
        .await
        .0
    }
}
