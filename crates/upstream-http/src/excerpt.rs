//! Short, printable excerpts of upstream answers.
//!
//! An upstream's answer may be anything (an internal page, a token, a
//! terminal escape): error messages carry at most this much of it, on one
//! line, without control characters.

/// The longest excerpt, in characters (without the trailing `...`).
pub const EXCERPT_CHARS: usize = 200;

/// `text` on one line: control characters (newlines and tabs included) become
/// spaces, runs of whitespace one space, cut at [`EXCERPT_CHARS`] with `...`.
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut chars = 0usize;
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        // Bidirectional overrides and zero-width characters can disguise text.
        if matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
        {
            continue;
        }
        if chars + usize::from(pending_space) >= EXCERPT_CHARS {
            out.push_str("...");
            return out;
        }
        if pending_space {
            out.push(' ');
            chars += 1;
            pending_space = false;
        }
        out.push(c);
        chars += 1;
    }
    out
}

/// [`excerpt`] of a body that may not be UTF-8.
pub fn excerpt_bytes(body: &[u8]) -> String {
    excerpt(&String::from_utf8_lossy(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_one_short_printable_line() {
        assert_eq!(excerpt("  plain  "), "plain");
        assert_eq!(excerpt("a\r\nb\t\tc\0d\u{1b}[31me"), "a b c d [31me");
        assert_eq!(excerpt("x\u{202e}y\u{200b}z"), "xyz");
        assert_eq!(excerpt(""), "");
        let long = "é".repeat(1000);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 3);
        assert!(cut.ends_with("..."));
        assert_eq!(
            excerpt(&"y".repeat(EXCERPT_CHARS)),
            "y".repeat(EXCERPT_CHARS)
        );
        assert_eq!(excerpt_bytes(b"ok\xffok"), "ok\u{fffd}ok");
    }
}
