//! Sealing certificates: the self-signed X.509 certificate that publishes a controller's
//! public key, made the way the upstream controller makes it.

use std::time::Duration;

use rcgen::{
    BasicConstraints, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use time::OffsetDateTime;
use x509_parser::pem::Pem;
use x509_parser::public_key::PublicKey as X509PublicKey;

use crate::{CryptoError, PrivateKey, PublicKey};

/// How a new sealing certificate is made.
#[derive(Debug, Clone)]
pub struct CertificateParams {
    /// Subject common name; upstream's `--my-cn`, empty by default.
    pub common_name: String,
    /// Validity from now; upstream's `--key-ttl`, ten years by default.
    pub validity: Duration,
}

impl Default for CertificateParams {
    fn default() -> Self {
        Self {
            common_name: String::new(),
            validity: Duration::from_secs(10 * 365 * 24 * 3600),
        }
    }
}

/// A parsed sealing certificate: its PEM and the RSA key values are sealed to.
#[derive(Debug, Clone)]
pub struct SealingCertificate {
    pem: String,
    public_key: PublicKey,
    subject: String,
    serial: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl SealingCertificate {
    /// Parses the first certificate of a PEM bundle; it must carry an RSA key.
    /// Expiry is not checked here: see [`SealingCertificate::ensure_current`].
    pub fn from_pem(bundle: &[u8]) -> Result<Self, CryptoError> {
        let invalid = |msg: String| CryptoError::InvalidCertificate(msg);
        let block = Pem::iter_from_buffer(bundle)
            .map_while(Result::ok)
            .find(|block| block.label == "CERTIFICATE")
            .ok_or_else(|| invalid("no PEM 'CERTIFICATE' block found".into()))?;
        let cert = block.parse_x509().map_err(|e| invalid(e.to_string()))?;
        let spki = cert.public_key();
        match spki.parsed() {
            Ok(X509PublicKey::RSA(_)) => {}
            Ok(X509PublicKey::EC(_)) => return Err(CryptoError::NotRsa("EC".into())),
            Ok(X509PublicKey::DSA(_)) => return Err(CryptoError::NotRsa("DSA".into())),
            Ok(_) => {
                return Err(CryptoError::NotRsa(format!(
                    "of algorithm {}",
                    spki.algorithm.algorithm
                )));
            }
            Err(e) => return Err(invalid(e.to_string())),
        }
        let public_key = PublicKey::from_spki_der(spki.raw)?;
        let validity = cert.validity();
        let this = Self {
            pem: pem_text(&block.contents),
            public_key,
            subject: cert.subject().to_string(),
            serial: cert.raw_serial_as_string(),
            not_before: validity.not_before.to_datetime(),
            not_after: validity.not_after.to_datetime(),
        };
        Ok(this)
    }

    /// Makes a self-signed certificate for `key` with upstream's attributes: random serial
    /// below 2^128, CA flag, key usage "encipher only", SHA-256 with RSA signature.
    pub fn generate(key: &PrivateKey, params: &CertificateParams) -> Result<Self, CryptoError> {
        let failed = |e: rcgen::Error| CryptoError::CertificateGeneration(e.to_string());
        let pkcs8 = key.to_pkcs8_der();
        let signer = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(pkcs8.as_slice()),
            &rcgen::PKCS_RSA_SHA256,
        )
        .map_err(failed)?;

        let mut serial = [0u8; 16];
        getrandom::fill(&mut serial)
            .map_err(|e| CryptoError::CertificateGeneration(e.to_string()))?;
        serial[0] &= 0x7f;

        let mut subject = DistinguishedName::new();
        if !params.common_name.is_empty() {
            subject.push(DnType::CommonName, params.common_name.as_str());
        }
        let now = OffsetDateTime::now_utc();
        let mut cert_params = rcgen::CertificateParams::default();
        cert_params.distinguished_name = subject;
        cert_params.serial_number = Some(SerialNumber::from_slice(&serial));
        cert_params.not_before = now;
        cert_params.not_after = now + params.validity;
        cert_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        cert_params.key_usages = vec![KeyUsagePurpose::EncipherOnly];
        let cert = cert_params.self_signed(&signer).map_err(failed)?;
        Self::from_pem(cert.pem().as_bytes())
    }

    /// Refuses a certificate that is no longer valid, as kubeseal does before sealing.
    pub fn ensure_current(&self) -> Result<(), CryptoError> {
        if self.not_after < OffsetDateTime::now_utc() {
            return Err(CryptoError::CertificateExpired(self.not_after.to_string()));
        }
        Ok(())
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn public_key(&self) -> &PublicKey {
        &self.public_key
    }

    /// Subject in RFC 4514 form; empty for upstream's default certificates.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Serial number as colon-separated hex.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

fn pem_text(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::test_key;
    use crate::{open_value, seal_value};

    #[test]
    fn generated_certificate_carries_the_key_and_upstream_attributes() {
        let key = test_key();
        let cert = SealingCertificate::generate(key, &CertificateParams::default()).unwrap();
        assert_eq!(cert.public_key(), key.public_key());
        assert_eq!(cert.subject(), "");
        let years = (cert.not_after() - cert.not_before()).whole_days() / 365;
        assert_eq!(years, 10);
        cert.ensure_current().unwrap();

        let (_, parsed) = x509_parser::pem::parse_x509_pem(cert.pem().as_bytes()).unwrap();
        let x509 = parsed.parse_x509().unwrap();
        assert!(x509.is_ca());
        let usage = x509.key_usage().unwrap().unwrap().value;
        assert!(usage.encipher_only());
        assert!(!usage.digital_signature());
    }

    #[test]
    fn values_sealed_to_the_certificate_open_with_the_key() {
        let key = test_key();
        let params = CertificateParams {
            common_name: "sealsync".into(),
            ..CertificateParams::default()
        };
        let cert = SealingCertificate::generate(key, &params).unwrap();
        assert_eq!(cert.subject(), "CN=sealsync");
        let sealed = seal_value(cert.public_key(), b"a/b", b"x").unwrap();
        assert_eq!(open_value(key, b"a/b", &sealed).unwrap().expose(), b"x");
    }

    #[test]
    fn expired_certificate_is_refused() {
        let params = CertificateParams {
            validity: Duration::ZERO,
            ..CertificateParams::default()
        };
        let cert = SealingCertificate::generate(test_key(), &params).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        let err = cert.ensure_current().unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn non_rsa_and_garbage_are_refused() {
        let ec = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
        let err = SealingCertificate::from_pem(ec.cert.pem().as_bytes()).unwrap_err();
        assert!(matches!(err, CryptoError::NotRsa(_)), "{err}");
        assert!(SealingCertificate::from_pem(b"not a certificate").is_err());
        let garbled = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(SealingCertificate::from_pem(garbled.as_bytes()).is_err());
    }
}
