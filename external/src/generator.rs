//! ExternalSecrets as a generator of the sync engine: the plan of an ExternalSecret (its
//! target, policies and refresh from `creationPolicy`, `deletionPolicy` and
//! `refreshPolicy`), its Secret read from the providers of its stores and shaped by its
//! template, and its status as upstream writes it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::jiff::Timestamp;
use regex::Regex;
use sealsync_api::external::{
    CONDITION_READY, CreationPolicy, DeletionPolicy, ExternalSecret, ExternalSecretCondition,
    ExternalSecretDataFrom, ExternalSecretStatus, REASON_SECRET_DELETED, REASON_SECRET_MISSING,
    REASON_SECRET_SYNCED, REASON_SECRET_SYNCED_ERROR, RefreshPolicy, RemoteRef as EsRemoteRef,
    STATUS_FALSE, STATUS_TRUE, SecretBinding, SecretStoreRef, StoreKind, TemplateRef,
    TemplateScope,
};
use sealsync_api::parse_go_duration;
use sealsync_crypto::SecretBytes;
use sealsync_engine::{
    AppliedAction, Dependency, Desired, Generator, Outcome, Ownership, Plan, Policy, ReasonedError,
    SecretRef, WhenAbsent, digest_of,
};
use sealsync_providers::{
    ConversionStrategy, DecodingStrategy, ErrorKind, Find, NullBytePolicy, ProviderError,
    RemoteRef, SecretProvider, check_null_bytes, convert_key, decode, split_object,
};
use sealsync_template::{Functions, Options, Template, Value};
use serde_json::json;

use crate::clients::{Clients, Fetched, Provider, Read, SharedReads};
use crate::hash;
use crate::lookups::Lookups;
use crate::metrics::EsoMetrics;
use crate::stores::{self, Store, StoreError, StoreKey, Stores};
use crate::template::{Destination, TemplateSource, desired_secret};

/// `refreshInterval` when unset.
const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
/// How old a shared read may be for an ExternalSecret never refreshed by time: its data
/// stays as read, so it must be recent.
const UNREFRESHED_WINDOW: Duration = Duration::from_secs(5 * 60);
/// A Secret key, as the API server allows it.
const KEY_PATTERN: &str = "^[-._a-zA-Z0-9]+$";

/// Syncs ExternalSecrets from the stores the store controller keeps.
pub struct ExternalSecretGenerator {
    lookups: Lookups,
    stores: Arc<Stores>,
    clients: Arc<Clients>,
    reads: SharedReads,
    metrics: EsoMetrics,
}

impl std::fmt::Debug for ExternalSecretGenerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalSecretGenerator")
            .finish_non_exhaustive()
    }
}

/// Why an ExternalSecret was not synced: one line naming it, its store and the remote key,
/// never a value.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("ExternalSecret {object}: {problem}")]
    Invalid { object: String, problem: String },
    /// A template that failed; the message names the ExternalSecret and the key.
    #[error("{0}")]
    Template(String),
    #[error("ExternalSecret {object}: {source}")]
    Store {
        object: String,
        source: Box<StoreError>,
    },
    #[error("ExternalSecret {object}: {store}: {source}")]
    Provider {
        object: String,
        store: StoreKey,
        source: Box<ProviderError>,
    },
}

impl ReasonedError for SyncError {
    fn reason(&self) -> &'static str {
        "UpdateFailed"
    }
}

/// What a sync learnt that the status says.
#[derive(Debug, Default)]
pub struct SyncReport {
    /// Remote secrets that do not exist, skipped (deletionPolicy Delete or Merge).
    pub missing: usize,
    /// No data, and the Secret kept as it is (deletionPolicy Retain).
    pub retained: bool,
    /// When the oldest provider read of the sync was made (shared reads are older than
    /// the sync).
    pub read_at: Option<SystemTime>,
}

fn object_of(es: &ExternalSecret) -> String {
    format!(
        "{}/{}",
        es.metadata.namespace.as_deref().unwrap_or_default(),
        es.metadata.name.as_deref().unwrap_or_default()
    )
}

