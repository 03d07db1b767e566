//! Connected provider clients, kept per store configuration (a Vault token is logged in
//! once and reused, not once per reconcile), and the shared reads that make the remote
//! secret, not the ExternalSecret, the unit of polling: ExternalSecrets that read the same
//! remote key through the same store and credentials within one window share one call.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};

use sealsync_crypto::SecretBytes;
use sealsync_engine::backoff::Backoff;
use sealsync_providers::aws::{BATCH, SecretsManager};
use sealsync_providers::fake::Fake;
use sealsync_providers::vault::Vault;
use sealsync_providers::{ErrorKind, Find, ProviderError, RemoteRef, SecretProvider};
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use crate::metrics::EsoMetrics;
use crate::stores::{ProviderConfig, Resolved, StoreKey};

/// A connected client of one provider.
#[derive(Debug)]
pub enum Provider {
    Aws(SecretsManager),
    Vault(Box<Vault>),
    Fake(Fake),
}

impl Provider {
    /// The provider's name in `externalsecret_provider_api_calls_count`, as upstream's.
    fn metric_name(&self) -> &'static str {
        match self {
            Provider::Aws(_) => "AWS/SecretsManager",
            Provider::Vault(_) => "HashiCorp/Vault",
            Provider::Fake(_) => "Fake",
        }
    }

    async fn connect(config: ProviderConfig) -> Result<Self, ProviderError> {
        Ok(match config {
            ProviderConfig::Aws(config) => Provider::Aws(SecretsManager::connect(config).await?),
            ProviderConfig::Vault(config) => {
                Provider::Vault(Box::new(Vault::connect(config).await?))
            }
            ProviderConfig::Fake(secrets) => Provider::Fake(Fake::new(secrets)),
        })
    }

    /// Gives back what the store logged in with (Vault tokens), once it is not used.
    async fn release(&self) {
        if let Provider::Vault(vault) = self
            && let Err(e) = vault.revoke().await
        {
            warn!(error = %e, "cannot revoke the Vault token of a store no longer used");
        }
    }
}

impl SecretProvider for Provider {
    async fn read(&self, reference: &RemoteRef) -> Result<SecretBytes, ProviderError> {
        match self {
            Provider::Aws(p) => p.read(reference).await,
            Provider::Vault(p) => p.read(reference).await,
            Provider::Fake(p) => p.read(reference).await,
        }
    }

    fn select(
        &self,
        payload: &SecretBytes,
        reference: &RemoteRef,
    ) -> Result<SecretBytes, ProviderError> {
        match self {
            Provider::Aws(p) => p.select(payload, reference),
            Provider::Vault(p) => p.select(payload, reference),
            Provider::Fake(p) => p.select(payload, reference),
        }
    }

    async fn find(&self, find: &Find) -> Result<BTreeMap<String, SecretBytes>, ProviderError> {
        match self {
            Provider::Aws(p) => p.find(find).await,
            Provider::Vault(p) => p.find(find).await,
            Provider::Fake(p) => p.find(find).await,
        }
    }

    async fn validate(&self) -> Result<(), ProviderError> {
        match self {
            Provider::Aws(p) => p.validate().await,
            Provider::Vault(p) => p.validate().await,
            Provider::Fake(p) => p.validate().await,
        }
    }
}

/// A client made with a requested service-account token is made again this often, with a
/// new token, before the token (asked for an hour) expires.
const RENEW_REQUESTED_TOKEN: Duration = Duration::from_secs(15 * 60);
/// A client no ExternalSecret used for this long is let go (and its token revoked).
const IDLE: Duration = Duration::from_secs(60 * 60);

struct PooledClient {
    store: StoreKey,
    created: Instant,
    last_used: Instant,
    renew: bool,
    client: Arc<OnceCell<Arc<Provider>>>,
}

/// Connected clients by the digest of what they were made from ([`Resolved::digest`]).
#[derive(Default)]
pub struct Clients(Mutex<HashMap<String, PooledClient>>);

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").finish_non_exhaustive()
    }
}

