//! Secrets at rest: upstream passwords and inbound secrets are sealed with
//! XChaCha20-Poly1305 before they reach a row, under a key from configuration.
//! Each blob names the row it belongs to (associated data), so a ciphertext
//! copied into another row does not open.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, OsRng, Payload};
use chacha20poly1305::{AeadCore, KeyInit, XChaCha20Poly1305, XNonce};

/// The 256-bit key that encrypts stored secrets. Losing it makes every stored
/// secret unreadable; `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey([u8; 32]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretKeyError {
    #[error("the encryption key is not base64")]
    NotBase64,
    #[error("the encryption key must be 32 bytes (44 base64 characters), not {0} bytes")]
    WrongLength(usize),
}

impl SecretKey {
    pub const LEN: usize = 32;

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        Self(XChaCha20Poly1305::generate_key(&mut OsRng).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Accepts standard or URL-safe base64, padded or not, around whitespace
    /// (a key pasted from a file keeps its newline).
    pub fn from_base64(text: &str) -> Result<Self, SecretKeyError> {
        let text = text.trim();
        let bytes = [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
            .iter()
            .find_map(|engine| engine.decode(text).ok())
            .ok_or(SecretKeyError::NotBase64)?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| SecretKeyError::WrongLength(b.len()))?;
        Ok(Self(bytes))
    }

    /// Standard padded base64, the form `from_base64` reads back.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

/// Why a stored secret did not open: wrong key, a blob moved from another row,
/// or a damaged value. Deliberately says no more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a stored secret could not be decrypted")]
pub(crate) struct OpenError;

/// Blob layout: `VERSION` ‖ 24-byte nonce ‖ ciphertext with its 16-byte tag.
/// The version lets a later key rotation or algorithm tell old blobs apart.
const VERSION: &[u8; 2] = b"v1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

pub(crate) struct Cipher(XChaCha20Poly1305);

impl Cipher {
    pub(crate) fn new(key: &SecretKey) -> Self {
        Self(XChaCha20Poly1305::new(&key.0.into()))
    }

    /// Encrypts `plaintext` for the row named by `row` (the associated data).
    pub(crate) fn seal(&self, row: &str, plaintext: &[u8]) -> Vec<u8> {
        // A random 192-bit nonce per value: no counter to keep, no realistic collision.
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .0
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: row.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut blob = Vec::with_capacity(VERSION.len() + NONCE_LEN + sealed.len());
        blob.extend_from_slice(VERSION);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        blob
    }

    pub(crate) fn open(&self, row: &str, blob: &[u8]) -> Result<Vec<u8>, OpenError> {
        let rest = blob.strip_prefix(VERSION.as_slice()).ok_or(OpenError)?;
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        self.0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: row.as_bytes(),
                },
            )
            .map_err(|_| OpenError)
    }
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_base64_and_hide_in_debug() {
        let key = SecretKey::generate();
        let text = key.to_base64();
        assert_eq!(text.len(), 44);
        assert_eq!(SecretKey::from_base64(&format!("{text}\n")).unwrap(), key);
        assert!(!format!("{key:?}").contains(&text));
        assert_eq!(
            SecretKey::from_base64("c2hvcnQ="),
            Err(SecretKeyError::WrongLength(5))
        );
        assert_eq!(
            SecretKey::from_base64("not base64!"),
            Err(SecretKeyError::NotBase64)
        );
    }

    #[test]
    fn a_blob_opens_only_for_its_row_and_key() {
        let cipher = Cipher::new(&SecretKey::generate());
        let blob = cipher.seal("credentials|c1|dealer", b"hunter2");
        assert!(blob.starts_with(b"v1"));
        assert!(!blob.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            cipher.open("credentials|c1|dealer", &blob).unwrap(),
            b"hunter2"
        );
        assert_eq!(cipher.open("credentials|c2|dealer", &blob), Err(OpenError));
        let other = Cipher::new(&SecretKey::generate());
        assert_eq!(other.open("credentials|c1|dealer", &blob), Err(OpenError));
        assert_eq!(cipher.open("credentials|c1|dealer", b"v1"), Err(OpenError));
        // Two seals of one value differ (fresh nonce each time).
        assert_ne!(blob, cipher.seal("credentials|c1|dealer", b"hunter2"));
    }
}