/// `status.syncedResourceVersion` of `es` as it is now: its generation and the hash of its
/// labels and annotations (so `force-sync` annotations count).
pub fn synced_resource_version(es: &ExternalSecret) -> String {
    format!(
        "{}-{}",
        es.metadata.generation.unwrap_or_default(),
        hash::metadata_hash(
            &es.metadata.labels.clone().unwrap_or_default(),
            &es.metadata.annotations.clone().unwrap_or_default()
        )
    )
}

fn creation(es: &ExternalSecret) -> CreationPolicy {
    es.spec
        .target
        .as_ref()
        .and_then(|t| t.creation_policy)
        .unwrap_or(CreationPolicy::Owner)
}

fn deletion(es: &ExternalSecret) -> DeletionPolicy {
    es.spec
        .target
        .as_ref()
        .and_then(|t| t.deletion_policy)
        .unwrap_or(DeletionPolicy::Retain)
}

/// The refresh interval of a periodic ExternalSecret; `None`: never refreshed by time.
fn refresh(es: &ExternalSecret) -> Result<Option<Duration>, String> {
    if matches!(
        es.spec.refresh_policy,
        Some(RefreshPolicy::CreatedOnce | RefreshPolicy::OnChange)
    ) {
        return Ok(None);
    }
    let interval = match &es.spec.refresh_interval {
        Some(text) => parse_go_duration(text).map_err(|e| format!("refreshInterval: {e}"))?,
        None => DEFAULT_REFRESH,
    };
    Ok(Some(interval).filter(|i| !i.is_zero()))
}

/// The store an entry reads from: its own `sourceRef.storeRef`, else the ExternalSecret's.
fn store_key(es: &ExternalSecret, own: Option<&SecretStoreRef>) -> Result<StoreKey, String> {
    let reference = own
        .or(es.spec.secret_store_ref.as_ref())
        .ok_or("no secretStoreRef")?;
    let name = reference.name.clone().ok_or("secretStoreRef has no name")?;
    let kind = reference.kind.unwrap_or(StoreKind::SecretStore);
    Ok(StoreKey {
        kind,
        namespace: match kind {
            StoreKind::SecretStore => es.metadata.namespace.clone(),
            StoreKind::ClusterSecretStore => None,
        },
        name,
    })
}

/// Every store `es` reads from.
fn store_keys(es: &ExternalSecret) -> Result<BTreeSet<StoreKey>, String> {
    let own_refs = es
        .spec
        .data
        .iter()
        .map(|d| d.source_ref.as_ref().and_then(|s| s.store_ref.as_ref()))
        .chain(
            es.spec
                .data_from
                .iter()
                .map(|d| d.source_ref.as_ref().and_then(|s| s.store_ref.as_ref())),
        );
    own_refs.map(|own| store_key(es, own)).collect()
}

/// What the reconciler refuses that upstream's webhook refuses and CEL cannot, and the
/// CRD's ownership rules again for objects no API server checked (a repository's, for
/// `sealsync sync`).
fn check_spec(es: &ExternalSecret) -> Result<(), String> {
    let creation = es.spec.target.as_ref().and_then(|t| t.creation_policy);
    match (creation, deletion(es)) {
        (Some(CreationPolicy::Merge | CreationPolicy::None), DeletionPolicy::Delete) => {
            return Err(
                "deletionPolicy Delete deletes a Secret this ExternalSecret does not own \
                 (creationPolicy Merge or None): set creationPolicy Owner"
                    .into(),
            );
        }
        (Some(CreationPolicy::None), DeletionPolicy::Merge) => {
            return Err(
                "deletionPolicy Merge with creationPolicy None has no Secret to merge with".into(),
            );
        }
        _ => {}
    }
    let mut keys = BTreeSet::new();
    for data in &es.spec.data {
        if !keys.insert(&data.secret_key) {
            return Err(format!("duplicate secretKey {:?} in data", data.secret_key));
        }
        if data
            .source_ref
            .as_ref()
            .is_some_and(|s| s.generator_ref.is_some())
        {
            return Err("generatorRef is not supported (sealsync runs no generators)".into());
        }
    }
    for entry in &es.spec.data_from {
        if entry
            .source_ref
            .as_ref()
            .is_some_and(|s| s.generator_ref.is_some())
        {
            return Err("generatorRef is not supported (sealsync runs no generators)".into());
        }
    }
    Ok(())
}