impl Clients {
    /// The client of `resolved`: the pooled one, or a new one (one connection at a time
    /// per configuration, however many ExternalSecrets ask at once).
    pub async fn client(
        &self,
        store: &StoreKey,
        resolved: Resolved,
    ) -> Result<Arc<Provider>, ProviderError> {
        let (cell, released) = {
            let mut pool = self.0.lock().expect("clients lock");
            let now = Instant::now();
            let mut released = Vec::new();
            let stale = |c: &PooledClient| {
                now.duration_since(c.last_used) > IDLE
                    || c.renew && now.duration_since(c.created) > RENEW_REQUESTED_TOKEN
            };
            pool.retain(|_, c| {
                let keep = !stale(c);
                if !keep {
                    released.extend(c.client.get().cloned());
                }
                keep
            });
            let entry = pool
                .entry(resolved.digest.clone())
                .or_insert_with(|| PooledClient {
                    store: store.clone(),
                    created: now,
                    last_used: now,
                    renew: resolved.uses_requested_token,
                    client: Arc::default(),
                });
            entry.last_used = now;
            (entry.client.clone(), released)
        };
        release_all(released);
        let config = resolved.config;
        let connected = cell
            .get_or_try_init(|| async {
                debug!(%store, "connecting to the store's provider");
                Provider::connect(config).await.map(Arc::new)
            })
            .await;
        if connected.is_err() {
            self.0
                .lock()
                .expect("clients lock")
                .remove(&resolved.digest);
        }
        connected.cloned()
    }

    /// Lets go of the clients of a store that was deleted or changed.
    pub fn forget_store(&self, store: &StoreKey) {
        let mut released = Vec::new();
        self.0.lock().expect("clients lock").retain(|_, c| {
            let keep = c.store != *store;
            if !keep {
                released.extend(c.client.get().cloned());
            }
            keep
        });
        release_all(released);
    }
}

fn release_all(released: Vec<Arc<Provider>>) {
    for client in released {
        tokio::spawn(async move { client.release().await });
    }
}

/// One provider read: the whole payload of a remote secret (every property of it is
/// selected from one read), or a search.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Read {
    Payload(RemoteRef),
    Find(Find),
}

impl Read {
    /// The payload read that serves `reference`, whatever its property.
    pub fn payload(reference: &RemoteRef) -> Self {
        Read::Payload(RemoteRef {
            property: None,
            ..reference.clone()
        })
    }

    fn call(&self) -> &'static str {
        match self {
            Read::Payload(r) if r.metadata => "GetSecretMetadata",
            Read::Payload(_) => "GetSecretValue",
            Read::Find(_) => "GetAllSecrets",
        }
    }

    /// What the read is of, for errors.
    fn what(&self) -> String {
        match self {
            Read::Payload(r) => r.key.clone(),
            Read::Find(f) => f
                .path
                .clone()
                .or_else(|| f.name.clone())
                .unwrap_or_default(),
        }
    }
}

/// What a read gave.
#[derive(Debug)]
pub enum Fetched {
    Payload(SecretBytes),
    Found(BTreeMap<String, SecretBytes>),
}

impl Fetched {
    fn size(&self) -> usize {
        match self {
            Fetched::Payload(v) => v.expose().len(),
            Fetched::Found(m) => m.iter().map(|(k, v)| k.len() + v.expose().len()).sum(),
        }
    }
}

type ReadResult = Result<Arc<Fetched>, ProviderError>;
type SharedResult = Shared<BoxFuture<'static, ReadResult>>;

struct SharedRead {
    started: Instant,
    /// When the read was made, for the refresh of those that use it.
    read_at: SystemTime,
    /// The longest its readers let it serve them.
    window: Duration,
    size: usize,
    result: SharedResult,
}

impl SharedRead {
    /// Its readers are due again about two windows after it (the window is half their
    /// interval); it is kept that long, for their refresh to be read ahead with another's.
    fn kept(&self, now: Instant) -> bool {
        now.duration_since(self.started) < self.window * 2 + self.window / 5
    }
}

/// Most bytes of values the shared reads keep; past it, reads are not shared (values
/// are never kept to save calls at the cost of unbounded memory).
const MAX_SHARED_BYTES: usize = 32 << 20;
/// How long a client refused `BatchGetSecretValue` reads one by one before it tries again.
const UNBATCHED_FOR: Duration = Duration::from_secs(60 * 60);
/// Reads serve others at most this long, whatever the windows asked.
const MAX_SHARE_WINDOW: Duration = Duration::from_secs(30 * 60);

