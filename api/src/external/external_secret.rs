//! ExternalSecret: which remote secrets of which store become which Kubernetes Secret.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{dns_subdomain, secret_data_key};

/// Desired state of an ExternalSecret. The rules upstream's admission webhook enforces are
/// CEL rules of the kind (not of this type, which ClusterExternalSecret embeds unvalidated as
/// upstream does), except duplicate `secretKey`s and a generator next to extract or find: CEL
/// rules for those exceed the API server's cost budget, so the reconciler reports them.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[kube(
    group = "external-secrets.io",
    version = "v1",
    kind = "ExternalSecret",
    plural = "externalsecrets",
    shortname = "es",
    category = "external-secrets",
    namespaced,
    doc = "Remote secrets of a SecretStore synced into a Kubernetes Secret.",
    status = "ExternalSecretStatus",
    printcolumn = r#"{"name":"StoreType","type":"string","jsonPath":".spec.secretStoreRef.kind"}"#,
    printcolumn = r#"{"name":"Store","type":"string","jsonPath":".spec.secretStoreRef.name"}"#,
    printcolumn = r#"{"name":"Refresh Interval","type":"string","jsonPath":".spec.refreshInterval"}"#,
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    validation = Rule::new(
        "(has(self.spec.data) && size(self.spec.data) > 0) || (has(self.spec.dataFrom) && size(self.spec.dataFrom) > 0)"
    ).message("either data or dataFrom should be specified"),
    validation = Rule::new(
        "!has(self.spec.target) || !has(self.spec.target.deletionPolicy) || self.spec.target.deletionPolicy != 'Delete' || !has(self.spec.target.creationPolicy) || !(self.spec.target.creationPolicy in ['Merge', 'None'])"
    ).message("deletionPolicy=Delete must not be used when the controller does not own the Secret: set creationPolicy=Owner"),
    validation = Rule::new(
        "!has(self.spec.target) || !has(self.spec.target.deletionPolicy) || self.spec.target.deletionPolicy != 'Merge' || !has(self.spec.target.creationPolicy) || self.spec.target.creationPolicy != 'None'"
    ).message("deletionPolicy=Merge must not be used with creationPolicy=None: there is no Secret to merge with"),
    validation = Rule::new(
        "!has(self.spec.dataFrom) || self.spec.dataFrom.all(d, has(d.extract) || has(d.find) || has(d.sourceRef))"
    ).message("each dataFrom entry needs extract, find or sourceRef"),
    // extract with sourceRef.generatorRef (or find with it) is the reconciler's to refuse:
    // with those rules the CRD exceeds the API server's CEL cost budget.
    validation = Rule::new(
        "!has(self.spec.dataFrom) || self.spec.dataFrom.all(d, !has(d.extract) || !has(d.find))"
    ).message("a dataFrom entry takes one of extract, find or sourceRef.generatorRef, not several")
)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretSpec {
    /// The store to read from (unless an entry's `sourceRef` names another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_store_ref: Option<SecretStoreRef>,
    /// The Secret to write and how to own it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = { "creationPolicy": "Owner", "deletionPolicy": "Retain" }))]
    pub target: Option<ExternalSecretTarget>,
    /// When to refresh: `Periodic` (unset behaves so), `OnChange` or `CreatedOnce`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_policy: Option<RefreshPolicy>,
    /// Time between refreshes (a Go duration); `0s` syncs once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "1h"))]
    pub refresh_interval: Option<String>,
    /// Windows (cron schedules, UTC) in which refreshes are allowed or denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_windows: Option<SyncWindows>,
    /// Single remote values, each into one key of the Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<ExternalSecretData>,
    /// Remote secrets whose keys all go into the Secret (extract, find or a generator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_from: Vec<ExternalSecretDataFrom>,
}

impl ExternalSecretSpec {
    /// The name of the Secret it writes: `target.name`, else `name` (its ExternalSecret's).
    pub fn target_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.target
            .as_ref()
            .and_then(|t| t.name.as_deref())
            .unwrap_or(name)
    }
}

/// A store by name and kind.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretStoreRef {
    /// Name of the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "dns_subdomain")]
    pub name: Option<String>,
    /// `SecretStore` (the default) or `ClusterSecretStore`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<StoreKind>,
}

#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum StoreKind {
    SecretStore,
    ClusterSecretStore,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum RefreshPolicy {
    CreatedOnce,
    Periodic,
    OnChange,
}

/// Refresh windows; a refresh outside an `allow` window or inside a `deny` one waits.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncWindows {
    /// `allow` or `deny`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The windows.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<SyncWindow>,
}

/// A window: it opens at each time of `schedule` and lasts `duration`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SyncWindow {
    /// A cron schedule in UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// A Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
}

/// The Secret that an ExternalSecret writes.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretTarget {
    /// Name of the Secret; defaults to the ExternalSecret's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "dns_subdomain")]
    pub name: Option<String>,
    /// Who owns the Secret and whether it is created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Owner"))]
    pub creation_policy: Option<CreationPolicy>,
    /// What happens to the Secret when the remote secrets are gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Retain"))]
    pub deletion_policy: Option<DeletionPolicy>,
    /// Shape of the Secret (type, metadata, templated data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ExternalSecretTemplate>,
    /// Whether the Secret is created immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum CreationPolicy {
    /// Created and owned (owner reference): deleted with the ExternalSecret.
    Owner,
    /// Created, not owned: kept when the ExternalSecret goes.
    Orphan,
    /// Not created: keys merged into an existing Secret.
    Merge,
    /// No Secret is written.
    None,
    /// Created if missing, merged into otherwise.
    CreateOrMerge,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// The Secret is deleted.
    Delete,
    /// The keys are removed from the Secret.
    Merge,
    /// The Secret is kept as it is.
    Retain,
}

