//! The owners of allowlists: APIs (by slug) and API keys (by id). Each is
//! one [`allowlist_owner!`] line-up of what differs between them — the
//! request field that names the owner, the RPC of the read and of each
//! write, the response and the title shown — while the mapping of the
//! generic [`Write`]s onto those RPCs is written once, in the macro.

use ipgate_shared::proto::admin::v1;

use super::{Target, View, Write};

/// Implements [`Target`] for `$target` (a newtype over the owner's id)
/// from what differs between owners. A new kind of owner with the same
/// four write RPCs is one more invocation.
macro_rules! allowlist_owner {
    (
        $target:ident {
            value_name: $value_name:literal,
            help: $help:literal,
            owner_field: $owner:ident,
            get: $get:ident($get_request:ident) -> $object:ident,
            set: $set:ident($set_request:ident),
            add: $add:ident($add_request:ident),
            remove: $remove:ident($remove_request:ident),
            update: $update:ident($update_request:ident),
            response: $response:ident { $written:ident },
            title: |$shown:ident| $title:expr $(,)?
        }
    ) => {
        impl Target for $target {
            const VALUE_NAME: &'static str = $value_name;
            const HELP: &'static str = $help;
            type Object = v1::$object;
            type Response = v1::$response;

            fn parse(arg: &str) -> Result<Self, String> {
                Ok($target(arg.to_owned()))
            }

            async fn get(
                &self,
                client: &mut crate::admin::Admin,
            ) -> Result<v1::$object, tonic::Status> {
                let request = v1::$get_request {
                    $owner: self.0.clone(),
                };
                Ok(client.$get(request).await?.into_inner())
            }

            async fn write(
                &self,
                client: &mut crate::admin::Admin,
                write: Write,
                etag: String,
                options: Option<v1::AllowlistWriteOptions>,
                wait: Option<v1::WaitForPropagation>,
            ) -> Result<v1::$response, tonic::Status> {
                let $owner = self.0.clone();
                let response = match write {
                    Write::Set(allowlist) => {
                        let request = v1::$set_request {
                            wait_for_propagation: wait.clone(),
                            $owner,
                            allowlist: Some(allowlist),
                            etag,
                            options,
                        };
                        client.$set(request).await?
                    }
                    Write::Add(entries) => {
                        let request = v1::$add_request {
                            wait_for_propagation: wait.clone(),
                            $owner,
                            entries,
                            etag,
                            options,
                        };
                        client.$add(request).await?
                    }
                    Write::Remove(cidrs) => {
                        let request = v1::$remove_request {
                            wait_for_propagation: wait.clone(),
                            $owner,
                            cidrs,
                            etag,
                            options,
                        };
                        client.$remove(request).await?
                    }
                    Write::Update {
                        cidr,
                        label,
                        expires_at,
                        clear_expires_at,
                    } => {
                        let request = v1::$update_request {
                            wait_for_propagation: wait.clone(),
                            $owner,
                            cidr,
                            label,
                            expires_at,
                            clear_expires_at,
                            etag,
                            options,
                        };
                        client.$update(request).await?
                    }
                };
                Ok(response.into_inner())
            }

            fn view($shown: &v1::$object) -> View<'_> {
                View {
                    title: $title,
                    allowlist: $shown.allowlist.as_ref(),
                    etag: &$shown.etag,
                    revision: $shown.revision,
                }
            }

            fn written(
                response: &v1::$response,
            ) -> (Option<View<'_>>, Option<&v1::LockoutPreview>, bool) {
                (
                    response.$written.as_ref().map(Self::view),
                    response.lockout.as_ref(),
                    response.validate_only,
                )
            }

            fn propagation(response: &v1::$response) -> Option<&v1::Propagation> {
                response.propagation.as_ref()
            }
        }
    };
}

/// An API, by slug.
#[derive(Clone, Debug)]
pub struct ApiTarget(pub String);

allowlist_owner!(ApiTarget {
    value_name: "API",
    help: "The API's slug",
    owner_field: slug,
    get: get_api(GetApiRequest) -> Api,
    set: set_api_allowlist(SetApiAllowlistRequest),
    add: add_api_allowlist_entries(AddApiAllowlistEntriesRequest),
    remove: remove_api_allowlist_entries(RemoveApiAllowlistEntriesRequest),
    update: update_api_allowlist_entry(UpdateApiAllowlistEntryRequest),
    response: ApiAllowlistResponse { api },
    title: |api| format!("API {:?}", api.slug),
});

/// An API key, by id.
#[derive(Clone, Debug)]
pub struct KeyTarget(pub String);

allowlist_owner!(KeyTarget {
    value_name: "KEY_ID",
    help: "The key's id",
    owner_field: id,
    get: get_api_key(GetApiKeyRequest) -> ApiKey,
    set: set_api_key_allowlist(SetApiKeyAllowlistRequest),
    add: add_api_key_allowlist_entries(AddApiKeyAllowlistEntriesRequest),
    remove: remove_api_key_allowlist_entries(RemoveApiKeyAllowlistEntriesRequest),
    update: update_api_key_allowlist_entry(UpdateApiKeyAllowlistEntryRequest),
    response: ApiKeyAllowlistResponse { key },
    title: |key| format!("API key {} ({:?}, API {:?})", key.id, key.name, key.api),
});