/// Clients whose provider throttled or could not be reached: not called again until their
/// backoff ends (doubling from 1 s to 1 min), so that a struggling provider is not hit by
/// every ExternalSecret of the store; reads meanwhile fail at once, with the reason.
struct Pauses {
    backoff: Backoff,
    paused: Mutex<HashMap<String, (Instant, ProviderError)>>,
}

/// The longest pause. A pause over for longer than this is forgotten (its store may be
/// gone), so the map holds only clients that failed lately.
const MAX_PAUSE: Duration = Duration::from_secs(60);

impl Default for Pauses {
    fn default() -> Self {
        Self {
            backoff: Backoff::new(Duration::from_secs(1), MAX_PAUSE),
            paused: Mutex::default(),
        }
    }
}

impl Pauses {
    /// The error a fresh `read` through `client` fails with while the client is paused.
    fn check(&self, client: &str, read: &Read, now: Instant) -> Option<ProviderError> {
        let paused = self.paused.lock().expect("pauses lock");
        let (until, error) = paused.get(client).filter(|(until, _)| now < *until)?;
        Some(ProviderError {
            key: read.what(),
            reason: format!(
                "{} (the store is not called again for {} s after this failure)",
                error.reason,
                until.duration_since(now).as_secs().max(1)
            ),
            ..error.clone()
        })
    }

    /// Records how a fresh read through `client` went.
    fn record<T>(&self, client: &str, result: &Result<T, ProviderError>) {
        let mut paused = self.paused.lock().expect("pauses lock");
        match result {
            Err(e) if matches!(e.kind, ErrorKind::Throttled | ErrorKind::Unavailable) => {
                let now = Instant::now();
                paused.retain(|other, (until, _)| {
                    let recent = now < *until + MAX_PAUSE;
                    if !recent {
                        self.backoff.succeeded(other);
                    }
                    recent
                });
                let until = now + self.backoff.failed(client);
                paused.insert(client.to_string(), (until, e.clone()));
            }
            _ => {
                if paused.remove(client).is_some() {
                    self.backoff.succeeded(client);
                }
            }
        }
    }
}

/// Reads shared between ExternalSecrets, by client and read. A fresh read of an AWS
/// secret's current value also reads, in the same `BatchGetSecretValue`, the secrets of the
/// same client whose readers fall due within a window, so that their refreshes share it:
/// the readers of up to 20 secrets end up refreshed by one call.
#[derive(Default)]
pub struct SharedReads {
    reads: Mutex<HashMap<(String, Read), SharedRead>>,
    /// Clients whose credentials may not `BatchGetSecretValue`, and since when: read one by
    /// one for an hour, then tried again (permissions change; stores go).
    unbatched: Arc<Mutex<HashMap<String, Instant>>>,
    pauses: Pauses,
}

impl std::fmt::Debug for SharedReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedReads").finish_non_exhaustive()
    }
}

/// The remote secret of `read` when its current value can be read in a batch.
fn batchable(read: &Read) -> Option<&RemoteRef> {
    match read {
        Read::Payload(r)
            if !r.metadata && r.version.as_deref().is_none_or(|v| v == "AWSCURRENT") =>
        {
            Some(r)
        }
        _ => None,
    }
}

/// One call of `read`, counted.
async fn call(provider: &Provider, read: &Read, metrics: &EsoMetrics) -> ReadResult {
    let fetched = match read {
        Read::Payload(r) => provider.read(r).await.map(Fetched::Payload),
        Read::Find(f) => provider.find(f).await.map(Fetched::Found),
    };
    metrics.provider_call(provider.metric_name(), read.call(), status(&fetched));
    fetched.map(Arc::new)
}

fn status<T>(result: &Result<T, ProviderError>) -> &'static str {
    match result {
        Ok(_) => "success",
        Err(e) if e.kind == ErrorKind::NotFound => "success",
        Err(_) => "error",
    }
}