fn decoding(strategy: Option<sealsync_api::external::DecodingStrategy>) -> DecodingStrategy {
    use sealsync_api::external::DecodingStrategy as D;
    match strategy {
        Some(D::Auto) => DecodingStrategy::Auto,
        Some(D::Base64) => DecodingStrategy::Base64,
        Some(D::Base64Url) => DecodingStrategy::Base64Url,
        Some(D::None) | None => DecodingStrategy::None,
    }
}

fn conversion(strategy: Option<sealsync_api::external::ConversionStrategy>) -> ConversionStrategy {
    match strategy {
        Some(sealsync_api::external::ConversionStrategy::Unicode) => ConversionStrategy::Unicode,
        _ => ConversionStrategy::Default,
    }
}

fn null_bytes(policy: Option<sealsync_api::external::NullBytePolicy>) -> NullBytePolicy {
    match policy {
        Some(sealsync_api::external::NullBytePolicy::Fail) => NullBytePolicy::Fail,
        _ => NullBytePolicy::Ignore,
    }
}

fn remote_ref(r: &EsRemoteRef) -> RemoteRef {
    RemoteRef {
        key: r.key.clone(),
        property: r.property.clone().filter(|p| !p.is_empty()),
        version: r.version.clone().filter(|v| !v.is_empty()),
        metadata: r.metadata_policy == Some(sealsync_api::external::MetadataPolicy::Fetch),
    }
}

/// Applies `rewrite`s in order to each key found.
fn rewrite_keys(
    entry: &ExternalSecretDataFrom,
    map: BTreeMap<String, SecretBytes>,
) -> Result<BTreeMap<String, SecretBytes>, String> {
    let mut map = map;
    for rewrite in &entry.rewrite {
        map = if let Some(regexp) = &rewrite.regexp {
            let pattern = Regex::new(&regexp.source)
                .map_err(|e| format!("rewrite regexp {:?}: {e}", regexp.source))?;
            map.into_iter()
                .map(|(k, v)| {
                    (
                        pattern.replace_all(&k, regexp.target.as_str()).into_owned(),
                        v,
                    )
                })
                .collect()
        } else if let Some(transform) = &rewrite.transform {
            let options = Options {
                functions: Functions::sprig(),
                ..Options::default()
            };
            let template = Template::parse(&transform.template, options)
                .map_err(|e| format!("rewrite transform: {e}"))?;
            map.into_iter()
                .map(|(k, v)| {
                    let context = Value::Map(HashMap::from([(
                        "value".to_string(),
                        Value::String(k.clone()),
                    )]));
                    let key = template
                        .render(&context)
                        .map_err(|e| format!("rewrite transform of key {k:?}: {e}"))?;
                    Ok((key, v))
                })
                .collect::<Result<_, String>>()?
        } else {
            map
        };
    }
    Ok(map)
}

/// Reads the providers of one sync: a client per store, connected once.
struct Sync<'a> {
    generator: &'a ExternalSecretGenerator,
    es: &'a ExternalSecret,
    object: String,
    namespace: String,
    /// How old a shared read may be; `None`: read afresh.
    window: Option<Duration>,
    /// When the oldest read it used was made.
    read_at: Option<SystemTime>,
    connected: HashMap<StoreKey, (Arc<Provider>, String)>,
}

