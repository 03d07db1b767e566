//! The hybrid scheme of one sealed value, byte-compatible with kubeseal:
//! `u16 BE length of RSA part | RSA-OAEP(session key) | AES-256-GCM(value) with tag`,
//! a fresh 32-byte session key per value, an all-zero 12-byte nonce and no AAD.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::{CryptoError, PrivateKey, PublicKey, SecretBytes};

const SESSION_KEY_LEN: usize = 32;
const GCM_TAG_LEN: usize = 16;

/// Seals `plaintext` to `key` under the OAEP `label` of its scope.
pub fn seal_value(key: &PublicKey, label: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut session_key = Zeroizing::new([0u8; SESSION_KEY_LEN]);
    getrandom::fill(&mut *session_key).map_err(|e| CryptoError::Encryption(e.to_string()))?;
    let rsa_part = key.oaep_encrypt(label, &*session_key)?;
    let aes_part = session_cipher(&*session_key)
        .encrypt(&Nonce::default(), plaintext)
        .map_err(|_| CryptoError::Encryption("AES-GCM refused the value".into()))?;
    let header = u16::try_from(rsa_part.len())
        .map_err(|_| CryptoError::Encryption("RSA ciphertext longer than 65535 bytes".into()))?;

    let mut sealed = Vec::with_capacity(2 + rsa_part.len() + aes_part.len());
    sealed.extend_from_slice(&header.to_be_bytes());
    sealed.extend_from_slice(&rsa_part);
    sealed.extend_from_slice(&aes_part);
    Ok(sealed)
}

/// Opens a value sealed to `key` under `label`.
pub fn open_value(
    key: &PrivateKey,
    label: &[u8],
    sealed: &[u8],
) -> Result<SecretBytes, CryptoError> {
    let parts = SealedParts::split(sealed)?;
    parts
        .open_with(key, label)
        .ok_or(CryptoError::NoKeyOpened)?
}

/// A sealed value cut into its RSA-wrapped session key and its AES-GCM body.
pub(crate) struct SealedParts<'a> {
    rsa: &'a [u8],
    aes: &'a [u8],
}

impl<'a> SealedParts<'a> {
    pub(crate) fn split(sealed: &'a [u8]) -> Result<Self, CryptoError> {
        let (header, rest) = sealed
            .split_first_chunk::<2>()
            .ok_or(CryptoError::Malformed(
                "shorter than its 2-byte length header",
            ))?;
        let rsa_len = usize::from(u16::from_be_bytes(*header));
        if rest.len() < rsa_len {
            return Err(CryptoError::Malformed("the RSA part is cut short"));
        }
        let (rsa, aes) = rest.split_at(rsa_len);
        if aes.len() < GCM_TAG_LEN {
            return Err(CryptoError::Malformed(
                "the AES-GCM part is shorter than its tag",
            ));
        }
        Ok(Self { rsa, aes })
    }

    /// Whether the RSA part is as long as `key`'s modulus, the only case it may open.
    pub(crate) fn fits(&self, key: &PrivateKey) -> bool {
        key.public_key().size_bytes() == self.rsa.len()
    }

    /// `None` when `key` (with `label`) did not wrap this value's session key; an error when
    /// it did but the body does not authenticate.
    pub(crate) fn open_with(
        &self,
        key: &PrivateKey,
        label: &[u8],
    ) -> Option<Result<SecretBytes, CryptoError>> {
        if !self.fits(key) {
            return None;
        }
        let session_key = key.oaep_decrypt(label, self.rsa)?;
        if session_key.len() != SESSION_KEY_LEN {
            return Some(Err(CryptoError::Malformed(
                "the session key is not 32 bytes",
            )));
        }
        Some(
            session_cipher(session_key.expose())
                .decrypt(&Nonce::default(), self.aes)
                .map(SecretBytes::from)
                .map_err(|_| CryptoError::Corrupted),
        )
    }
}

fn session_cipher(session_key: &[u8]) -> Aes256Gcm {
    Aes256Gcm::new_from_slice(session_key).expect("session keys are 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scope;
    use crate::keys::tests::test_key;
    use proptest::prelude::*;

    #[test]
    fn round_trip_in_every_scope() {
        let key = test_key();
        for scope in Scope::ALL {
            let label = scope.label("prod", "db-password");
            let sealed = seal_value(key.public_key(), &label, b"s3cr3t").unwrap();
            assert_eq!(&sealed[..2], &256u16.to_be_bytes());
            let opened = open_value(key, &label, &sealed).unwrap();
            assert_eq!(opened.expose(), b"s3cr3t");
        }
    }

    #[test]
    fn label_mismatch_does_not_open() {
        let key = test_key();
        let sealed = seal_value(key.public_key(), b"prod/db", b"v").unwrap();
        for wrong in [&b"prod/other"[..], b"prod", b"", b"staging/db"] {
            assert!(matches!(
                open_value(key, wrong, &sealed),
                Err(CryptoError::NoKeyOpened)
            ));
        }
    }

    #[test]
    fn tampered_body_is_reported_corrupted() {
        let key = test_key();
        let mut sealed = seal_value(key.public_key(), b"l", b"value").unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(
            open_value(key, b"l", &sealed),
            Err(CryptoError::Corrupted)
        ));
    }

    #[test]
    fn truncations_are_malformed() {
        let key = test_key();
        let sealed = seal_value(key.public_key(), b"l", b"value").unwrap();
        for len in [0, 1, 2, 100, 258, 258 + 15] {
            assert!(
                matches!(
                    open_value(key, b"l", &sealed[..len]),
                    Err(CryptoError::Malformed(_))
                ),
                "length {len}"
            );
        }
    }

    #[test]
    fn empty_value_round_trips() {
        let key = test_key();
        let sealed = seal_value(key.public_key(), b"", b"").unwrap();
        assert!(open_value(key, b"", &sealed).unwrap().is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn any_value_and_label_round_trip(
            value in proptest::collection::vec(any::<u8>(), 0..2048),
            namespace in "[a-z0-9-]{1,20}",
            name in "[a-z0-9.-]{1,30}",
        ) {
            let key = test_key();
            for scope in Scope::ALL {
                let label = scope.label(&namespace, &name);
                let sealed = seal_value(key.public_key(), &label, &value).unwrap();
                let opened = open_value(key, &label, &sealed).unwrap();
                prop_assert_eq!(opened.expose(), &value[..]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            prop_assert!(open_value(test_key(), b"x", &bytes).is_err());
        }
    }
}
