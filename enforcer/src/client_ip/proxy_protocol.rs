//! The PROXY protocol (HAProxy's v1 text and v2 binary headers) for a
//! listener behind an L4 balancer: the header is read off a new connection,
//! within [`HEADER_TIMEOUT`], before HTTP sees a byte, and the client address
//! it names stands in for the TCP peer.
//!
//! Parsing and the hand-over of the bytes read past the header are the
//! `proxy-header` crate's (`io::ProxiedStream`). A connection without a
//! complete, valid header naming a TCP client is refused, so no request is
//! ever decided on the balancer's own address.

use std::{io, net::SocketAddr, time::Duration};

use proxy_header::{ParseConfig, Protocol, io::ProxiedStream};
use tokio::io::AsyncRead;

/// How long a new connection may take to send its whole PROXY header.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The header did not arrive in time.
    #[error("no complete PROXY protocol header within {0:?}")]
    Timeout(Duration),
    /// The connection closed first, or sent something else.
    #[error("the connection did not start with a valid PROXY protocol header (v1 or v2): {0}")]
    Invalid(#[source] io::Error),
    /// v2 `LOCAL`, v1 `UNKNOWN` or a Unix socket: the balancer speaking for
    /// itself (a health check), with no client to decide on.
    #[error(
        "the PROXY header names no client (v2 LOCAL, v1 UNKNOWN or a Unix socket); \
         point the balancer's health checks at the gRPC health service or use TCP checks"
    )]
    NoClient,
    /// A datagram header on a stream connection.
    #[error("the PROXY header describes a UDP flow, not this TCP connection")]
    Datagram,
}

/// Reads the PROXY header at the start of `io` within `timeout`. Returns the
/// stream, which yields the bytes after the header, and the client address
/// the header names.
pub async fn read_header<IO: AsyncRead + Unpin>(
    io: IO,
    timeout: Duration,
) -> Result<(ProxiedStream<IO>, SocketAddr), ProxyHeaderError> {
    let config = ParseConfig {
        // Only the addresses are used; TLVs would only cost an allocation.
        include_tlvs: false,
        allow_v1: true,
        allow_v2: true,
    };
    let stream = tokio::time::timeout(timeout, ProxiedStream::create_from_tokio(io, config))
        .await
        .map_err(|_| ProxyHeaderError::Timeout(timeout))?
        .map_err(ProxyHeaderError::Invalid)?;
    let source = match stream.proxy_header().proxied_address() {
        None => return Err(ProxyHeaderError::NoClient),
        Some(address) if address.protocol == Protocol::Datagram => {
            return Err(ProxyHeaderError::Datagram);
        }
        Some(address) => address.source,
    };
    Ok((stream, source))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    use super::*;

    /// The v2 signature, then version 2 with `command`, `family`, and the
    /// address block (RFC-less, from HAProxy's proxy-protocol.txt §2.2).
    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        header.push(0x20 | command);
        header.push(family);
        let len = u16::try_from(addresses.len()).unwrap();
        header.extend_from_slice(&len.to_be_bytes());
        header.extend_from_slice(addresses);
        header
    }

    /// 203.0.113.7:4711 -> 192.0.2.1:80.
    const TCP4: [u8; 12] = [203, 0, 113, 7, 192, 0, 2, 1, 0x12, 0x67, 0, 80];

    async fn read(bytes: &[u8]) -> Result<(SocketAddr, Vec<u8>), ProxyHeaderError> {
        let (mut client, server) = duplex(1024);
        client.write_all(bytes).await.unwrap();
        drop(client);
        let (mut stream, source) = read_header(server, Duration::from_secs(5)).await?;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        Ok((source, rest))
    }

    #[tokio::test]
    async fn v1_and_v2_name_the_client_and_keep_what_follows() {
        let (source, rest) =
            read(b"PROXY TCP4 203.0.113.7 192.0.2.1 4711 80\r\nGET / HTTP/1.1\r\n")
                .await
                .unwrap();
        assert_eq!(source.to_string(), "203.0.113.7:4711");
        assert_eq!(rest, b"GET / HTTP/1.1\r\n");

        let (source, _) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 4711 80\r\n")
            .await
            .unwrap();
        assert_eq!(source.to_string(), "[2001:db8::7]:4711");

        let mut bytes = v2(1, 0x11, &TCP4);
        bytes.extend_from_slice(b"GET /");
        let (source, rest) = read(&bytes).await.unwrap();
        assert_eq!(source.to_string(), "203.0.113.7:4711");
        assert_eq!(rest, b"GET /");
    }

    #[tokio::test]
    async fn anything_but_a_clients_header_is_refused() {
        let refused = [
            (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], "Invalid"),
            (b"PROXY TCP4 203.0.113.7\r\n", "Invalid"),
            (b"PROXY TCP4 010.0.113.7 192.0.2.1 4711 80\r\n", "Invalid"),
            (b"PROXY TCP4 203.0.113.7 192.0.2.1 4711", "Invalid"),
            (b"", "Invalid"),
            (b"PROXY UNKNOWN\r\n", "NoClient"),
        ];
        for (bytes, expected) in refused {
            let error = read(bytes).await.unwrap_err();
            assert!(
                format!("{error:?}").starts_with(expected),
                "{:?}: {error:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        // LOCAL (a balancer's health check) and UDP.
        let local = read(&v2(0, 0x11, &TCP4)).await.unwrap_err();
        assert!(matches!(local, ProxyHeaderError::NoClient), "{local:?}");
        let udp = read(&v2(1, 0x12, &TCP4)).await.unwrap_err();
        assert!(matches!(udp, ProxyHeaderError::Datagram), "{udp:?}");
        // A v2 header whose length promises more than it carries.
        let mut short = v2(1, 0x11, &TCP4);
        short.truncate(short.len() - 2);
        let short = read(&short).await.unwrap_err();
        assert!(matches!(short, ProxyHeaderError::Invalid(_)), "{short:?}");
    }

    #[tokio::test]
    async fn a_silent_connection_times_out() {
        let (_client, server) = duplex(64);
        let error = read_header(server, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(error, ProxyHeaderError::Timeout(_)), "{error:?}");
    }
}
