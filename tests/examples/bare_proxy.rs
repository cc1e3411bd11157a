//! The floor for the proxy door in `tests/bench/peers.sh`: a reverse proxy
//! built from the same crates (tokio, hyper) and the same upstream design
//! (one HTTP/1.1 upstream connection per client connection), that decides
//! nothing, reports nothing and forwards every request as it came. What
//! the proxy door costs beyond it is ipgate's own work; what it costs
//! beyond nginx and this floor does not is the stack's.
//!
//! `bare_proxy LISTEN UPSTREAM [MODE]`, both `host:port`. MODE:
//! - `multi` (default): one multi-thread runtime, a worker a core, one
//!   listener, as the enforcer runs;
//! - `per-core`: a current-thread runtime a core, each with a listener of
//!   its own on the same port (`SO_REUSEPORT`), so a connection, its
//!   upstream connection and every wake-up stay on one thread, as nginx's
//!   workers do.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, thread};

use anyhow::{Context, Result, bail};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    client::conn::http1 as client,
    server::conn::http1 as server,
    service::service_fn,
};
use hyper_util::rt::TokioIo;
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    sync::Mutex,
};

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream, mode) = match args.as_slice() {
        [l, u] => (l, u, "multi"),
        [l, u, m] => (l, u, m.as_str()),
        _ => bail!("usage: bare_proxy LISTEN UPSTREAM [multi|per-core]"),
    };
    let listen: SocketAddr = listen.parse().context("LISTEN")?;
    let upstream: SocketAddr = upstream.parse().context("UPSTREAM")?;
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    match mode {
        "multi" => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build()?
            .block_on(async {
                let listener = TcpListener::bind(listen).await?;
                accept(listener, upstream).await
            }),
        "per-core" => {
            let workers: Vec<_> = (0..cores)
                .map(|_| {
                    let socket = reuse_port_socket(listen)?;
                    Ok(thread::spawn(move || {
                        tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()?
                            .block_on(async { accept(socket.listen(1024)?, upstream).await })
                    }))
                })
                .collect::<Result<_>>()?;
            for worker in workers {
                worker
                    .join()
                    .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
            }
            Ok(())
        }
        other => bail!("MODE {other:?}: multi or per-core"),
    }
}

/// A socket bound to `addr` that other sockets may bind too: the kernel
/// spreads new connections over them.
fn reuse_port_socket(addr: SocketAddr) -> Result<TcpSocket> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.set_reuseport(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    Ok(socket)
}

async fn accept(listener: TcpListener, upstream: SocketAddr) -> Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            if let Err(e) = serve(stream, upstream).await {
                eprintln!("bare_proxy: {e:#}");
            }
        });
    }
}

/// Serves one client connection over an upstream connection of its own.
async fn serve(stream: TcpStream, upstream: SocketAddr) -> Result<()> {
    let up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let (sender, conn) = client::handshake::<_, Incoming>(TokioIo::new(up)).await?;
    tokio::spawn(conn);
    let sender = Arc::new(Mutex::new(sender));
    let service = service_fn(move |request: Request<Incoming>| {
        let sender = Arc::clone(&sender);
        async move { Ok::<_, Infallible>(forward(&sender, request).await) }
    });
    server::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await?;
    Ok(())
}

async fn forward(
    sender: &Mutex<client::SendRequest<Incoming>>,
    request: Request<Incoming>,
) -> Response<Body> {
    let mut sender = sender.lock().await;
    let answer = match sender.ready().await {
        Ok(()) => sender.send_request(request).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(response) => response.map(BodyExt::boxed_unsync),
        Err(_) => {
            let mut response = Response::new(
                Full::new(Bytes::from_static(b"upstream failed\n"))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}
