//! Stages' own keys: a site's number, a device's id, and a device's
//! transmitter code (its account identifier, unique in the central station).
//!
//! Each is a type of its own, so a device id is never sent where Stages wants
//! a site number, and each is checked once, where it enters the service (a
//! request, a Stages answer, a callback), by the one rule below.

use serde::{Deserialize, Serialize};

/// The longest key accepted: Stages' own keys are far shorter, and a key
/// travels in a URL path.
const MAX_KEY_CHARS: usize = 64;
/// The longest transmitter code a receiver sends.
const MAX_CODE_CHARS: usize = 32;

/// Why a text is not a key of its kind, said as a field error ("must ...").
fn check(text: &str, max_chars: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else if crate::validation::is_dot_segment(text) {
        // No URL can carry one: parsers resolve it, even as %2E%2E.
        Err("must not be . or ..".to_owned())
    } else if text.chars().count() > max_chars || text.chars().any(char::is_control) {
        Err(format!("must be at most {max_chars} printable characters"))
    } else {
        Ok(())
    }
}

macro_rules! stages_key {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The key in `text`, or why it is none ("must ...").
            pub fn parse(text: &str) -> Result<Self, String> {
                check(text, $max).map(|()| Self(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// A key checked before: a link's external id, one Stages has
            /// answered for, or one checked with its request's other fields.
            pub(crate) fn known(text: &str) -> Self {
                Self(text.to_owned())
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(text: String) -> Result<Self, String> {
                match check(&text, $max) {
                    Ok(()) => Ok(Self(text)),
                    Err(why) => Err(format!("{} {why}", $what)),
                }
            }
        }

        impl From<$name> for String {
            fn from(key: $name) -> String {
                key.0
            }
        }

        // Read as text wherever text is wanted (a URL, a log field, a
        // comparison); only its making is checked.
        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

stages_key!(
    /// A Stages site number (`site_no`): the key of a site in Stages' URLs.
    SiteNo,
    "a Stages site number",
    MAX_KEY_CHARS
);
stages_key!(
    /// A Stages device id: the key of a device in Stages' URLs.
    DeviceId,
    "a Stages device id",
    MAX_KEY_CHARS
);
stages_key!(
    /// A device's transmitter code (CSID, Xmit#), trimmed: what the receiver
    /// reports the account by; Stages refuses one that another device holds.
    TransmitterCode,
    "a transmitter code",
    MAX_CODE_CHARS
);

impl TransmitterCode {
    /// The code in `text`, surrounding spaces left out (a code is typed in).
    pub fn parse_trimmed(text: &str) -> Result<Self, String> {
        Self::parse(text.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_neither_empty_nor_long_nor_holds_a_control_character() {
        assert_eq!(SiteNo::parse("S-1").unwrap().as_str(), "S-1");
        assert_eq!(SiteNo::parse(" "), Err("must not be empty".to_owned()));
        assert!(DeviceId::parse(&"d".repeat(64)).is_ok());
        assert!(DeviceId::parse(&"d".repeat(65)).is_err());
        assert!(SiteNo::parse("S\n1").is_err());
        assert!(DeviceId::parse("..").is_err() && SiteNo::parse(".").is_err());
        assert!(
            SiteNo::parse("A/1 ?#%").is_ok(),
            "the client encodes the rest"
        );
    }

    #[test]
    fn a_transmitter_code_is_trimmed_and_at_most_32_characters() {
        assert_eq!(
            TransmitterCode::parse_trimmed(" 7001234 ").unwrap(),
            "7001234"
        );
        assert_eq!(
            TransmitterCode::parse(&"7".repeat(33)),
            Err("must be at most 32 printable characters".to_owned())
        );
        assert!(TransmitterCode::parse_trimmed("").is_err());
    }

    #[test]
    fn a_stages_answer_with_a_bad_key_does_not_read() {
        let site: Result<SiteNo, _> = serde_json::from_str("\"S-1\"");
        assert_eq!(site.unwrap(), "S-1");
        let empty: Result<DeviceId, _> = serde_json::from_str("\"\"");
        let why = empty.unwrap_err().to_string();
        assert!(
            why.contains("a Stages device id must not be empty"),
            "{why}"
        );
        assert_eq!(
            serde_json::to_string(&SiteNo::parse("S-2").unwrap()).unwrap(),
            "\"S-2\""
        );
    }
}
