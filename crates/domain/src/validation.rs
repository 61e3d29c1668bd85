//! Field-level validation errors, gathered so a caller learns every problem at
//! once, and the one rule for the characters of any text a caller sends.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// One or more fields were refused.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
#[error("invalid input: {}", .errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
pub struct ValidationError {
    pub errors: Vec<FieldError>,
}

impl ValidationError {
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            errors: vec![FieldError {
                field: field.into(),
                message: message.into(),
            }],
        }
    }

    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    /// `Ok(())` when nothing was refused.
    pub fn into_result(self) -> Result<(), Self> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self)
        }
    }

    /// The same refusals, of fields nested under `prefix` (`customer.` + `last_name`).
    pub fn prefixed(mut self, prefix: &str) -> Self {
        for e in &mut self.errors {
            e.field = format!("{prefix}{}", e.field);
        }
        self
    }

    /// Runs a parser and records its refusal under `field`.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(message) => {
                self.push(field, message);
                None
            }
        }
    }
}

/// Where a piece of text comes from decides which white space it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    /// Free text in a body (a name, a note): tab, newline and carriage return
    /// are allowed.
    Free,
    /// An id, a path segment or a query parameter: no control character at all.
    Token,
}

/// The one rule for text taken from a request: no NUL or other control
/// character (PostgreSQL cannot store a NUL, SQLite silently cuts or matches
/// on it, and logs and CSV exports break on the rest), except the white space
/// free text may hold.
pub fn check_characters(text: &str, kind: TextKind) -> Result<(), String> {
    let allowed = |c: char| kind == TextKind::Free && matches!(c, '\t' | '\n' | '\r');
    match text.chars().find(|&c| c.is_control() && !allowed(c)) {
        None => Ok(()),
        Some(c) => Err(format!(
            "must not contain control characters (found U+{:04X})",
            u32::from(c)
        )),
    }
}

/// `.` and `..` name a directory, never a record: refused wherever an id is taken.
pub fn is_dot_segment(text: &str) -> bool {
    text == "." || text == ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_and_free_text_keeps_its_white_space() {
        for kind in [TextKind::Free, TextKind::Token] {
            assert!(check_characters("plain text, \u{e9}t\u{e9}", kind).is_ok());
            for bad in ["a\0b", "\u{1b}[31m", "\u{7f}", "\u{85}", "\u{8}"] {
                let e = check_characters(bad, kind).unwrap_err();
                assert!(e.contains("U+"), "{bad:?}: {e}");
            }
        }
        assert!(check_characters("line one\nline two\ttab\r\n", TextKind::Free).is_ok());
        assert_eq!(
            check_characters("a\tb", TextKind::Token),
            Err("must not contain control characters (found U+0009)".into())
        );
        assert!(is_dot_segment("..") && is_dot_segment("."));
        assert!(!is_dot_segment("...") && !is_dot_segment(".a"));
    }
}
