//! Usage-log requests -> filters and a position, and rows -> one page with
//! an opaque token for the next. `QueryUsageLogs` and `ExportUsageLogs`
//! share the filters.

use std::net::IpAddr;

use ipgate_shared::{
    ClientIpSource, Door,
    decision::Reason,
    proto::admin::v1 as admin,
    time,
    usage::{UNKNOWN_CLIENT_IP_SOURCE, UNKNOWN_DOOR},
};
use ipnet::IpNet;

use crate::{
    invalid::InvalidRequest,
    page,
    request::{self, nonempty},
    store::{DroppedRecord, UsageCursor, UsageFilter, UsageRecord, ip_key},
};

/// `UsageLogEntry.kind` of one decided request.
pub const KIND_REQUEST: &str = "request";
/// `UsageLogEntry.kind` of a gap: requests an enforcer dropped.
pub const KIND_DROPPED: &str = "dropped";

/// Reason filter meaning "any allowed request".
pub const ALLOWED_ANY: &str = "ALLOWED_ANY";
/// Reason filter meaning "any refused request".
pub const BLOCKED_ANY: &str = "BLOCKED_ANY";

/// A validated usage query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageQuery {
    pub filter: UsageFilter,
    pub cursor: Option<UsageCursor>,
    pub page_size: u32,
}

/// The filter fields both usage-log requests carry.
pub struct Filters {
    pub api: String,
    pub api_key_id: String,
    pub method: String,
    pub status_code: u32,
    pub reason: String,
    pub client_ip: String,
    pub start_time: Option<prost_types::Timestamp>,
    pub end_time: Option<prost_types::Timestamp>,
    pub door: String,
    pub client_ip_source: String,
    pub enforcer_id: String,
    pub kind: String,
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
        reason,
        client_ip,
        start_time,
        end_time,
        door,
        client_ip_source,
        enforcer_id,
        kind,
    } = req;
    let mut bad = InvalidRequest::default();
    let filters = Filters {
        api,
        api_key_id,
        method,
        status_code,
        reason,
        client_ip,
        start_time,
        end_time,
        door,
        client_ip_source,
        enforcer_id,
        kind,
    };
    let filter = filter(&mut bad, filters);
    let page_size = request::page_size(&mut bad, page_size);
    let cursor = match page_token.as_str() {
        "" => Some(None),
        token => bad.check("page_token", decode_token(token).map(Some)),
    };
    bad.or_value(|| {
        Some(UsageQuery {
            filter: filter?,
            cursor: cursor?,
            page_size: page_size?,
        })
    })
}

/// Validates the filters of an export.
pub fn parse_export(req: admin::ExportUsageLogsRequest) -> Result<UsageFilter, InvalidRequest> {
    let admin::ExportUsageLogsRequest {
        api,
        api_key_id,
        method,
        status_code,
        reason,
        client_ip,
        start_time,
        end_time,
        door,
        client_ip_source,
        enforcer_id,
        kind,
    } = req;
    let mut bad = InvalidRequest::default();
    let filters = Filters {
        api,
        api_key_id,
        method,
        status_code,
        reason,
        client_ip,
        start_time,
        end_time,
        door,
        client_ip_source,
        enforcer_id,
        kind,
    };
    let filter = filter(&mut bad, filters);
    bad.or_value(|| filter)
}

/// Every filter checked; problems noted in `bad`.
pub fn filter(bad: &mut InvalidRequest, filters: Filters) -> Option<UsageFilter> {
    let Filters {
        api,
        api_key_id,
        method,
        status_code,
        reason,
        client_ip,
        start_time,
        end_time,
        door,
        client_ip_source,
        enforcer_id,
        kind,
    } = filters;
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
    let reasons = match nonempty(reason) {
        None => Some(None),
        Some(r) => bad.check("reason", reasons(&r)).map(Some),
    };
    let door = match nonempty(door) {
        None => Some(None),
        Some(d) => bad.check("door", door_name(&d)).map(Some),
    };
    let client_ip_source = match nonempty(client_ip_source) {
        None => Some(None),
        Some(s) => bad
            .check("client_ip_source", client_ip_source_name(&s))
            .map(Some),
    };
    let client_ips = match nonempty(client_ip) {
        None => Some(None),
        Some(ip) => bad.check("client_ip", ip_range(&ip)).map(Some),
    };
    let gaps = match nonempty(kind) {
        None => Some(None),
        Some(k) => bad.check("kind", kind_filter(&k)).map(Some),
    };
    let range = request::time_range(bad, start_time, end_time);
    let (start_ms, end_ms) = range?;
    Some(UsageFilter {
        api: nonempty(api),
        api_key_id: nonempty(api_key_id),
        // Methods are stored as sent, which is upper case for every
        // standard one; operators type `get` as often as `GET`.
        method: nonempty(method).map(|m| m.to_ascii_uppercase()),
        status: status?,
        reasons: reasons?,
        door: door?,
        client_ip_source: client_ip_source?,
        client_ips: client_ips?,
        start_ms,
        end_ms,
        enforcer_id: nonempty(enforcer_id),
        gaps: gaps?,
    })
}

