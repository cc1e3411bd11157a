//! Allowlist writes, the same four shapes for every object that holds a
//! list: Set (the whole list and its report-only mode), Add, Remove, Update
//! one entry. Each takes an etag and `AllowlistWriteOptions`, and answers
//! with the object as stored (or as it would be) and the lockout preview.
//!
//! Everything here is written once, generic over the level ([`AdminList`]);
//! a level adds only how its owner is named and how a write is answered.

use std::{fmt, str::FromStr, time::SystemTime};

use ipgate_shared::{Cidr, Label, ListRules, proto::admin::v1 as admin};

use super::{
    response,
    service::{AdminApi, committed},
};
use crate::{
    allowlists::Edit,
    etag::Expected,
    invalid::InvalidRequest,
    request,
    status::RpcError,
    store::{ApiRecord, KeyRecord, ListOwner, ListWrite, ListWritten, Principal, WriteCtx},
};

/// An allowlist level as the admin API serves it.
pub trait AdminList: ListOwner<Id: FromStr<Err: fmt::Display>> {
    /// The request field naming the owner (`slug`, `id`).
    const ID_FIELD: &'static str;
    /// What a write answers.
    type Response;

    /// The rules this level's lists must pass.
    fn rules(api: &AdminApi) -> ListRules;

    /// The answer to a write.
    fn respond(written: &ListWritten<Self>, ctx: &WriteCtx) -> Self::Response;
}

impl AdminList for ApiRecord {
    const ID_FIELD: &'static str = "slug";
    type Response = admin::ApiAllowlistResponse;

    fn rules(api: &AdminApi) -> ListRules {
        api.api_rules
    }

    fn respond(written: &ListWritten<ApiRecord>, ctx: &WriteCtx) -> Self::Response {
        admin::ApiAllowlistResponse {
            propagation: None,
            api: Some(response::api(&written.record)),
            lockout: Some(response::lockout(&written.lockout)),
            validate_only: ctx.validate_only,
        }
    }
}

impl AdminList for KeyRecord {
    const ID_FIELD: &'static str = "id";
    type Response = admin::ApiKeyAllowlistResponse;

    fn rules(api: &AdminApi) -> ListRules {
        api.key_rules
    }

    fn respond(written: &ListWritten<KeyRecord>, ctx: &WriteCtx) -> Self::Response {
        admin::ApiKeyAllowlistResponse {
            propagation: None,
            key: Some(response::api_key(&written.record, ctx.now)),
            lockout: Some(response::lockout(&written.lockout)),
            validate_only: ctx.validate_only,
        }
    }
}

/// One allowlist write as requested, whatever the level.
pub struct ListCall {
    /// The owner, as named in the request (`slug` or `id`).
    pub owner: String,
    pub edit: EditCall,
    pub etag: String,
    pub options: Option<admin::AllowlistWriteOptions>,
}

/// The edit a request asks for, before validation.
pub enum EditCall {
    Set(Option<admin::Allowlist>),
    Add(Vec<admin::AllowlistEntry>),
    Remove(Vec<String>),
    Update {
        cidr: String,
        label: Option<String>,
        expires_at: Option<prost_types::Timestamp>,
        clear_expires_at: bool,
    },
}

/// Each level's four requests carry the same fields, under the name of
/// its owner's field: one conversion each, destructuring every field.
macro_rules! list_calls {
    ($owner:ident: $set:path, $add:path, $remove:path, $update:path) => {
        impl From<$set> for ListCall {
            fn from(req: $set) -> ListCall {
                let $set {
                    $owner,
                    allowlist,
                    etag,
                    options,
                    // Taken before: the write waits in `propagation.rs`.
                    wait_for_propagation: _,
                } = req;
                let edit = EditCall::Set(allowlist);
                ListCall {
                    owner: $owner,
                    edit,
                    etag,
                    options,
                }
            }
        }

        impl From<$add> for ListCall {
            fn from(req: $add) -> ListCall {
                let $add {
                    $owner,
                    entries,
                    etag,
                    options,
                    // Taken before: the write waits in `propagation.rs`.
                    wait_for_propagation: _,
                } = req;
                let edit = EditCall::Add(entries);
                ListCall {
                    owner: $owner,
                    edit,
                    etag,
                    options,
                }
            }
        }

        impl From<$remove> for ListCall {
            fn from(req: $remove) -> ListCall {
                let $remove {
                    $owner,
                    cidrs,
                    etag,
                    options,
                    // Taken before: the write waits in `propagation.rs`.
                    wait_for_propagation: _,
                } = req;
                let edit = EditCall::Remove(cidrs);
                ListCall {
                    owner: $owner,
                    edit,
                    etag,
                    options,
                }
            }
        }

        impl From<$update> for ListCall {
            fn from(req: $update) -> ListCall {
                let $update {
                    $owner,
                    cidr,
                    label,
                    expires_at,
                    clear_expires_at,
                    etag,
                    options,
                    // Taken before: the write waits in `propagation.rs`.
                    wait_for_propagation: _,
                } = req;
                let edit = EditCall::Update {
                    cidr,
                    label,
                    expires_at,
                    clear_expires_at,
                };
                ListCall {
                    owner: $owner,
                    edit,
                    etag,
                    options,
                }
            }
        }
    };
}

