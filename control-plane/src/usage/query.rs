//! `QueryUsageLogsRequest` -> filters and a position, and rows -> one page
//! with an opaque token for the next.

use ipgate_shared::{proto::admin::v1 as admin, time};

use crate::{
    status::InvalidRequest,
    store::{UsageCursor, UsageFilter, UsageRecord},
};

/// Page size when the request says 0.
pub const DEFAULT_PAGE_SIZE: u32 = 100;
/// Largest page size.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// First byte of every page token, so the format can change later.
const TOKEN_VERSION: u8 = 1;

/// A validated usage query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageQuery {
    pub filter: UsageFilter,
    pub cursor: Option<UsageCursor>,
    pub page_size: u32,
}

/// Validates filters, page size and page token.
pub fn parse(req: admin::QueryUsageLogsRequest) -> Result<UsageQuery, InvalidRequest> {
    let admin::QueryUsageLogsRequest {
        api,
        api_key_id,
        method,
        status_code,
        page_size,
        page_token,
        reason: _,
        client_ip: _,
        start_time: _,
        end_time: _,
    } = req;
    let mut bad = InvalidRequest::default();
    let status = match status_code {
        0 => Some(None),
        s => bad.check(
            "status_code",
            u16::try_from(s)
                .ok()
                .filter(|s| (100..=599).contains(s))
                .map(Some)
                .ok_or_else(|| {
                    format!("{s} is not an HTTP status code; give 100-599, or 0 for any")
                }),
        ),
    };
    let page_size = match page_size {
        0 => Some(DEFAULT_PAGE_SIZE),
        n if n <= MAX_PAGE_SIZE => Some(n),
        n => {
            bad.add(
                "page_size",
                format!("{n} is more than {MAX_PAGE_SIZE} entries; ask for 1-{MAX_PAGE_SIZE}, or 0 for {DEFAULT_PAGE_SIZE}"),
            );
            None
        }
    };
    let cursor = match page_token.as_str() {
        "" => Some(None),
        token => bad.check("page_token", decode_token(token).map(Some)),
    };
    let nonempty = |s: String| {
        let s = s.trim().to_owned();
        (!s.is_empty()).then_some(s)
    };
    bad.or_value(|| {
        Some(UsageQuery {
            filter: UsageFilter {
                api: nonempty(api),
                api_key_id: nonempty(api_key_id),
                // Methods are stored as sent, which is upper case for every
                // standard one; operators type `get` as often as `GET`.
                method: nonempty(method).map(|m| m.to_ascii_uppercase()),
                status: status?,
            },
            cursor: cursor?,
            page_size: page_size?,
        })
    })
}

/// The first `page_size` rows as a page; a token when more rows follow.
pub fn page(mut rows: Vec<UsageRecord>, page_size: u32) -> admin::QueryUsageLogsResponse {
    let more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let next_page_token = match rows.last() {
        Some(last) if more => encode_token(UsageCursor {
            time_ms: last.time_ms,
            id: last.id,
        }),
        _ => String::new(),
    };
    admin::QueryUsageLogsResponse {
        entries: rows.into_iter().map(entry).collect(),
        next_page_token,
    }
}

fn entry(row: UsageRecord) -> admin::UsageLogEntry {
    let UsageRecord {
        id: _,
        request_id,
        time_ms,
        api,
        api_key_id,
        method,
        path,
        status,
        client_ip,
        reason,
        matched_label,
        enforcer_id,
    } = row;
    admin::UsageLogEntry {
        request_id,
        time: Some(time::to_timestamp(time::from_millis(time_ms))),
        api,
        api_key_id,
        method,
        path,
        status_code: u32::from(status),
        client_ip,
        reason,
        matched_label,
        enforcer_id,
    }
}

/// The position as lowercase hex of a version byte and two big-endian i64s.
fn encode_token(cursor: UsageCursor) -> String {
    let mut bytes = Vec::with_capacity(17);
    bytes.push(TOKEN_VERSION);
    bytes.extend_from_slice(&cursor.time_ms.to_be_bytes());
    bytes.extend_from_slice(&cursor.id.to_be_bytes());
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Result<UsageCursor, &'static str> {
    const BAD: &str = "not a page token from this API; pass next_page_token back unchanged";
    if token.len() != 34 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(BAD);
    }
    let bytes: Vec<u8> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<Result<_, _>>()
        .map_err(|_| BAD)?;
    let (version, rest) = bytes.split_first().ok_or(BAD)?;
    let (time, id) = rest.split_at(8);
    match (*version, <[u8; 8]>::try_from(time), <[u8; 8]>::try_from(id)) {
        (TOKEN_VERSION, Ok(time), Ok(id)) => Ok(UsageCursor {
            time_ms: i64::from_be_bytes(time),
            id: i64::from_be_bytes(id),
        }),
        _ => Err(BAD),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let cursor = UsageCursor {
            time_ms: 1_800_000_000_123,
            id: 42,
        };
        assert_eq!(decode_token(&encode_token(cursor)), Ok(cursor));
        for garbage in ["x", "zz", &"0".repeat(34), &"f".repeat(33), "ééé"] {
            assert!(decode_token(garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn page_sizes_and_status_codes_are_checked() {
        let q = parse(admin::QueryUsageLogsRequest::default()).unwrap();
        assert_eq!(q.page_size, DEFAULT_PAGE_SIZE);
        let err = parse(admin::QueryUsageLogsRequest {
            page_size: 1001,
            status_code: 42,
            page_token: "garbage".into(),
            ..Default::default()
        })
        .unwrap_err();
        let fields: Vec<&str> = err.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["status_code", "page_size", "page_token"]);
    }
}
