//! How much of a request's head the HTTP doors — the reverse proxy and the
//! auth endpoint — read, and for how long (docs/decisions.md, "Limits on
//! the HTTP doors").
//!
//! The door checks the size and count of a request's headers itself, so
//! that a client over a limit gets `431` with a JSON body like every other
//! refusal. hyper has to hold a head before the door can look at it, so
//! hyper's own limits are set to twice the door's: a head between the
//! door's limit and twice it gets the door's JSON `431`; one beyond that is
//! refused by hyper while it is read, with a bare `431` and no body (HTTP/1)
//! or a `431` and a reset stream (HTTP/2), because reading an unbounded head
//! just to answer it politely is what the limit is there to prevent.

use std::{future::Future, pin::pin, time::Duration};

use bytes::Bytes;
use http::{
    HeaderValue, Request, Response, StatusCode, Version,
    header::{CONNECTION, CONTENT_TYPE},
};
use http_body_util::Full;
use hyper_util::{
    rt::{TokioExecutor, TokioTimer},
    server::conn::auto,
};
use tokio::sync::Notify;

/// Default `--max-header-bytes`: 64 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: u32 = 64 * 1024;
/// Default `--max-headers`.
pub const DEFAULT_MAX_HEADERS: u32 = 100;
/// Default `--header-read-timeout`.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// hyper refuses an HTTP/1 read buffer limit below this.
const HYPER_MIN_BUF_SIZE: usize = 8192;

/// Limits on the HTTP doors, the proxy and the auth endpoint alike
/// (`ipgate enforcer --help`).
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
#[command(next_help_heading = "HTTP limits (proxy and auth endpoint)")]
pub struct ProxyLimits {
    /// Largest request line and headers, in bytes, that the HTTP proxy and
    /// the auth endpoint accept; larger requests get 431 HEADERS_TOO_LARGE.
    #[arg(
        long,
        env = "IPGATE_MAX_HEADER_BYTES",
        default_value_t = DEFAULT_MAX_HEADER_BYTES,
        value_parser = clap::value_parser!(u32).range(1024..=16 * 1024 * 1024)
    )]
    pub max_header_bytes: u32,

    /// Most header fields a request to the HTTP proxy or the auth endpoint
    /// may carry; more get 431 TOO_MANY_HEADERS.
    #[arg(
        long,
        env = "IPGATE_MAX_HEADERS",
        default_value_t = DEFAULT_MAX_HEADERS,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub max_headers: u32,

    /// How long a client of the HTTP proxy or the auth endpoint may take to
    /// send a request's line and headers (`500ms`, `10s`, or plain seconds);
    /// then the connection is closed. An idle keep-alive connection is
    /// closed after as long.
    #[arg(
        long,
        env = "IPGATE_HEADER_READ_TIMEOUT",
        default_value = "10s",
        value_parser = parse_timeout
    )]
    pub header_read_timeout: Duration,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// Which limit a request's head went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exceeded {
    /// More bytes than `--max-header-bytes`.
    HeaderBytes,
    /// More fields than `--max-headers`.
    HeaderCount,
}

impl Exceeded {
    /// The exact JSON body of the door's `431`.
    pub const fn body(self) -> &'static str {
        match self {
            Exceeded::HeaderBytes => {
                r#"{"error":{"code":"HEADERS_TOO_LARGE","message":"The request line and headers are larger than this server accepts"}}"#
            }
            Exceeded::HeaderCount => {
                r#"{"error":{"code":"TOO_MANY_HEADERS","message":"The request has more header fields than this server accepts"}}"#
            }
        }
    }
}

impl ProxyLimits {
    /// The connection builder, with hyper's limits as the backstop behind
    /// the door's own checks.
    pub fn builder(&self) -> auto::Builder<TokioExecutor> {
        let backstop_bytes = self.max_header_bytes.saturating_mul(2);
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_headers(usize::try_from(self.max_headers.saturating_mul(2)).unwrap_or(usize::MAX))
            .max_buf_size(
                usize::try_from(backstop_bytes)
                    .unwrap_or(usize::MAX)
                    .max(HYPER_MIN_BUF_SIZE),
            );
        builder.http2().max_header_list_size(backstop_bytes);
        builder
    }

    /// The limit `request`'s head is over, if any.
    pub fn exceeded<B>(&self, request: &Request<B>) -> Option<Exceeded> {
        let headers = request.headers();
        if headers.len() > usize::try_from(self.max_headers).unwrap_or(usize::MAX) {
            return Some(Exceeded::HeaderCount);
        }
        (head_size(request) > usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX))
            .then_some(Exceeded::HeaderBytes)
    }
}