list_calls!(slug:
    admin::SetApiAllowlistRequest,
    admin::AddApiAllowlistEntriesRequest,
    admin::RemoveApiAllowlistEntriesRequest,
    admin::UpdateApiAllowlistEntryRequest
);
list_calls!(id:
    admin::SetApiKeyAllowlistRequest,
    admin::AddApiKeyAllowlistEntriesRequest,
    admin::RemoveApiKeyAllowlistEntriesRequest,
    admin::UpdateApiKeyAllowlistEntryRequest
);

/// Validates the call, writes it and answers; every bad field at once.
pub async fn write<O: AdminList>(
    api: &AdminApi,
    caller: &Principal,
    call: ListCall,
) -> Result<O::Response, RpcError> {
    let ListCall {
        owner,
        edit,
        etag,
        options,
    } = call;
    let rules = O::rules(api);
    let mut bad = InvalidRequest::default();
    let edit = edit.parse(&mut bad, rules);
    let owner = bad.check(O::ID_FIELD, owner.parse::<O::Id>());
    let expected = request::etag(&mut bad, &etag);
    let (owner, edit, expected) = bad.or_value(|| Some((owner?, edit?, expected?)))?;
    let (ctx, write) = list_write(caller, edit, rules, expected, options);
    let written = api.store.write_allowlist::<O>(&ctx, &owner, write).await?;
    committed(written.record.revision(), ctx.validate_only);
    Ok(O::respond(&written, &ctx))
}

fn list_write(
    caller: &Principal,
    edit: Edit,
    rules: ListRules,
    expected: Expected,
    options: Option<admin::AllowlistWriteOptions>,
) -> (WriteCtx, ListWrite) {
    let admin::AllowlistWriteOptions {
        validate_only,
        acknowledge_lockout_risk,
    } = options.unwrap_or_default();
    let write = ListWrite {
        edit,
        rules,
        expected,
        acknowledge_lockout_risk,
    };
    (WriteCtx::by(caller, validate_only), write)
}

// === the edits ===

impl EditCall {
    /// The edit, each bad field noted against its request path.
    fn parse(self, bad: &mut InvalidRequest, rules: ListRules) -> Option<Edit> {
        let now = SystemTime::now();
        match self {
            EditCall::Set(list) => {
                request::allowlist(bad, "allowlist", list, rules, now).map(Edit::Set)
            }
            EditCall::Add(entries) => request::entries(bad, entries, rules, now).map(Edit::Add),
            EditCall::Remove(cidrs) => remove(bad, &cidrs),
            EditCall::Update {
                cidr,
                label,
                expires_at,
                clear_expires_at,
            } => update(bad, &cidr, label, expires_at, clear_expires_at, now),
        }
    }
}

fn remove(bad: &mut InvalidRequest, cidrs: &[String]) -> Option<Edit> {
    if cidrs.is_empty() {
        bad.add("cidrs", "no entries given; name at least one to remove");
        return None;
    }
    let parsed: Vec<Option<Cidr>> = cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| bad.check(format!("cidrs[{i}]"), c.parse::<Cidr>()))
        .collect();
    parsed.into_iter().collect::<Option<_>>().map(Edit::Remove)
}

fn update(
    bad: &mut InvalidRequest,
    cidr: &str,
    label: Option<String>,
    expires_at: Option<prost_types::Timestamp>,
    clear_expires_at: bool,
    now: SystemTime,
) -> Option<Edit> {
    let cidr = bad.check("cidr", cidr.parse::<Cidr>());
    let label = match label {
        None => Some(None),
        Some(l) => bad.check("label", l.parse::<Label>()).map(Some),
    };
    let expires = match (expires_at, clear_expires_at) {
        (Some(_), true) => {
            bad.add(
                "clear_expires_at",
                "give either expires_at or clear_expires_at, not both",
            );
            None
        }
        (None, true) => Some(Some(None)),
        (ts, false) => request::future(bad, "expires_at", ts, now).map(|t| t.map(Some)),
    };
    if matches!((&label, &expires), (Some(None), Some(None))) {
        bad.add(
            "label",
            "nothing to change: give a label, expires_at or clear_expires_at",
        );
        return None;
    }
    Some(Edit::Update {
        cidr: cidr?,
        label: label?,
        expires_at: expires?,
    })
}
