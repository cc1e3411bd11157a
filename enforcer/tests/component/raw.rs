//! HTTP/1.1 written byte for byte, so a test sends exactly the request
//! target and headers it means (no client library tidies them up).

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::support::within;

/// An answer as it came over the wire.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    /// The head, lowercased, for looking headers up.
    pub head: String,
    /// The head as it came, for values whose case matters.
    pub original_head: String,
    pub body: String,
}

impl Answer {
    /// The value of header `name` as sent (its case kept), if present.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.original_head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The value of header `name` (lowercase), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            (n.trim() == name).then(|| v.trim())
        })
    }
}

/// Sends `head` (request line and headers, without the closing blank line;
/// `Connection: close` is added) and reads the answer to its end.
pub async fn send(proxy: SocketAddr, head: &str) -> Answer {
    let stream = TcpStream::connect(proxy)
        .await
        .expect("connect to the proxy");
    send_on(stream, b"", head).await
}

/// A connection to `target` from loopback address `source`.
pub async fn connect_from(source: &str, target: SocketAddr) -> TcpStream {
    let source: std::net::IpAddr = source.parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    within("the connection", socket.connect(target))
        .await
        .unwrap_or_else(|e| panic!("connect {source} -> {target}: {e}"))
}

/// Like [`send`], on `stream`, after writing `preface` (a PROXY header).
pub async fn send_on(mut stream: TcpStream, preface: &[u8], head: &str) -> Answer {
    let mut request = preface.to_vec();
    request.extend_from_slice(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes());
    // The door may answer and close before it has read everything.
    let _ = stream.write_all(&request).await;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    within("the door to answer and close", async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Answer {
        status,
        head: head.to_ascii_lowercase(),
        original_head: head.to_owned(),
        body: body.to_owned(),
    }
}

/// `GET target` with an `X-API-Key` and the `extra` header lines.
pub fn get(target: &str, key: &str, extra: &[String]) -> String {
    request("GET", target, key, extra)
}

/// `method target` with an `X-API-Key` and the `extra` header lines.
pub fn request(method: &str, target: &str, key: &str, extra: &[String]) -> String {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: proxy.test\r\nX-API-Key: {key}");
    for line in extra {
        head.push_str("\r\n");
        head.push_str(line);
    }
    head
}

/// Writes `bytes` one at a time, `gap` apart, until the peer closes the
/// connection; returns how long that took, or `None` if it never closed
/// while there was something left to write and [`PATIENCE`](crate::support::PATIENCE)
/// had not passed.
pub async fn trickle(proxy: SocketAddr, bytes: Vec<u8>, gap: Duration) -> Option<Duration> {
    let stream = TcpStream::connect(proxy)
        .await
        .expect("connect to the proxy");
    let started = tokio::time::Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let feed = async {
        for byte in bytes {
            if writer.write_all(&[byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(gap).await;
        }
        // Everything sent and still open: wait for the close alone.
        std::future::pending::<()>().await;
    };
    let closed = async {
        let mut buf = [0u8; 1024];
        // Closed without an answer (end of stream or reset), as a header
        // timeout does; any bytes would be an answer to a head never sent.
        if let Ok(n @ 1..) = reader.read(&mut buf).await {
            panic!(
                "the proxy answered a head it never got: {:?}",
                String::from_utf8_lossy(&buf[..n])
            );
        }
    };
    let outcome = tokio::time::timeout(crate::support::PATIENCE, async {
        tokio::select! {
            () = feed => unreachable!("feeding never ends by itself"),
            () = closed => {}
        }
    })
    .await;
    outcome.ok().map(|()| started.elapsed())
}
