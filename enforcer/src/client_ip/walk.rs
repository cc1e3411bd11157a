//! The walks over a forwarding header's elements, from the right: which
//! element, if any, names the client (docs/client-ip.md, "The rules").

use std::net::IpAddr;

use crate::client_ip::{
    ClientIp, Source,
    elements::Piece,
    node::{self, Hop},
    trusted::Trusted,
};

/// Most elements one walk reads. Past them the walk stops as
/// [`Source::TooManyHops`]: no real chain of trusted proxies is this long,
/// and the cost of a walk stays bounded whatever a header holds.
pub const MAX_HOPS: u8 = 32;

/// `--trusted-proxies`, for a request from a trusted `peer`: skips trusted
/// addresses from the right and returns the first untrusted one as `found`.
/// When every element is trusted, the left-most is the client. An element
/// that names no address stops the walk at the last trusted address read
/// (the peer, or the trusted hop that wrote that element). `None` when the
/// header is absent.
pub(crate) fn past_trusted<'a>(
    peer: IpAddr,
    pieces: impl Iterator<Item = Piece<'a>>,
    read: fn(&[u8]) -> Hop,
    trusted: &Trusted,
    found: Source,
) -> Option<ClientIp> {
    let mut known_good = peer;
    let mut examined = 0;
    for piece in pieces {
        if examined == MAX_HOPS {
            return Some(ClientIp::new(known_good, Source::TooManyHops));
        }
        examined += 1;
        match hop(piece, read) {
            Hop::Addr(ip) if trusted.contains(ip) => known_good = ip,
            Hop::Addr(ip) => return Some(ClientIp::new(ip, found)),
            Hop::Hidden => return Some(ClientIp::new(known_good, Source::Unknown)),
            Hop::Malformed => return Some(ClientIp::new(known_good, Source::Malformed)),
        }
    }
    (examined > 0).then(|| ClientIp::new(known_good, found))
}

/// `--trusted-hops N`: the `hops`-th `X-Forwarded-For` element from the
/// right (1 is the right-most). No header is the peer; fewer elements, or an
/// element among the `hops` that names no address, also decide on the peer,
/// recorded as the fallback it is.
pub(crate) fn nth_from_right<'a>(
    peer: IpAddr,
    pieces: impl Iterator<Item = Piece<'a>>,
    hops: u8,
) -> ClientIp {
    let mut examined = 0;
    for piece in pieces.take(usize::from(hops)) {
        examined += 1;
        match hop(piece, node::x_forwarded_for) {
            Hop::Addr(ip) if examined == hops => return ClientIp::new(ip, Source::XForwardedFor),
            Hop::Addr(_) => {}
            Hop::Hidden => return ClientIp::new(peer, Source::Unknown),
            Hop::Malformed => return ClientIp::new(peer, Source::Malformed),
        }
    }
    let source = if examined == 0 {
        Source::Peer
    } else {
        Source::TooFewHops
    };
    ClientIp::new(peer, source)
}

fn hop(piece: Piece<'_>, read: fn(&[u8]) -> Hop) -> Hop {
    match piece {
        Piece::Element(element) => read(element),
        Piece::TooLong => Hop::Malformed,
    }
}
