//! Request paths in one normal form, so that a route rule sees `/admin`
//! however a client spells it (docs/decisions.md, "Paths").
//!
//! [`normalize`] is the one function every door, the decision function and
//! every route rule put a path through. It follows RFC 3986 §6.2.2 —
//! percent-encoded *unreserved* characters (`A-Z a-z 0-9 - . _ ~`, §2.3) are
//! decoded, the hex of every other percent-encoding is uppercased, dot
//! segments are removed (§5.2.4), also when spelled `%2e` — and adds what an
//! access check needs on top:
//!
//! - duplicate slashes are merged (before dot segments are resolved, as
//!   nginx does), so `//admin` is `/admin`;
//! - characters a path may not hold as they are (space, `"`, `{`, non-ASCII
//!   text, ...) are percent-encoded, so there is one spelling of each path;
//! - anything from the first `?` or `#` on is the query or fragment, not
//!   the path, and is not part of the result.
//!
//! A path that cannot be put in that form without guessing how the service
//! behind ipgate reads it is refused ([`BadPath`]): an encoded `/` or `\`, a
//! raw `\`, a control character (raw or encoded), invalid percent-encoding,
//! dot segments that climb above the root, a dot segment with parameters
//! (`..;x`, which servlet containers resolve), a double-encoded dot or
//! separator (`%252e`), or a path not starting with `/` (an empty path is
//! `/`).
//!
//! The normal form has no `//`, no `.` or `..` segment, no percent-encoded
//! unreserved character and only uppercase hex; normalising it again gives
//! it back unchanged, without allocating.
//!
//! The percent-decoding here is written out rather than taken from the
//! `percent-encoding` crate: that crate decodes every octet, and this must
//! decode only unreserved ones and look at each of the others.

use std::borrow::Cow;

/// Why a path is refused: it has no normal form that every server behind
/// ipgate would read the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    /// Neither empty nor starting with `/` (e.g. `*` or `admin`).
    #[error("the path does not start with '/'")]
    NotAbsolute,
    /// `%2F` or `%5C`: some servers decode it into a separator, others not.
    #[error("the path holds an encoded '/' or '\\' (%2F or %5C)")]
    EncodedSeparator,
    /// A raw `\`, which some servers read as `/`.
    #[error("the path holds a backslash")]
    Backslash,
    /// A control character (`%00`-`%1F`, `%7F`), raw or percent-encoded.
    #[error("the path holds a control character")]
    Control,
    /// A `%` not followed by two hex digits.
    #[error("the path holds a '%' not followed by two hex digits")]
    InvalidEncoding,
    /// More `..` segments than there are segments before them.
    #[error("the path's '..' segments climb above the root")]
    AboveRoot,
    /// `.` or `..` with path parameters (`..;x`), which servlet containers
    /// resolve as a dot segment and RFC 3986 does not.
    #[error("the path holds a dot segment with parameters (like '..;x')")]
    DotSegmentWithParameters,
    /// `%252e`, `%252f` or `%255c`: a dot or separator for a server that
    /// decodes twice.
    #[error("the path holds a double-encoded dot, slash or backslash (like %252e)")]
    DoubleEncoded,
}

/// The path of `target` in normal form (see the module docs), or why it has
/// none. `target` may carry a query string or a fragment; they are left out.
/// A path already in normal form comes back borrowed.
pub fn normalize(target: &str) -> Result<Cow<'_, str>, BadPath> {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if path.is_empty() {
        // RFC 3986 §6.2.3: an empty path in an http URI is "/".
        return Ok(Cow::Borrowed("/"));
    }
    if !path.starts_with('/') {
        return Err(BadPath::NotAbsolute);
    }
    if is_normal(path) {
        Ok(Cow::Borrowed(path))
    } else {
        normalize_slowly(path).map(Cow::Owned)
    }
}

/// The segments a route rule compares, from a path in normal form: each
/// cut at its first `;` (or `%3B`), since servers such as Tomcat drop path
/// parameters before routing (`/admin;v=1/x` is `/admin/x` to them), and
/// empty ones left out.
pub fn route_segments(normal: &str) -> impl Iterator<Item = &str> {
    normal
        .split('/')
        .map(without_parameters)
        .filter(|s| !s.is_empty())
}