/// The head's size as HTTP/1.1 writes it: `METHOD target HTTP/1.1\r\n`,
/// `name: value\r\n` per field, and the closing `\r\n`. HTTP/2 heads are
/// counted the same way, so one limit means one thing on both.
fn head_size<B>(request: &Request<B>) -> usize {
    const VERSION_AND_SPACES: usize = " HTTP/1.1\r\n".len() + 1;
    let uri = request.uri();
    let target = uri.scheme_str().map_or(0, |s| s.len() + "://".len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + ": \r\n".len() + value.len())
        .sum();
    request.method().as_str().len() + VERSION_AND_SPACES + target + fields + "\r\n".len()
}

/// Drives `connection` to its end, unless no request head has arrived
/// within `limit` of its start: then it is dropped, which closes it, and
/// `None` comes back. hyper times out HTTP/1 heads itself, but only once it
/// knows the connection is HTTP/1: a client that sends the first bytes of
/// the HTTP/2 preface and stalls, or never finishes an HTTP/2 request's
/// head, is caught only here.
pub(crate) async fn first_head_within<C: Future>(
    limit: Duration,
    head_seen: &Notify,
    connection: C,
) -> Option<C::Output> {
    let mut connection = pin!(connection);
    let first = tokio::time::timeout(limit, async {
        tokio::select! {
            ended = connection.as_mut() => Some(ended),
            () = head_seen.notified() => None,
        }
    })
    .await;
    match first {
        Err(_) => None,
        Ok(Some(ended)) => Some(ended),
        Ok(None) => Some(connection.await),
    }
}

/// The door's `431` for a head over a limit, before any decision (so
/// without diagnosis headers). An HTTP/1 connection is closed after it: the
/// rest of the request, body included, is not worth reading.
pub fn too_large(exceeded: Exceeded, version: Version) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(exceeded.body().as_bytes())));
    *response.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if version < Version::HTTP_2 {
        headers.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Parses a positive duration: `500ms`, `10s`, `1m` or plain seconds (`10`).
pub(crate) fn parse_timeout(input: &str) -> Result<Duration, String> {
    let s = input.trim();
    let duration = match s.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(s).map_err(|e| {
            format!("{input:?} is not a duration ({e}): use e.g. 500ms, 10s, 1m or plain seconds")
        })?,
    };
    if duration.is_zero() {
        return Err(format!("{input:?} is zero; give a positive duration"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn request(target: &str, fields: usize, value_len: usize) -> Request<()> {
        let mut builder = Request::get(target);
        for i in 0..fields {
            builder = builder.header(format!("x-h{i}"), "v".repeat(value_len));
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn the_head_is_counted_as_http_1_1_writes_it() {
        let mut r = request("/orders?x=1", 0, 0);
        // "GET /orders?x=1 HTTP/1.1\r\n\r\n"
        assert_eq!(head_size(&r), 28);
        r.headers_mut()
            .insert("host", HeaderValue::from_static("example"));
        // + "host: example\r\n"
        assert_eq!(head_size(&r), 28 + 15);
    }

    #[test]
    fn counts_and_sizes_over_the_limits_are_caught() {
        let limits = ProxyLimits::default();
        assert_eq!(limits.exceeded(&request("/", 100, 10)), None);
        assert_eq!(
            limits.exceeded(&request("/", 101, 10)),
            Some(Exceeded::HeaderCount)
        );
        assert_eq!(limits.exceeded(&request("/", 1, 60_000)), None);
        assert_eq!(
            limits.exceeded(&request("/", 1, 70_000)),
            Some(Exceeded::HeaderBytes)
        );
        // The request line counts too (a URI holds at most 64 KiB).
        let long_target = format!("/{}", "a".repeat(60_000));
        assert_eq!(limits.exceeded(&request(&long_target, 1, 5_000)), None);
        assert_eq!(
            limits.exceeded(&request(&long_target, 1, 6_000)),
            Some(Exceeded::HeaderBytes),
        );
    }

    #[test]
    fn bodies_are_json_in_the_error_shape() {
        for e in [Exceeded::HeaderBytes, Exceeded::HeaderCount] {
            assert!(
                e.body().starts_with(r#"{"error":{"code":""#),
                "{}",
                e.body()
            );
        }
    }

    #[test]
    fn timeouts_parse_and_zero_is_refused() {
        assert_eq!(parse_timeout("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_timeout("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_timeout("3"), Ok(Duration::from_secs(3)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}
