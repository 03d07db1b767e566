//! Sealing a whole Secret into a SealedSecret and back.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rayon::prelude::*;
use sealsync_crypto::{
    CryptoError, Fingerprint, Keyring, PublicKey, Scope, SecretBytes, seal_value,
};

use crate::{
    ApiError, SealedSecret, SealedSecretSpec, SecretManifest, SecretTemplateSpec,
    render_template_data,
};

/// Annotation kubectl leaves on applied objects; it may hold the plaintext Secret.
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Most values one SealedSecret may hold, a budget of the RSA work one object can ask for.
/// etcd stores objects of up to 1.5 MiB and a value takes at least ~370 bytes with 2048-bit
/// keys (~710 with the default 4096-bit ones), so no SealedSecret a cluster can store holds
/// more.
pub const MAX_SEALED_VALUES: usize = 4096;

/// How a Secret is sealed.
#[derive(Debug, Clone, Default)]
pub struct SealOptions {
    /// Overrides the scope the Secret's annotations declare.
    pub scope: Option<Scope>,
    /// Seal a Secret without values instead of refusing it.
    pub allow_empty_data: bool,
}

/// Seals `secret` to `key`. The Secret's name and namespace must already be resolved.
pub fn seal_secret(
    secret: &SecretManifest,
    key: &PublicKey,
    options: &SealOptions,
) -> Result<SealedSecret, ApiError> {
    let annotations = secret.metadata.annotations.as_ref();
    let scope = options
        .scope
        .unwrap_or_else(|| Scope::from_annotations(|k| annotations?.get(k).map(String::as_str)));
    let name = secret.metadata.name.clone().unwrap_or_default();
    if name.is_empty() && scope == Scope::Strict {
        return Err(ApiError::MissingName);
    }
    let values = secret.values();
    if values.is_empty() && !options.allow_empty_data {
        return Err(ApiError::EmptySecret {
            object: secret.object_ref(),
        });
    }
    ensure_few_values("Secret", secret.object_ref(), values.len())?;

    let mut sealed = SealedSecret::new(&name, SealedSecretSpec::default());
    sealed.metadata.namespace = secret.metadata.namespace.clone();
    if let Some(annotation) = scope.annotation() {
        sealed.metadata.annotations = Some(BTreeMap::from([(annotation.into(), "true".into())]));
    }
    sealed.spec.template = Some(template_of(secret, scope));
    sealed.spec.encrypted_data = seal_values(&sealed, scope, values, key)?;
    Ok(sealed)
}

/// Seals the values of `secret` into an existing SealedSecret, under its name, namespace
/// and scope, adding keys or replacing them.
pub fn merge_into(
    existing: &mut SealedSecret,
    secret: &SecretManifest,
    key: &PublicKey,
) -> Result<(), ApiError> {
    let values = secret.values();
    let keys: BTreeSet<&str> = existing
        .spec
        .encrypted_data
        .keys()
        .map(String::as_str)
        .chain(values.keys().copied())
        .collect();
    ensure_few_values("SealedSecret", existing.object_ref(), keys.len())?;
    let sealed = seal_values(existing, existing.scope(), values, key)?;
    existing.spec.encrypted_data.extend(sealed);
    Ok(())
}

/// Refuses a SealedSecret with more than [`MAX_SEALED_VALUES`] values, before any RSA work.
pub fn check_value_count(sealed: &SealedSecret) -> Result<(), ApiError> {
    ensure_few_values(
        "SealedSecret",
        sealed.object_ref(),
        sealed.spec.encrypted_data.len(),
    )
}

fn ensure_few_values(kind: &'static str, object: String, count: usize) -> Result<(), ApiError> {
    if count > MAX_SEALED_VALUES {
        return Err(ApiError::TooManyValues {
            kind,
            object,
            count,
            max: MAX_SEALED_VALUES,
        });
    }
    Ok(())
}

