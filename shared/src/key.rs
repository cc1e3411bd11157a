//! API keys: the key format, key ids, secret hashes and keys as enforcers see them.
//!
//! A key reads `ipg_live_<id>_<secret><checksum>`:
//! - `ipg_live_` makes a leaked key recognisable (secret scanners, logs);
//! - `<id>` (16 of `0-9a-z`) finds the key without a scan;
//! - `<secret>` is 43 base62 characters, 256 random bits;
//! - `<checksum>` is the CRC-32 of everything before it in 6 base62
//!   characters, so a typo is refused without a lookup.
//!
//! The control plane stores and enforcers receive only SHA-256 of the whole
//! key: the secret has 256 random bits, so a fast hash is safe and lets an
//! enforcer verify a key in well under a microsecond.

use std::{fmt, str::FromStr, time::SystemTime};

use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{allowlist::Allowlist, api::ApiSlug, api::Scope};

/// Visible start of every key.
pub const KEY_PREFIX: &str = "ipg_live_";
const ID_LEN: usize = 16;
const SECRET_LEN: usize = 43;
const CHECKSUM_LEN: usize = 6;
const KEY_LEN: usize = KEY_PREFIX.len() + ID_LEN + 1 + SECRET_LEN + CHECKSUM_LEN;
const ID_ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// An API key's id: 16 characters of `0-9a-z`, fixed size so the index keys
/// on plain bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId([u8; ID_LEN]);

/// Why a string is not a [`KeyId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an API key id: ids are 16 characters of 0-9 and a-z")]
pub struct InvalidKeyId(pub String);

impl KeyId {
    /// A fresh random id.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        let mut id = [0u8; ID_LEN];
        for b in &mut id {
            *b = ID_ALPHABET[rng.random_range(0..ID_ALPHABET.len())];
        }
        KeyId(id)
    }

    /// The id's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8; ID_LEN] {
        &self.0
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII from ID_ALPHABET is ever stored.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl FromStr for KeyId {
    type Err = InvalidKeyId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes: [u8; ID_LEN] = s
            .as_bytes()
            .try_into()
            .map_err(|_| InvalidKeyId(s.to_owned()))?;
        if bytes.iter().all(is_id_char) {
            Ok(KeyId(bytes))
        } else {
            Err(InvalidKeyId(s.to_owned()))
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.as_str())
    }
}

/// Why a presented key is not well-formed. Every variant means `401`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("API key does not start with {KEY_PREFIX}")]
    Prefix,
    #[error("API key has the wrong length")]
    Length,
    #[error("API key has characters outside its alphabet")]
    Charset,
    #[error("API key checksum does not match: it was mistyped or truncated")]
    Checksum,
}

/// A newly made key: its id and the full key string, shown to the operator once.
#[derive(Clone, PartialEq, Eq)]
pub struct NewKey {
    pub id: KeyId,
    pub secret: String,
}

impl fmt::Debug for NewKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl NewKey {
    /// A fresh key with a random id and 256 random bits of secret.
    pub fn generate() -> Self {
        Self::with_id(KeyId::generate())
    }

    /// A fresh secret for an existing key id (rotation).
    pub fn with_id(id: KeyId) -> Self {
        let mut rng = rand::rng();
        let mut secret = String::with_capacity(KEY_LEN);
        secret.push_str(KEY_PREFIX);
        secret.push_str(id.as_str());
        secret.push('_');
        for _ in 0..SECRET_LEN {
            secret.push(char::from(BASE62[rng.random_range(0..BASE62.len())]));
        }
        let checksum = checksum(secret.as_bytes());
        secret.extend(checksum.iter().map(|b| char::from(*b)));
        NewKey { id, secret }
    }

    /// The visible, non-secret start of the key (`ipg_live_<id>_`).
    pub fn prefix(&self) -> String {
        display_prefix(&self.id)
    }
}

/// The visible, non-secret start of a key with this id.
pub fn display_prefix(id: &KeyId) -> String {
    format!("{KEY_PREFIX}{id}_")
}

