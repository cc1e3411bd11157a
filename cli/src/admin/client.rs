//! Connecting to the admin API: the address, a bounded connect, and the
//! bearer token on every call.

use std::time::Duration;

use anyhow::Context;
use ipgate_shared::{proto::admin::v1::admin_service_client::AdminServiceClient, redact};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

use super::{AdminArgs, errors::Unreachable};

/// How long connecting may take before the address is reported unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connected admin client that sends the token with every call.
pub type Admin = AdminServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` to each request.
#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

/// The address as a URI: `host:port` alone means plain HTTP/2.
pub fn normalize_addr(addr: &str) -> String {
    let addr = addr.trim();
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// Connects to the control plane at `--addr` with the token from
/// `--token` / `IPGATE_TOKEN`.
pub async fn connect(args: &AdminArgs) -> anyhow::Result<Admin> {
    let token = args.token.as_deref().map(str::trim).unwrap_or_default();
    if token.is_empty() {
        anyhow::bail!(
            "no admin token: pass --token or set IPGATE_TOKEN \
             (with `ipgate dev` running: export IPGATE_TOKEN=$(cat .ipgate/admin-token))"
        );
    }
    let bearer: MetadataValue<Ascii> = format!("Bearer {token}")
        .parse()
        .context("the admin token holds characters that cannot be sent in a header")?;

    let addr = normalize_addr(&args.addr);
    let endpoint = Endpoint::from_shared(addr.clone())
        .with_context(|| {
            format!(
                "--addr {:?} is not a valid address (try http://127.0.0.1:7151)",
                redact::url(&addr)
            )
        })?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let channel = endpoint.connect().await.map_err(|source| Unreachable {
        addr: addr.clone(),
        source: Box::new(source),
    })?;
    Ok(AdminServiceClient::with_interceptor(
        channel,
        Bearer(bearer),
    ))
}
