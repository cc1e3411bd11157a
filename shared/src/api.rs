//! APIs as enforcers see them: slug, status, route scope rules, allowlist.

use std::{fmt, str::FromStr};

use crate::{
    allowlist::Allowlist,
    path::{self, BadPath, route_segments},
};

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
    /// In normal form ([`path::normalize`]), without parameters.
    path_prefix: String,
    scope: Scope,
}

/// Why a route rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRoute {
    #[error("method {0:?} is not an HTTP method token; use e.g. GET, or empty or * for any")]
    Method(String),
    #[error(
        "path prefix {0:?} must start with '/' and hold no spaces, control characters, '?' or '#'"
    )]
    PathPrefix(String),
    #[error("path prefix {0:?} cannot be matched safely: {1}")]
    UnsafePathPrefix(String, BadPath),
    #[error(
        "path prefix {0:?} holds a path parameter (';'): requests are matched without their parameters, so give the prefix without them"
    )]
    PathPrefixParameters(String),
    #[error(transparent)]
    Scope(#[from] InvalidScope),
}

/// How closely a rule's method fits a request's; more specific wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum MethodFit {
    /// The rule is for any method.
    Any,
    /// A rule for GET, applied to HEAD: a HEAD answers what a GET would,
    /// without the body.
    GetCoversHead,
    /// The rule names this method.
    Exact,
}

impl RouteRule {
    /// A rule from raw parts: `method` empty or `*` means any method. The
    /// prefix is kept in normal form (`/%61dmin/./x` is `/admin/x`); one
    /// without a safe normal form, or with a path parameter, is refused.
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
                .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
        {
            return Err(InvalidRoute::PathPrefix(path_prefix.to_owned()));
        }
        let normal = path::normalize(path_prefix)
            .map_err(|e| InvalidRoute::UnsafePathPrefix(path_prefix.to_owned(), e))?;
        // Requests are matched without their parameters; a prefix with one
        // could never match as written.
        if normal.contains(';') || normal.contains("%3B") {
            return Err(InvalidRoute::PathPrefixParameters(path_prefix.to_owned()));
        }
        Ok(RouteRule {
            method,
            path_prefix: normal.into_owned(),
            scope: scope.parse()?,
        })
    }

    /// The method, or `None` for any.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The path prefix, in normal form.
    pub fn path_prefix(&self) -> &str {
        &self.path_prefix
    }

    /// The scope a key needs for matching requests.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// True when the rule applies to this method and path (a path in normal
    /// form: [`path::normalize`]; a query string is ignored). See
    /// [`RouteRule::fit`] for what matches.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.fit(method, path).is_some()
    }

    /// How well the rule fits, `None` when it does not apply. Prefixes match
    /// whole path segments, without regard to ASCII case and ignoring path
    /// parameters: `/orders` covers `/orders`, `/Orders/7` and
    /// `/orders;v=2/7`, not `/ordersx`; a trailing `/` on the prefix makes
    /// no difference. The method is compared without regard to case, and a
    /// rule for GET also covers HEAD.
    fn fit(&self, method: &str, path: &str) -> Option<(usize, MethodFit)> {
        let method_fit = match self.method.as_deref() {
            None => MethodFit::Any,
            Some(m) if m.eq_ignore_ascii_case(method) => MethodFit::Exact,
            Some("GET") if method.eq_ignore_ascii_case("HEAD") => MethodFit::GetCoversHead,
            Some(_) => return None,
        };
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let mut requested = route_segments(path);
        let mut depth = 0;
        for wanted in route_segments(&self.path_prefix) {
            match requested.next() {
                Some(segment) if segment.eq_ignore_ascii_case(wanted) => depth += 1,
                _ => return None,
            }
        }
        Some((depth, method_fit))
    }
}

