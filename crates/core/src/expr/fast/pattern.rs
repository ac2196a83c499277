//! The regular expressions of `test("…")`: jaq's engine, or a faster one where both agree.
//!
//! jaq compiles `test`'s pattern with `regex_bites` (a backtracking-free Pike VM: correct, but
//! it simulates the automaton anew on every match). The `regex` crate's lazy DFA answers
//! `is_match` many times faster. The two engines share their syntax (regex_bites is derived
//! from the same parser), but not every meaning: `\d`, `\w`, `\s` and `\b` are ASCII-only in
//! regex_bites and Unicode-aware in `regex`, and `.` or a negated class may read a byte in one
//! and a character in the other. So the DFA is used only for *plain* patterns, whose every
//! construct means the same in both on any UTF-8 text (see [`plain`]); any other pattern jaq
//! accepts is matched by regex_bites itself, exactly as jaq would.
//!
//! Rejected alternative: translating every pattern to an equivalent `regex` pattern
//! (`\d` → `[0-9]`, …). It would cover more patterns, but a mistake in the translation would
//! change an answer; the plain subset needs no translation.

use regex_bites::bytes::Regex as JaqRegex;

/// A compiled `test` pattern.
#[derive(Debug)]
pub(super) enum Pattern {
    /// A plain pattern, on the `regex` crate.
    Dfa(regex::Regex),
    /// Any other pattern jaq accepts, on jaq's own engine.
    Jaq(JaqRegex),
}

impl Pattern {
    /// The pattern, or `None` if jaq refuses it (its error is then jaq's to report).
    pub(super) fn compile(src: &str) -> Option<Self> {
        // jaq's `test(re)` builds the pattern with every flag off, as `Regex::new` does.
        let jaq = JaqRegex::new(src).ok()?;
        if plain(src)
            && let Ok(dfa) = regex::Regex::new(src)
        {
            return Some(Self::Dfa(dfa));
        }
        Some(Self::Jaq(jaq))
    }

    /// True if the pattern matches somewhere in `s`.
    pub(super) fn is_match(&self, s: &str) -> bool {
        match self {
            Self::Dfa(re) => re.is_match(s),
            Self::Jaq(re) => re.is_match(s.as_bytes()),
        }
    }

    #[cfg(test)]
    pub(super) fn is_dfa(&self) -> bool {
        matches!(self, Self::Dfa(_))
    }
}

/// Longest count a plain pattern may repeat by, so that neither engine's size limits come
/// near (a pattern only one of them accepts must stay jaq's).
const MAX_COUNT: u32 = 100;

/// True if `src` uses only constructs that mean the same in regex_bites and `regex` on any
/// UTF-8 text, with every flag off:
///
/// * ASCII letters, digits, space and `_ , : ; / @ = ! % & ~ < > ' " #`, each itself;
/// * an escaped meta character (`\.`, `\(`, …), itself;
/// * a class of ASCII letters, digits and `_` or of ranges between two such characters
///   (`[A-Za-z0-9_]`), never negated;
/// * `^` and `$` (the start and the end of the text: multi-line mode is off);
/// * groups `( … )` without flags or names, and alternation `|`;
/// * `*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}` after a character, class or group, each optionally
///   lazy (which `is_match` cannot tell apart).
///
/// Every such construct matches only ASCII characters, each a single byte in UTF-8 and never
/// part of a longer character, so reading bytes or characters makes no difference.
pub(super) fn plain(src: &str) -> bool {
    let b = src.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    // Whether the last item can be repeated: a character, a class or a group.
    let mut atom = false;
    while i < b.len() {
        let c = b[i];
        i += 1;
        atom = match c {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => true,
            b' ' | b'_' | b',' | b':' | b';' | b'/' | b'@' | b'=' | b'!' | b'%' | b'&' | b'~'
            | b'<' | b'>' | b'\'' | b'"' | b'#' => true,
            b'\\' => match b.get(i) {
                Some(
                    b'\\' | b'.' | b'+' | b'*' | b'?' | b'(' | b')' | b'|' | b'[' | b']' | b'{'
                    | b'}' | b'^' | b'$' | b'-',
                ) => {
                    i += 1;
                    true
                }
                _ => return false,
            },
            b'[' => match class_end(b, i) {
                Some(end) => {
                    i = end;
                    true
                }
                None => return false,
            },
            b'(' => {
                if b.get(i) == Some(&b'?') {
                    return false;
                }
                depth += 1;
                false
            }
            b')' => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
                true
            }
            b'|' | b'^' | b'$' => false,
            b'*' | b'+' | b'?' | b'{' => {
                if !atom {
                    return false;
                }
                if c == b'{' {
                    match count_end(b, i) {
                        Some(end) => i = end,
                        None => return false,
                    }
                }
                if b.get(i) == Some(&b'?') {
                    i += 1;
                }
                false
            }
            _ => return false,
        };
    }
    depth == 0
}

fn class_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// The index after the `]` closing a plain class whose contents start at `i`.
fn class_end(b: &[u8], mut i: usize) -> Option<usize> {
    let mut items = 0;
    loop {
        let c = *b.get(i)?;
        if c == b']' && items > 0 {
            return Some(i + 1);
        }
        if !class_char(c) {
            return None;
        }
        if b.get(i + 1) == Some(&b'-') {
            let d = *b.get(i + 2)?;
            if !class_char(d) || d < c {
                return None;
            }
            i += 3;
        } else {
            i += 1;
        }
        items += 1;
    }
}

/// The index after the `}` of a counted repetition whose contents start at `i`.
fn count_end(b: &[u8], i: usize) -> Option<usize> {
    let close = i + b[i..].iter().position(|&c| c == b'}')?;
    let body = std::str::from_utf8(&b[i..close]).ok()?;
    let number = |s: &str| -> Option<u32> {
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().filter(|n| *n <= MAX_COUNT)
    };
    match body.split_once(',') {
        None => number(body)?,
        Some((lo, "")) => number(lo)?,
        Some((lo, hi)) => {
            if number(lo)? > number(hi)? {
                return None;
            }
            0
        }
    };
    Some(close + 1)
}