impl Sync<'_> {
    fn invalid(&self, problem: impl std::fmt::Display) -> SyncError {
        SyncError::Invalid {
            object: self.object.clone(),
            problem: problem.to_string(),
        }
    }

    async fn provider(&mut self, key: &StoreKey) -> Result<(Arc<Provider>, String), SyncError> {
        if let Some(connected) = self.connected.get(key) {
            return Ok(connected.clone());
        }
        let store_error = |source| SyncError::Store {
            object: self.object.clone(),
            source: Box::new(source),
        };
        let store: Arc<Store> = self
            .generator
            .stores
            .get(key)
            .ok_or_else(|| store_error(StoreError::Missing { store: key.clone() }))?;
        let lookups = &self.generator.lookups;
        stores::check_allowed(lookups, &store, &self.namespace)
            .await
            .map_err(store_error)?;
        let resolved = stores::resolve(lookups, &store, &self.namespace)
            .await
            .map_err(store_error)?;
        let digest = resolved.digest.clone();
        let provider = self
            .generator
            .clients
            .client(key, resolved)
            .await
            .map_err(|source| SyncError::Provider {
                object: self.object.clone(),
                store: key.clone(),
                source: Box::new(source),
            })?;
        self.connected
            .insert(key.clone(), (provider.clone(), digest.clone()));
        Ok((provider, digest))
    }

    /// One read; `Ok(None)` when the remote secret does not exist.
    async fn read(
        &mut self,
        store: &StoreKey,
        read: Read,
    ) -> Result<Option<Arc<Fetched>>, SyncError> {
        let (provider, digest) = self.provider(store).await?;
        match self
            .generator
            .reads
            .read(
                &digest,
                &provider,
                read,
                self.window,
                &self.generator.metrics,
            )
            .await
        {
            Ok((fetched, read_at)) => {
                self.read_at = Some(self.read_at.map_or(read_at, |t| t.min(read_at)));
                Ok(Some(fetched))
            }
            Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
            Err(source) => Err(self.provider_error(store, source)),
        }
    }

    fn provider_error(&self, store: &StoreKey, source: ProviderError) -> SyncError {
        SyncError::Provider {
            object: self.object.clone(),
            store: store.clone(),
            source: Box::new(source),
        }
    }

    fn missing(&self, store: &StoreKey, key: &str) -> SyncError {
        SyncError::Provider {
            object: self.object.clone(),
            store: store.clone(),
            source: Box::new(ProviderError {
                kind: ErrorKind::NotFound,
                provider: "provider",
                operation: "read",
                key: key.into(),
                reason: "the remote secret does not exist (deletionPolicy Retain keeps the \
                         Secret as it is)"
                    .into(),
            }),
        }
    }

    fn decoded(
        &self,
        what: &str,
        value: &SecretBytes,
        strategy: DecodingStrategy,
        nulls: NullBytePolicy,
    ) -> Result<SecretBytes, SyncError> {
        let value =
            decode(value.clone(), strategy).map_err(|e| self.invalid(format!("{what}: {e}")))?;
        check_null_bytes(&value, nulls).map_err(|e| self.invalid(format!("{what}: {e}")))?;
        Ok(value)
    }

    /// The provider data of the ExternalSecret: `dataFrom` in order, then `data`, which
    /// wins.
    async fn data(
        &mut self,
        report: &mut SyncReport,
    ) -> Result<BTreeMap<String, SecretBytes>, SyncError> {
        let es = self.es;
        let retain = deletion(es) == DeletionPolicy::Retain;
        let key_pattern = Regex::new(KEY_PATTERN).expect("a valid pattern");
        let mut data = BTreeMap::new();
        for entry in &es.spec.data_from {
            let store = store_key(
                es,
                entry.source_ref.as_ref().and_then(|s| s.store_ref.as_ref()),
            )
            .map_err(|e| self.invalid(e))?;
            let (read, what, strategy, convert, nulls) = match (&entry.extract, &entry.find) {
                (Some(extract), None) => (
                    Read::payload(&remote_ref(extract)),
                    format!("dataFrom.extract of \"{}\"", extract.key),
                    decoding(extract.decoding_strategy),
                    conversion(extract.conversion_strategy),
                    null_bytes(extract.null_byte_policy),
                ),
                (None, Some(find)) => (
                    Read::Find(Find {
                        path: find.path.clone().filter(|p| !p.is_empty()),
                        name: find.name.as_ref().and_then(|n| n.regexp.clone()),
                        tags: find.tags.clone(),
                    }),
                    "dataFrom.find".to_string(),
                    decoding(find.decoding_strategy),
                    conversion(find.conversion_strategy),
                    NullBytePolicy::Ignore,
                ),
                _ => {
                    return Err(
                        self.invalid("each dataFrom entry needs exactly one of extract or find")
                    );
                }
            };
            let extract = entry.extract.as_ref().map(remote_ref);
            let key = extract.as_ref().map(|r| r.key.clone()).unwrap_or_default();
            let Some(fetched) = self.read(&store, read).await? else {
                if retain {
                    return Err(self.missing(&store, &key));
                }
                report.missing += 1;
                continue;
            };
            let map = match (fetched.as_ref(), &extract) {
                (Fetched::Found(map), _) => map.clone(),
                (Fetched::Payload(payload), Some(reference)) => {
                    let (provider, _) = self.provider(&store).await?;
                    let selected = match provider.select(payload, reference) {
                        Ok(selected) => selected,
                        Err(e) if e.kind == ErrorKind::NotFound && !retain => {
                            report.missing += 1;
                            continue;
                        }
                        Err(source) => return Err(self.provider_error(&store, source)),
                    };
                    split_object(&selected, reference)
                        .map_err(|source| self.provider_error(&store, source))?
                }
                (Fetched::Payload(_), None) => unreachable!("only extract reads a payload here"),
            };
            let map = if entry.rewrite.is_empty() {
                map.into_iter()
                    .map(|(k, v)| (convert_key(&k, convert), v))
                    .collect()
            } else {
                rewrite_keys(entry, map).map_err(|e| self.invalid(format!("{what}: {e}")))?
            };
            for (k, v) in map {
                if !key_pattern.is_match(&k) || k.len() > 253 {
                    return Err(self.invalid(format!(
                        "{what} gives key {k:?}, which a Secret cannot hold: add a rewrite"
                    )));
                }
                let value = self.decoded(&format!("{what}, key {k:?}"), &v, strategy, nulls)?;
                data.insert(k, value);
            }
        }
        for entry in &es.spec.data {
            let store = store_key(
                es,
                entry.source_ref.as_ref().and_then(|s| s.store_ref.as_ref()),
            )
            .map_err(|e| self.invalid(e))?;
            let remote = &entry.remote_ref;
            let reference = remote_ref(remote);
            let Some(fetched) = self.read(&store, Read::payload(&reference)).await? else {
                if retain {
                    return Err(self.missing(&store, &remote.key));
                }
                report.missing += 1;
                continue;
            };
            let Fetched::Payload(payload) = fetched.as_ref() else {
                unreachable!("payloads are read as payloads");
            };
            let (provider, _) = self.provider(&store).await?;
            let value = match provider.select(payload, &reference) {
                Ok(value) => value,
                Err(e) if e.kind == ErrorKind::NotFound && !retain => {
                    report.missing += 1;
                    continue;
                }
                Err(source) => return Err(self.provider_error(&store, source)),
            };
            let what = format!(
                "data {:?} (remote key \"{}\")",
                entry.secret_key, remote.key
            );
            let value = self.decoded(
                &what,
                &value,
                decoding(remote.decoding_strategy),
                null_bytes(remote.null_byte_policy),
            )?;
            data.insert(entry.secret_key.clone(), value);
        }
        Ok(data)
    }

    /// The items of the `templateFrom` ConfigMap or Secret (`kind`) `reference`, `found`
    /// by the lookups, each the text that `text` reads of its key.
    fn template_items<T, E: std::fmt::Display>(
        &self,
        kind: &str,
        reference: &TemplateRef,
        found: Result<Option<T>, E>,
        text: impl Fn(&T, &str) -> Option<String>,
    ) -> Result<Vec<(String, String, TemplateScope)>, SyncError> {
        let what = format!("templateFrom {kind} {}", reference.name);
        let object = found
            .map_err(|e| self.invalid(format!("{what}: {e}")))?
            .ok_or_else(|| self.invalid(format!("{what} does not exist")))?;
        reference
            .items
            .iter()
            .map(|item| {
                let value = text(&object, &item.key).ok_or_else(|| {
                    self.invalid(format!("{what} has no text key {:?}", item.key))
                })?;
                Ok((
                    item.key.clone(),
                    value,
                    item.template_as.unwrap_or(TemplateScope::Values),
                ))
            })
            .collect()
    }

    /// The `templateFrom` sources, their ConfigMaps and Secrets read.
    async fn template_sources(&self) -> Result<Vec<TemplateSource>, SyncError> {
        let Some(template) = self
            .es
            .spec
            .target
            .as_ref()
            .and_then(|t| t.template.as_ref())
        else {
            return Ok(Vec::new());
        };
        let mut sources = Vec::new();
        for from in &template.template_from {
            let into = Destination::parse(from.target.as_deref()).map_err(|e| self.invalid(e))?;
            let mut items = Vec::new();
            if let Some(literal) = &from.literal {
                items.push((
                    "literal".to_string(),
                    literal.clone(),
                    TemplateScope::KeysAndValues,
                ));
            }
            let lookups = &self.generator.lookups;
            if let Some(reference) = &from.config_map {
                let found = lookups.config_map(&self.namespace, &reference.name).await;
                items.extend(
                    self.template_items("ConfigMap", reference, found, |map, key| {
                        map.data.as_ref()?.get(key).cloned()
                    })?,
                );
            }
            if let Some(reference) = &from.secret {
                let found = lookups.secret(&self.namespace, &reference.name).await;
                items.extend(
                    self.template_items("Secret", reference, found, |secret, key| {
                        String::from_utf8(secret.data.as_ref()?.get(key)?.0.clone()).ok()
                    })?,
                );
            }
            sources.push(TemplateSource { into, items });
        }
        Ok(sources)
    }
}