fn seal_values(
    target: &SealedSecret,
    scope: Scope,
    values: BTreeMap<&str, &SecretBytes>,
    key: &PublicKey,
) -> Result<BTreeMap<String, String>, ApiError> {
    let label = target.label_for(scope);
    values
        .into_par_iter()
        .map(|(name, value)| {
            seal_value(key, &label, value.expose())
                .map(|sealed| (name.to_string(), STANDARD.encode(sealed)))
                .map_err(|source| ApiError::Seal {
                    object: target.object_ref(),
                    key: name.to_string(),
                    source,
                })
        })
        .collect()
}

/// The template metadata a Secret carries into its SealedSecret: identity, labels and
/// annotations, without what the server set or kubectl recorded.
fn template_of(secret: &SecretManifest, scope: Scope) -> SecretTemplateSpec {
    let source = &secret.metadata;
    let mut annotations = source.annotations.clone().unwrap_or_default();
    annotations.remove(LAST_APPLIED_ANNOTATION);
    if let Some(annotation) = scope.annotation() {
        annotations.insert(annotation.into(), "true".into());
    }
    SecretTemplateSpec {
        metadata: Some(ObjectMeta {
            name: source.name.clone(),
            namespace: source.namespace.clone(),
            labels: source.labels.clone().filter(|l| !l.is_empty()),
            annotations: Some(annotations).filter(|a| !a.is_empty()),
            ..ObjectMeta::default()
        }),
        type_: secret.type_.clone(),
        immutable: secret.immutable,
        data: BTreeMap::new(),
    }
}

/// Re-seals every value of `sealed` to `key`, keeping its name, scope and template; the
/// deprecated `spec.data` form comes out as `encryptedData`. Template keys are not sealed:
/// the kept template renders them again at unseal.
pub fn reencrypt(
    sealed: &SealedSecret,
    keyring: &Keyring,
    key: &PublicKey,
) -> Result<SealedSecret, ApiError> {
    let opened = open_values(sealed, keyring)?;
    let values = opened.values.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut resealed = sealed.clone();
    resealed.spec.data = None;
    resealed.status = None;
    resealed.spec.encrypted_data = seal_values(sealed, sealed.scope(), values, key)?;
    Ok(resealed)
}

/// A SealedSecret opened back into its Secret.
#[derive(Debug)]
pub struct Unsealed {
    pub secret: SecretManifest,
    /// Which key opened each value: `encryptedData`'s, and those of the deprecated
    /// `spec.data` it does not override (rendered template keys have none).
    pub opened_by: BTreeMap<String, Fingerprint>,
}

/// Opens every value of `sealed` with `keyring`: all or nothing. The first key that fails
/// is reported with the reason, including a scope mismatch when another scope's label opens it.
/// Then `spec.template.data` is rendered over the values, its keys overriding theirs.
pub fn unseal(sealed: &SealedSecret, keyring: &Keyring) -> Result<Unsealed, ApiError> {
    let OpenedValues {
        values: mut data,
        opened_by,
    } = open_values(sealed, keyring)?;
    let template = sealed.spec.template.clone().unwrap_or_default();
    data.extend(render_template_data(
        &sealed.object_ref(),
        &template.data,
        &data,
    )?);

    let mut metadata = template.metadata.unwrap_or_default();
    metadata.name = sealed.metadata.name.clone();
    metadata.namespace = sealed.metadata.namespace.clone();
    let mut secret = SecretManifest::new(metadata, data);
    secret.type_ = template.type_;
    secret.immutable = template.immutable;
    Ok(Unsealed { secret, opened_by })
}

/// The sealed values of a SealedSecret, opened.
struct OpenedValues {
    /// Deprecated `spec.data`'s values, then `encryptedData`'s over them.
    values: BTreeMap<String, SecretBytes>,
    /// The key that opened each value.
    opened_by: BTreeMap<String, Fingerprint>,
}

