//! Normalisation: the form in which two values are compared before a sync
//! decides anything. Values equal after normalisation are equal — no update
//! is made for "OH" against "Ohio" (S11) — so each field says which
//! normaliser it uses (see `fields`).
//!
//! Normalised forms are for comparing only; what is written to either side is
//! always a value one side already holds, never the normalised form.

use serde::{Deserialize, Serialize};

/// How the values of one field are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalizer {
    /// Trimmed, inner white space collapsed to one space, case-insensitive.
    Text,
    /// A US state (with DC, PR, GU, VI, AS, MP) or a Canadian province or
    /// territory, by code or full name, in any case: "OH" == "Ohio" == " ohio ".
    /// A value that names none of them is compared as `Text`.
    State,
    /// The digits of a phone number. A NANP number written with its country
    /// code 1 equals the 10-digit number; an extension ("x123", "ext. 123",
    /// "#123") stays part of the value. A value without digits is `Text`.
    Phone,
    /// A US zip ("43004", zip+4 "43004-1234" / "430041234") or a Canadian
    /// postal code ("K1A 0B1" == "k1a0b1"). A 5-digit zip and a zip+4 with the
    /// same first five digits are *not* equal: the +4 is information one side
    /// lacks, so a sync may carry it over. Anything else is `Text`.
    Zip,
    /// Exact after trimming, case-sensitive: transmitter codes, where "ab12"
    /// and "AB12" may be two accounts of the central station.
    Code,
}

impl Normalizer {
    /// The comparison form of `raw`. Idempotent: `normalize(normalize(x)) == normalize(x)`.
    pub fn normalize(&self, raw: &str) -> String {
        match self {
            Self::Text => text(raw),
            Self::State => state(raw),
            Self::Phone => phone(raw),
            Self::Zip => zip(raw),
            Self::Code => raw.trim().to_owned(),
        }
    }

    /// Whether `a` and `b` are the same value for this kind of field.
    pub fn equal(&self, a: &str, b: &str) -> bool {
        a == b || self.normalize(a) == self.normalize(b)
    }

    /// Refuses a value a caller sends that this kind cannot understand: a
    /// state or province no one has, a zip that is neither US nor Canadian, a
    /// phone without a number in it. Empty is allowed (not known yet); values
    /// already held (from Stages, from an import) are never judged by this.
    pub fn validate(&self, raw: &str) -> Result<(), String> {
        if raw.trim().is_empty() {
            return Ok(());
        }
        match self {
            Self::State if !REGIONS.iter().any(|(code, _)| *code == state(raw)) => Err(
                "must be a US state or Canadian province, by its code or name (e.g. OH or Ohio)"
                    .into(),
            ),
            Self::Zip if postal_code(raw).is_none() => Err(
                "must be a US zip (43004 or 43004-1234) or a Canadian postal code (K1A 0B1)".into(),
            ),
            Self::Phone => {
                let (main, _) = split_extension(raw);
                let digits = main.chars().filter(char::is_ascii_digit).count();
                let only_phone_characters = main
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " ()-.+/".contains(c));
                if (7..=15).contains(&digits) && only_phone_characters {
                    Ok(())
                } else {
                    Err("must be a phone number: 7 to 15 digits, with an optional extension (614-555-0101 x12)".into())
                }
            }
            _ => Ok(()),
        }
    }
}

/// Trim, collapse white space, fold case. Case is folded through upper then
/// lower case so that e.g. "STRASSE" and "straße" compare equal too.
fn text(raw: &str) -> String {
    let collapsed = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed.to_uppercase().to_lowercase()
}