impl ExternalSecretGenerator {
    pub fn new(
        lookups: Lookups,
        stores: Arc<Stores>,
        clients: Arc<Clients>,
        metrics: EsoMetrics,
    ) -> Self {
        Self {
            lookups,
            stores,
            clients,
            reads: SharedReads::default(),
            metrics,
        }
    }

    /// What the stores of `es` are now, for the input digest: a changed store re-syncs.
    fn stores_state(&self, es: &ExternalSecret) -> Vec<(String, Option<(String, i64)>)> {
        store_keys(es)
            .unwrap_or_default()
            .into_iter()
            .map(|key| {
                let state = self.stores.get(&key).map(|s| (s.uid.clone(), s.generation));
                (key.to_string(), state)
            })
            .collect()
    }

    fn digest_for(&self, es: &ExternalSecret, synced_resource_version: &str) -> String {
        if es.spec.refresh_policy == Some(RefreshPolicy::CreatedOnce) {
            return digest_of(&"created-once");
        }
        digest_of(&json!({
            "syncedResourceVersion": synced_resource_version,
            "stores": self.stores_state(es),
        }))
    }
}

fn ready_condition(es: &ExternalSecret) -> Option<&ExternalSecretCondition> {
    es.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_READY)
}

fn now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl Generator for ExternalSecretGenerator {
    type Source = ExternalSecret;
    type Report = SyncReport;
    type Error = SyncError;

    const APPLIED_REASON: &'static str = "Updated";
    const REFUSED_REASON: &'static str = "UpdateFailed";
    const FOREIGN_FINALIZER: Option<&'static str> =
        Some("externalsecrets.external-secrets.io/externalsecret-cleanup");

    fn applied_reason(&self, action: AppliedAction) -> &'static str {
        match action {
            AppliedAction::Created => "Created",
            AppliedAction::Deleted => "Deleted",
            _ => "Updated",
        }
    }

    fn plan(&self, es: &ExternalSecret) -> Result<Plan, SyncError> {
        let object = object_of(es);
        let invalid = |problem: String| SyncError::Invalid {
            object: object.clone(),
            problem,
        };
        let (Some(name), Some(namespace)) =
            (es.metadata.name.clone(), es.metadata.namespace.clone())
        else {
            return Err(invalid("no name or namespace".into()));
        };
        check_spec(es).map_err(invalid)?;
        let target = es.spec.target_name(&name).to_string();
        let (ownership, repair) = match creation(es) {
            CreationPolicy::Owner => (Ownership::Owner, true),
            // Upstream takes an orphaned Secret as always valid: edits stay.
            CreationPolicy::Orphan => (Ownership::Orphan, false),
            CreationPolicy::Merge => (Ownership::Merge { create: false }, true),
            CreationPolicy::CreateOrMerge => (Ownership::Merge { create: true }, true),
            // Nothing is written: the data is read, the status reports it.
            CreationPolicy::None => (Ownership::Merge { create: true }, false),
        };
        let when_absent = match deletion(es) {
            DeletionPolicy::Delete => WhenAbsent::Delete,
            DeletionPolicy::Merge => WhenAbsent::RemoveOwnKeys,
            DeletionPolicy::Retain => WhenAbsent::Keep,
        };
        let keys = store_keys(es).map_err(&invalid)?;
        let mut dependencies: Vec<Dependency> = keys.iter().map(StoreKey::dependency).collect();
        for key in &keys {
            if let Some(store) = self.stores.get(key) {
                dependencies.extend(stores::credential_secrets(&store, &namespace));
            }
        }
        let simple = es.spec.data_from.is_empty()
            && es.spec.target.as_ref().is_none_or(|t| t.template.is_none());
        Ok(Plan {
            target: SecretRef {
                namespace,
                name: target,
            },
            input_digest: self.digest_for(es, &synced_resource_version(es)),
            policy: Policy {
                ownership,
                repair_drift: repair,
                recreate_deleted: repair,
                when_absent,
                refresh: refresh(es).map_err(invalid)?,
            },
            data_keys: simple.then(|| es.spec.data.iter().map(|d| d.secret_key.clone()).collect()),
            dependencies,
        })
    }

    fn forget(&self, es: &ExternalSecret) {
        self.metrics.forget(
            es.metadata.namespace.as_deref().unwrap_or_default(),
            es.metadata.name.as_deref().unwrap_or_default(),
        );
    }

    async fn generate(&self, es: &ExternalSecret) -> Result<(Desired, SyncReport), SyncError> {
        let started = Instant::now();
        let namespace = es.metadata.namespace.clone().unwrap_or_default();
        // A change of the ExternalSecret (spec, labels, force-sync) reads afresh; a refresh,
        // a new ExternalSecret or a repair may share a read made moments ago.
        let changed = es
            .status
            .as_ref()
            .and_then(|s| s.synced_resource_version.as_deref())
            .is_some_and(|synced| synced != synced_resource_version(es));
        let window = refresh(es)
            .ok()
            .flatten()
            .map_or(UNREFRESHED_WINDOW, |interval| interval / 2);
        let mut sync = Sync {
            generator: self,
            es,
            object: object_of(es),
            namespace: namespace.clone(),
            window: (!changed).then_some(window),
            read_at: None,
            connected: HashMap::new(),
        };
        let mut report = SyncReport::default();
        let result = async {
            let data = sync.data(&mut report).await?;
            if data.is_empty() && deletion(es) != DeletionPolicy::Merge {
                report.retained = deletion(es) == DeletionPolicy::Retain;
                return Ok(Desired::Absent);
            }
            let sources = sync.template_sources().await?;
            let secret = desired_secret(es, data, &sources).map_err(SyncError::Template)?;
            Ok(if creation(es) == CreationPolicy::None {
                Desired::Absent
            } else {
                Desired::Secret(secret)
            })
        }
        .await;
        report.read_at = sync.read_at;
        self.metrics.synced(
            &namespace,
            es.metadata.name.as_deref().unwrap_or_default(),
            started.elapsed(),
            result.is_err(),
        );
        result.map(|desired| (desired, report))
    }

    fn synced_digest(&self, es: &ExternalSecret) -> Option<String> {
        let ready = ready_condition(es)?;
        if ready.status != STATUS_TRUE {
            return None;
        }
        let synced = es.status.as_ref()?.synced_resource_version.as_deref()?;
        Some(self.digest_for(es, synced))
    }

    fn data_read_at(&self, report: &SyncReport) -> Option<SystemTime> {
        report.read_at
    }

    fn synced_at(&self, es: &ExternalSecret) -> Option<SystemTime> {
        let time: Timestamp = es.status.as_ref()?.refresh_time.as_deref()?.parse().ok()?;
        Some(SystemTime::from(time))
    }

    fn status(
        &self,
        es: &ExternalSecret,
        outcome: &Outcome<SyncReport>,
    ) -> Option<serde_json::Value> {
        let old = es.status.clone().unwrap_or_default();
        let target = self.plan(es).ok().map(|p| p.target.name);
        let (ready, reason, message, synced) = match outcome {
            Outcome::Unchanged => {
                if ready_condition(es).is_some_and(|c| c.status == STATUS_TRUE) {
                    return None;
                }
                (
                    true,
                    REASON_SECRET_SYNCED,
                    "Secret was synced".to_string(),
                    false,
                )
            }
            Outcome::Applied { action, report, .. } => match action {
                AppliedAction::Deleted => (
                    false,
                    REASON_SECRET_DELETED,
                    "Secret was deleted: the remote secrets are gone (deletionPolicy Delete)"
                        .into(),
                    true,
                ),
                _ if report.retained => (
                    true,
                    REASON_SECRET_SYNCED,
                    "Secret was retained: the remote secrets are gone (deletionPolicy Retain)"
                        .into(),
                    true,
                ),
                _ => (true, REASON_SECRET_SYNCED, "Secret was synced".into(), true),
            },
            Outcome::Refused { message } => {
                let missing =
                    creation(es) == CreationPolicy::Merge && message.contains("does not exist");
                let reason = if missing {
                    REASON_SECRET_MISSING
                } else {
                    REASON_SECRET_SYNCED_ERROR
                };
                (false, reason, message.clone(), false)
            }
            Outcome::Failed { message, .. } => {
                (false, REASON_SECRET_SYNCED_ERROR, message.clone(), false)
            }
        };
        self.metrics.ready(
            es.metadata.namespace.as_deref().unwrap_or_default(),
            es.metadata.name.as_deref().unwrap_or_default(),
            ready,
        );
        let status_text = if ready { STATUS_TRUE } else { STATUS_FALSE };
        let previous = ready_condition(es);
        let transition = previous
            .filter(|c| c.status == status_text)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(now);
        let status = ExternalSecretStatus {
            refresh_time: if synced {
                Some(now())
            } else {
                old.refresh_time.clone()
            },
            synced_resource_version: if synced || ready {
                Some(synced_resource_version(es))
            } else {
                old.synced_resource_version.clone()
            },
            conditions: vec![ExternalSecretCondition {
                type_: CONDITION_READY.into(),
                status: status_text.into(),
                reason: Some(reason.into()),
                message: Some(message),
                last_transition_time: Some(transition),
            }],
            binding: target
                .map(|name| SecretBinding { name })
                .or(old.binding.clone()),
        };
        (status != old).then(|| serde_json::to_value(status).expect("a status serializes"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn with_target(target: serde_json::Value) -> ExternalSecret {
        serde_json::from_value(json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": "db", "namespace": "app" },
            "spec": { "target": target, "data": [
                { "secretKey": "a", "remoteRef": { "key": "k" } },
            ] },
        }))
        .expect("an ExternalSecret")
    }

    #[test]
    fn the_crds_ownership_rules_hold_for_objects_no_api_server_checked() {
        let refused = |target| check_spec(&with_target(target)).unwrap_err();
        for creation in ["Merge", "None"] {
            let problem =
                refused(json!({ "creationPolicy": creation, "deletionPolicy": "Delete" }));
            assert!(problem.contains("set creationPolicy Owner"), "{problem}");
        }
        let problem = refused(json!({ "creationPolicy": "None", "deletionPolicy": "Merge" }));
        assert!(problem.contains("no Secret to merge with"), "{problem}");
        for allowed in [
            json!({ "creationPolicy": "Owner", "deletionPolicy": "Delete" }),
            json!({ "creationPolicy": "CreateOrMerge", "deletionPolicy": "Delete" }),
            json!({ "creationPolicy": "Merge", "deletionPolicy": "Merge" }),
            json!({}),
        ] {
            assert_eq!(
                check_spec(&with_target(allowed.clone())),
                Ok(()),
                "{allowed}"
            );
        }
    }
}
