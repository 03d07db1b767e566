//! Errors of the sealing cryptography. None of them ever carries secret material.

/// What went wrong while sealing, opening, or handling keys and certificates.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("ciphertext is truncated or malformed: {0}")]
    Malformed(&'static str),
    #[error("no key in the keyring could decrypt the value")]
    NoKeyOpened,
    #[error("the value is corrupted: its AES-GCM authentication tag does not match")]
    Corrupted,
    #[error("invalid private key: {0}")]
    InvalidPrivateKey(String),
    #[error("invalid public key: {0}")]
    InvalidPublicKey(String),
    #[error("RSA key of {0} bits is too small: at least 2048 bits are required")]
    KeyTooSmall(usize),
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    #[error("certificate expired on {0}: fetch the controller's current certificate")]
    CertificateExpired(String),
    #[error("certificate's public key is {0}, not RSA: sealing needs an RSA certificate")]
    NotRsa(String),
    #[error("cannot generate a key: {0}")]
    KeyGeneration(String),
    #[error("cannot make a certificate: {0}")]
    CertificateGeneration(String),
    #[error("encryption failed: {0}")]
    Encryption(String),
}