/// Template of the Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretTemplate {
    /// Type of the Secret, e.g. `kubernetes.io/tls`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Template engine: only `v2` (Go text/template with sprig).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "v2"))]
    pub engine_version: Option<TemplateEngineVersion>,
    /// Labels, annotations and finalizers of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// `Replace` the provider's data with the templated data, or `Merge` the two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Replace"))]
    pub merge_policy: Option<TemplateMergePolicy>,
    /// Templates by key of the Secret.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Templates read from ConfigMaps, Secrets or literals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub template_from: Vec<TemplateFrom>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum TemplateEngineVersion {
    #[serde(rename = "v2")]
    V2,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum TemplateMergePolicy {
    Replace,
    Merge,
}

/// Metadata the Secret gets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

/// One source of templates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateFrom {
    /// Templates from keys of a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<TemplateRef>,
    /// Templates from keys of a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<TemplateRef>,
    /// Where the output goes: `Data` (the default), `Annotations`, `Labels`, or a path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Data"))]
    pub target: Option<String>,
    /// One template given inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub literal: Option<String>,
    /// How the values of the referenced ConfigMap or Secret are decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_decoding_strategy: Option<DecodingStrategy>,
}

/// A ConfigMap or Secret holding templates.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRef {
    /// Its name, in the ExternalSecret's namespace.
    #[schemars(schema_with = "dns_subdomain")]
    pub name: String,
    /// The keys used.
    pub items: Vec<TemplateRefItem>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TemplateRefItem {
    /// A key of the ConfigMap or Secret.
    #[schemars(schema_with = "secret_data_key")]
    pub key: String,
    /// Whether the value is a template of `Values` or of `KeysAndValues`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Values"))]
    pub template_as: Option<TemplateScope>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum TemplateScope {
    Values,
    KeysAndValues,
}

/// One remote value into one key of the Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretData {
    /// The key of the Secret.
    #[schemars(schema_with = "secret_data_key")]
    pub secret_key: String,
    /// The remote value.
    pub remote_ref: RemoteRef,
    /// Another store (or a generator) for this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<SourceRef>,
}

/// A remote secret, or one property or version of it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RemoteRef {
    /// Name or path of the remote secret.
    pub key: String,
    /// `Fetch` reads the secret's metadata (tags, custom metadata) instead of its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "None"))]
    pub metadata_policy: Option<MetadataPolicy>,
    /// A JSON property of the value (a dotted path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// A version of the secret (provider-specific).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How keys are converted (`Unicode` escapes characters Secrets do not allow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Default"))]
    pub conversion_strategy: Option<ConversionStrategy>,
    /// How values are decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "None"))]
    pub decoding_strategy: Option<DecodingStrategy>,
    /// Whether a value with a NUL byte is kept (`Ignore`) or an error (`Fail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub null_byte_policy: Option<NullBytePolicy>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum MetadataPolicy {
    None,
    Fetch,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum ConversionStrategy {
    Default,
    Unicode,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum DecodingStrategy {
    Auto,
    Base64,
    #[serde(rename = "Base64URL")]
    Base64Url,
    None,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, JsonSchema, PartialEq, Eq)]
pub enum NullBytePolicy {
    Ignore,
    Fail,
}

/// Remote secrets whose keys all go into the Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretDataFrom {
    /// Every key of one remote secret (a JSON object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<RemoteRef>,
    /// Every remote secret matching a name, path or tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find: Option<ExternalSecretFind>,
    /// Rewrites of the keys found, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rewrite: Vec<Rewrite>,
    /// Another store, or a generator, for this entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<SourceRef>,
}

/// A search of remote secrets.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretFind {
    /// Path prefix the secrets are under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Name pattern the secrets match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<FindName>,
    /// Tags the secrets carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Default"))]
    pub conversion_strategy: Option<ConversionStrategy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "None"))]
    pub decoding_strategy: Option<DecodingStrategy>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FindName {
    /// A regular expression (Go syntax) over secret names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<String>,
}

/// One rewrite of keys: a regular expression or a template.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regexp: Option<RewriteRegexp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<RewriteTransform>,
}

/// Replaces every match of `source` in a key with `target` (`$1` expands groups).
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RewriteRegexp {
    pub source: String,
    pub target: String,
}

/// Replaces a key with the template's output (`.value` is the key).
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RewriteTransform {
    pub template: String,
}

/// Where one entry reads from instead of the ExternalSecret's store: exactly one of these.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct SourceRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_ref: Option<SecretStoreRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_ref: Option<GeneratorRef>,
}

/// A generator (`generators.external-secrets.io`) resource. sealsync runs no generators;
/// the field is typed so that upstream's manifests stay valid.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "generators.external-secrets.io/v1alpha1"))]
    pub api_version: Option<String>,
    /// Kind of the generator, e.g. `Password`.
    pub kind: String,
    #[schemars(schema_with = "dns_subdomain")]
    pub name: String,
}

/// Observed state of an ExternalSecret, as upstream writes it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretStatus {
    /// When the Secret was last refreshed from the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub refresh_time: Option<String>,
    /// `<generation>-<hash of labels and annotations>` of the last synced ExternalSecret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_resource_version: Option<String>,
    /// `Ready` (and `Deleted` while going); never written empty (Argo CD's health check
    /// reads an empty list as unhealthy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<ExternalSecretCondition>,
    /// The Secret written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-map-type" = "atomic"))]
    pub binding: Option<SecretBinding>,
}

/// A condition of an ExternalSecret (or of a store: same shape).
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretCondition {
    /// `Ready` or `Deleted`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: Option<String>,
}

/// The Secret an ExternalSecret writes, by name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretBinding {
    #[serde(default)]
    pub name: String,
}