/// Checks a presented key's shape and checksum and returns its id. This is
/// not authentication: the hash must still match.
pub fn parse_presented(key: &str) -> Result<KeyId, KeyFormatError> {
    let rest = key.strip_prefix(KEY_PREFIX).ok_or(KeyFormatError::Prefix)?;
    if key.len() != KEY_LEN {
        return Err(KeyFormatError::Length);
    }
    let bytes = rest.as_bytes();
    let (id, rest) = bytes.split_at(ID_LEN);
    let (sep, rest) = rest.split_at(1);
    let (secret, sum) = rest.split_at(SECRET_LEN);
    let id_ok = id.iter().all(is_id_char);
    let secret_ok = secret.iter().chain(sum).all(u8::is_ascii_alphanumeric);
    if !id_ok || sep != b"_" || !secret_ok {
        return Err(KeyFormatError::Charset);
    }
    let (body, sum) = key.as_bytes().split_at(KEY_LEN - CHECKSUM_LEN);
    if checksum(body) != sum {
        return Err(KeyFormatError::Checksum);
    }
    let mut id_bytes = [0u8; ID_LEN];
    id_bytes.copy_from_slice(id);
    Ok(KeyId(id_bytes))
}

fn is_id_char(b: &u8) -> bool {
    b.is_ascii_digit() || b.is_ascii_lowercase()
}

/// CRC-32 of `body` in base62, fixed width; no allocation, as it runs on
/// every request.
fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut n = crc32fast::hash(body);
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// SHA-256 of a whole key string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// Hashes a presented or newly made key.
    pub fn of(key: &str) -> Self {
        SecretHash(Sha256::digest(key.as_bytes()).into())
    }

    /// The raw 32 bytes, for the wire and the database.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time comparison.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl TryFrom<&[u8]> for SecretHash {
    type Error = std::array::TryFromSliceError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        Ok(SecretHash(bytes.try_into()?))
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

/// An API key as the enforcers need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyConfig {
    pub id: KeyId,
    pub api: ApiSlug,
    pub secret_hash: SecretHash,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<SystemTime>,
    pub allowlist: Allowlist,
    /// Secrets replaced by a rotation that still work for a grace period.
    pub previous_secrets: Vec<PreviousSecret>,
}

/// A rotated-out secret that keeps working until `valid_until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreviousSecret {
    pub hash: SecretHash,
    pub valid_until: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_to_their_id() {
        let key = NewKey::generate();
        assert_eq!(key.secret.len(), KEY_LEN);
        assert!(key.secret.starts_with(&key.prefix()));
        assert_eq!(parse_presented(&key.secret), Ok(key.id));
    }

    #[test]
    fn keys_are_distinct() {
        let a = NewKey::generate();
        let b = NewKey::generate();
        assert_ne!(a.id, b.id);
        assert_ne!(a.secret, b.secret);
        let rotated = NewKey::with_id(a.id);
        assert_eq!(rotated.id, a.id);
        assert_ne!(rotated.secret, a.secret);
    }

    #[test]
    fn a_typo_fails_the_checksum() {
        let key = NewKey::generate().secret;
        let pos = KEY_PREFIX.len() + ID_LEN + 5;
        let mut typo = key.clone().into_bytes();
        typo[pos] = if typo[pos] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).unwrap();
        assert_eq!(parse_presented(&typo), Err(KeyFormatError::Checksum));
    }

    #[test]
    fn malformed_keys_are_refused() {
        let key = NewKey::generate().secret;
        assert_eq!(parse_presented("sk_live_abc"), Err(KeyFormatError::Prefix));
        assert_eq!(
            parse_presented(&key[..KEY_LEN - 1]),
            Err(KeyFormatError::Length)
        );
        assert_eq!(
            parse_presented(&format!("{key}x")),
            Err(KeyFormatError::Length)
        );
        let mut bad = key.clone();
        bad.replace_range(KEY_LEN - 10..KEY_LEN - 9, "!");
        assert_eq!(parse_presented(&bad), Err(KeyFormatError::Charset));
        let upper_id = key.replacen(&key[9..10], "Z", 1);
        if upper_id != key {
            assert!(parse_presented(&upper_id).is_err());
        }
    }

    #[test]
    fn hashes_compare_by_value() {
        let key = NewKey::generate().secret;
        assert!(SecretHash::of(&key).matches(&SecretHash::of(&key)));
        assert!(!SecretHash::of(&key).matches(&SecretHash::of("other")));
    }

    #[test]
    fn key_ids_parse_strictly() {
        assert!("0123456789abcdef".parse::<KeyId>().is_ok());
        assert!("0123456789ABCDEF".parse::<KeyId>().is_err());
        assert!("short".parse::<KeyId>().is_err());
    }
}
