//! RSA keys: generation, PEM encodings, fingerprints and the OAEP primitive.
//!
//! The `rsa` crate handles generation, encodings and public-key sealing; the private-key
//! OAEP decryption runs on AWS-LC (constant time, ~7x faster than `rsa`, see
//! docs/benchmarks.md).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use rsa::oaep::EncryptingKey;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::sha2::{Digest, Sha256};
use rsa::traits::{PublicKeyParts, RandomizedEncryptor};
use zeroize::Zeroizing;

use crate::{CryptoError, SecretBytes};

/// Key size the controller and `keygen` use unless told otherwise.
pub const DEFAULT_KEY_BITS: usize = 4096;
/// Smallest key size sealsync accepts for new keys.
pub const MIN_KEY_BITS: usize = 2048;

/// RSA private-key decryptions done by this process: the cost of opening sealed values,
/// which untrusted input drives (see [`rsa_decryptions`]).
static RSA_DECRYPTIONS: AtomicU64 = AtomicU64::new(0);

/// How many RSA private-key decryptions this process has done so far.
pub fn rsa_decryptions() -> u64 {
    RSA_DECRYPTIONS.load(Ordering::Relaxed)
}

/// SHA-256 fingerprint of a public key, in OpenSSH form (`SHA256:<base64>`), as the
/// upstream controller prints it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(String);

