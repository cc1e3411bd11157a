//! Secrets kept out of logs and messages: every URL and token that ipgate
//! writes to a log or an error passes through here first.
//!
//! A URL keeps everything but its secrets, byte for byte, so an operator
//! still recognises the address they configured: the password of its
//! userinfo and the values of secret-looking query parameters become
//! `***`. This works on the string rather than through a URL parser on
//! purpose: a URL with a typo is exactly the one that ends up in an error
//! message, and a parser would refuse it (or re-encode the rest) instead of
//! hiding its password.
//!
//! A token keeps only the prefix that says what kind of token it is.

/// What a hidden secret is shown as.
pub const HIDDEN: &str = "***";

/// Schemes whose userinfo without a `:` is a user name (a database role),
/// shown as is. Anywhere else such a userinfo is a credential on its own
/// (`https://TOKEN@host`): no ipgate address needs one.
const USER_SCHEMES: &[&str] = &["postgres", "postgresql", "sqlite"];

/// Words that mark a query parameter's value as secret, wherever they
/// appear in its name (`password`, `sslpassword`, `sslkey`, `access_token`,
/// `apiKey`, `client_secret`, `auth`, …); matched without regard to case.
const SECRET_PARAMETER_WORDS: &[&str] = &[
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "auth",
    "credential",
    "signature",
];

/// `url` with its secrets replaced by [`HIDDEN`]: the password in its
/// userinfo (`postgres://ipgate:***@db/ipgate`), a userinfo that is not a
/// database user name (`http://***@host`), and the values of query or
/// fragment parameters whose names look secret (`?sslmode=require&password=***`).
pub fn url(url: &str) -> String {
    // Without "://" (a typo, or `sqlite:path`) the whole string is searched
    // for a userinfo: better a path shown as `***` than a password shown.
    let (scheme, rest) = match url.find("://") {
        Some(at) => (&url[..at], &url[at + 3..]),
        None => ("", url),
    };
    let mut shown = String::with_capacity(url.len());
    shown.push_str(&url[..url.len() - rest.len()]);
    // A password may hold '/' when it was not percent-encoded, so the
    // userinfo ends at the last '@' before the query, not at the path.
    let query = rest.find(['?', '#']).unwrap_or(rest.len());
    let after_userinfo = match rest[..query].rfind('@') {
        Some(at) => {
            shown.push_str(&userinfo(scheme, &rest[..at]));
            &rest[at..]
        }
        None => rest,
    };
    match after_userinfo.find(['?', '#']) {
        Some(at) => {
            shown.push_str(&after_userinfo[..at]);
            shown.push_str(&parameters(&after_userinfo[at..]));
        }
        None => shown.push_str(after_userinfo),
    }
    shown
}

/// The userinfo with its secret hidden: `user:***`, `:***`, or `***` for a
/// lone credential; a database user name alone stays.
fn userinfo(scheme: &str, info: &str) -> String {
    match info.split_once(':') {
        Some((user, _)) => format!("{user}:{HIDDEN}"),
        None if USER_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) => info.to_owned(),
        None => HIDDEN.to_owned(),
    }
}

/// `?a=1&password=x#frag` with the secret values hidden; separators stay.
fn parameters(query: &str) -> String {
    let mut shown = String::with_capacity(query.len());
    let mut rest = query;
    while let Some(separator) = rest.chars().next() {
        shown.push(separator);
        rest = &rest[separator.len_utf8()..];
        let end = rest.find(['&', ';', '?', '#']).unwrap_or(rest.len());
        let (parameter, next) = rest.split_at(end);
        match parameter.split_once('=') {
            Some((name, value)) if !value.is_empty() && is_secret_name(name) => {
                shown.push_str(name);
                shown.push('=');
                shown.push_str(HIDDEN);
            }
            _ => shown.push_str(parameter),
        }
        rest = next;
    }
    shown
}

fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMETER_WORDS
        .iter()
        .any(|word| name.contains(word))
}

