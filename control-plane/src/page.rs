//! Paging of list RPCs: page sizes, and page tokens — opaque to callers, a
//! version byte, the kind of list and the position after the last row
//! returned, as lowercase hex.

/// Page size when a request says 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page size.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The page size a request asks for: 0 means the default.
pub fn size(n: u32) -> Result<u32, String> {
    match n {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n <= MAX_PAGE_SIZE => Ok(n),
        n => Err(format!(
            "{n} is more than {MAX_PAGE_SIZE} entries; ask for 1-{MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}"
        )),
    }
}

/// First byte of every page token, so the format can change later.
const VERSION: u8 = 1;

/// Which list a token pages through: a token of one is refused by another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Usage = 1,
    Apis = 2,
    Keys = 3,
    Audit = 4,
}

/// Why a page token was refused.
pub const BAD_TOKEN: &str = "not a page token from this list; pass next_page_token back unchanged";

/// A token for the position `payload` in the `kind` list.
pub fn encode(kind: Kind, payload: &[u8]) -> String {
    [VERSION, kind as u8]
        .iter()
        .chain(payload)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The position in a token made by [`encode`] for the same `kind`.
pub fn decode(kind: Kind, token: &str) -> Result<Vec<u8>, &'static str> {
    if !token.len().is_multiple_of(2) || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BAD_TOKEN);
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| BAD_TOKEN)?;
    match bytes.as_slice() {
        [VERSION, k, payload @ ..] if *k == kind as u8 => Ok(payload.to_vec()),
        _ => Err(BAD_TOKEN),
    }
}

/// An integer position, as 8 big-endian bytes.
pub fn int(n: i64) -> [u8; 8] {
    n.to_be_bytes()
}

/// The integer at the start of `bytes` and the rest.
pub fn take_int(bytes: &[u8]) -> Result<(i64, &[u8]), &'static str> {
    let (head, rest) = bytes.split_at_checked(8).ok_or(BAD_TOKEN)?;
    let head: [u8; 8] = head.try_into().map_err(|_| BAD_TOKEN)?;
    Ok((i64::from_be_bytes(head), rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let mut payload = int(1_800_000_000_123).to_vec();
        payload.extend_from_slice(&int(42));
        let token = encode(Kind::Usage, &payload);
        let back = decode(Kind::Usage, &token).unwrap();
        let (time, rest) = take_int(&back).unwrap();
        let (id, rest) = take_int(rest).unwrap();
        assert_eq!((time, id, rest.len()), (1_800_000_000_123, 42, 0));
        assert!(decode(Kind::Audit, &token).is_err());
        for garbage in ["x", "zz", "0", "ééé", "0201"] {
            assert!(decode(Kind::Usage, garbage).is_err(), "{garbage}");
        }
    }
}
