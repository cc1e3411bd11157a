//! A TCP proxy the test controls, put between enforcers and a control
//! plane on loopback: it forwards, cuts (closes every connection and
//! refuses new ones), or freezes (stops forwarding on open connections
//! without closing them: a half-open connection), as told.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::watch,
};

/// What the link does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bytes flow both ways.
    Forward,
    /// Every connection is closed and new ones are refused.
    Cut,
    /// Open connections stay open but carry nothing; new ones flow.
    Freeze,
}

/// A running link from its own loopback port to `target`.
pub struct Link {
    /// Where enforcers connect.
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// Bumped by `freeze`: connections opened before it stop forwarding.
    generation: Arc<Mutex<u64>>,
    task: tokio::task::JoinHandle<()>,
}

impl Link {
    /// Starts forwarding to `target`.
    pub async fn start(target: SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the link");
        let addr = listener.local_addr().expect("link address");
        let (mode, watching) = watch::channel(Mode::Forward);
        let generation = Arc::new(Mutex::new(0u64));
        let task = tokio::spawn(accept(listener, target, watching, Arc::clone(&generation)));
        Link {
            addr,
            mode,
            generation,
            task,
        }
    }

    /// `http://<addr>`, for `--control-plane`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Forwards again; frozen connections stay frozen.
    pub fn forward(&self) {
        self.mode.send_replace(Mode::Forward);
    }

    /// Closes every connection and refuses new ones until `forward`.
    pub fn cut(&self) {
        self.mode.send_replace(Mode::Cut);
    }

    /// Stops forwarding on every open connection without closing it; new
    /// connections are forwarded.
    pub fn freeze(&self) {
        *self.generation.lock().expect("generation") += 1;
        self.mode.send_replace(Mode::Freeze);
        self.mode.send_replace(Mode::Forward);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    mode: watch::Receiver<Mode>,
    generation: Arc<Mutex<u64>>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        if *mode.borrow() == Mode::Cut {
            drop(client);
            continue;
        }
        let born = *generation.lock().expect("generation");
        let (mode, generation) = (mode.clone(), Arc::clone(&generation));
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            pipe(client, server, mode, born, generation).await;
        });
    }
}

/// Copies both ways until either side closes, the link is cut, or the
/// connection is frozen (then it holds both sockets open and idle).
async fn pipe(
    client: TcpStream,
    server: TcpStream,
    mut mode: watch::Receiver<Mode>,
    born: u64,
    generation: Arc<Mutex<u64>>,
) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let frozen = tokio::select! {
            n = cr.read(&mut up) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => sw.write_all(&up[..n]).await.is_err().then_some(false),
            },
            n = sr.read(&mut down) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => cw.write_all(&down[..n]).await.is_err().then_some(false),
            },
            changed = mode.changed() => {
                if changed.is_err() || *mode.borrow() == Mode::Cut {
                    return;
                }
                (*generation.lock().expect("generation") != born).then_some(true)
            }
        };
        match frozen {
            None => {}
            Some(false) => return,
            Some(true) => break,
        }
    }
    // Frozen: keep both halves open, forward nothing, until the test's
    // process ends.
    let _held = (cr, cw, sr, sw);
    std::future::pending::<()>().await;
}
