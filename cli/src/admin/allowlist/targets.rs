//! The two owners of allowlists: APIs (by slug) and API keys (by id), each
//! mapping the generic allowlist writes onto its own RPCs.

use ipgate_shared::proto::admin::v1::{self as v1, AllowlistWriteOptions, LockoutPreview};
use tonic::Status;

use super::{Target, View, Write};
use crate::admin::Admin;

/// An API, by slug.
#[derive(Clone, Debug)]
pub struct ApiTarget(pub String);

/// An API key, by id.
#[derive(Clone, Debug)]
pub struct KeyTarget(pub String);

impl Target for ApiTarget {
    const VALUE_NAME: &'static str = "API";
    const HELP: &'static str = "The API's slug";
    type Object = v1::Api;
    type Response = v1::ApiAllowlistResponse;

    fn parse(arg: &str) -> Result<Self, String> {
        Ok(ApiTarget(arg.to_owned()))
    }

    async fn get(&self, client: &mut Admin) -> Result<v1::Api, Status> {
        let slug = self.0.clone();
        Ok(client
            .get_api(v1::GetApiRequest { slug })
            .await?
            .into_inner())
    }

    async fn write(
        &self,
        client: &mut Admin,
        write: Write,
        etag: String,
        options: Option<AllowlistWriteOptions>,
    ) -> Result<v1::ApiAllowlistResponse, Status> {
        let slug = self.0.clone();
        let response = match write {
            Write::Set(allowlist) => {
                client
                    .set_api_allowlist(v1::SetApiAllowlistRequest {
                        slug,
                        allowlist: Some(allowlist),
                        etag,
                        options,
                    })
                    .await?
            }
            Write::Add(entries) => {
                client
                    .add_api_allowlist_entries(v1::AddApiAllowlistEntriesRequest {
                        slug,
                        entries,
                        etag,
                        options,
                    })
                    .await?
            }
            Write::Remove(cidrs) => {
                client
                    .remove_api_allowlist_entries(v1::RemoveApiAllowlistEntriesRequest {
                        slug,
                        cidrs,
                        etag,
                        options,
                    })
                    .await?
            }
            Write::Update {
                cidr,
                label,
                expires_at,
                clear_expires_at,
            } => {
                client
                    .update_api_allowlist_entry(v1::UpdateApiAllowlistEntryRequest {
                        slug,
                        cidr,
                        label,
                        expires_at,
                        clear_expires_at,
                        etag,
                        options,
                    })
                    .await?
            }
        };
        Ok(response.into_inner())
    }

    fn view(api: &v1::Api) -> View<'_> {
        View {
            title: format!("API {:?}", api.slug),
            allowlist: api.allowlist.as_ref(),
            etag: &api.etag,
            revision: api.revision,
        }
    }

    fn written(r: &v1::ApiAllowlistResponse) -> (Option<View<'_>>, Option<&LockoutPreview>, bool) {
        (
            r.api.as_ref().map(Self::view),
            r.lockout.as_ref(),
            r.validate_only,
        )
    }
}

impl Target for KeyTarget {
    const VALUE_NAME: &'static str = "KEY_ID";
    const HELP: &'static str = "The key's id";
    type Object = v1::ApiKey;
    type Response = v1::ApiKeyAllowlistResponse;

    fn parse(arg: &str) -> Result<Self, String> {
        Ok(KeyTarget(arg.to_owned()))
    }

    async fn get(&self, client: &mut Admin) -> Result<v1::ApiKey, Status> {
        let id = self.0.clone();
        Ok(client
            .get_api_key(v1::GetApiKeyRequest { id })
            .await?
            .into_inner())
    }

    async fn write(
        &self,
        client: &mut Admin,
        write: Write,
        etag: String,
        options: Option<AllowlistWriteOptions>,
    ) -> Result<v1::ApiKeyAllowlistResponse, Status> {
        let id = self.0.clone();
        let response = match write {
            Write::Set(allowlist) => {
                client
                    .set_api_key_allowlist(v1::SetApiKeyAllowlistRequest {
                        id,
                        allowlist: Some(allowlist),
                        etag,
                        options,
                    })
                    .await?
            }
            Write::Add(entries) => {
                client
                    .add_api_key_allowlist_entries(v1::AddApiKeyAllowlistEntriesRequest {
                        id,
                        entries,
                        etag,
                        options,
                    })
                    .await?
            }
            Write::Remove(cidrs) => {
                client
                    .remove_api_key_allowlist_entries(v1::RemoveApiKeyAllowlistEntriesRequest {
                        id,
                        cidrs,
                        etag,
                        options,
                    })
                    .await?
            }
            Write::Update {
                cidr,
                label,
                expires_at,
                clear_expires_at,
            } => {
                client
                    .update_api_key_allowlist_entry(v1::UpdateApiKeyAllowlistEntryRequest {
                        id,
                        cidr,
                        label,
                        expires_at,
                        clear_expires_at,
                        etag,
                        options,
                    })
                    .await?
            }
        };
        Ok(response.into_inner())
    }

    fn view(key: &v1::ApiKey) -> View<'_> {
        View {
            title: format!("API key {} ({:?}, API {:?})", key.id, key.name, key.api),
            allowlist: key.allowlist.as_ref(),
            etag: &key.etag,
            revision: key.revision,
        }
    }

    fn written(
        r: &v1::ApiKeyAllowlistResponse,
    ) -> (Option<View<'_>>, Option<&LockoutPreview>, bool) {
        (
            r.key.as_ref().map(Self::view),
            r.lockout.as_ref(),
            r.validate_only,
        )
    }
}
