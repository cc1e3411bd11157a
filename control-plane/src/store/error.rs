//! Why a store operation failed, and why a database could not be opened.

use crate::{allowlists::Lockout, etag::StaleEtag, invalid::InvalidRequest};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("API {0:?} already exists; pick another slug")]
    ApiExists(String),
    #[error("API {0:?} not found")]
    ApiNotFound(String),
    #[error("API key {0:?} not found")]
    KeyNotFound(String),
    #[error("token {0:?} not found")]
    TokenNotFound(String),
    #[error("tenant {0:?} already exists; pick another id")]
    TenantExists(String),
    #[error(transparent)]
    StaleEtag(#[from] StaleEtag),
    #[error(
        "API {slug:?} has {keys} active key(s); revoke them first, or delete with force to revoke them with it"
    )]
    ApiHasActiveKeys { slug: String, keys: usize },
    #[error("API key {0:?} is revoked; create a new key instead")]
    KeyRevoked(String),
    #[error("token {0:?} is already revoked")]
    TokenRevoked(String),
    #[error(
        "token {0:?} is the tenant's last active owner token; create another owner token before revoking it"
    )]
    LastOwner(String),
    #[error("{}", .0.message())]
    LockoutRisk(Box<Lockout>),
    #[error("nothing to change")]
    Unchanged,
    /// A list changed after its write was planned; the store plans again,
    /// so callers never see this.
    #[error("the allowlist of {0} changed while this write checked it; retry")]
    Contended(String),
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    #[error("token already exists with role {existing}, not {wanted}")]
    TokenRoleConflict {
        existing: &'static str,
        wanted: &'static str,
    },
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why a database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DATABASE")]
    UnsupportedUrl(String),
    #[error("cannot create the directory {path} for the SQLite database: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// No release has shipped, so the schema is one migration changed in
    /// place; a database made by an earlier (or later) build then fails
    /// sqlx's checksum, whose own words ("migration 1 was previously
    /// applied but has been modified") point at the wrong culprit.
    #[error(
        "the database {database} was made by another build of ipgate, whose schema differs \
         from this build's ({detail}). ipgate has not been released yet, so its schema is \
         changed in place rather than migrated, and this build cannot use that database. \
         Start on a new database (another --database), or run the build that made it; \
         for `ipgate dev`, remove the state folder (.ipgate, or the one --dir names) and \
         start again"
    )]
    OtherBuild {
        /// The database URL, without its password.
        database: String,
        /// What sqlx found, in its words.
        detail: String,
    },
}