/// The scope a request needs under `routes`, for a path in normal form
/// ([`path::normalize`]): the rule with the most matching segments wins,
/// then the one whose method fits best; no matching rule means no scope is
/// needed.
pub fn required_scope<'r>(routes: &'r [RouteRule], method: &str, path: &str) -> Option<&'r Scope> {
    routes
        .iter()
        .filter_map(|r| r.fit(method, path).map(|fit| (fit, r)))
        .max_by_key(|(fit, _)| *fit)
        .map(|(_, r)| r.scope())
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
    fn prefixes_match_without_case_and_without_parameters() {
        let r = RouteRule::new("GET", "/admin", "admin").unwrap();
        for covered in [
            "/admin",
            "/admin/",
            "/ADMIN",
            "/Admin/Users",
            "/admin;jsessionid=1",
            "/admin;v=1/users",
            "/admin%3Bx/users",
        ] {
            assert!(r.matches("GET", covered), "{covered}");
        }
        for not_covered in ["/administrator", "/admin-panel", "/", "/x/admin", "/adm"] {
            assert!(!r.matches("GET", not_covered), "{not_covered}");
        }
    }

    #[test]
    fn a_trailing_slash_on_the_prefix_makes_no_difference() {
        // Many frameworks serve /admin and /admin/ alike, so a rule written
        // "/admin/" must not leave "/admin" open.
        let r = RouteRule::new("", "/admin/", "admin").unwrap();
        assert!(r.matches("GET", "/admin"));
        assert!(r.matches("GET", "/admin/x"));
        assert!(!r.matches("GET", "/administrator"));
    }

    #[test]
    fn a_rule_for_get_covers_head_and_nothing_else() {
        let r = RouteRule::new("GET", "/admin", "admin").unwrap();
        assert!(r.matches("HEAD", "/admin"));
        assert!(r.matches("head", "/admin"));
        assert!(r.matches("get", "/admin"));
        assert!(!r.matches("POST", "/admin"));
        assert!(!r.matches("OPTIONS", "/admin"));
        let head = RouteRule::new("HEAD", "/x", "h").unwrap();
        assert!(!head.matches("GET", "/x"), "HEAD does not cover GET");
    }

    #[test]
    fn the_rule_naming_the_method_beats_get_for_head_and_any() {
        let routes = vec![
            RouteRule::new("", "/admin", "any").unwrap(),
            RouteRule::new("GET", "/admin", "read").unwrap(),
            RouteRule::new("HEAD", "/admin", "peek").unwrap(),
        ];
        let scope = |m, p| required_scope(&routes, m, p).map(|s| s.as_str().to_owned());
        assert_eq!(scope("HEAD", "/admin").as_deref(), Some("peek"));
        assert_eq!(scope("GET", "/admin").as_deref(), Some("read"));
        assert_eq!(scope("POST", "/admin").as_deref(), Some("any"));
        // Without the HEAD rule, HEAD needs what GET needs.
        assert_eq!(
            required_scope(&routes[..2], "HEAD", "/admin").map(Scope::as_str),
            Some("read")
        );
    }

    #[test]
    fn prefixes_are_kept_in_normal_form() {
        let prefix = |p: &str| RouteRule::new("", p, "s").map(|r| r.path_prefix().to_owned());
        assert_eq!(prefix("/%61dmin/./x").as_deref(), Ok("/admin/x"));
        assert_eq!(prefix("//admin//").as_deref(), Ok("/admin/"));
        assert_eq!(prefix("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(prefix("/café").as_deref(), Ok("/caf%C3%A9"));
        // Either spelling of the prefix matches either spelling of a path.
        let r = RouteRule::new("", "/café", "s").unwrap();
        assert!(r.matches("GET", "/CAF%C3%A9/menu"));
    }

    #[test]
    fn bad_routes_are_refused() {
        assert!(matches!(
            RouteRule::new("GE T", "/", "s"),
            Err(InvalidRoute::Method(_))
        ));
        for prefix in ["orders", "/a b", "/a?b", "/a#b", "*"] {
            assert!(
                matches!(
                    RouteRule::new("GET", prefix, "s"),
                    Err(InvalidRoute::PathPrefix(_))
                ),
                "{prefix}"
            );
        }
        for (prefix, why) in [
            ("/a%2fb", BadPath::EncodedSeparator),
            ("/..", BadPath::AboveRoot),
            ("/a/../../b", BadPath::AboveRoot),
            ("/%zz", BadPath::InvalidEncoding),
            ("/a\\b", BadPath::Backslash),
        ] {
            assert_eq!(
                RouteRule::new("GET", prefix, "s"),
                Err(InvalidRoute::UnsafePathPrefix(prefix.to_owned(), why))
            );
        }
        for prefix in ["/admin;v=1", "/a;/b", "/a%3bb"] {
            assert!(
                matches!(
                    RouteRule::new("GET", prefix, "s"),
                    Err(InvalidRoute::PathPrefixParameters(_))
                ),
                "{prefix}"
            );
        }
        assert!(matches!(
            RouteRule::new("GET", "/", ""),
            Err(InvalidRoute::Scope(_))
        ));
    }
}
