//! The elements of a list-valued header, from the right, at a bounded cost.
//!
//! Several lines of one header are one list, in order (RFC 9110 §5.6.1), so
//! the last line's last element comes first. Each line is split from its
//! end, and only as far as the walk goes: a 64 KiB header costs no more
//! than the few elements a walk reads, each at most [`MAX_ELEMENT_BYTES`].
//!
//! Splitting from the right also means that what a trusted proxy appended —
//! one balanced element after a comma — is found exactly, whatever a client
//! wrote to its left: an unbalanced quote on the left cannot swallow it, as
//! it would in a left-to-right parse of the whole line.

/// Longest element read; a longer one stops the walk as malformed.
pub(crate) const MAX_ELEMENT_BYTES: usize = 512;

/// One element, or the sign that the next one is too long to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// The element's bytes, without the commas around it.
    Element(&'a [u8]),
    /// More than [`MAX_ELEMENT_BYTES`] without a separating comma. The
    /// caller stops here: the rest of that line is not read.
    TooLong,
}

/// The elements of `lines` (given last line first), right to left.
#[derive(Clone, Debug)]
pub(crate) struct FromRight<'a, I> {
    lines: I,
    /// What is left of the line being split.
    current: Option<&'a [u8]>,
    /// True for `Forwarded`, whose quoted strings may hold commas.
    quotes: bool,
}

impl<'a, I: Iterator<Item = &'a [u8]>> FromRight<'a, I> {
    /// `lines`, last first; `quotes` when commas inside `"…"` do not separate.
    pub(crate) fn new(lines: I, quotes: bool) -> Self {
        FromRight {
            lines,
            current: None,
            quotes,
        }
    }
}

impl<'a, I: Iterator<Item = &'a [u8]>> Iterator for FromRight<'a, I> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        let rest = match self.current.take() {
            Some(rest) => rest,
            None => self.lines.next()?,
        };
        // Look back at most one byte past the longest element, for its comma.
        let floor = rest.len().saturating_sub(MAX_ELEMENT_BYTES + 1);
        let mut quoted = false;
        for at in (floor..rest.len()).rev() {
            match rest[at] {
                b'"' if self.quotes => quoted = !quoted,
                b',' if !quoted => {
                    self.current = Some(&rest[..at]);
                    return Some(Piece::Element(&rest[at + 1..]));
                }
                _ => {}
            }
        }
        if rest.len() <= MAX_ELEMENT_BYTES {
            Some(Piece::Element(rest))
        } else {
            Some(Piece::TooLong)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client_ip::node::trim_ows;

    /// True when `piece` is an element with nothing but spaces in it.
    fn is_blank(piece: Piece<'_>) -> bool {
        matches!(piece, Piece::Element(e) if trim_ows(e).is_empty())
    }

    /// An element without the spaces around it; `None` for [`Piece::TooLong`].
    fn trimmed(piece: Piece<'_>) -> Option<String> {
        match piece {
            Piece::Element(e) => Some(String::from_utf8_lossy(trim_ows(e)).into_owned()),
            Piece::TooLong => None,
        }
    }

    fn split(lines: &[&str], quotes: bool) -> Vec<Option<String>> {
        FromRight::new(lines.iter().rev().map(|l| l.as_bytes()), quotes)
            .map(trimmed)
            .collect()
    }

    fn some(items: &[&str]) -> Vec<Option<String>> {
        items.iter().map(|s| Some((*s).to_owned())).collect()
    }

    #[test]
    fn lines_combine_in_order_and_elements_come_from_the_right() {
        assert_eq!(
            split(&["a, b", "c", "d ,e"], false),
            some(&["e", "d", "c", "b", "a"])
        );
        // Empty elements are kept: the walk refuses them.
        assert_eq!(split(&["a,,b,"], false), some(&["", "b", "", "a"]));
        assert_eq!(split(&[""], false), some(&[""]));
        assert!(split(&[], false).is_empty());
        assert!(FromRight::new([&b" , "[..]].into_iter(), false).all(is_blank));
    }

    #[test]
    fn quoted_commas_separate_only_outside_forwarded_quotes() {
        let line = r#"for=a;ext="x,y", for="[2001:db8::1]:4711""#;
        assert_eq!(
            split(&[line], true),
            some(&[r#"for="[2001:db8::1]:4711""#, r#"for=a;ext="x,y""#])
        );
        assert_eq!(
            split(&[line], false),
            some(&[r#"for="[2001:db8::1]:4711""#, r#"y""#, r#"for=a;ext="x"#])
        );
        // A client's unbalanced quote on the left cannot swallow what a
        // proxy appended after it.
        assert_eq!(
            split(&[r#"for="evil, for=198.51.100.1"#], true),
            some(&["for=198.51.100.1", r#"for="evil"#])
        );
    }

    #[test]
    fn long_elements_are_not_read() {
        let long = "9".repeat(MAX_ELEMENT_BYTES + 1);
        let just = "9".repeat(MAX_ELEMENT_BYTES);
        assert_eq!(split(&[&long], false), vec![None]);
        assert_eq!(split(&[&just], false), some(&[&just]));
        let line = format!("{long}, 1.2.3.4");
        assert_eq!(
            split(&[&line], false).first(),
            Some(&Some("1.2.3.4".to_owned()))
        );
        let line = format!("1.2.3.4,{long}");
        assert_eq!(split(&[&line], false).first(), Some(&None));
    }
}
