//! Private keys as users keep them: PEM files, and upstream's key Secrets
//! (`kubernetes.io/tls`, key in `tls.key`), alone or in a `v1.List` backup.

use sealsync_crypto::PrivateKey;

use crate::{ApiError, SecretManifest, parse_documents};

/// Label on the controller's key Secrets.
pub const KEY_LABEL: &str = "sealedsecrets.bitnami.com/sealed-secrets-key";
/// Value of [`KEY_LABEL`] on keys in use.
pub const KEY_LABEL_ACTIVE: &str = "active";

const TLS_KEY: &str = "tls.key";

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
    fn a_secret_without_tls_key_is_named() {
        let err = read_private_keys(
            "kind: Secret\nmetadata: {name: x, namespace: y}\n",
            "b.yaml",
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "b.yaml: Secret y/x has no tls.key");
    }
}
