//! Token strings: admin and enforcer tokens are random strings
//! (`ipg_admin_…`, `ipg_enf_…`) stored only as SHA-256, and known in the
//! audit log by a public id (`tok_…`).

use rand::Rng;
use sha2::{Digest, Sha256};

/// Start of generated admin tokens.
pub const ADMIN_TOKEN_PREFIX: &str = "ipg_admin_";
/// Start of generated enforcer tokens.
pub const ENFORCER_TOKEN_PREFIX: &str = "ipg_enf_";
/// Random base62 characters in a generated token (256 bits).
const TOKEN_RANDOM_CHARS: usize = 43;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Start of public token ids.
pub const TOKEN_ID_PREFIX: &str = "tok_";
/// Random characters of a public token id (`0-9a-z`).
const TOKEN_ID_CHARS: usize = 16;

/// A fresh token: `prefix` and 43 random base62 characters.
pub fn generate_token(prefix: &str) -> String {
    let mut rng = rand::rng();
    let mut token = String::with_capacity(prefix.len() + TOKEN_RANDOM_CHARS);
    token.push_str(prefix);
    for _ in 0..TOKEN_RANDOM_CHARS {
        token.push(char::from(BASE62[rng.random_range(0..BASE62.len())]));
    }
    token
}

/// A fresh public token id: `tok_` and 16 of `0-9a-z`.
pub fn generate_token_id() -> String {
    let mut rng = rand::rng();
    let mut id = String::with_capacity(TOKEN_ID_PREFIX.len() + TOKEN_ID_CHARS);
    id.push_str(TOKEN_ID_PREFIX);
    for _ in 0..TOKEN_ID_CHARS {
        // The lowercase half of BASE62 plus its digits.
        let i = rng.random_range(0..36);
        id.push(char::from(if i < 10 { BASE62[i] } else { BASE62[i + 26] }));
    }
    id
}

/// The SHA-256 a token is stored as.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_prefix_and_256_bits() {
        let token = generate_token(ADMIN_TOKEN_PREFIX);
        let random = token.strip_prefix(ADMIN_TOKEN_PREFIX).unwrap();
        assert_eq!(random.len(), 43);
        assert!(random.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(token, generate_token(ADMIN_TOKEN_PREFIX));
    }

    #[test]
    fn token_ids_are_short_and_lowercase() {
        let id = generate_token_id();
        let random = id.strip_prefix(TOKEN_ID_PREFIX).unwrap();
        assert_eq!(random.len(), 16);
        assert!(
            random
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
        );
    }
}
