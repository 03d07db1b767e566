//! Sealing cryptography of sealsync, byte-compatible with Bitnami Sealed Secrets.
//!
//! Hybrid RSA-OAEP + AES-GCM sealing of values, scope labels, RSA keys, certificates and
//! keyrings. Knows nothing of Kubernetes objects beyond the scope annotations' names.

mod cert;
mod error;
mod hybrid;
mod keyring;
mod keys;
mod scope;
mod secret;

pub use cert::{CertificateParams, SealingCertificate};
pub use error::CryptoError;
pub use hybrid::{open_value, seal_value};
pub use keyring::{Keyring, Opened};
pub use keys::{
    DEFAULT_KEY_BITS, Fingerprint, MIN_KEY_BITS, PrivateKey, PublicKey, rsa_decryptions,
};
pub use scope::{CLUSTER_WIDE_ANNOTATION, NAMESPACE_WIDE_ANNOTATION, Scope};
pub use secret::SecretBytes;
