//! Private keys as users keep them: PEM files, and upstream's key Secrets
//! (`kubernetes.io/tls`, key in `tls.key`), alone or in a `v1.List` backup.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sealsync_crypto::{Keyring, PrivateKey, SealingCertificate, SecretBytes};

use crate::{ApiError, SecretManifest, parse_documents};

/// Label on the controller's key Secrets.
pub const KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";
/// Value of [`KEY_LABEL`] on keys in use.
pub const KEY_LABEL_ACTIVE: &str = "active";
/// Value of [`KEY_LABEL`] on keys retired by `sealsync keys retire`: like upstream's
/// `compromised`, any value but `active` means the key is not loaded (opens and seals nothing).
pub const KEY_LABEL_RETIRED: &str = "retired";
/// Annotation on the newest key Secret that asks the controller's leader for a new key
/// (`sealsync keys rotate`): whoever may patch Secrets in its namespace may ask.
pub const ROTATION_REQUESTED: &str = "sealsync.dev/rotation-requested";

/// What sealsync's controller tells anyone of one key Secret (`GET /v1/keys`): nothing of
/// its private key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub secret: String,
    /// Of the certificate (`tls.crt`), as `sealsync cert` prints it.
    pub fingerprint: Option<String>,
    /// The Secret's creation (RFC 3339).
    pub created: Option<String>,
    pub not_before: Option<String>,
    pub not_after: Option<String>,
    /// The key label's value: `active`, `retired`, or another (upstream's `compromised`).
    pub status: String,
    /// Whether new SealedSecrets are sealed to it (the newest active key).
    pub sealing: bool,
    /// Why the controller cannot use the key (never a value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The answer of `GET /v1/keys`: key Secrets oldest first; `omitted` oldest left out.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeyList {
    pub keys: Vec<KeyInfo>,
    #[serde(default)]
    pub omitted: usize,
}

const TLS_KEY: &str = "tls.key";
const TLS_CERT: &str = "tls.crt";
/// `generateName` of key Secrets (upstream names them e.g. `sealed-secrets-keyx7k2p`).
pub const KEY_SECRET_GENERATE_NAME: &str = "sealed-secrets-key";

/// The Secret that keeps a sealing key in the controller's namespace, as the upstream
/// controller writes it, so either controller can use the other's keys.
pub fn key_secret(key: &PrivateKey, cert: &SealingCertificate, namespace: &str) -> SecretManifest {
    let metadata = ObjectMeta {
        generate_name: Some(KEY_SECRET_GENERATE_NAME.into()),
        namespace: Some(namespace.into()),
        labels: Some(BTreeMap::from([(
            KEY_LABEL.into(),
            KEY_LABEL_ACTIVE.into(),
        )])),
        ..ObjectMeta::default()
    };
    let data = BTreeMap::from([
        (
            TLS_CERT.to_string(),
            SecretBytes::from(cert.pem().as_bytes()),
        ),
        (
            TLS_KEY.to_string(),
            SecretBytes::from(key.to_pkcs1_pem().as_bytes()),
        ),
    ]);
    let mut secret = SecretManifest::new(metadata, data);
    secret.type_ = Some("kubernetes.io/tls".into());
    secret
}

/// The keyring of the active key Secrets (label value `active`; upstream marks retired
/// keys otherwise), newest certificate first, and the certificate to seal with.
pub fn keyring_from_key_secrets(
    secrets: &[SecretManifest],
) -> Result<(Keyring, Option<SealingCertificate>), ApiError> {
    let mut keys = secrets
        .iter()
        .filter(|secret| {
            secret
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(KEY_LABEL))
                .map(String::as_str)
                == Some(KEY_LABEL_ACTIVE)
        })
        .map(|secret| {
            let invalid = |reason: String| ApiError::PrivateKey {
                source_name: format!("key Secret {}", secret.object_ref()),
                reason,
            };
            let field = |name: &str| {
                secret
                    .data
                    .get(name)
                    .and_then(|v| std::str::from_utf8(v.expose()).ok())
                    .ok_or_else(|| invalid(format!("no PEM {name}")))
            };
            let key = PrivateKey::from_pem(field(TLS_KEY)?).map_err(|e| invalid(e.to_string()))?;
            let cert = SealingCertificate::from_pem(field(TLS_CERT)?.as_bytes())
                .map_err(|e| invalid(e.to_string()))?;
            if cert.public_key() != key.public_key() {
                return Err(invalid(format!(
                    "{TLS_CERT} is not the certificate of {TLS_KEY}"
                )));
            }
            Ok((cert, key))
        })
        .collect::<Result<Vec<_>, _>>()?;
    keys.sort_by_key(|(cert, _)| std::cmp::Reverse(cert.not_before()));
    let newest_cert = keys.first().map(|(cert, _)| cert.clone());
    Ok((
        Keyring::new(keys.into_iter().map(|(_, key)| key).collect()),
        newest_cert,
    ))
}

