//! Connections to the control plane: one lazily connected channel per
//! configured address, and the enforcer token on every call.

use std::{sync::Arc, time::Duration};

use http::Uri;
use ipgate_shared::{proto::sync::v1::sync_service_client::SyncServiceClient, redact};
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
    targets: Arc<[Target]>,
    authorization: MetadataValue<tonic::metadata::Ascii>,
    /// The token as logs show it.
    shown_token: Arc<str>,
}

/// One control-plane address and its channel.
struct Target {
    /// The address as logs show it, without its secrets.
    shown: String,
    channel: Channel,
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
            .map(|uri| {
                Ok(Target {
                    shown: redact::url(&uri.to_string()),
                    channel: channel(uri)?,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let authorization = format!("Bearer {}", token.expose())
            .parse()
            .map_err(|_| Error::Config("--token cannot be sent as a header".into()))?;
        Ok(ControlPlane {
            targets: targets.into(),
            authorization,
            shown_token: redact::token(token.expose()).into(),
        })
    }

    /// The address at position `i` (modulo the count), as logs show it, and
    /// a client for it.
    pub(crate) fn client(&self, i: usize) -> (&str, SyncServiceClient<Channel>) {
        let target = &self.targets[i % self.targets.len()];
        (
            &target.shown,
            SyncServiceClient::new(target.channel.clone()),
        )
    }

    /// The token this enforcer presents, as logs show it (`ipg_enf_…`).
    pub(crate) fn shown_token(&self) -> &str {
        &self.shown_token
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
    let shown = redact::url(&uri.to_string());
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(Error::Config(format!(
                "--control-plane {shown}: https is not supported by this build; use http:// \
                 (on a trusted network or through a TLS-terminating sidecar)"
            )));
        }
        _ => {
            return Err(Error::Config(format!(
                "--control-plane {shown}: expected an address like http://127.0.0.1:7151"
            )));
        }
    }
    if uri.authority().is_none() {
        return Err(Error::Config(format!(
            "--control-plane {shown}: the address has no host"
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