impl SharedReads {
    /// `read` through `provider` (the client of configuration `client`), and when it was
    /// read: a read of the same started less than `window` ago is shared, in flight or
    /// done; `None` reads afresh (and shares that with the next ones). Failures are not
    /// kept.
    pub async fn read(
        &self,
        client: &str,
        provider: &Arc<Provider>,
        read: Read,
        window: Option<Duration>,
        metrics: &EsoMetrics,
    ) -> Result<(Arc<Fetched>, SystemTime), ProviderError> {
        let key = (client.to_string(), read.clone());
        let (shared, read_at, fresh) = {
            let mut reads = self.reads.lock().expect("reads lock");
            let now = Instant::now();
            let reusable = |r: &SharedRead| {
                window.is_some_and(|w| now.duration_since(r.started) < w.min(MAX_SHARE_WINDOW))
            };
            match reads.get_mut(&key) {
                Some(r) if reusable(r) => {
                    r.window = r
                        .window
                        .max(window.unwrap_or_default().min(MAX_SHARE_WINDOW));
                    (r.result.clone(), r.read_at, false)
                }
                _ => {
                    if let Some(paused) = self.pauses.check(client, &read, now) {
                        return Err(paused);
                    }
                    reads.retain(|_, r| r.kept(now));
                    let window = window.unwrap_or_default().min(MAX_SHARE_WINDOW);
                    let (result, read_at) =
                        self.start(&mut reads, key.clone(), provider, window, metrics);
                    (result, read_at, true)
                }
            }
        };
        let result = shared.clone().await;
        if fresh {
            self.pauses.record(client, &result);
        }
        let mut reads = self.reads.lock().expect("reads lock");
        let ours = reads.get(&key).is_some_and(|r| r.result.ptr_eq(&shared));
        if ours {
            match &result {
                Ok(fetched) => {
                    let total: usize = reads.values().map(|r| r.size).sum();
                    let size = fetched.size();
                    if total + size > MAX_SHARED_BYTES {
                        reads.remove(&key);
                    } else if let Some(r) = reads.get_mut(&key) {
                        r.size = size;
                    }
                }
                Err(_) => {
                    reads.remove(&key);
                }
            }
        }
        result.map(|fetched| (fetched, read_at))
    }

    /// Whether reads through `client` may be batched, forgetting refusals older than
    /// [`UNBATCHED_FOR`].
    fn batches(&self, client: &str, now: Instant) -> bool {
        let mut unbatched = self.unbatched.lock().expect("unbatched lock");
        unbatched.retain(|_, since| now.duration_since(*since) < UNBATCHED_FOR);
        !unbatched.contains_key(client)
    }