/// `segment` up to its first `;` or `%3B` (either case).
fn without_parameters(segment: &str) -> &str {
    let bytes = segment.as_bytes();
    let cut = (0..bytes.len()).find(|&i| {
        bytes[i] == b';'
            || (bytes[i] == b'%'
                && bytes
                    .get(i + 1..i + 3)
                    .is_some_and(|h| h.eq_ignore_ascii_case(b"3b")))
    });
    cut.map_or(segment, |i| &segment[..i])
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters a path holds as they are: unreserved ones and the reserved
/// ones RFC 3986's `pchar` allows raw (sub-delims, `:` and `@`). Reserved
/// characters keep their meaning only unencoded, so they are never decoded
/// into or encoded from.
fn is_kept(b: u8) -> bool {
    is_unreserved(b)
        || matches!(
            b,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

/// An octet that stays percent-encoded in normal form.
fn stays_encoded(octet: u8) -> bool {
    !is_unreserved(octet) && !is_control(octet) && octet != b'/' && octet != b'\\'
}

/// True when `path` (starting with `/`, without query) is already in normal
/// form: the common case, checked without allocating. It must agree with
/// [`normalize_slowly`]; a property test holds them to it.
fn is_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let octet = match bytes.get(i + 1..i + 3) {
                    Some(
                        &[
                            hi @ (b'0'..=b'9' | b'A'..=b'F'),
                            lo @ (b'0'..=b'9' | b'A'..=b'F'),
                        ],
                    ) => hex_value(hi).unwrap_or_default() << 4 | hex_value(lo).unwrap_or_default(),
                    _ => return false,
                };
                if !stays_encoded(octet) {
                    return false;
                }
                i += 3;
            }
            b'/' => i += 1,
            b if is_kept(b) => i += 1,
            _ => return false,
        }
    }
    if has_double_encoding(path) {
        return false;
    }
    let mut segments = path[1..].split('/').peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match classify(segment) {
            Ok(Segment::Name) => {}
            Ok(Segment::Empty) if last => {}
            _ => return false,
        }
    }
    true
}

/// What a segment (decoded as far as normal form decodes) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment {
    Empty,
    Dot,
    DotDot,
    Name,
}

fn classify(segment: &str) -> Result<Segment, BadPath> {
    Ok(match segment {
        "" => Segment::Empty,
        "." => Segment::Dot,
        ".." => Segment::DotDot,
        _ if matches!(without_parameters(segment), "." | "..") => {
            return Err(BadPath::DotSegmentWithParameters);
        }
        _ => Segment::Name,
    })
}

/// `%25` followed by the hex of `.`, `/` or `\`, in either case.
fn has_double_encoding(path: &str) -> bool {
    path.as_bytes().windows(5).any(|w| {
        w[..3].eq_ignore_ascii_case(b"%25")
            && [b"2e", b"2f", b"5c"]
                .iter()
                .any(|h| w[3..].eq_ignore_ascii_case(*h))
    })
}

/// Builds the normal form of `path` (starting with `/`, without query).
fn normalize_slowly(path: &str) -> Result<String, BadPath> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len() + 8);
    // Where each segment kept so far starts in `out` (at its '/'), so `..`
    // can take the last one back.
    let mut kept: Vec<usize> = Vec::new();
    let mut segment = String::new();
    let mut i = 1;
    loop {
        segment.clear();
        while i < bytes.len() && bytes[i] != b'/' {
            i += push_normal(&mut segment, bytes, i)?;
        }
        let kind = classify(&segment)?;
        match kind {
            Segment::Name => {
                kept.push(out.len());
                out.push('/');
                out.push_str(&segment);
            }
            // Merged slashes and "." segments leave nothing behind.
            Segment::Empty | Segment::Dot => {}
            Segment::DotDot => {
                let start = kept.pop().ok_or(BadPath::AboveRoot)?;
                out.truncate(start);
            }
        }
        if i >= bytes.len() {
            // RFC 3986 §5.2.4: a path ending in "/", "." or ".." ends in "/".
            if kind != Segment::Name {
                out.push('/');
            }
            break;
        }
        i += 1;
    }
    // Checked on the result: decoding `%32` or `%65` may have spelled one.
    if has_double_encoding(&out) {
        return Err(BadPath::DoubleEncoded);
    }
    Ok(out)
}

/// Appends the normal form of the character at `bytes[i]` (never `/`) to
/// `segment`; returns how many input bytes it took.
fn push_normal(segment: &mut String, bytes: &[u8], i: usize) -> Result<usize, BadPath> {
    let b = bytes[i];
    if b == b'%' {
        let hex = |at: usize| bytes.get(at).copied().and_then(hex_value);
        let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
            return Err(BadPath::InvalidEncoding);
        };
        let octet = hi << 4 | lo;
        if is_unreserved(octet) {
            segment.push(char::from(octet));
        } else if octet == b'/' || octet == b'\\' {
            return Err(BadPath::EncodedSeparator);
        } else if is_control(octet) {
            return Err(BadPath::Control);
        } else {
            push_encoded(segment, octet);
        }
        return Ok(3);
    }
    if is_kept(b) {
        segment.push(char::from(b));
    } else if b == b'\\' {
        return Err(BadPath::Backslash);
    } else if is_control(b) {
        return Err(BadPath::Control);
    } else {
        // Space, '"', '<', '>', '[', ']', '^', '`', '{', '|', '}' and each
        // byte of non-ASCII text: written the one way a URI may hold them.
        push_encoded(segment, b);
    }
    Ok(1)
}

fn push_encoded(segment: &mut String, octet: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    segment.push('%');
    segment.push(char::from(HEX[usize::from(octet >> 4)]));
    segment.push(char::from(HEX[usize::from(octet & 0xf)]));
}

#[cfg(test)]
mod tests;
