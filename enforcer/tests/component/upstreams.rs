//! Scripted upstreams for the proxy door's forwarding tests: a handler per
//! test, served on loopback over HTTP/1.1 and h2c, or over TLS with a
//! certificate from a CA made for the test; bodies the test feeds chunk by
//! chunk; and clients that send through the door.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use ipgate_enforcer::Running;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;

use crate::support::*;

/// A body either side builds: whole, or fed by a channel.
pub type Body = BoxBody<Bytes, Infallible>;

/// `text` as a whole body.
pub fn full(text: impl Into<Bytes>) -> Body {
    Full::new(text.into()).boxed()
}

/// A body that yields what is sent on the returned sender, and ends when
/// the sender is dropped.
pub fn fed() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let frames = ReceiverStream::new(rx);
    let stream = tokio_stream::StreamExt::map(frames, |b| Ok::<_, Infallible>(Frame::data(b)));
    (tx, StreamBody::new(stream).boxed())
}

/// Serves `handler` on a free loopback port, HTTP/1.1 and h2c (and
/// upgrades), on plain TCP or, with `tls`, over TLS.
async fn serve<F, Fut>(handler: F, tls: Option<TlsAcceptor>) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let handler = handler.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let answer = handler(request);
                    async move { Ok::<_, Infallible>(answer.await) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = match tls {
                    None => {
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await
                    }
                    Some(tls) => {
                        let Ok(stream) = tls.accept(stream).await else {
                            return;
                        };
                        builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), service)
                            .await
                    }
                };
            });
        }
    });
    addr
}

/// An upstream on plain TCP.
pub async fn start<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    serve(handler, None).await
}

/// An upstream over TLS with `certs`' certificate, offering h2 and
/// http/1.1 in ALPN.
pub async fn start_tls<F, Fut>(handler: F, certs: &Certs) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    serve(handler, Some(TlsAcceptor::from(certs.server.clone()))).await
}

/// A CA made for one test, its PEM file, and a server certificate it
/// signed for `127.0.0.1` and `localhost`.
pub struct Certs {
    _dir: tempfile::TempDir,
    /// The CA certificate, PEM: what `--upstream-ca` names.
    pub ca_file: PathBuf,
    server: Arc<ServerConfig>,
}

impl Certs {
    pub fn new() -> Certs {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "ipgate test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, &ca_key);

        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone(), ca_cert.der().clone()];
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Certs {
            _dir: dir,
            ca_file,
            server: Arc::new(server),
        }
    }

    pub fn ca_path(&self) -> &Path {
        &self.ca_file
    }
}

/// A synced enforcer proxying `orders` to `upstream` (a whole URL), with
/// `flags`.
pub async fn door(
    fake: &mut FakeControlPlane,
    world: &World,
    upstream: &str,
    flags: &[&str],
) -> (Running, Session) {
    let mut args = vec!["--upstream", upstream, "--api", "orders"];
    args.extend_from_slice(flags);
    synced(fake, world, &args).await
}

/// A client of the door, HTTP/1.1 unless `h2c`.
pub fn client(h2c: bool) -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new())
        .http2_only(h2c)
        .build_http()
}

/// Sends `request` (a path and headers) to the door and waits for the head
/// of the answer.
pub async fn send_to(
    running: &Running,
    client: &Client<HttpConnector, Body>,
    request: Request<Body>,
) -> Response<Incoming> {
    let (mut parts, body) = request.into_parts();
    let proxy = running.proxy_addr.expect("proxy door running");
    parts.uri = format!("http://{proxy}{}", parts.uri).parse().unwrap();
    within(
        "the proxy to answer",
        client.request(Request::from_parts(parts, body)),
    )
    .await
    .expect("the proxy answers")
}

/// Status, headers and whole body of an answer.
pub async fn read(response: Response<Incoming>) -> (StatusCode, HeaderMap, Bytes) {
    let (parts, body) = response.into_parts();
    let body = within("the body", body.collect())
        .await
        .expect("the body arrives")
        .to_bytes();
    (parts.status, parts.headers, body)
}

/// `GET path` with the world's `local` key (allowed from 127.0.0.1).
pub fn get(world: &World, path: &str) -> http::request::Builder {
    Request::get(path).header("x-api-key", &world.local.secret)
}

/// The request ids and statuses the control plane has received.
pub fn status_of(fake: &FakeControlPlane, request_id: &str) -> Option<u32> {
    fake.events()
        .into_iter()
        .find(|e| e.request_id == request_id)
        .map(|e| e.status_code)
}
