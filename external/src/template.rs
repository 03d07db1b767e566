//! The Secret an ExternalSecret writes from its provider data, as upstream shapes it: the
//! ExternalSecret's own labels and annotations when it has no template; otherwise the
//! template's type, metadata and data, where `template.data` wins over `templateFrom`,
//! which wins over the provider's data (kept with `mergePolicy: Merge` or when the template
//! has no data). Templates are Go templates with `missingkey=error` and the sprig set.

use std::collections::BTreeMap;

use sealsync_api::external::{CreationPolicy, ExternalSecret, TemplateMergePolicy, TemplateScope};
use sealsync_crypto::SecretBytes;
use sealsync_engine::DesiredSecret;
use sealsync_template::{Functions, MissingKey, Options};

use crate::hash;

/// Label every Secret an ExternalSecret writes carries.
pub const LABEL_MANAGED: &str = "reconcile.external-secrets.io/managed";
/// Label of the Secrets an ExternalSecret owns: the hash of its namespace and name.
pub const LABEL_CREATED_BY: &str = "reconcile.external-secrets.io/created-by";
/// Annotation with the hash of a Secret's data.
pub const ANNOTATION_DATA_HASH: &str = "reconcile.external-secrets.io/data-hash";

/// Where the output of a `templateFrom` entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Data,
    Labels,
    Annotations,
}

impl Destination {
    pub fn parse(target: Option<&str>) -> Result<Self, String> {
        match target.unwrap_or("Data") {
            "Data" | "data" => Ok(Destination::Data),
            "Labels" | "labels" => Ok(Destination::Labels),
            "Annotations" | "annotations" => Ok(Destination::Annotations),
            other => Err(format!(
                "templateFrom target {other:?} is not supported: use Data, Labels or Annotations"
            )),
        }
    }
}

/// One `templateFrom` entry, its ConfigMap or Secret already read.
#[derive(Debug, Clone)]
pub struct TemplateSource {
    pub into: Destination,
    /// Templates by key and how each renders.
    pub items: Vec<(String, String, TemplateScope)>,
}

/// The options of ExternalSecret templates.
fn options() -> Options {
    Options {
        functions: Functions::sprig()
            .with(sealsync_template::formats::FUNCTIONS)
            .with(sealsync_template::pki::FUNCTIONS),
        missing_key: MissingKey::Error,
        ..Options::default()
    }
}

/// Renders `templates` over `values`; errors name the ExternalSecret and the key.
fn render(
    object: &str,
    templates: &BTreeMap<String, String>,
    values: &BTreeMap<String, SecretBytes>,
) -> Result<BTreeMap<String, SecretBytes>, String> {
    sealsync_api::render_templates(object, templates, values, &options()).map_err(|e| e.to_string())
}

/// A `KeysAndValues` template's output: a YAML map of keys to text values.
fn keys_and_values(
    object: &str,
    key: &str,
    rendered: &SecretBytes,
) -> Result<BTreeMap<String, SecretBytes>, String> {
    let text = std::str::from_utf8(rendered.expose())
        .map_err(|_| format!("{object}: template {key:?} did not render UTF-8 text"))?;
    let map: BTreeMap<String, serde_norway::Value> = serde_norway::from_str(text).map_err(|_| {
        format!("{object}: template {key:?} (KeysAndValues) did not render a YAML map of keys to values")
    })?;
    map.into_iter()
        .map(|(k, v)| {
            let value = match v {
                serde_norway::Value::String(s) => s,
                other => serde_norway::to_string(&other)
                    .map(|s| s.trim_end().to_string())
                    .unwrap_or_default(),
            };
            Ok((k, SecretBytes::from(value.into_bytes())))
        })
        .collect()
}

fn text_map(
    object: &str,
    what: &str,
    map: BTreeMap<String, SecretBytes>,
) -> Result<BTreeMap<String, String>, String> {
    map.into_iter()
        .map(|(k, v)| {
            String::from_utf8(v.expose().to_vec())
                .map(|v| (k.clone(), v))
                .map_err(|_| format!("{object}: {what} {k:?} did not render UTF-8 text"))
        })
        .collect()
}