/// Code and the full names (in `text` form, without dots) that mean it.
const REGIONS: &[(&str, &[&str])] = &[
    ("AL", &["alabama"]),
    ("AK", &["alaska"]),
    ("AZ", &["arizona"]),
    ("AR", &["arkansas"]),
    ("CA", &["california"]),
    ("CO", &["colorado"]),
    ("CT", &["connecticut"]),
    ("DE", &["delaware"]),
    (
        "DC",
        &[
            "district of columbia",
            "washington dc",
            "washington district of columbia",
        ],
    ),
    ("FL", &["florida"]),
    ("GA", &["georgia"]),
    ("HI", &["hawaii"]),
    ("ID", &["idaho"]),
    ("IL", &["illinois"]),
    ("IN", &["indiana"]),
    ("IA", &["iowa"]),
    ("KS", &["kansas"]),
    ("KY", &["kentucky"]),
    ("LA", &["louisiana"]),
    ("ME", &["maine"]),
    ("MD", &["maryland"]),
    ("MA", &["massachusetts"]),
    ("MI", &["michigan"]),
    ("MN", &["minnesota"]),
    ("MS", &["mississippi"]),
    ("MO", &["missouri"]),
    ("MT", &["montana"]),
    ("NE", &["nebraska"]),
    ("NV", &["nevada"]),
    ("NH", &["new hampshire"]),
    ("NJ", &["new jersey"]),
    ("NM", &["new mexico"]),
    ("NY", &["new york"]),
    ("NC", &["north carolina"]),
    ("ND", &["north dakota"]),
    ("OH", &["ohio"]),
    ("OK", &["oklahoma"]),
    ("OR", &["oregon"]),
    ("PA", &["pennsylvania"]),
    ("RI", &["rhode island"]),
    ("SC", &["south carolina"]),
    ("SD", &["south dakota"]),
    ("TN", &["tennessee"]),
    ("TX", &["texas"]),
    ("UT", &["utah"]),
    ("VT", &["vermont"]),
    ("VA", &["virginia"]),
    ("WA", &["washington"]),
    ("WV", &["west virginia"]),
    ("WI", &["wisconsin"]),
    ("WY", &["wyoming"]),
    ("PR", &["puerto rico"]),
    ("GU", &["guam"]),
    (
        "VI",
        &[
            "virgin islands",
            "us virgin islands",
            "united states virgin islands",
            "virgin islands of the united states",
        ],
    ),
    ("AS", &["american samoa"]),
    (
        "MP",
        &[
            "northern mariana islands",
            "northern marianas",
            "commonwealth of the northern mariana islands",
        ],
    ),
    ("AB", &["alberta"]),
    ("BC", &["british columbia"]),
    ("MB", &["manitoba"]),
    ("NB", &["new brunswick"]),
    (
        "NL",
        &[
            "newfoundland and labrador",
            "newfoundland & labrador",
            "newfoundland",
        ],
    ),
    ("NS", &["nova scotia"]),
    ("NT", &["northwest territories"]),
    ("NU", &["nunavut"]),
    ("ON", &["ontario"]),
    ("PE", &["prince edward island"]),
    ("QC", &["quebec", "québec"]),
    ("SK", &["saskatchewan"]),
    ("YT", &["yukon", "yukon territory"]),
];

/// The code of a known state or province, else the `text` form.
fn state(raw: &str) -> String {
    let folded = text(raw);
    // "D.C." and "U.S. Virgin Islands" are written with dots as often as without.
    let key: String = folded.chars().filter(|c| *c != '.').collect();
    REGIONS
        .iter()
        .find(|(code, names)| code.eq_ignore_ascii_case(&key) || names.contains(&key.as_str()))
        .map(|(code, _)| (*code).to_owned())
        .unwrap_or(folded)
}

/// Markers that start an extension, longest first.
const EXTENSION_MARKERS: &[&str] = &["extension", "ext", "x", "#"];

/// Main digits (without a NANP country code) and, when there is one,
/// `x` and the extension digits.
fn phone(raw: &str) -> String {
    if !raw.chars().any(|c| c.is_ascii_digit()) {
        return text(raw);
    }
    let (main, extension) = split_extension(raw);
    let mut digits: String = main.chars().filter(char::is_ascii_digit).collect();
    if digits.len() == 11 && digits.starts_with('1') {
        digits.remove(0);
    }
    let extension: String = extension.chars().filter(char::is_ascii_digit).collect();
    if extension.is_empty() {
        digits
    } else {
        format!("{digits}x{extension}")
    }
}

