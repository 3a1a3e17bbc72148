//! Encryption at rest: XChaCha20-Poly1305 under a master key from a Spin
//! variable marked secret.
//!
//! The storage key of a secret is bound as associated data, so a ciphertext
//! copied under another tenant's (or team's, or name's) key does not open, and
//! neither does a tampered one. Each record names the id of the key that sealed
//! it, so the master key can be rotated: the new key becomes current, the old
//! one moves to the previous keys, and records are re-sealed under the current
//! key as they are next read (see the README).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::http::error::ApiError;
use crate::tenancy::ids::{IdKind, validate_id};

/// `{key id}:{base64 of 32 random bytes}`, e.g. `k1:` + `openssl rand -base64 32`.
pub const VAR_MASTER_KEY: &str = "secrets_master_key";
/// Comma-separated keys in the same form, only ever used to open older records.
pub const VAR_PREVIOUS_KEYS: &str = "secrets_previous_keys";

pub const NONCE_LEN: usize = 24;

/// A sealed value as stored: which key, which nonce, the ciphertext with its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub key_id: String,
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

/// Why a stored value did not open. Neither case ever yields plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("sealed with master key `{0}`, which is not configured")]
    UnknownKey(String),
    #[error("does not open under its storage key: wrong master key, moved or tampered")]
    Rejected,
}

struct MasterKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

pub struct MasterKeys {
    current: MasterKey,
    previous: Vec<MasterKey>,
}

impl MasterKeys {
    /// The broker's keys from its variables. A missing or malformed key is a
    /// `not-configured` error naming the variable: the broker refuses to
    /// store or serve anything rather than fall back to plaintext.
    pub fn from_variables(get: impl Fn(&str) -> Option<String>) -> Result<Self, ApiError> {
        let current = get(VAR_MASTER_KEY)
            .filter(|v| !v.trim().is_empty())
            .ok_or_else(|| {
                ApiError::NotConfigured(format!(
                    "{VAR_MASTER_KEY} is not set; the secrets broker cannot encrypt"
                ))
            })?;
        let previous = get(VAR_PREVIOUS_KEYS).unwrap_or_default();
        MasterKeys::parse(&current, &previous).map_err(ApiError::NotConfigured)
    }

    pub fn parse(current: &str, previous: &str) -> Result<Self, String> {
        let current = parse_key(VAR_MASTER_KEY, current)?;
        let previous = previous
            .split(',')
            .filter(|k| !k.trim().is_empty())
            .map(|k| parse_key(VAR_PREVIOUS_KEYS, k))
            .collect::<Result<Vec<_>, _>>()?;
        if previous.iter().any(|k| k.id == current.id) {
            return Err(format!(
                "{VAR_PREVIOUS_KEYS} repeats the current key id `{}`",
                current.id
            ));
        }
        Ok(MasterKeys { current, previous })
    }

    pub fn current_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plaintext` for `storage_key` under the current key. `nonce` must
    /// be fresh random bytes (192-bit nonces make random ones safe).
    pub fn seal(&self, storage_key: &str, plaintext: &[u8], nonce: [u8; NONCE_LEN]) -> Sealed {
        let aad = associated_data(storage_key, &self.current.id);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any value below its 256 GiB limit");
        Sealed {
            key_id: self.current.id.clone(),
            nonce,
            ciphertext,
        }
    }

    pub fn open(&self, storage_key: &str, sealed: &Sealed) -> Result<Vec<u8>, OpenError> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| OpenError::UnknownKey(sealed.key_id.clone()))?;
        let aad = associated_data(storage_key, &key.id);
        key.cipher
            .decrypt(
                &XNonce::from(sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| OpenError::Rejected)
    }
}

fn parse_key(variable: &str, spec: &str) -> Result<MasterKey, String> {
    let (id, material) = spec
        .trim()
        .split_once(':')
        .ok_or_else(|| format!("{variable} must look like `k1:<base64 of 32 bytes>`"))?;
    validate_id(IdKind::Secret, id)
        .map_err(|_| format!("{variable}: key id `{id}` is not a valid id"))?;
    let bytes = STANDARD
        .decode(material.trim())
        .ok()
        .filter(|b| b.len() == 32)
        .ok_or_else(|| format!("{variable}: key `{id}` must be base64 of exactly 32 bytes"))?;
    let cipher = XChaCha20Poly1305::new_from_slice(&bytes).expect("32 bytes is the key size");
    Ok(MasterKey {
        id: id.to_owned(),
        cipher,
    })
}

/// What a ciphertext is bound to: format, storage key and key id.
fn associated_data(storage_key: &str, key_id: &str) -> Vec<u8> {
    format!("greentic-secret-v1\0{storage_key}\0{key_id}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "k2:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    #[test]
    fn sealed_values_open_only_under_their_own_key() {
        let keys = MasterKeys::parse(K1, "").unwrap();
        let sealed = keys.seal("secrets/acme/api_key", b"hunter2", [7; NONCE_LEN]);
        assert!(!sealed.ciphertext.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            keys.open("secrets/acme/api_key", &sealed).unwrap(),
            b"hunter2"
        );
        assert_eq!(
            keys.open("secrets/bigcorp/api_key", &sealed),
            Err(OpenError::Rejected)
        );
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert_eq!(
            keys.open("secrets/acme/api_key", &tampered),
            Err(OpenError::Rejected)
        );
        let mut relabelled = sealed.clone();
        relabelled.key_id = "k9".into();
        assert_eq!(
            keys.open("secrets/acme/api_key", &relabelled),
            Err(OpenError::UnknownKey("k9".into()))
        );
    }

    #[test]
    fn a_wrong_master_key_never_yields_plaintext() {
        let sealed =
            MasterKeys::parse(K1, "")
                .unwrap()
                .seal("secrets/acme/x", b"v", [1; NONCE_LEN]);
        let impostor = MasterKeys::parse(&K2.replace("k2", "k1"), "").unwrap();
        assert_eq!(
            impostor.open("secrets/acme/x", &sealed),
            Err(OpenError::Rejected)
        );
    }

    #[test]
    fn previous_keys_open_old_records_and_the_current_one_seals() {
        let old = MasterKeys::parse(K1, "")
            .unwrap()
            .seal("secrets/acme/x", b"v", [1; NONCE_LEN]);
        let rotated = MasterKeys::parse(K2, K1).unwrap();
        assert_eq!(rotated.open("secrets/acme/x", &old).unwrap(), b"v");
        assert_eq!(
            rotated.seal("secrets/acme/x", b"v", [2; NONCE_LEN]).key_id,
            "k2"
        );
    }

    #[test]
    fn malformed_keys_are_named() {
        for (bad, why) in [
            ("", "must look like"),
            ("k1", "must look like"),
            ("K1:AAAA", "not a valid id"),
            ("k1:not-base64!", "exactly 32 bytes"),
            ("k1:AAAA", "exactly 32 bytes"),
        ] {
            let err = MasterKeys::parse(bad, "").err().unwrap();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(MasterKeys::parse(K1, K1).err().unwrap().contains("repeats"));
        let missing = MasterKeys::from_variables(|_| None).err().unwrap();
        assert_eq!(missing.status(), 503);
    }
}