/// A kind filter: whether it asks for gaps (`dropped`) or requests.
fn kind_filter(name: &str) -> Result<bool, String> {
    match name.to_ascii_lowercase().as_str() {
        KIND_REQUEST => Ok(false),
        KIND_DROPPED => Ok(true),
        _ => Err(format!(
            "{name:?} is not a kind: give {KIND_REQUEST} or {KIND_DROPPED}"
        )),
    }
}

/// The reasons a reason filter stands for.
fn reasons(name: &str) -> Result<Vec<String>, String> {
    let name = name.to_ascii_uppercase();
    let of = |allowed: bool| {
        Reason::ALL
            .into_iter()
            .filter(|r| r.allowed() == allowed)
            .map(|r| r.as_str().to_owned())
            .collect()
    };
    match name.as_str() {
        ALLOWED_ANY => Ok(of(true)),
        BLOCKED_ANY => Ok(of(false)),
        _ => name
            .parse::<Reason>()
            .map(|r| vec![r.as_str().to_owned()])
            .map_err(|_| {
                let names: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                format!(
                    "{name:?} is not a reason: give one of {}, {ALLOWED_ANY} or {BLOCKED_ANY}",
                    names.join(", ")
                )
            }),
    }
}

/// The name the log stores for a door filter: a door, or `unknown` for the
/// events of enforcers that did not say. Matched without regard to case,
/// like reasons and methods.
fn door_name(name: &str) -> Result<String, String> {
    let lower = name.to_ascii_lowercase();
    if lower == UNKNOWN_DOOR {
        return Ok(lower);
    }
    lower
        .parse::<Door>()
        .map(|d| d.as_str().to_owned())
        .map_err(|_| {
            let names: Vec<&str> = Door::ALL.iter().map(|d| d.as_str()).collect();
            format!(
                "{name:?} is not a door: give one of {}, or {UNKNOWN_DOOR} for events whose \
                 enforcer did not say",
                names.join(", ")
            )
        })
}

/// The name the log stores for a client-address source filter: a source,
/// or `unknown` for the events of enforcers that did not say. Matched
/// without regard to case, and `_` for `-` (`X_FORWARDED_FOR`), as callers
/// who know the wire's enum names write them.
fn client_ip_source_name(name: &str) -> Result<String, String> {
    let wanted = name.to_ascii_lowercase().replace('_', "-");
    if wanted == UNKNOWN_CLIENT_IP_SOURCE {
        return Ok(wanted);
    }
    wanted
        .parse::<ClientIpSource>()
        .map(|s| s.as_str().to_owned())
        .map_err(|_| {
            let names: Vec<&str> = ClientIpSource::ALL.iter().map(|s| s.as_str()).collect();
            format!(
                "{name:?} is not a client-address source: give one of {}, or \
                 {UNKNOWN_CLIENT_IP_SOURCE} for events whose enforcer did not say",
                names.join(", ")
            )
        })
}

/// The keys of the addresses an address or CIDR range covers, first to last.
fn ip_range(text: &str) -> Result<([u8; 16], [u8; 16]), String> {
    let bad = || {
        format!(
            "{text:?} is not an IP address or CIDR range (203.0.113.5, 203.0.113.0/24, 2001:db8::/32)"
        )
    };
    let net = if text.contains('/') {
        let net: IpNet = text.parse().map_err(|_| bad())?;
        match net {
            // `::ffff:203.0.113.0/120` is the IPv4 range 203.0.113.0/24.
            IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
                Some(v4) => IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).map_err(|_| bad())?,
                None => net,
            },
            other => other,
        }
    } else {
        IpNet::from(ipgate_shared::normalize_ip(
            text.parse::<IpAddr>().map_err(|_| bad())?,
        ))
    };
    let net = net.trunc();
    Ok((ip_key(net.network()), ip_key(net.broadcast())))
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
        door,
        client_ip_source,
        dropped,
    } = row;
    let kind = match dropped {
        Some(_) => KIND_DROPPED,
        None => KIND_REQUEST,
    };
    admin::UsageLogEntry {
        kind: kind.to_owned(),
        dropped: dropped.map(|d| {
            let DroppedRecord {
                allowed,
                blocked,
                last_ms,
            } = d;
            admin::DroppedRequests {
                first_time: Some(time::to_timestamp(time::from_millis(time_ms))),
                last_time: Some(time::to_timestamp(time::from_millis(last_ms))),
                allowed,
                blocked,
            }
        }),
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
        door,
        client_ip_source,
    }
}

fn encode_token(cursor: UsageCursor) -> String {
    let mut payload = page::int(cursor.time_ms).to_vec();
    payload.extend_from_slice(&page::int(cursor.id));
    page::encode(page::Kind::Usage, &payload)
}