/// Splits at the first extension marker that starts a word, follows some
/// digits and is followed by digits and no letters ("614-555-0101 ext. 12").
/// Letters elsewhere (a vanity number's "BOX") are not a marker.
fn split_extension(raw: &str) -> (&str, &str) {
    // ASCII lowering keeps byte offsets, so they index `raw` too.
    let lower = raw.to_ascii_lowercase();
    let mut previous_is_letter = false;
    for (at, c) in lower.char_indices() {
        if !previous_is_letter && lower[..at].chars().any(|c| c.is_ascii_digit()) {
            for marker in EXTENSION_MARKERS {
                if let Some(rest) = lower[at..].strip_prefix(marker) {
                    if rest.chars().any(|c| c.is_ascii_digit())
                        && !rest.chars().any(char::is_alphabetic)
                    {
                        return (&raw[..at], &raw[at + marker.len()..]);
                    }
                }
            }
        }
        previous_is_letter = c.is_alphabetic();
    }
    (raw, "")
}

/// `ddddd`, `ddddd-dddd`, or `A1A 1A1`; anything else in `text` form.
fn zip(raw: &str) -> String {
    postal_code(raw).unwrap_or_else(|| text(raw))
}

/// The canonical form of a US zip or Canadian postal code, when `raw` is one.
fn postal_code(raw: &str) -> Option<String> {
    // Matched on the `text` form so that the fallback, normalised again,
    // lands on the same answer (case folding can turn e.g. the Kelvin sign
    // into an ASCII "k").
    let folded = text(raw);
    let compact: String = folded
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let b = compact.as_bytes();
    let all_digits = b.iter().all(u8::is_ascii_digit);
    match b.len() {
        5 if all_digits => Some(compact),
        9 if all_digits => Some(format!("{}-{}", &compact[..5], &compact[5..])),
        6 if b.iter().enumerate().all(|(i, c)| {
            if i % 2 == 0 {
                c.is_ascii_uppercase()
            } else {
                c.is_ascii_digit()
            }
        }) =>
        {
            Some(format!("{} {}", &compact[..3], &compact[3..]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use Normalizer::*;

    const ALL: [Normalizer; 5] = [Text, State, Phone, Zip, Code];

    #[test]
    fn oh_and_ohio_are_the_same_state() {
        assert!(State.equal("OH", "Ohio"));
        assert!(State.equal(" ohio ", "oh"));
        assert!(State.equal("District of Columbia", "D.C."));
        assert!(State.equal("u.s. virgin islands", "VI"));
        assert!(State.equal("Québec", "qc"));
        assert!(State.equal("Newfoundland  and Labrador", "NL"));
        assert!(!State.equal("OH", "PA"));
        assert_eq!(State.normalize("ontario"), "ON");
        // Unknown values are compared as text.
        assert!(State.equal("Bavaria ", "bavaria"));
        assert!(!State.equal("Bavaria", "Saxony"));
    }

    #[test]
    fn phone_formats_compare_by_digits() {
        assert!(Phone.equal("+1 (614) 555-0101", "614.555.0101"));
        assert!(Phone.equal("1-614-555-0101", "6145550101"));
        assert!(Phone.equal("614-555-0101 x123", "(614) 555-0101 ext. 123"));
        assert!(Phone.equal("614 555 0101 #123", "6145550101 extension 123"));
        assert!(!Phone.equal("614-555-0101 x123", "614-555-0101"));
        assert!(!Phone.equal("614-555-0101", "614-555-0102"));
        assert_eq!(Phone.normalize("+1 (614) 555-0101 x 12"), "6145550101x12");
        // A vanity number's letters are no extension marker.
        assert_eq!(Phone.normalize("1-800-BOX-1234"), "18001234");
        // Without digits it is text, so "n/a" is not the empty phone.
        assert!(!Phone.equal("n/a", ""));
        assert!(Phone.equal("N/A", "n/a"));
    }

    #[test]
    fn values_a_caller_sends_are_checked_by_the_same_rules() {
        for ok in ["OH", "ohio", "D.C.", "Québec", ""] {
            assert_eq!(State.validate(ok), Ok(()), "{ok}");
        }
        assert!(State.validate("ZZ").is_err());
        for ok in ["43004", "43004-1234", "k1a 0b1", " "] {
            assert_eq!(Zip.validate(ok), Ok(()), "{ok}");
        }
        for bad in ["hello", "4300", "430041"] {
            assert!(Zip.validate(bad).is_err(), "{bad}");
        }
        for ok in [
            "(614) 555-0101",
            "+1 614 555 0101 ext. 12",
            "1-800-BOX-1234",
            "555-0101",
        ] {
            assert_eq!(Phone.validate(ok), Ok(()), "{ok}");
        }
        for bad in ["abc", "12", "614-555-0101; drop", "1234567890123456"] {
            assert!(Phone.validate(bad).is_err(), "{bad}");
        }
        assert_eq!(Text.validate("anything"), Ok(()));
    }

    #[test]
    fn zips_and_postal_codes() {
        assert!(Zip.equal("43004", " 43004 "));
        assert!(Zip.equal("43004-1234", "430041234"));
        assert_eq!(Zip.normalize("43004 - 1234"), "43004-1234");
        assert!(Zip.equal("K1A 0B1", "k1a0b1"));
        assert_eq!(Zip.normalize("k1a-0b1"), "K1A 0B1");
        // The +4 is information: not equal to the bare zip.
        assert!(!Zip.equal("43004", "43004-1234"));
        assert!(!Zip.equal("43004", "43005"));
    }

    #[test]
    fn codes_are_case_sensitive() {
        assert!(Code.equal(" 4100001 ", "4100001"));
        assert!(!Code.equal("ab12", "AB12"));
        assert!(!Code.equal("a b", "a  b"));
    }

    #[test]
    fn text_ignores_case_and_spacing() {
        assert!(Text.equal("  12 Main   St ", "12 main st"));
        assert!(Text.equal("Line one\nline two", "line one line two"));
        assert!(Text.equal("STRASSE", "straße"));
        assert!(!Text.equal("Main St", "Main Street"));
    }

    #[test]
    fn normalizer_serde_names() {
        assert_eq!(serde_json::to_string(&State).unwrap(), "\"state\"");
    }

    fn normalizer() -> impl Strategy<Value = Normalizer> {
        prop::sample::select(ALL.to_vec())
    }

    /// Random case of every character and random white space around words.
    fn vary(words: &[String], flips: &[bool], spaces: &[&str]) -> String {
        let mut out = String::from(spaces[0]);
        for (i, w) in words.iter().enumerate() {
            if i > 0 {
                out.push_str(spaces[i % spaces.len()]);
                if spaces[i % spaces.len()].is_empty() {
                    out.push(' ');
                }
            }
            for (j, c) in w.chars().enumerate() {
                if flips[(i + j) % flips.len()] {
                    out.extend(c.to_uppercase());
                } else {
                    out.extend(c.to_lowercase());
                }
            }
        }
        out.push_str(spaces[spaces.len() - 1]);
        out
    }

    fn nanp() -> impl Strategy<Value = String> {
        ("[2-9][0-9]{2}", "[2-9][0-9]{2}", "[0-9]{4}").prop_map(|(a, b, c)| format!("{a}{b}{c}"))
    }

    fn format_phone(d: &str, style: usize) -> String {
        let (a, b, c) = (&d[..3], &d[3..6], &d[6..]);
        match style {
            0 => d.to_owned(),
            1 => format!("({a}) {b}-{c}"),
            2 => format!("{a}.{b}.{c}"),
            3 => format!("+1 ({a}) {b}-{c}"),
            4 => format!("1-{a}-{b}-{c}"),
            5 => format!("1{d}"),
            _ => format!(" {a} {b} {c} "),
        }
    }

    fn format_extension(e: &str, style: usize) -> String {
        match style {
            0 => format!(" x{e}"),
            1 => format!(" ext. {e}"),
            2 => format!(" EXT {e}"),
            3 => format!(" extension {e}"),
            _ => format!("#{e}"),
        }
    }

    proptest! {
        #[test]
        fn normalizing_is_idempotent(n in normalizer(), raw in any::<String>()) {
            let once = n.normalize(&raw);
            prop_assert_eq!(n.normalize(&once), once);
        }

        #[test]
        fn normalizing_realistic_values_is_idempotent(
            n in normalizer(),
            raw in "[ a-zA-Z0-9().+#-]{0,24}",
        ) {
            let once = n.normalize(&raw);
            prop_assert_eq!(n.normalize(&once), once);
        }

        #[test]
        fn equality_is_reflexive_and_symmetric(
            n in normalizer(),
            a in "[ a-zA-Z0-9.-]{0,12}",
            b in "[ a-zA-Z0-9.-]{0,12}",
        ) {
            prop_assert!(n.equal(&a, &a));
            prop_assert_eq!(n.equal(&a, &b), n.equal(&b, &a));
        }

        #[test]
        fn phone_formats_stay_equal(
            d in nanp(),
            s1 in 0usize..7,
            s2 in 0usize..7,
            ext in prop::option::of(("[0-9]{1,5}", 0usize..5, 0usize..5)),
        ) {
            let mut a = format_phone(&d, s1);
            let mut b = format_phone(&d, s2);
            if let Some((e, x1, x2)) = &ext {
                a.push_str(&format_extension(e, *x1));
                b.push_str(&format_extension(e, *x2));
            }
            prop_assert!(Phone.equal(&a, &b), "{a:?} vs {b:?}");
            prop_assert_eq!(Phone.normalize(&a).len(), 10 + ext.map_or(0, |(e, _, _)| e.len() + 1));
        }

        #[test]
        fn us_zip_formats_stay_equal(
            five in "[0-9]{5}",
            four in "[0-9]{4}",
            sep in prop::sample::select(vec!["", "-", " - ", " "]),
            pad in prop::sample::select(vec!["", " ", "  "]),
        ) {
            let padded = format!("{pad}{five}{pad}");
            prop_assert!(Zip.equal(&padded, &five), "{:?}", padded);
            let plus4 = format!("{five}-{four}");
            let written = format!("{pad}{five}{sep}{four}{pad}");
            prop_assert!(Zip.equal(&written, &plus4), "{:?}", written);
            prop_assert!(!Zip.equal(&five, &plus4));
        }

        #[test]
        fn canadian_postal_code_formats_stay_equal(
            code in "[A-Z][0-9][A-Z][0-9][A-Z][0-9]",
            sep in prop::sample::select(vec!["", " ", "-", "  "]),
            lower in any::<bool>(),
        ) {
            let written = format!("{}{sep}{}", &code[..3], &code[3..]);
            let written = if lower { written.to_lowercase() } else { written };
            prop_assert_eq!(Zip.normalize(&written), format!("{} {}", &code[..3], &code[3..]));
        }

        #[test]
        fn state_names_and_codes_stay_equal(
            i in 0..REGIONS.len(),
            flips in prop::collection::vec(any::<bool>(), 1..8),
            spaces in prop::collection::vec(prop::sample::select(vec!["", " ", "  ", "\t"]), 2..4),
            by_name in any::<bool>(),
        ) {
            let (code, names) = REGIONS[i];
            let raw = if by_name { names[0] } else { code };
            let words: Vec<String> = raw.split(' ').map(str::to_owned).collect();
            let written = vary(&words, &flips, &spaces);
            prop_assert_eq!(State.normalize(&written), code, "{:?}", written);
        }

        #[test]
        fn text_case_and_spacing_stay_equal(
            words in prop::collection::vec("[a-zA-Zéüß0-9]{1,8}", 1..6),
            flips in prop::collection::vec(any::<bool>(), 1..8),
            spaces in prop::collection::vec(prop::sample::select(vec!["", " ", "  ", "\t", "\n"]), 2..4),
        ) {
            let a = words.join(" ");
            let b = vary(&words, &flips, &spaces);
            prop_assert!(Text.equal(&a, &b), "{a:?} vs {b:?}");
        }
    }
}