/// Opens `encryptedData` (then the deprecated `spec.data`), all or nothing. Work is bounded
/// for untrusted input: the value count is capped, every value's form is checked before any
/// RSA operation, and opening stops at the first value that does not open.
fn open_values(sealed: &SealedSecret, keyring: &Keyring) -> Result<OpenedValues, ApiError> {
    check_value_count(sealed)?;
    let label = sealed.label();
    let fail = |key: &str, reason: String| ApiError::Unseal {
        object: sealed.object_ref(),
        key: key.to_string(),
        reason,
    };
    let decoded = sealed
        .spec
        .encrypted_data
        .iter()
        .map(|(key, encoded)| {
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|_| fail(key, "the value is not valid base64".into()))?;
            keyring
                .check_form(&bytes)
                .map_err(|e| fail(key, e.to_string()))?;
            Ok((key, bytes))
        })
        .collect::<Result<Vec<_>, _>>()?;

    // The first value alone, then rounds of one value per thread, each trying first the key
    // that opened the first value (an object's values share a key: N + V - 1 decryptions
    // rather than up to N * V); the first failure ends it, and the first failing key in key
    // order is reported, so that the same input always gets the same message. Only that
    // value's failure is explained.
    let (head, tail) = decoded.split_at(decoded.len().min(1));
    let rounds = std::iter::once(head).chain(tail.chunks(rayon::current_num_threads().max(1)));
    let mut data = BTreeMap::new();
    let mut opened_by = BTreeMap::new();
    let mut likely = None;
    for round in rounds {
        let results: Vec<_> = round
            .par_iter()
            .map(|(key, bytes)| (key, bytes, keyring.open_trying_first(likely, &label, bytes)))
            .collect();
        for (key, bytes, result) in results {
            let opened = result.map_err(|e| fail(key, explain(sealed, keyring, bytes, e)))?;
            likely.get_or_insert(opened.key);
            data.insert((*key).clone(), opened.plaintext);
            opened_by.insert((*key).clone(), opened.key.clone());
        }
    }
    if let Some(whole) = &sealed.spec.data {
        let (legacy, fingerprint) = unseal_legacy_data(sealed, keyring, whole)?;
        // encryptedData's values win over the deprecated form's.
        for (key, value) in legacy {
            if let Entry::Vacant(entry) = data.entry(key.clone()) {
                entry.insert(value);
                opened_by.insert(key, fingerprint.clone());
            }
        }
    }
    Ok(OpenedValues {
        values: data,
        opened_by,
    })
}

/// Deprecated `spec.data`: a whole Secret, JSON, sealed as one value. Its values, and the
/// key that opened them.
fn unseal_legacy_data(
    sealed: &SealedSecret,
    keyring: &Keyring,
    whole: &str,
) -> Result<(BTreeMap<String, SecretBytes>, Fingerprint), ApiError> {
    let fail = |reason: String| ApiError::Unseal {
        object: sealed.object_ref(),
        key: "spec.data".into(),
        reason,
    };
    let bytes = STANDARD
        .decode(whole.trim())
        .map_err(|_| fail("the value is not valid base64".into()))?;
    let opened = keyring
        .open(&sealed.label(), &bytes)
        .map_err(|e| fail(explain(sealed, keyring, &bytes, e)))?;
    let secret: SecretManifest = serde_json::from_slice(opened.plaintext.expose())
        .map_err(|_| fail("the sealed Secret is not valid JSON".into()))?;
    Ok((secret.data, opened.key.clone()))
}

