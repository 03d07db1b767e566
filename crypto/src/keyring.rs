//! A keyring: the private keys that may have sealed a value, newest first.

use crate::hybrid::SealedParts;
use crate::{CryptoError, Fingerprint, PrivateKey, SecretBytes};

/// The private keys a controller or a recovery command holds.
///
/// Upstream ciphertexts carry no key id, so opening tries each key; the newest comes first
/// because most values are sealed to it.
#[derive(Debug, Default)]
pub struct Keyring {
    keys: Vec<PrivateKey>,
}

/// A value opened by a keyring, with the key that opened it.
#[derive(Debug)]
pub struct Opened<'a> {
    pub plaintext: SecretBytes,
    pub key: &'a Fingerprint,
}

impl Keyring {
    /// A keyring from keys ordered newest first.
    pub fn new(keys_newest_first: Vec<PrivateKey>) -> Self {
        Self {
            keys: keys_newest_first,
        }
    }

    /// The key that seals new values.
    pub fn newest(&self) -> Option<&PrivateKey> {
        self.keys.first()
    }

    pub fn keys(&self) -> &[PrivateKey] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks the form of a sealed value without any RSA operation: its parts, and an RSA
    /// part as long as the modulus of one of the keys (no other could open it).
    pub fn check_form(&self, sealed: &[u8]) -> Result<(), CryptoError> {
        self.split(sealed).map(|_| ())
    }

    fn split<'a>(&self, sealed: &'a [u8]) -> Result<SealedParts<'a>, CryptoError> {
        let parts = SealedParts::split(sealed)?;
        if !self.keys.iter().any(|key| parts.fits(key)) {
            return Err(CryptoError::Malformed(
                "its RSA part is not as long as the modulus of any key of the keyring",
            ));
        }
        Ok(parts)
    }

    /// Opens a sealed value under `label` with the first key that can; one RSA decryption
    /// per key of the right size tried.
    pub fn open(&self, label: &[u8], sealed: &[u8]) -> Result<Opened<'_>, CryptoError> {
        self.open_trying_first(None, label, sealed)
    }

    /// [`Keyring::open`], trying first the key of fingerprint `likely` (the one that opened
    /// another value of the same object: they are almost always sealed to one key).
    pub fn open_trying_first(
        &self,
        likely: Option<&Fingerprint>,
        label: &[u8],
        sealed: &[u8],
    ) -> Result<Opened<'_>, CryptoError> {
        let parts = self.split(sealed)?;
        let is_likely = |key: &&PrivateKey| Some(key.fingerprint()) == likely;
        let others = self.keys.iter().filter(|key| !is_likely(key));
        for key in self.keys.iter().filter(is_likely).chain(others) {
            if let Some(opened) = parts.open_with(key, label) {
                return opened.map(|plaintext| Opened {
                    plaintext,
                    key: key.fingerprint(),
                });
            }
        }
        Err(CryptoError::NoKeyOpened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MIN_KEY_BITS, seal_value};

    #[test]
    fn every_key_of_a_rotated_ring_still_opens_its_values() {
        let keys: Vec<_> = (0..3)
            .map(|_| PrivateKey::generate(MIN_KEY_BITS).unwrap())
            .collect();
        let sealed: Vec<_> = keys
            .iter()
            .map(|k| seal_value(k.public_key(), b"ns/name", b"v").unwrap())
            .collect();
        let fingerprints: Vec<_> = keys.iter().map(|k| k.fingerprint().clone()).collect();
        let ring = Keyring::new(keys);
        for (sealed, fingerprint) in sealed.iter().zip(&fingerprints) {
            let opened = ring.open(b"ns/name", sealed).unwrap();
            assert_eq!(opened.plaintext.expose(), b"v");
            assert_eq!(opened.key, fingerprint);
        }
        assert_eq!(ring.newest().unwrap().fingerprint(), &fingerprints[0]);
    }

    #[test]
    fn a_wrong_or_unknown_likely_key_still_opens_with_the_right_one() {
        let keys: Vec<_> = (0..3)
            .map(|_| PrivateKey::generate(MIN_KEY_BITS).unwrap())
            .collect();
        let sealed = seal_value(keys[2].public_key(), b"ns/name", b"v").unwrap();
        let stranger = PrivateKey::generate(MIN_KEY_BITS).unwrap();
        let hints = [
            Some(keys[0].fingerprint().clone()),
            Some(keys[2].fingerprint().clone()),
            Some(stranger.fingerprint().clone()),
            None,
        ];
        let ring = Keyring::new(keys);
        for hint in &hints {
            let opened = ring
                .open_trying_first(hint.as_ref(), b"ns/name", &sealed)
                .unwrap();
            assert_eq!(opened.plaintext.expose(), b"v");
            assert_eq!(opened.key, ring.keys()[2].fingerprint(), "{hint:?}");
        }
    }

    #[test]
    fn values_of_no_key_size_are_refused_without_rsa() {
        let ring = Keyring::new(vec![
            PrivateKey::from_pem(&crate::keys::tests::test_key().to_pkcs1_pem()).unwrap(),
        ]);
        // A 4096-bit RSA part where the ring has a 2048-bit key.
        let mut sealed = 512u16.to_be_bytes().to_vec();
        sealed.extend([7u8; 512 + 16]);
        assert!(matches!(
            ring.check_form(&sealed),
            Err(CryptoError::Malformed(_))
        ));
        assert!(matches!(
            ring.open(b"", &sealed),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn a_foreign_key_is_reported() {
        let ring = Keyring::new(vec![
            PrivateKey::from_pem(&crate::keys::tests::test_key().to_pkcs1_pem()).unwrap(),
        ]);
        let stranger = PrivateKey::generate(MIN_KEY_BITS).unwrap();
        let sealed = seal_value(stranger.public_key(), b"", b"v").unwrap();
        assert!(matches!(
            ring.open(b"", &sealed),
            Err(CryptoError::NoKeyOpened)
        ));
    }
}