/// Reads every private key in `text`: PEM blocks, or key Secrets in YAML or JSON.
pub fn read_private_keys(text: &str, source_name: &str) -> Result<Vec<PrivateKey>, ApiError> {
    let invalid = |reason: String| ApiError::PrivateKey {
        source_name: source_name.to_string(),
        reason,
    };
    if text.trim_start().starts_with("-----BEGIN") {
        let keys = pem_blocks(text)
            .filter(|block| block.contains("PRIVATE KEY-----"))
            .map(|block| PrivateKey::from_pem(block).map_err(|e| invalid(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(invalid("no PEM private key found".into()));
        }
        return Ok(keys);
    }
    parse_documents::<SecretManifest>(text, source_name, "Secret")?
        .iter()
        .map(|secret| {
            let pem = secret.data.get(TLS_KEY).ok_or_else(|| {
                invalid(format!("Secret {} has no {TLS_KEY}", secret.object_ref()))
            })?;
            let pem = std::str::from_utf8(pem.expose()).map_err(|_| {
                invalid(format!(
                    "{TLS_KEY} of Secret {} is not PEM text",
                    secret.object_ref()
                ))
            })?;
            PrivateKey::from_pem(pem)
                .map_err(|e| invalid(format!("{TLS_KEY} of Secret {}: {e}", secret.object_ref())))
        })
        .collect()
}

/// The `-----BEGIN ...-----` .. `-----END ...-----` blocks of a PEM file.
fn pem_blocks(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("-----BEGIN ")
        .filter_map(move |(start, _)| {
            let rest = &text[start..];
            let end_marker = rest.find("-----END ")?;
            let end = end_marker + rest[end_marker + 9..].find("-----")? + 9 + 5;
            Some(&rest[..end])
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use sealsync_crypto::MIN_KEY_BITS;

    #[test]
    fn reads_pem_bundles_secrets_and_lists() {
        let a = PrivateKey::generate(MIN_KEY_BITS).unwrap();
        let b = PrivateKey::generate(MIN_KEY_BITS).unwrap();
        let bundle = format!("{}\n{}", *a.to_pkcs1_pem(), *b.to_pkcs1_pem());
        let keys = read_private_keys(&bundle, "keys.pem").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].fingerprint(), b.fingerprint());

        let encode = |k: &PrivateKey| {
            base64::engine::general_purpose::STANDARD.encode(k.to_pkcs1_pem().as_bytes())
        };
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  type: kubernetes.io/tls\n  metadata: {{name: k1, namespace: kube-system, labels: {{{KEY_LABEL}: active}}}}\n  data:\n    tls.key: {}\n- apiVersion: v1\n  kind: Secret\n  metadata: {{name: k2}}\n  data:\n    tls.key: {}\n",
            encode(&a),
            encode(&b)
        );
        let keys = read_private_keys(&list, "backup.yaml").unwrap();
        assert_eq!(keys[0].fingerprint(), a.fingerprint());
        assert_eq!(keys[1].fingerprint(), b.fingerprint());
    }

    #[test]
    fn key_secrets_round_trip_newest_first_and_skip_retired_keys() {
        use sealsync_crypto::CertificateParams;
        let made: Vec<_> = (0..3)
            .map(|i| {
                let key = PrivateKey::generate(MIN_KEY_BITS).unwrap();
                let cert =
                    SealingCertificate::generate(&key, &CertificateParams::default()).unwrap();
                if i < 2 {
                    // Certificates carry whole seconds: keep their NotBefore apart.
                    std::thread::sleep(std::time::Duration::from_millis(1100));
                }
                let secret = key_secret(&key, &cert, "kube-system");
                (key, secret)
            })
            .collect();
        let mut secrets: Vec<_> = made.iter().map(|(_, s)| s.clone()).collect();
        assert_eq!(secrets[0].type_.as_deref(), Some("kubernetes.io/tls"));
        // A backup of these Secrets reads back with the recovery path too.
        let backup = crate::to_document(&secrets, crate::Format::Yaml).unwrap();
        assert_eq!(read_private_keys(&backup, "backup.yaml").unwrap().len(), 3);

        secrets[0]
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(KEY_LABEL.into(), "compromised".into());
        let (ring, cert) = keyring_from_key_secrets(&secrets).unwrap();
        assert_eq!(ring.len(), 2);
        assert_eq!(
            ring.newest().unwrap().fingerprint(),
            made[2].0.fingerprint()
        );
        assert_eq!(cert.unwrap().public_key(), made[2].0.public_key());
    }

    #[test]
    fn a_key_secret_with_someone_elses_certificate_is_refused() {
        use sealsync_crypto::CertificateParams;
        let key = PrivateKey::generate(MIN_KEY_BITS).unwrap();
        let other = PrivateKey::generate(MIN_KEY_BITS).unwrap();
        let cert = SealingCertificate::generate(&other, &CertificateParams::default()).unwrap();
        let mut secret = key_secret(&key, &cert, "kube-system");
        secret.metadata.name = Some("sealed-secrets-keyabcde".into());
        let err = keyring_from_key_secrets(&[secret]).unwrap_err().to_string();
        assert_eq!(
            err,
            "key Secret kube-system/sealed-secrets-keyabcde: tls.crt is not the certificate of tls.key"
        );
    }

    #[test]
    fn a_secret_without_tls_key_is_named() {
        let err = read_private_keys(
            "kind: Secret\nmetadata: {name: x, namespace: y}\n",
            "b.yaml",
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "b.yaml: Secret y/x has no tls.key");
    }
}