    /// Starts the read of `key`, in a batch with the reads due soon when it can be, and
    /// returns it.
    fn start(
        &self,
        reads: &mut HashMap<(String, Read), SharedRead>,
        key: (String, Read),
        provider: &Arc<Provider>,
        window: Duration,
        metrics: &EsoMetrics,
    ) -> (SharedResult, SystemTime) {
        let now = Instant::now();
        let read_at = SystemTime::now();
        let (client, read) = &key;
        let batch = match (provider.as_ref(), batchable(read)) {
            (Provider::Aws(_), Some(first)) if self.batches(client, now) => {
                let mut due: Vec<(&(String, Read), &SharedRead)> = reads
                    .iter()
                    .filter(|((c, r), shared)| {
                        c == client
                            && batchable(r).is_some()
                            && now.duration_since(shared.started) >= shared.window
                    })
                    .collect();
                due.sort_by_key(|(_, shared)| shared.started);
                let mut batch = vec![(first.clone(), window, 0)];
                batch.extend(
                    due.into_iter()
                        .take(BATCH - 1)
                        .filter_map(|((_, r), shared)| {
                            Some((batchable(r)?.clone(), shared.window, shared.size))
                        }),
                );
                batch
            }
            _ => Vec::new(),
        };
        if batch.len() < 2 {
            let (provider, read, metrics) = (provider.clone(), read.clone(), metrics.clone());
            let result = async move { call(&provider, &read, &metrics).await }
                .boxed()
                .shared();
            reads.insert(
                key,
                SharedRead {
                    started: now,
                    read_at,
                    window,
                    size: 0,
                    result: result.clone(),
                },
            );
            return (result, read_at);
        }
        let keys: Vec<String> = batch.iter().map(|(r, ..)| r.key.clone()).collect();
        let values = {
            let (provider, metrics) = (provider.clone(), metrics.clone());
            async move {
                let Provider::Aws(aws) = provider.as_ref() else {
                    unreachable!("only AWS reads are batched")
                };
                let values = aws.read_current(&keys).await;
                metrics.provider_call(
                    provider.metric_name(),
                    "BatchGetSecretValue",
                    status(&values),
                );
                values.map(Arc::new)
            }
            .boxed()
            .shared()
        };
        let mut first = None;
        for (reference, window, size) in batch {
            let read = Read::Payload(reference);
            let result = {
                let (provider, metrics, values) =
                    (provider.clone(), metrics.clone(), values.clone());
                let (client, unbatched, read) =
                    (client.clone(), self.unbatched.clone(), read.clone());
                async move {
                    let Read::Payload(reference) = &read else {
                        unreachable!("batches read payloads")
                    };
                    match values.await {
                        Ok(values) => match values.get(&reference.key) {
                            Some(Ok(value)) => return Ok(Arc::new(Fetched::Payload(value.clone()))),
                            Some(Err(e)) if e.kind == ErrorKind::NotFound => return Err(e.clone()),
                            // Not in the answer, or refused alone: read alone.
                            _ => {}
                        },
                        // The provider is in trouble: no second call for each secret.
                        Err(e) if matches!(e.kind, ErrorKind::Throttled | ErrorKind::Unavailable) => {
                            return Err(e);
                        }
                        Err(e) => {
                            debug!(error = %e, "the store's credentials cannot batch reads: reading one by one");
                            unbatched
                                .lock()
                                .expect("unbatched lock")
                                .insert(client, Instant::now());
                        }
                    }
                    call(&provider, &read, &metrics).await
                }
                .boxed()
                .shared()
            };
            first.get_or_insert_with(|| result.clone());
            reads.insert(
                (client.clone(), read),
                SharedRead {
                    started: now,
                    read_at,
                    window,
                    size,
                    result,
                },
            );
        }
        (first.expect("a batch has its first read"), read_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: ErrorKind) -> ProviderError {
        ProviderError {
            kind,
            provider: "AWS Secrets Manager",
            operation: "GetSecretValue",
            key: "app/one".into(),
            reason: "ThrottlingException: Rate exceeded".into(),
        }
    }

    fn read(key: &str) -> Read {
        Read::Payload(RemoteRef {
            key: key.into(),
            ..RemoteRef::default()
        })
    }

    #[test]
    fn a_throttled_client_is_paused_for_every_read_until_it_answers_again() {
        let pauses = Pauses::default();
        let now = Instant::now();
        assert!(pauses.check("store-a", &read("app/two"), now).is_none());
        pauses.record::<()>("store-a", &Err(failure(ErrorKind::Throttled)));
        let paused = pauses
            .check("store-a", &read("app/two"), Instant::now())
            .expect("paused");
        assert_eq!(paused.kind, ErrorKind::Throttled);
        // It names the read it refused, and why.
        assert_eq!(paused.key, "app/two");
        assert!(paused.reason.contains("Rate exceeded"), "{}", paused.reason);
        assert!(
            paused.reason.contains("not called again"),
            "{}",
            paused.reason
        );
        // Another client is not paused; after the pause the client is called again.
        assert!(pauses.check("store-b", &read("app/two"), now).is_none());
        assert!(
            pauses
                .check("store-a", &read("app/two"), now + Duration::from_secs(2))
                .is_none()
        );
        // An answer, even "not found", ends the pause.
        pauses.record::<()>("store-a", &Err(failure(ErrorKind::NotFound)));
        assert!(pauses.check("store-a", &read("app/two"), now).is_none());
    }

    #[test]
    fn pauses_long_over_are_forgotten() {
        let pauses = Pauses::default();
        pauses.record::<()>("gone", &Err(failure(ErrorKind::Unavailable)));
        let mut paused = pauses.paused.lock().expect("pauses lock");
        let (until, _) = paused.get_mut("gone").expect("paused");
        *until -= MAX_PAUSE * 2;
        drop(paused);
        // The next failure of any client trims the map of pauses over for long.
        pauses.record::<()>("other", &Err(failure(ErrorKind::Throttled)));
        let paused = pauses.paused.lock().expect("pauses lock");
        assert!(!paused.contains_key("gone"));
        assert!(paused.contains_key("other"));
    }

    #[test]
    fn refusals_do_not_pause_a_client() {
        let pauses = Pauses::default();
        pauses.record::<()>("store-a", &Err(failure(ErrorKind::Denied)));
        assert!(
            pauses
                .check("store-a", &read("app/one"), Instant::now())
                .is_none()
        );
    }
}