impl Fingerprint {
    fn of(key: &rsa::PublicKey) -> Self {
        // OpenSSH wire encoding: string "ssh-rsa", mpint e, mpint n.
        let mut wire = Vec::with_capacity(key.size() + 32);
        put_ssh_string(&mut wire, b"ssh-rsa");
        put_ssh_mpint(&mut wire, &key.e_bytes());
        put_ssh_mpint(&mut wire, &key.n_bytes());
        Fingerprint(format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(Sha256::digest(&wire))
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn put_ssh_string(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("RSA components fit in an SSH string");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

fn put_ssh_mpint(out: &mut Vec<u8>, big_endian: &[u8]) {
    let trimmed = &big_endian[big_endian.iter().take_while(|&&b| b == 0).count()..];
    if trimmed.first().is_some_and(|&b| b & 0x80 != 0) {
        let mut padded = Vec::with_capacity(trimmed.len() + 1);
        padded.push(0);
        padded.extend_from_slice(trimmed);
        put_ssh_string(out, &padded);
    } else {
        put_ssh_string(out, trimmed);
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An RSA public key that values are sealed to.
#[derive(Clone)]
pub struct PublicKey {
    key: rsa::PublicKey,
    fingerprint: Fingerprint,
}

impl PublicKey {
    /// Reads a DER `SubjectPublicKeyInfo` holding an RSA key.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, CryptoError> {
        let key = rsa::PublicKey::from_public_key_der(der)
            .map_err(|e| CryptoError::InvalidPublicKey(e.to_string()))?;
        Ok(Self::from_rsa(key))
    }

    fn from_rsa(key: rsa::PublicKey) -> Self {
        let fingerprint = Fingerprint::of(&key);
        Self { key, fingerprint }
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.key.size() * 8
    }

    /// Modulus size in bytes: the length of every RSA ciphertext for this key.
    pub fn size_bytes(&self) -> usize {
        self.key.size()
    }

    /// PEM `PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("an in-memory RSA public key always encodes")
    }

    /// RSA-OAEP (SHA-256, MGF1-SHA-256) with `label`.
    pub(crate) fn oaep_encrypt(
        &self,
        label: &[u8],
        message: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let encrypting_key =
            EncryptingKey::<Sha256>::new_with_label(self.key.clone(), label.to_vec());
        encrypting_key
            .encrypt_with_rng(&mut getrandom::SysRng, message)
            .map_err(|e| CryptoError::Encryption(e.to_string()))
    }
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("bits", &self.bits())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// An RSA private key that opens sealed values. Never printed, zeroized on drop.
pub struct PrivateKey {
    /// Kept for its encodings; its memory is zeroized by `rsa` on drop.
    key: rsa::PrivateKey,
    /// AWS-LC's copy of the key, which does the decryptions.
    decryptor: OaepPrivateDecryptingKey,
    public: PublicKey,
}

impl PrivateKey {
    /// Generates a fresh key of `bits` bits (at least [`MIN_KEY_BITS`]).
    pub fn generate(bits: usize) -> Result<Self, CryptoError> {
        if bits < MIN_KEY_BITS {
            return Err(CryptoError::KeyTooSmall(bits));
        }
        let key = rsa::PrivateKey::new(&mut getrandom::SysRng, bits)
            .map_err(|e| CryptoError::KeyGeneration(e.to_string()))?;
        Self::from_rsa(key)
    }

    /// Reads a PEM private key, PKCS#1 (`RSA PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`).
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let invalid = |e: &dyn fmt::Display| CryptoError::InvalidPrivateKey(e.to_string());
        let key = if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
            rsa::PrivateKey::from_pkcs1_pem(pem).map_err(|e| invalid(&e))?
        } else if pem.contains("-----BEGIN PRIVATE KEY-----") {
            rsa::PrivateKey::from_pkcs8_pem(pem).map_err(|e| invalid(&e))?
        } else {
            return Err(CryptoError::InvalidPrivateKey(
                "no PEM block 'RSA PRIVATE KEY' or 'PRIVATE KEY' found".into(),
            ));
        };
        Self::from_rsa(key)
    }

    fn from_rsa(key: rsa::PrivateKey) -> Result<Self, CryptoError> {
        let invalid = |e: &dyn fmt::Display| CryptoError::InvalidPrivateKey(e.to_string());
        let pkcs8 = key.to_pkcs8_der().map_err(|e| invalid(&e))?;
        let decryptor = PrivateDecryptingKey::from_pkcs8(pkcs8.as_bytes())
            .map_err(|e| invalid(&e))
            .and_then(|k| OaepPrivateDecryptingKey::new(k).map_err(|e| invalid(&e)))?;
        let public = PublicKey::from_rsa(key.to_public_key());
        Ok(Self {
            key,
            decryptor,
            public,
        })
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        self.public.fingerprint()
    }

    /// PKCS#1 PEM (`RSA PRIVATE KEY`), the encoding of upstream's `tls.key`.
    pub fn to_pkcs1_pem(&self) -> Zeroizing<String> {
        self.key
            .to_pkcs1_pem(LineEnding::LF)
            .expect("an in-memory RSA private key always encodes")
    }

    /// PKCS#8 DER, for signing the key's own certificate.
    pub(crate) fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        let doc = self
            .key
            .to_pkcs8_der()
            .expect("an in-memory RSA private key always encodes");
        Zeroizing::new(doc.as_bytes().to_vec())
    }

    /// RSA-OAEP (SHA-256, MGF1-SHA-256) decryption with `label`; `None` when the
    /// ciphertext was not made for this key and label.
    pub(crate) fn oaep_decrypt(&self, label: &[u8], ciphertext: &[u8]) -> Option<SecretBytes> {
        RSA_DECRYPTIONS.fetch_add(1, Ordering::Relaxed);
        let mut out = Zeroizing::new(vec![0u8; self.decryptor.min_output_size()]);
        let len = self
            .decryptor
            .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, Some(label))
            .ok()?
            .len();
        out.truncate(len);
        Some(SecretBytes::from(out))
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("bits", &self.public.bits())
            .field("fingerprint", self.fingerprint())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::OnceLock;

    /// One 2048-bit key shared by the unit tests: generation is the slow part.
    pub(crate) fn test_key() -> &'static PrivateKey {
        static KEY: OnceLock<PrivateKey> = OnceLock::new();
        KEY.get_or_init(|| PrivateKey::generate(MIN_KEY_BITS).unwrap())
    }

    #[test]
    fn refuses_small_keys() {
        assert!(matches!(
            PrivateKey::generate(1024),
            Err(CryptoError::KeyTooSmall(1024))
        ));
    }

    #[test]
    fn pkcs1_and_pkcs8_pem_round_trip() {
        let key = test_key();
        let pkcs1 = key.to_pkcs1_pem();
        assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let again = PrivateKey::from_pem(&pkcs1).unwrap();
        assert_eq!(again.fingerprint(), key.fingerprint());

        let pkcs8 = key.key.to_pkcs8_pem(LineEnding::LF).unwrap();
        let again = PrivateKey::from_pem(&pkcs8).unwrap();
        assert_eq!(again.fingerprint(), key.fingerprint());
    }

    #[test]
    fn garbage_pem_is_refused_without_echoing_it() {
        let err = PrivateKey::from_pem(
            "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap_err();
        assert!(!err.to_string().contains("c2VjcmV0"));
        assert!(PrivateKey::from_pem("hello").is_err());
    }

    #[test]
    fn debug_hides_the_key() {
        let printed = format!("{:?}", test_key());
        assert!(printed.contains("SHA256:"));
        assert!(!printed.contains("BEGIN"));
    }

    #[test]
    fn fingerprint_matches_openssh() {
        // Known answer computed with `ssh-keygen -lf` on the public key below.
        let pem = include_str!("../testdata/fingerprint-key.pub.pem");
        let key = rsa::PublicKey::from_public_key_pem(pem).unwrap();
        assert_eq!(
            Fingerprint::of(&key).as_str(),
            include_str!("../testdata/fingerprint-key.sha256").trim()
        );
    }
}