/// Why a value did not open, in words a user can act on.
fn explain(sealed: &SealedSecret, keyring: &Keyring, bytes: &[u8], error: CryptoError) -> String {
    let declared = sealed.scope();
    if !matches!(error, CryptoError::NoKeyOpened) {
        return error.to_string();
    }
    let other_scope = Scope::ALL
        .into_iter()
        .filter(|&scope| scope != declared)
        .find(|&scope| keyring.open(&sealed.label_for(scope), bytes).is_ok());
    match other_scope {
        Some(actual) => format!(
            "it was sealed with {actual} scope but the SealedSecret declares {declared} scope: \
             reseal it with --scope {declared}, or set the {actual} annotation"
        ),
        None => format!(
            "no key could decrypt it with the {declared} scope label {:?}: it was sealed for \
             another name or namespace, or to a key that is not among the {} given",
            String::from_utf8_lossy(&sealed.label()),
            keyring.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_documents;
    use sealsync_crypto::{MIN_KEY_BITS, PrivateKey};
    use std::sync::OnceLock;

    fn keyring() -> &'static Keyring {
        static RING: OnceLock<Keyring> = OnceLock::new();
        RING.get_or_init(|| Keyring::new(vec![PrivateKey::generate(MIN_KEY_BITS).unwrap()]))
    }

    fn public_key() -> &'static PublicKey {
        keyring().newest().unwrap().public_key()
    }

    fn secret(yaml: &str) -> SecretManifest {
        parse_documents::<SecretManifest>(yaml, "t.yaml", "Secret")
            .unwrap()
            .remove(0)
    }

    const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: prod\n  uid: '1234'\n  resourceVersion: '9'\n  labels: {app: db}\n  annotations:\n    kubectl.kubernetes.io/last-applied-configuration: '{\"data\":{}}'\n    team: core\ntype: kubernetes.io/basic-auth\ndata:\n  password: aHVudGVyMg==\nstringData:\n  username: admin\n";

    #[test]
    fn seal_strips_server_metadata_and_round_trips() {
        let sealed = seal_secret(&secret(SECRET), public_key(), &SealOptions::default()).unwrap();
        let template = sealed.spec.template.as_ref().unwrap();
        let meta = template.metadata.as_ref().unwrap();
        assert_eq!(meta.uid, None);
        assert_eq!(meta.resource_version, None);
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations.keys().collect::<Vec<_>>(), ["team"]);
        assert_eq!(template.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert_eq!(sealed.spec.encrypted_data.len(), 2);

        let unsealed = unseal(&sealed, keyring()).unwrap();
        assert_eq!(unsealed.secret.data["password"].expose(), b"hunter2");
        assert_eq!(unsealed.secret.data["username"].expose(), b"admin");
        assert_eq!(
            unsealed.secret.type_.as_deref(),
            Some("kubernetes.io/basic-auth")
        );
        assert_eq!(unsealed.opened_by.len(), 2);
    }

    #[test]
    fn the_deprecated_data_form_names_the_key_that_opened_its_values() {
        let (new, old) = (
            PrivateKey::generate(MIN_KEY_BITS).unwrap(),
            PrivateKey::generate(MIN_KEY_BITS).unwrap(),
        );
        let mut sealed =
            seal_secret(&secret(SECRET), new.public_key(), &SealOptions::default()).unwrap();
        let whole = serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "namespace": "prod"},
            "data": {"password": STANDARD.encode("old"), "legacy": STANDARD.encode("v")},
        });
        let bytes = serde_json::to_vec(&whole).unwrap();
        let ciphertext = seal_value(old.public_key(), &sealed.label(), &bytes).unwrap();
        sealed.spec.data = Some(STANDARD.encode(ciphertext));
        let (new_key, old_key) = (new.fingerprint().clone(), old.fingerprint().clone());

        let unsealed = unseal(&sealed, &Keyring::new(vec![new, old])).unwrap();
        assert_eq!(unsealed.secret.data["password"].expose(), b"hunter2");
        assert_eq!(unsealed.secret.data["legacy"].expose(), b"v");
        assert_eq!(
            unsealed.opened_by["password"], new_key,
            "encryptedData wins"
        );
        assert_eq!(unsealed.opened_by["legacy"], old_key);
        assert_eq!(unsealed.opened_by.len(), 3);
    }

    #[test]
    fn scope_is_recorded_and_honoured() {
        for scope in [Scope::NamespaceWide, Scope::ClusterWide] {
            let options = SealOptions {
                scope: Some(scope),
                ..SealOptions::default()
            };
            let mut sealed = seal_secret(&secret(SECRET), public_key(), &options).unwrap();
            assert_eq!(sealed.scope(), scope);
            // Renaming is what the wider scopes allow.
            sealed.metadata.name = Some("renamed".into());
            if scope == Scope::ClusterWide {
                sealed.metadata.namespace = Some("elsewhere".into());
            }
            assert!(unseal(&sealed, keyring()).is_ok());
        }
    }

    #[test]
    fn a_renamed_strict_secret_does_not_open_and_says_why() {
        let mut sealed =
            seal_secret(&secret(SECRET), public_key(), &SealOptions::default()).unwrap();
        sealed.metadata.name = Some("other".into());
        let msg = unseal(&sealed, keyring()).unwrap_err().to_string();
        assert!(msg.contains("strict scope label \"prod/other\""), "{msg}");
        assert!(!msg.contains("hunter2"));
    }

    #[test]
    fn a_dropped_scope_annotation_is_diagnosed() {
        let options = SealOptions {
            scope: Some(Scope::NamespaceWide),
            ..SealOptions::default()
        };
        let mut sealed = seal_secret(&secret(SECRET), public_key(), &options).unwrap();
        sealed.metadata.annotations = None;
        let msg = unseal(&sealed, keyring()).unwrap_err().to_string();
        assert!(
            msg.contains("sealed with namespace-wide scope but the SealedSecret declares strict"),
            "{msg}"
        );
    }

    #[test]
    fn empty_secrets_and_nameless_strict_secrets_are_refused() {
        let empty = secret("kind: Secret\nmetadata: {name: e, namespace: n}\n");
        let err = seal_secret(&empty, public_key(), &SealOptions::default()).unwrap_err();
        assert!(err.to_string().contains("--allow-empty-data"), "{err}");
        let options = SealOptions {
            allow_empty_data: true,
            ..SealOptions::default()
        };
        assert!(seal_secret(&empty, public_key(), &options).is_ok());

        let nameless = secret("kind: Secret\nmetadata: {namespace: n}\nstringData: {a: b}\n");
        assert!(matches!(
            seal_secret(&nameless, public_key(), &SealOptions::default()),
            Err(ApiError::MissingName)
        ));
    }

    #[test]
    fn merge_adds_and_replaces_keys() {
        let mut sealed =
            seal_secret(&secret(SECRET), public_key(), &SealOptions::default()).unwrap();
        let before = sealed.spec.encrypted_data["username"].clone();
        let update = secret("kind: Secret\nmetadata: {}\nstringData: {password: new, token: t}\n");
        merge_into(&mut sealed, &update, public_key()).unwrap();
        assert_eq!(sealed.spec.encrypted_data["username"], before);
        let unsealed = unseal(&sealed, keyring()).unwrap().secret;
        assert_eq!(unsealed.data["password"].expose(), b"new");
        assert_eq!(unsealed.data["token"].expose(), b"t");
    }

    #[test]
    fn merging_past_the_value_cap_is_refused() {
        let mut sealed =
            seal_secret(&secret(SECRET), public_key(), &SealOptions::default()).unwrap();
        for i in sealed.spec.encrypted_data.len()..MAX_SEALED_VALUES {
            sealed
                .spec
                .encrypted_data
                .insert(format!("k{i}"), "AAAA".into());
        }
        let replacing = secret("kind: Secret\nmetadata: {}\nstringData: {password: new}\n");
        let mut merged = sealed.clone();
        assert!(merge_into(&mut merged, &replacing, public_key()).is_ok());
        let adding = secret("kind: Secret\nmetadata: {}\nstringData: {token: t}\n");
        let err = merge_into(&mut sealed, &adding, public_key()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "SealedSecret prod/db has 4097 values, more than the 4096 a SealedSecret may hold: \
             split it into several"
        );
    }

    #[test]
    fn reencrypt_moves_values_to_the_new_key() {
        let mut sealed =
            seal_secret(&secret(SECRET), public_key(), &SealOptions::default()).unwrap();
        sealed.metadata.annotations = Some(BTreeMap::from([("team".into(), "core".into())]));
        let new_key = PrivateKey::generate(MIN_KEY_BITS).unwrap();
        let resealed = reencrypt(&sealed, keyring(), new_key.public_key()).unwrap();
        assert_eq!(resealed.metadata, sealed.metadata);
        assert_eq!(resealed.spec.template, sealed.spec.template);
        assert!(unseal(&resealed, keyring()).is_err());
        let new_ring = Keyring::new(vec![new_key]);
        let unsealed = unseal(&resealed, &new_ring).unwrap();
        assert_eq!(unsealed.secret.data["password"].expose(), b"hunter2");
    }

    #[test]
    fn one_bad_value_fails_the_whole_secret() {
        let mut sealed =
            seal_secret(&secret(SECRET), public_key(), &SealOptions::default()).unwrap();
        sealed
            .spec
            .encrypted_data
            .insert("broken".into(), "AgBnb3Q=".into());
        let msg = unseal(&sealed, keyring()).unwrap_err().to_string();
        assert!(msg.contains("key \"broken\""), "{msg}");
        assert!(msg.contains("truncated or malformed"), "{msg}");
    }

    fn with_templates(templates: &[(&str, &str)]) -> SealedSecret {
        let mut sealed =
            seal_secret(&secret(SECRET), public_key(), &SealOptions::default()).unwrap();
        let template = sealed.spec.template.as_mut().unwrap();
        for (key, text) in templates {
            template.data.insert(key.to_string(), text.to_string());
        }
        sealed
    }

    #[test]
    fn template_data_is_rendered_over_the_unsealed_values() {
        let sealed = with_templates(&[
            (
                "dsn",
                "postgres://{{ .username }}:{{ .password }}@db/{{ .missing | default \"app\" }}",
            ),
            ("password", "{{ .password | upper }}"),
        ]);
        let unsealed = unseal(&sealed, keyring()).unwrap();
        let data = &unsealed.secret.data;
        assert_eq!(data["dsn"].expose(), b"postgres://admin:hunter2@db/app");
        assert_eq!(data["password"].expose(), b"HUNTER2", "templates override");
        assert_eq!(data["username"].expose(), b"admin");
        assert_eq!(
            unsealed.opened_by.keys().collect::<Vec<_>>(),
            ["password", "username"],
            "only sealed keys are opened by a key"
        );
    }

    #[test]
    fn a_broken_template_fails_the_unseal_without_showing_values() {
        let sealed = with_templates(&[("bad", "{{ lt .password 3 }}")]);
        let msg = unseal(&sealed, keyring()).unwrap_err().to_string();
        assert!(
            msg.contains("template.data key \"bad\" of SealedSecret prod/db"),
            "{msg}"
        );
        assert!(!msg.contains("hunter2"), "{msg}");
    }

    #[test]
    fn reencrypt_keeps_templates_and_does_not_seal_their_output() {
        let sealed = with_templates(&[("dsn", "{{ .username }}")]);
        let new_key = PrivateKey::generate(MIN_KEY_BITS).unwrap();
        let resealed = reencrypt(&sealed, keyring(), new_key.public_key()).unwrap();
        assert_eq!(
            resealed.spec.encrypted_data.keys().collect::<Vec<_>>(),
            ["password", "username"]
        );
        assert_eq!(resealed.spec.template, sealed.spec.template);
        let unsealed = unseal(&resealed, &Keyring::new(vec![new_key])).unwrap();
        assert_eq!(unsealed.secret.data["dsn"].expose(), b"admin");
    }
}
