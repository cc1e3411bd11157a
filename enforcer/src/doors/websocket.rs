//! WebSocket upgrades through the proxy door (docs/door-proxy.md).
//!
//! The upgrade request is decided like any other request; when it is
//! allowed and the upstream answers `101 Switching Protocols`, the door
//! answers the client with that `101` and joins the two upgraded
//! connections, copying bytes both ways until either side closes. What
//! flows inside is not looked at: one WebSocket is one decided request.
//!
//! Joined connections are not requests a drain can wait for: they have no
//! end the door knows of. At shutdown they are closed once the requests in
//! flight have finished (or the drain timeout has passed); clients
//! reconnect, to another enforcer.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;
use tracing::{Instrument, debug, debug_span};

/// The WebSockets a door has joined, and the signal that closes them.
#[derive(Debug)]
pub(crate) struct Tunnels {
    close: watch::Sender<bool>,
}

impl Tunnels {
    pub(crate) fn new() -> Self {
        Tunnels {
            close: watch::Sender::new(false),
        }
    }

    /// Joins the client's upgraded connection to the upstream's once both
    /// have switched, in a task of its own, until either side closes or
    /// [`Tunnels::close_all`].
    pub(crate) fn join(&self, client: OnUpgrade, upstream: OnUpgrade, request_id: &str) {
        let mut close = self.close.subscribe();
        let span = debug_span!("websocket", request_id);
        tokio::spawn(
            async move {
                let (client, upstream) = match tokio::try_join!(client, upstream) {
                    Ok(both) => both,
                    Err(e) => {
                        debug!(error = %e, "upgrade did not complete");
                        return;
                    }
                };
                let mut client = TokioIo::new(client);
                let mut upstream = TokioIo::new(upstream);
                tokio::select! {
                    copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                        match copied {
                            Ok((up, down)) => debug!(up, down, "websocket closed"),
                            Err(e) => debug!(error = %e, "websocket ended with an error"),
                        }
                    }
                    () = crate::shutdown::requested(&mut close) => {
                        debug!("websocket closed at shutdown");
                    }
                }
            }
            .instrument(span),
        );
    }

    /// Closes every joined WebSocket, now and as soon as any still
    /// switching has.
    pub(crate) fn close_all(&self) {
        self.close.send_replace(true);
    }
}
