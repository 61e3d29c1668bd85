//! The rules of the text fields of billing records: lengths, one line or
//! several, the values the sync compares (state, zip, phone), references to
//! other billing records.

use domain::billing::BillingId;
use domain::sync::normalize::Normalizer;
use domain::validation::ValidationError;

/// A text field of at most `max` characters, on one line unless `multiline`.
/// The characters themselves were checked before: `extract::parse_json`
/// refuses every control character in a body except the tab and line breaks
/// free text may hold, which leaves a one-line field only those to refuse.
pub(super) fn text(
    v: &mut ValidationError,
    field: &str,
    value: String,
    max: usize,
    multiline: bool,
) -> String {
    if value.chars().count() > max {
        v.push(field, format!("must be at most {max} characters"));
    } else if !multiline && value.contains(['\t', '\n', '\r']) {
        v.push(field, "must not contain control characters");
    }
    value
}

/// A text field whose values the sync compares with `normalizer` (state,
/// zip, phone): refused when that kind cannot make sense of it.
pub(super) fn checked(
    v: &mut ValidationError,
    field: &str,
    value: String,
    normalizer: Normalizer,
) -> String {
    let max = match normalizer {
        Normalizer::Zip => 20,
        Normalizer::Phone => 40,
        _ => 50,
    };
    let before = v.errors.len();
    let value = text(v, field, value, max, false);
    if v.errors.len() == before {
        v.check(field, normalizer.validate(&value));
    }
    value
}

pub(super) fn reference(v: &mut ValidationError, field: &str, raw: &str) -> Option<BillingId> {
    v.check(field, BillingId::parse(raw))
}

/// Checks a list of tags: at most 50, each a short line of text.
pub(super) fn tag_list(v: &mut ValidationError, tags: Vec<String>) -> Vec<String> {
    if tags.len() > 50 {
        v.push("tags", "at most 50 tags");
    }
    tags.into_iter()
        .enumerate()
        .map(|(i, t)| text(v, &format!("tags[{i}]"), t, 50, false))
        .collect()
}
