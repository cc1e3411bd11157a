//! One table per class of path, each case with the outcome it must have.

use std::borrow::Cow;

use proptest::prelude::*;

use super::*;

/// Runs `normalize` over `cases`, naming every case that came out wrong.
fn check(class: &str, cases: &[(&str, Result<&str, BadPath>)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(input, expected)| {
            let got = normalize(input);
            let got = got.as_ref().map(|p| p.as_ref()).map_err(|e| *e);
            (got != *expected).then(|| format!("{input:?}: expected {expected:?}, got {got:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{class}:\n{}", wrong.join("\n"));
}

#[test]
fn the_reported_bypass_spellings() {
    // The seven spellings that reached the upstream past a rule on /admin.
    check(
        "reported bypasses",
        &[
            ("/hello/../admin", Ok("/admin")),
            ("/%61dmin", Ok("/admin")),
            ("//admin", Ok("/admin")),
            ("/./admin", Ok("/admin")),
            // Case is kept for the upstream; rules compare without case.
            ("/ADMIN", Ok("/ADMIN")),
            ("/admin%2f", Err(BadPath::EncodedSeparator)),
            ("/hello/..%2fadmin", Err(BadPath::EncodedSeparator)),
        ],
    );
}

#[test]
fn unreserved_characters_are_decoded_and_other_hex_uppercased() {
    check(
        "percent-encoding",
        &[
            ("/%41%5a%61%7a%30%39", Ok("/AZaz09")),
            ("/a%2Db%2ec%5Fd%7e", Ok("/a-b.c_d~")),
            ("/caf%c3%a9", Ok("/caf%C3%A9")),
            ("/a%3a%40%3b%3D", Ok("/a%3A%40%3B%3D")),
            // A literal percent sign stays encoded.
            ("/100%25", Ok("/100%25")),
            ("/%20x", Ok("/%20x")),
        ],
    );
}

#[test]
fn dot_segments_are_resolved_also_when_encoded() {
    check(
        "dot segments",
        &[
            ("/hello/%2e%2e/admin", Ok("/admin")),
            ("/hello/%2E./admin", Ok("/admin")),
            ("/hello/.%2e/admin", Ok("/admin")),
            ("/%2e/admin", Ok("/admin")),
            ("/a/./b/../c", Ok("/a/c")),
            ("/a/b/../../c", Ok("/c")),
            ("/a/b/../..", Ok("/")),
            // Names that only look like dot segments are names.
            ("/.../a", Ok("/.../a")),
            ("/.a/b./..b", Ok("/.a/b./..b")),
        ],
    );
}

#[test]
fn trailing_dot_segments_leave_a_trailing_slash() {
    // RFC 3986 §5.2.4: the path still names a "directory".
    check(
        "trailing dot segments",
        &[
            ("/a/b/.", Ok("/a/b/")),
            ("/a/b/..", Ok("/a/")),
            ("/a/.", Ok("/a/")),
            ("/a/..", Ok("/")),
            ("/.", Ok("/")),
            ("/a/b/%2e%2e", Ok("/a/")),
            ("/a/", Ok("/a/")),
        ],
    );
}

#[test]
fn climbing_above_the_root_is_refused() {
    check(
        "above the root",
        &[
            ("/..", Err(BadPath::AboveRoot)),
            ("/../admin", Err(BadPath::AboveRoot)),
            ("/a/b/../../..", Err(BadPath::AboveRoot)),
            ("/%2e%2e/admin", Err(BadPath::AboveRoot)),
            ("/a/./../..", Err(BadPath::AboveRoot)),
            // A climb undone by nothing is still a climb, even if later
            // segments would land inside.
            ("/../a/b", Err(BadPath::AboveRoot)),
        ],
    );
}

#[test]
fn duplicate_slashes_are_merged() {
    check(
        "slashes",
        &[
            ("//admin", Ok("/admin")),
            ("/a//b///c", Ok("/a/b/c")),
            ("/a//", Ok("/a/")),
            ("///", Ok("/")),
            // Merged before dots are resolved, as nginx does.
            ("/a//../b", Ok("/b")),
        ],
    );
}

#[test]
fn encoded_separators_and_backslashes_are_refused() {
    check(
        "separators",
        &[
            ("/admin%2F", Err(BadPath::EncodedSeparator)),
            ("/a%2fb", Err(BadPath::EncodedSeparator)),
            ("/a%5cb", Err(BadPath::EncodedSeparator)),
            ("/a%5Cb", Err(BadPath::EncodedSeparator)),
            ("/a\\b", Err(BadPath::Backslash)),
            ("/hello\\..\\admin", Err(BadPath::Backslash)),
        ],
    );
}

#[test]
fn control_characters_are_refused_raw_or_encoded() {
    check(
        "controls",
        &[
            ("/a%00", Err(BadPath::Control)),
            ("/admin%00.json", Err(BadPath::Control)),
            ("/a%0d%0aX-Injected:1", Err(BadPath::Control)),
            ("/a%1F", Err(BadPath::Control)),
            ("/a%7f", Err(BadPath::Control)),
            ("/a\0b", Err(BadPath::Control)),
            ("/a\tb", Err(BadPath::Control)),
            ("/a\u{7f}", Err(BadPath::Control)),
        ],
    );
}

#[test]
fn invalid_percent_encoding_is_refused() {
    check(
        "invalid encoding",
        &[
            ("/%zz", Err(BadPath::InvalidEncoding)),
            ("/a%", Err(BadPath::InvalidEncoding)),
            ("/a%2", Err(BadPath::InvalidEncoding)),
            ("/a%g0", Err(BadPath::InvalidEncoding)),
            ("/%%41", Err(BadPath::InvalidEncoding)),
        ],
    );
}

#[test]
fn double_encoded_dots_and_separators_are_refused() {
    check(
        "double encoding",
        &[
            ("/x/%252e%252e/admin", Err(BadPath::DoubleEncoded)),
            ("/a%252Fb", Err(BadPath::DoubleEncoded)),
            ("/a%255c", Err(BadPath::DoubleEncoded)),
            // Spelled through decoded unreserved digits and letters.
            ("/%25%32%65", Err(BadPath::DoubleEncoded)),
            // Other double encodings are ordinary data.
            ("/a%2541", Ok("/a%2541")),
        ],
    );
}

#[test]
fn unicode_and_other_raw_characters_get_their_one_spelling() {
    check(
        "raw characters",
        &[
            ("/café", Ok("/caf%C3%A9")),
            ("/日本", Ok("/%E6%97%A5%E6%9C%AC")),
            ("/a b", Ok("/a%20b")),
            ("/{\"q\":1}", Ok("/%7B%22q%22:1%7D")),
            ("/a|b^c`d", Ok("/a%7Cb%5Ec%60d")),
            ("/a[0]", Ok("/a%5B0%5D")),
            // Reserved characters a path may hold raw stay as they are.
            ("/a:b@c!$&'()*+,;=", Ok("/a:b@c!$&'()*+,;=")),
        ],
    );
}

#[test]
fn path_parameters_are_kept_but_not_on_dot_segments() {
    check(
        "parameters",
        &[
            ("/admin;jsessionid=1", Ok("/admin;jsessionid=1")),
            ("/admin;v=1/users", Ok("/admin;v=1/users")),
            ("/hello/..;/admin", Err(BadPath::DotSegmentWithParameters)),
            (
                "/hello/..;x=1/admin",
                Err(BadPath::DotSegmentWithParameters),
            ),
            ("/.;/admin", Err(BadPath::DotSegmentWithParameters)),
            (
                "/hello/%2e%2e;/admin",
                Err(BadPath::DotSegmentWithParameters),
            ),
            ("/hello/..%3b/admin", Err(BadPath::DotSegmentWithParameters)),
        ],
    );
    // Rules compare segments without their parameters.
    let segments = |p| route_segments(p).collect::<Vec<_>>();
    assert_eq!(segments("/admin;v=1/users"), ["admin", "users"]);
    assert_eq!(segments("/admin%3Bx"), ["admin"]);
    assert_eq!(segments("/;x/admin/"), ["admin"]);
    assert_eq!(segments("/"), Vec::<&str>::new());
}

#[test]
fn query_fragment_empty_and_relative_paths() {
    check(
        "shapes",
        &[
            ("", Ok("/")),
            ("/", Ok("/")),
            ("?x=1", Ok("/")),
            ("/admin?next=/../../etc", Ok("/admin")),
            ("/a/../admin?x#y", Ok("/admin")),
            ("/a#/../b", Ok("/a")),
            ("*", Err(BadPath::NotAbsolute)),
            ("admin", Err(BadPath::NotAbsolute)),
            ("../admin", Err(BadPath::NotAbsolute)),
            ("%2Fadmin", Err(BadPath::NotAbsolute)),
        ],
    );
}

#[test]
fn normal_paths_come_back_borrowed() {
    for path in ["/", "/orders/7", "/a/b/", "/caf%C3%A9", "/a;b=c", "/%20"] {
        assert!(
            matches!(normalize(path), Ok(Cow::Borrowed(p)) if p == path),
            "{path}"
        );
    }
    assert!(matches!(
        normalize("/orders?x"),
        Ok(Cow::Borrowed("/orders"))
    ));
}

/// Characters that make paths interesting: separators, dots, percent
/// signs, hex digits, parameters, case and a non-ASCII letter.
fn pathish() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "/", "/", ".", "..", "%", "2", "e", "E", "f", "F", "5", "c", "a", "A", "%2e", "%2E", "%2f",
        "%61", "%7E", "%25", "%252e", "%255C", "%3b", "%3B", "..;", ";", "\\", "~", "é", " ",
        "%00", "x",
    ]);
    prop::collection::vec(piece, 0..24).prop_map(|p| format!("/{}", p.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The quick check and the full normaliser agree on what is normal.
    #[test]
    fn the_quick_check_agrees_with_the_normaliser(path in pathish()) {
        let slow = normalize_slowly(&path);
        prop_assert_eq!(is_normal(&path), slow.as_deref() == Ok(path.as_str()), "{:?} -> {:?}", path, slow);
    }
}