/// A token as logs may show it: its kind prefix and `…`. ipgate's tokens
/// and keys say what they are (`ipg_admin_…`, `ipg_enf_…`, `ipg_live_…`);
/// an API key also keeps its public id (`ipg_live_<id>_…`), as the admin
/// API shows it. Any other token is shown as [`HIDDEN`]: nothing in it is
/// known not to be secret.
pub fn token(token: &str) -> String {
    let token = token.trim();
    if let Ok(id) = crate::key::parse_presented(token) {
        return format!("{}…", crate::key::display_prefix(&id));
    }
    let kind = token
        .strip_prefix("ipg_")
        .and_then(|rest| rest.split_once('_'))
        .map(|(kind, _)| kind)
        .filter(|kind| !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_lowercase()));
    match kind {
        Some(kind) => format!("ipg_{kind}_…"),
        None => HIDDEN.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::NewKey;

    #[test]
    fn userinfo_passwords_are_hidden() {
        for (given, shown) in [
            (
                "postgres://ipgate:secret@db:5432/ipgate",
                "postgres://ipgate:***@db:5432/ipgate",
            ),
            (
                "postgresql://ipgate:secret@db/ipgate",
                "postgresql://ipgate:***@db/ipgate",
            ),
            ("postgres://:secret@db/ipgate", "postgres://:***@db/ipgate"),
            (
                "postgres://ipgate:@db/ipgate",
                "postgres://ipgate:***@db/ipgate",
            ),
            // Not percent-encoded: '@', ':' and '/' inside the password.
            (
                "postgres://ipgate:p@ss:w/rd@db/ipgate",
                "postgres://ipgate:***@db/ipgate",
            ),
            (
                "postgres://ipgate:secret@db1:5432,db2:5432/ipgate",
                "postgres://ipgate:***@db1:5432,db2:5432/ipgate",
            ),
            (
                "http://enforcer:secret@127.0.0.1:50051",
                "http://enforcer:***@127.0.0.1:50051",
            ),
            ("HTTP://a:b@host", "HTTP://a:***@host"),
        ] {
            assert_eq!(url(given), shown, "{given}");
        }
    }

    #[test]
    fn a_user_name_alone_stays_only_where_it_names_a_database_user() {
        assert_eq!(url("postgres://ipgate@db/x"), "postgres://ipgate@db/x");
        assert_eq!(url("PostgreSQL://ipgate@db/x"), "PostgreSQL://ipgate@db/x");
        assert_eq!(
            url("http://ghp_secrettoken@127.0.0.1:50051"),
            "http://***@127.0.0.1:50051"
        );
        assert_eq!(url("https://secret@cp.example/"), "https://***@cp.example/");
    }

    #[test]
    fn secret_query_parameters_are_hidden() {
        for (given, shown) in [
            (
                "postgres://ipgate@db/ipgate?password=secret",
                "postgres://ipgate@db/ipgate?password=***",
            ),
            (
                "postgres://db/ipgate?sslmode=verify-full&sslkey=/etc/key.pem&sslpassword=x&application_name=ipgate",
                "postgres://db/ipgate?sslmode=verify-full&sslkey=***&sslpassword=***&application_name=ipgate",
            ),
            (
                "postgresql://u:p@db/x?PASSWORD=a;passfile=b",
                "postgresql://u:***@db/x?PASSWORD=***;passfile=***",
            ),
            (
                "http://cp:50051/?access_token=abc#apiKey=def&x=1",
                "http://cp:50051/?access_token=***#apiKey=***&x=1",
            ),
            // The userinfo ends before the query, even when a value holds '@'.
            (
                "postgres://db/x?user=a@b&password=c",
                "postgres://db/x?user=a@b&password=***",
            ),
            ("postgres://db/x?password=", "postgres://db/x?password="),
            ("postgres://db/x?password", "postgres://db/x?password"),
        ] {
            assert_eq!(url(given), shown, "{given}");
        }
    }

    #[test]
    fn urls_without_secrets_are_unchanged() {
        for given in [
            "sqlite://.ipgate/ipgate.db",
            "sqlite://.ipgate/ipgate.db?mode=rwc",
            "sqlite::memory:",
            "sqlite:ipgate.db",
            "http://127.0.0.1:50051",
            "http://[::1]:50051/",
            "postgres://db/ipgate?sslmode=require&connect_timeout=5",
            "not a url",
            "",
        ] {
            assert_eq!(url(given), given);
        }
    }

    #[test]
    fn strings_that_are_not_urls_still_lose_their_secrets() {
        assert_eq!(url("db?password=x"), "db?password=***");
        assert_eq!(url("mysql://root:hunter2@db"), "mysql://root:***@db");
        assert_eq!(url("postgres//u:p@db/x"), "postgres//u:***@db/x");
        assert_eq!(url("secret@db/x"), "***@db/x");
    }

    #[test]
    fn tokens_keep_only_their_kind() {
        assert_eq!(
            token("ipg_admin_3fKq9ZpX0aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456"),
            "ipg_admin_…"
        );
        assert_eq!(
            token("ipg_enf_3fKq9ZpX0aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456"),
            "ipg_enf_…"
        );
        assert_eq!(token(" ipg_enf_abc "), "ipg_enf_…");
        for secret in [
            "a-bootstrap-token-of-my-own",
            "ipg_",
            "ipg__x",
            "ipg_ADMIN_x",
            "ipg_admin",
            "",
        ] {
            assert_eq!(token(secret), HIDDEN, "{secret}");
        }
    }

    #[test]
    fn api_keys_keep_their_public_id() {
        let key = NewKey::generate();
        let shown = token(&key.secret);
        assert_eq!(shown, format!("{}…", key.prefix()));
        assert!(!shown.contains(&key.secret[key.prefix().len()..]));
        // A key with a typo is not known to have a public id.
        let mut typo = key.secret.clone();
        typo.pop();
        assert_eq!(token(&typo), "ipg_live_…");
    }
}
