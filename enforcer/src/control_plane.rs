//! Connections to the control plane: one lazily connected channel per
//! configured address, and the enforcer token on every call.

use std::{sync::Arc, time::Duration};

use http::Uri;
use ipgate_shared::proto::sync::v1::sync_service_client::SyncServiceClient;
use tonic::{
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
};

use crate::{config::Token, error::Error};

/// How long to wait for a TCP connection to the control plane.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 pings notice a control plane that vanished without closing the
/// connection (a partition, a killed VM), so the enforcer reconnects.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Every control-plane address, ready to call.
#[derive(Clone)]
pub(crate) struct ControlPlane {
    targets: Arc<[(Uri, Channel)]>,
    authorization: MetadataValue<tonic::metadata::Ascii>,
}

impl ControlPlane {
    /// Prepares a channel per address; nothing connects until the first call.
    pub(crate) fn new(addresses: &[Uri], token: &Token) -> Result<Self, Error> {
        if addresses.is_empty() {
            return Err(Error::Config(
                "--control-plane needs at least one address".into(),
            ));
        }
        let targets = addresses
            .iter()
            .map(|uri| Ok((uri.clone(), channel(uri)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        let authorization = format!("Bearer {}", token.expose())
            .parse()
            .map_err(|_| Error::Config("--token cannot be sent as a header".into()))?;
        Ok(ControlPlane {
            targets: targets.into(),
            authorization,
        })
    }

    /// The address at position `i` (modulo the count) and a client for it.
    pub(crate) fn client(&self, i: usize) -> (&Uri, SyncServiceClient<Channel>) {
        let (uri, channel) = &self.targets[i % self.targets.len()];
        (uri, SyncServiceClient::new(channel.clone()))
    }

    /// Wraps `message` in a request that carries the enforcer token.
    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }
}

fn channel(uri: &Uri) -> Result<Channel, Error> {
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(Error::Config(format!(
                "--control-plane {uri}: https is not supported by this build; use http:// \
                 (on a trusted network or through a TLS-terminating sidecar)"
            )));
        }
        _ => {
            return Err(Error::Config(format!(
                "--control-plane {uri}: expected an address like http://127.0.0.1:7151"
            )));
        }
    }
    if uri.authority().is_none() {
        return Err(Error::Config(format!(
            "--control-plane {uri}: the address has no host"
        )));
    }
    Ok(Endpoint::from(uri.clone())
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect_lazy())
}