fn decode_token(token: &str) -> Result<UsageCursor, &'static str> {
    let payload = page::decode(page::Kind::Usage, token)?;
    let (time_ms, rest) = page::take_int(&payload)?;
    let (id, rest) = page::take_int(rest)?;
    if !rest.is_empty() {
        return Err(page::BAD_TOKEN);
    }
    Ok(UsageCursor { time_ms, id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        let cursor = UsageCursor {
            time_ms: 1_800_000_000_123,
            id: 42,
        };
        assert_eq!(decode_token(&encode_token(cursor)), Ok(cursor));
        assert!(decode_token("garbage").is_err());
    }

    #[test]
    fn page_sizes_status_codes_reasons_and_addresses_are_checked() {
        let q = parse(admin::QueryUsageLogsRequest::default()).unwrap();
        assert_eq!(q.page_size, page::DEFAULT_PAGE_SIZE);
        let err = parse(admin::QueryUsageLogsRequest {
            page_size: 1001,
            status_code: 42,
            page_token: "garbage".into(),
            reason: "NOPE".into(),
            client_ip: "1.2.3".into(),
            door: "nginx".into(),
            client_ip_source: "header".into(),
            ..Default::default()
        })
        .unwrap_err();
        let fields: Vec<&str> = err.fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "status_code",
                "reason",
                "door",
                "client_ip_source",
                "client_ip",
                "page_size",
                "page_token"
            ]
        );
    }

    #[test]
    fn client_ip_source_filters_name_a_source_or_unknown() {
        assert_eq!(client_ip_source_name("malformed").unwrap(), "malformed");
        assert_eq!(
            client_ip_source_name("X-Forwarded-For").unwrap(),
            "x-forwarded-for"
        );
        assert_eq!(
            client_ip_source_name("TOO_FEW_HOPS").unwrap(),
            "too-few-hops"
        );
        assert_eq!(client_ip_source_name("Unknown").unwrap(), "unknown");
        assert_eq!(client_ip_source_name("unknown-hop").unwrap(), "unknown-hop");
        let err = client_ip_source_name("X-Real-IP").unwrap_err();
        assert!(
            err.contains("\"X-Real-IP\" is not a client-address source")
                && err.contains("peer, x-forwarded-for, forwarded, client-ip-header, named")
                && err.contains("or unknown for events"),
            "{err}"
        );
        let export = parse_export(admin::ExportUsageLogsRequest {
            client_ip_source: " named ".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(export.client_ip_source.as_deref(), Some("named"));
    }

    #[test]
    fn kind_filters_name_requests_or_gaps() {
        assert_eq!(kind_filter("request"), Ok(false));
        assert_eq!(kind_filter("DROPPED"), Ok(true));
        let err = kind_filter("gap").unwrap_err();
        assert!(err.contains("\"gap\" is not a kind"), "{err}");
        let export = parse_export(admin::ExportUsageLogsRequest {
            kind: "dropped".into(),
            enforcer_id: "web-1".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(export.gaps, Some(true));
        assert_eq!(export.enforcer_id.as_deref(), Some("web-1"));
    }

    #[test]
    fn door_filters_name_a_door_or_unknown() {
        assert_eq!(door_name("check").unwrap(), "check");
        assert_eq!(door_name("EXT_AUTHZ").unwrap(), "ext_authz");
        assert_eq!(door_name("Unknown").unwrap(), "unknown");
        let err = door_name("Nginx").unwrap_err();
        assert!(
            err.contains("\"Nginx\" is not a door") && err.contains("proxy, ext_authz"),
            "{err}"
        );
        let export = parse_export(admin::ExportUsageLogsRequest {
            door: "proxy".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(export.door.as_deref(), Some("proxy"));
    }

    #[test]
    fn reason_groups_and_address_ranges() {
        assert_eq!(
            reasons("allowed_any").unwrap(),
            ["ALLOWED", "WOULD_BLOCK_IP", "UNSYNCED_FAIL_OPEN"]
        );
        assert_eq!(reasons("BLOCKED_ANY").unwrap().len(), 8);
        let key = |s: &str| ip_key(s.parse().unwrap());
        assert_eq!(
            ip_range("203.0.113.5").unwrap(),
            (key("203.0.113.5"), key("203.0.113.5"))
        );
        assert_eq!(
            ip_range("203.0.113.7/24").unwrap(),
            (key("203.0.113.0"), key("203.0.113.255"))
        );
        assert_eq!(
            ip_range("::ffff:203.0.113.0/120").unwrap(),
            (key("203.0.113.0"), key("203.0.113.255"))
        );
        assert_eq!(
            ip_range("::ffff:203.0.113.5").unwrap().0,
            key("203.0.113.5")
        );
        assert_eq!(
            ip_range("2001:db8::/32").unwrap().1,
            key("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")
        );
    }
}
