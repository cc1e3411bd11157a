//! `ListAuditEvents`: who changed what in the caller's tenant, newest first.

use ipgate_shared::proto::admin::v1 as admin;

use super::{response, service::AdminApi};
use crate::{
    invalid::InvalidRequest,
    page,
    request::{self, nonempty},
    status::RpcError,
    store::{AuditFilter, Principal},
};

/// Object types the audit log names.
const OBJECT_TYPES: [&str; 4] = ["tenant", "token", "api", "api_key"];

pub async fn list(
    api: &AdminApi,
    caller: &Principal,
    req: admin::ListAuditEventsRequest,
) -> Result<admin::ListAuditEventsResponse, RpcError> {
    let admin::ListAuditEventsRequest {
        object_type,
        object_id,
        actor_token_id,
        start_time,
        end_time,
        page_size,
        page_token,
    } = req;
    let mut bad = InvalidRequest::default();
    let object_type = match nonempty(object_type) {
        None => Some(None),
        Some(t) if OBJECT_TYPES.contains(&t.as_str()) => Some(Some(t)),
        Some(t) => {
            bad.add(
                "object_type",
                format!(
                    "{t:?} is not an object type: give one of {}",
                    OBJECT_TYPES.join(", ")
                ),
            );
            None
        }
    };
    let range = request::time_range(&mut bad, start_time, end_time);
    let size = request::page_size(&mut bad, page_size);
    let before = match page_token.as_str() {
        "" => Some(None),
        token => bad.check(
            "page_token",
            page::decode(page::Kind::Audit, token)
                .and_then(|p| page::take_int(&p).map(|(id, _)| Some(id))),
        ),
    };
    let (object_type, (start_ms, end_ms), size, before) =
        bad.or_value(|| Some((object_type?, range?, size?, before?)))?;
    let filter = AuditFilter {
        object_type,
        object_id: nonempty(object_id),
        actor: nonempty(actor_token_id),
        start_ms,
        end_ms,
    };
    let mut rows = api
        .store
        .audit_events(caller.tenant, &filter, before, size + 1)
        .await?;
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next_page_token = match rows.last() {
        Some(last) if more => page::encode(page::Kind::Audit, &page::int(last.id)),
        _ => String::new(),
    };
    Ok(admin::ListAuditEventsResponse {
        events: rows.into_iter().map(response::audit_event).collect(),
        next_page_token,
    })
}