/// The desired Secret of `es` from its provider `data`.
pub fn desired_secret(
    es: &ExternalSecret,
    data: BTreeMap<String, SecretBytes>,
    sources: &[TemplateSource],
) -> Result<DesiredSecret, String> {
    let object = format!(
        "ExternalSecret {}/{}",
        es.metadata.namespace.as_deref().unwrap_or_default(),
        es.metadata.name.as_deref().unwrap_or_default()
    );
    let target = es.spec.target.clone().unwrap_or_default();
    let mut secret = DesiredSecret {
        immutable: target.immutable.filter(|i| *i),
        ..DesiredSecret::default()
    };
    match &target.template {
        None => {
            secret.labels = es.metadata.labels.clone().unwrap_or_default();
            secret.annotations = es.metadata.annotations.clone().unwrap_or_default();
            secret.data = data;
        }
        Some(template) => {
            secret.type_ = template.type_.clone().filter(|t| !t.is_empty());
            let no_templates = template.data.is_empty() && template.template_from.is_empty();
            if template.merge_policy == Some(TemplateMergePolicy::Merge) || no_templates {
                secret.data = data.clone();
            }
            for source in sources {
                let mut out = BTreeMap::new();
                for (key, text, scope) in &source.items {
                    let one = BTreeMap::from([(key.clone(), text.clone())]);
                    let rendered = render(&object, &one, &data)?;
                    match scope {
                        TemplateScope::Values => out.extend(rendered),
                        TemplateScope::KeysAndValues => {
                            for value in rendered.values() {
                                out.extend(keys_and_values(&object, key, value)?);
                            }
                        }
                    }
                }
                match source.into {
                    Destination::Data => secret.data.extend(out),
                    Destination::Labels => secret.labels.extend(text_map(&object, "label", out)?),
                    Destination::Annotations => {
                        secret
                            .annotations
                            .extend(text_map(&object, "annotation", out)?)
                    }
                }
            }
            secret.data.extend(render(&object, &template.data, &data)?);
            if let Some(metadata) = &template.metadata {
                let labels = render(&object, &metadata.labels, &data)?;
                secret.labels.extend(text_map(&object, "label", labels)?);
                let annotations = render(&object, &metadata.annotations, &data)?;
                secret
                    .annotations
                    .extend(text_map(&object, "annotation", annotations)?);
            }
        }
    }
    let creation = target.creation_policy.unwrap_or(CreationPolicy::Owner);
    secret.labels.insert(LABEL_MANAGED.into(), "true".into());
    if creation == CreationPolicy::Owner {
        secret.labels.insert(
            LABEL_CREATED_BY.into(),
            hash::created_by(
                es.metadata.namespace.as_deref().unwrap_or_default(),
                es.metadata.name.as_deref().unwrap_or_default(),
            ),
        );
    }
    // A merged Secret's hash would be of keys others write too, which a server-side apply
    // of ours neither knows nor writes: the annotation is left to whoever wrote it.
    if matches!(creation, CreationPolicy::Owner | CreationPolicy::Orphan) {
        secret
            .annotations
            .insert(ANNOTATION_DATA_HASH.into(), hash::data_hash(&secret.data));
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use sealsync_api::ObjectMeta;
    use sealsync_api::external::{
        ExternalSecretSpec, ExternalSecretTarget, ExternalSecretTemplate, TemplateMetadata,
    };

    use super::*;

    fn es(template: Option<ExternalSecretTemplate>) -> ExternalSecret {
        ExternalSecret {
            metadata: ObjectMeta {
                name: Some("app".into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([("team".into(), "a".into())])),
                ..ObjectMeta::default()
            },
            spec: ExternalSecretSpec {
                target: Some(ExternalSecretTarget {
                    template,
                    ..ExternalSecretTarget::default()
                }),
                ..ExternalSecretSpec::default()
            },
            status: None,
        }
    }

    fn data() -> BTreeMap<String, SecretBytes> {
        BTreeMap::from([
            ("user".to_string(), SecretBytes::from(b"app".to_vec())),
            ("password".to_string(), SecretBytes::from(b"pw".to_vec())),
        ])
    }

    fn text(secret: &DesiredSecret, key: &str) -> String {
        String::from_utf8(secret.data[key].expose().to_vec()).unwrap()
    }

    #[test]
    fn without_a_template_the_data_and_the_external_secrets_labels_are_copied() {
        let secret = desired_secret(&es(None), data(), &[]).unwrap();
        assert_eq!(text(&secret, "password"), "pw");
        assert_eq!(secret.labels["team"], "a");
        assert_eq!(secret.labels[LABEL_MANAGED], "true");
        assert_eq!(
            secret.labels[LABEL_CREATED_BY],
            hash::created_by("ns", "app")
        );
        assert_eq!(
            secret.annotations[ANNOTATION_DATA_HASH],
            hash::data_hash(&data())
        );
    }

    #[test]
    fn template_data_wins_over_template_from_which_wins_over_provider_data() {
        let template = ExternalSecretTemplate {
            type_: Some("kubernetes.io/basic-auth".into()),
            merge_policy: Some(TemplateMergePolicy::Merge),
            data: BTreeMap::from([("dsn".into(), "{{ .user }}:{{ .password }}@db".into())]),
            metadata: Some(TemplateMetadata {
                labels: BTreeMap::from([("user".into(), "{{ .user }}".into())]),
                ..TemplateMetadata::default()
            }),
            ..ExternalSecretTemplate::default()
        };
        let sources = [TemplateSource {
            into: Destination::Data,
            items: vec![
                (
                    "user".into(),
                    "from-{{ .user }}".into(),
                    TemplateScope::Values,
                ),
                (
                    "config".into(),
                    "a: \"{{ .user }}\"\nb: 2".into(),
                    TemplateScope::KeysAndValues,
                ),
            ],
        }];
        let secret = desired_secret(&es(Some(template)), data(), &sources).unwrap();
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert_eq!(text(&secret, "dsn"), "app:pw@db");
        assert_eq!(text(&secret, "user"), "from-app");
        assert_eq!(text(&secret, "password"), "pw");
        assert_eq!(text(&secret, "a"), "app");
        assert_eq!(text(&secret, "b"), "2");
        assert_eq!(secret.labels["user"], "app");
        assert!(!secret.labels.contains_key("team"));
    }

    #[test]
    fn a_missing_key_is_an_error_naming_the_template() {
        let template = ExternalSecretTemplate {
            data: BTreeMap::from([("dsn".into(), "{{ .nope }}".into())]),
            ..ExternalSecretTemplate::default()
        };
        let error = desired_secret(&es(Some(template)), data(), &[]).unwrap_err();
        assert!(error.contains("ExternalSecret ns/app"), "{error}");
        assert!(error.contains("dsn"), "{error}");
        assert!(!error.contains("pw"), "{error}");
    }

    #[test]
    fn templates_unpack_a_base64_pkcs12_bundle_with_upstreams_functions() {
        use base64::Engine as _;
        let bundle = include_bytes!("../../template/testdata/pki/nopass.p12");
        let data = BTreeMap::from([(
            "bundle".to_string(),
            SecretBytes::from(
                base64::engine::general_purpose::STANDARD
                    .encode(bundle)
                    .into_bytes(),
            ),
        )]);
        let template = ExternalSecretTemplate {
            type_: Some("kubernetes.io/tls".into()),
            data: BTreeMap::from([
                (
                    "tls.crt".into(),
                    "{{ .bundle | b64dec | pkcs12cert }}".into(),
                ),
                (
                    "tls.key".into(),
                    "{{ .bundle | b64dec | pkcs12key }}".into(),
                ),
                (
                    "ca.crt".into(),
                    "{{ .bundle | b64dec | pkcs12cert | filterCertChain \"root\" }}".into(),
                ),
            ]),
            ..ExternalSecretTemplate::default()
        };
        let secret = desired_secret(&es(Some(template)), data, &[]).unwrap();
        assert!(text(&secret, "tls.key").starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert_eq!(
            text(&secret, "tls.crt")
                .matches("BEGIN CERTIFICATE")
                .count(),
            3
        );
        assert_eq!(
            text(&secret, "ca.crt").matches("BEGIN CERTIFICATE").count(),
            1
        );
    }

    /// A binary remote value (AWS `SecretBinary`, `decodingStrategy: Base64`) is a Go
    /// string of its bytes: the pkcs12 functions read it, and printed as it is it reaches
    /// the Secret's data unchanged; only labels and annotations must be text.
    #[test]
    fn binary_values_are_templated_and_reach_data_byte_for_byte() {
        let bundle = include_bytes!("../../template/testdata/pki/nopass.p12");
        let data = BTreeMap::from([("keystore".to_string(), SecretBytes::from(bundle.to_vec()))]);
        let template = ExternalSecretTemplate {
            data: BTreeMap::from([
                ("tls.crt".into(), "{{ .keystore | pkcs12cert }}".into()),
                ("keystore.p12".into(), "{{ .keystore }}".into()),
            ]),
            ..ExternalSecretTemplate::default()
        };
        let secret = desired_secret(&es(Some(template)), data.clone(), &[]).unwrap();
        assert_eq!(
            text(&secret, "tls.crt")
                .matches("BEGIN CERTIFICATE")
                .count(),
            3
        );
        assert_eq!(secret.data["keystore.p12"].expose(), bundle);
        let template = ExternalSecretTemplate {
            metadata: Some(TemplateMetadata {
                annotations: BTreeMap::from([("raw".into(), "{{ .keystore }}".into())]),
                ..TemplateMetadata::default()
            }),
            ..ExternalSecretTemplate::default()
        };
        let error = desired_secret(&es(Some(template)), data, &[]).unwrap_err();
        assert!(
            error.contains("annotation \"raw\" did not render UTF-8 text"),
            "{error}"
        );
    }
}
