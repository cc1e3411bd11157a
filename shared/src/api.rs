//! APIs as enforcers see them: slug, status, route scope rules, allowlist.

use std::{fmt, str::FromStr};

use crate::allowlist::Allowlist;

/// An API's unique, immutable name: 1-63 of `a-z 0-9 -`, not starting with `-`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiSlug(String);

/// Why a string is not an [`ApiSlug`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a valid API slug: use 1-63 lowercase letters, digits and '-', starting with a letter or digit"
)]
pub struct InvalidSlug(pub String);

impl FromStr for ApiSlug {
    type Err = InvalidSlug;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=63).contains(&s.len())
            && !s.starts_with('-')
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(ApiSlug(s.to_owned()))
        } else {
            Err(InvalidSlug(s.to_owned()))
        }
    }
}

impl ApiSlug {
    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for ApiSlug {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// A permission a key may carry and a route may require: 1-64 of
/// `A-Z a-z 0-9 : . _ -`, e.g. `orders:read`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope(String);

/// Why a string is not a [`Scope`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a valid scope: use 1-64 letters, digits and ':._-', e.g. orders:read")]
pub struct InvalidScope(pub String);

impl FromStr for Scope {
    type Err = InvalidScope;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b":._-".contains(&b));
        if ok {
            Ok(Scope(s.to_owned()))
        } else {
            Err(InvalidScope(s.to_owned()))
        }
    }
}

impl Scope {
    /// The scope as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Requests whose method and path match need `scope`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRule {
    method: Option<String>,
    path_prefix: String,
    scope: Scope,
}

/// Why a route rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRoute {
    #[error("method {0:?} is not an HTTP method token; use e.g. GET, or empty or * for any")]
    Method(String),
    #[error("path prefix {0:?} must start with '/' and hold no spaces or control characters")]
    PathPrefix(String),
    #[error(transparent)]
    Scope(#[from] InvalidScope),
}

impl RouteRule {
    /// A rule from raw parts: `method` empty or `*` means any method.
    pub fn new(method: &str, path_prefix: &str, scope: &str) -> Result<Self, InvalidRoute> {
        let method = match method {
            "" | "*" => None,
            m if m.bytes().all(|b| b.is_ascii_alphabetic()) && m.len() <= 16 => {
                Some(m.to_ascii_uppercase())
            }
            m => return Err(InvalidRoute::Method(m.to_owned())),
        };
        if !path_prefix.starts_with('/')
            || path_prefix.len() > 1024
            || path_prefix
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(InvalidRoute::PathPrefix(path_prefix.to_owned()));
        }
        Ok(RouteRule {
            method,
            path_prefix: path_prefix.to_owned(),
            scope: scope.parse()?,
        })
    }

    /// The method, or `None` for any.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The path prefix.
    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    /// The scope a key needs for matching requests.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// True when the rule applies to this method and path. Prefixes match
    /// whole path segments: `/orders` covers `/orders` and `/orders/7`, not
    /// `/ordersx`.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        let method_ok = self
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method));
        let path = path.split(['?', '#']).next().unwrap_or(path);
        method_ok
            && match path.strip_prefix(self.path_prefix.as_str()) {
                Some(rest) => {
                    rest.is_empty() || rest.starts_with('/') || self.path_prefix.ends_with('/')
                }
                None => false,
            }
    }
}

/// The scope a request needs under `routes`: the rule with the longest
/// matching prefix wins; no matching rule means no scope is needed.
pub fn required_scope<'r>(routes: &'r [RouteRule], method: &str, path: &str) -> Option<&'r Scope> {
    routes
        .iter()
        .filter(|r| r.matches(method, path))
        .max_by_key(|r| (r.path_prefix.len(), r.method.is_some()))
        .map(RouteRule::scope)
}

/// An API as the enforcers need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    pub slug: ApiSlug,
    pub enabled: bool,
    pub allowlist: Allowlist,
    pub routes: Vec<RouteRule>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["orders", "a", "orders-v2", "9lives"] {
            assert!(ok.parse::<ApiSlug>().is_ok(), "{ok}");
        }
        for bad in ["", "-x", "Orders", "a b", "a_b", &"x".repeat(64)] {
            assert!(bad.parse::<ApiSlug>().is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes() {
        assert!("orders:read".parse::<Scope>().is_ok());
        assert!("".parse::<Scope>().is_err());
        assert!("a b".parse::<Scope>().is_err());
    }

    #[test]
    fn route_prefixes_match_whole_segments() {
        let r = RouteRule::new("get", "/orders", "orders:read").unwrap();
        assert!(r.matches("GET", "/orders"));
        assert!(r.matches("GET", "/orders/7"));
        assert!(r.matches("GET", "/orders?page=2"));
        assert!(!r.matches("GET", "/ordersx"));
        assert!(!r.matches("POST", "/orders"));
        let any = RouteRule::new("*", "/", "base").unwrap();
        assert!(any.matches("DELETE", "/anything"));
    }

    #[test]
    fn longest_prefix_decides_the_scope() {
        let routes = vec![
            RouteRule::new("", "/", "base").unwrap(),
            RouteRule::new("", "/orders", "orders:read").unwrap(),
            RouteRule::new("POST", "/orders", "orders:write").unwrap(),
        ];
        let scope = |m, p| required_scope(&routes, m, p).map(|s| s.as_str().to_owned());
        assert_eq!(scope("GET", "/orders/1").as_deref(), Some("orders:read"));
        assert_eq!(scope("POST", "/orders").as_deref(), Some("orders:write"));
        assert_eq!(scope("GET", "/status").as_deref(), Some("base"));
        assert_eq!(required_scope(&routes[1..], "GET", "/status"), None);
    }

    #[test]
    fn bad_routes_are_refused() {
        assert!(matches!(
            RouteRule::new("GE T", "/", "s"),
            Err(InvalidRoute::Method(_))
        ));
        assert!(matches!(
            RouteRule::new("GET", "orders", "s"),
            Err(InvalidRoute::PathPrefix(_))
        ));
        assert!(matches!(
            RouteRule::new("GET", "/", ""),
            Err(InvalidRoute::Scope(_))
        ));
    }
}
