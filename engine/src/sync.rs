//! One convergence step for one source, independent of where Secrets live: plan, guard,
//! generate only when needed, write (or delete), and remember, per source, what was written
//! to recognise drift and to know when a refresh is due.

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use kube::Resource;
use tracing::{info, warn};

use crate::generator::{
    AppliedAction, Dependency, Desired, DesiredSecret, Generator, Outcome, Ownership, Plan,
    ReasonedError, SecretRef, WhenAbsent, WriteMode,
};
use crate::policy::{Consent, Decision, ExistingSecret, FieldManager, History, SourceIdentity};
use crate::target::{Owner, SecretTarget, SecretWrite};

/// A source of a generator, by namespace and name.
pub type SourceKey = SecretRef;

/// Converges sources of one generator into one target.
#[derive(Debug)]
pub struct Syncer<G, T> {
    generator: Arc<G>,
    target: T,
    consent: Consent,
    /// The base of the sources' field managers ([`FieldManager::of_source`]).
    field_manager: String,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Each source's Secret as this process last wrote or checked it.
    seen: HashMap<SourceKey, Seen>,
    /// The sources that depend on each object (their Secret, their plan's dependencies),
    /// so that a change of it reconciles them and nothing else.
    dependents: HashMap<Dependency, BTreeSet<SourceKey>>,
    /// What each source is in `dependents` under.
    depends_on: HashMap<SourceKey, Vec<Dependency>>,
    /// When the data of each source's last generation was read, for its refresh.
    generated_at: HashMap<SourceKey, SystemTime>,
}

/// What this process knows of a source's Secret.
#[derive(Debug, Clone)]
struct Seen {
    secret: SecretRef,
    version: String,
    /// The input digest this process generated and wrote it from (its status was written
    /// in the same reconcile, even if the watch has not shown that status yet).
    written_from: Option<String>,
    /// The data keys written then.
    written_keys: Option<BTreeSet<String>>,
}

impl Seen {
    /// `secret`, of which nothing is known yet.
    fn of(secret: &SecretRef) -> Self {
        Self {
            secret: secret.clone(),
            version: String::new(),
            written_from: None,
            written_keys: None,
        }
    }
}

impl<G: Generator, T: SecretTarget> Syncer<G, T> {
    /// `field_manager` is the base of the field managers of the sources' writes.
    pub fn new(generator: Arc<G>, target: T, field_manager: &str, consent: Consent) -> Self {
        Self {
            generator,
            target,
            consent,
            field_manager: field_manager.into(),
            state: Mutex::default(),
        }
    }

    pub fn target(&self) -> &T {
        &self.target
    }

    pub fn generator(&self) -> &G {
        &self.generator
    }

    /// The sources (planned so far) that depend on `dependency`. With the `version` of a
    /// Secret that changed, the sources that wrote or checked that very version are left
    /// out: their own write needs no second look.
    pub fn dependents(&self, dependency: &Dependency, version: Option<&str>) -> Vec<SourceKey> {
        let state = self.state();
        let Some(sources) = state.dependents.get(dependency) else {
            return Vec::new();
        };
        let current = |source: &SourceKey| {
            version.is_some_and(|version| {
                state.seen.get(source).is_some_and(|seen| {
                    seen.version == version && Dependency::secret(&seen.secret) == *dependency
                })
            })
        };
        sources.iter().filter(|s| !current(s)).cloned().collect()
    }

    /// How long until the refresh of `source` is due ([`crate::Policy::refresh`]): its
    /// interval after the data of its last sync was read (or from now, when that is
    /// unknown), never earlier;
    /// `None` when it has no refresh.
    pub fn due_in(&self, source: &G::Source) -> Option<Duration> {
        let refresh = self.generator.plan(source).ok()?.policy.refresh?;
        let last = self.last_sync(source).unwrap_or_else(SystemTime::now);
        Some(
            (last + refresh)
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        )
    }

    /// Whether a sync of `source` now would only be its due refresh: its Secret was last
    /// generated from its current inputs. Such syncs may wait for first syncs and changes
    /// when the process cannot keep up.
    pub fn only_refresh_due(&self, source: &G::Source) -> bool {
        let (Ok(plan), Some(key)) = (self.generator.plan(source), source_key(source)) else {
            return false;
        };
        self.refresh_due(source, &plan)
            && self.synced_from(source, self.seen(&key, &plan.target).as_ref())
                == Some(plan.input_digest)
    }

    fn refresh_due(&self, source: &G::Source, plan: &Plan) -> bool {
        plan.policy.refresh.is_some_and(|interval| {
            self.last_sync(source)
                .is_none_or(|last| last + interval <= SystemTime::now())
        })
    }

    /// The input digest the Secret of `source` was last generated from, as this process
    /// wrote it or as the status says.
    fn synced_from(&self, source: &G::Source, seen: Option<&Seen>) -> Option<String> {
        seen.and_then(|s| s.written_from.clone())
            .or_else(|| self.generator.synced_digest(source))
    }

    /// Brings the Secret of `source` to its desired state, or says why not.
    pub async fn sync(&self, source: &G::Source) -> Outcome<G::Report> {
        self.sync_cached(source, async { Ok::<_, Infallible>(Some(source.clone())) })
            .await
    }

    /// [`Syncer::sync`] from a compact copy of a source ([`Generator::compact`]): `read` gives
    /// the full object, read again, and is awaited only when a Secret must be generated. The
    /// full object may be newer than the copy; what is written is planned from it. A source
    /// deleted meanwhile changes nothing.
    pub async fn sync_cached<E: ReasonedError>(
        &self,
        source: &G::Source,
        read: impl Future<Output = Result<Option<G::Source>, E>>,
    ) -> Outcome<G::Report> {
        let plan = match self.generator.plan(source) {
            Ok(plan) => plan,
            Err(e) => return failed(&e),
        };
        let Some(key) = source_key(source) else {
            return Outcome::Unchanged;
        };
        self.index(&key, &plan);
        let existing = match self.target.existing(&plan.target).await {
            Ok(existing) => existing,
            Err(e) => return failed(&e),
        };
        let identity = SourceIdentity {
            kind: G::Source::kind(&()).into_owned(),
            uid: source.meta().uid.clone(),
            manager: FieldManager::of_source(&self.field_manager, &G::Source::kind(&()), &key.name),
        };
        let seen = self.seen(&key, &plan.target);
        let synced = self.synced_from(source, seen.as_ref());
        let refresh_due = self.refresh_due(source, &plan);
        let own_keys = plan
            .data_keys
            .clone()
            .or_else(|| seen.as_ref().and_then(|s| s.written_keys.clone()));
        let history = History {
            last_seen: seen.as_ref().map(|s| s.version.as_str()),
            synced_digest: synced.as_deref(),
            own_keys: own_keys.as_ref(),
            refresh_due,
        };
        let decision =
            crate::policy::decide(&plan, &identity, existing.as_ref(), &history, &self.consent);
        let (mode, action, owner_reference) = match decision {
            Decision::Skip => {
                if let Some(version) = existing.and_then(|e| e.resource_version) {
                    let seen = seen.unwrap_or_else(|| Seen::of(&plan.target));
                    self.remember(&key, Seen { version, ..seen });
                }
                return Outcome::Unchanged;
            }
            Decision::Refuse { message } => return Outcome::Refused { message },
            Decision::Apply {
                mode,
                action,
                owner_reference,
            } => (mode, action, owner_reference),
        };
        let full = match read.await {
            Ok(Some(full)) => full,
            Ok(None) => return Outcome::Unchanged,
            Err(e) => return failed(&e),
        };
        let plan = match self.generator.plan(&full) {
            // The guard above looked at another Secret: the newer version the full object
            // is will come through the watch and be decided on its own.
            Ok(fresh) if fresh.target != plan.target => return Outcome::Unchanged,
            Ok(fresh) => fresh,
            Err(e) => return failed(&e),
        };
        let (desired, report) = match self.generator.generate(&full).await {
            Ok(generated) => generated,
            Err(e) => return failed(&e),
        };
        let read_at = self
            .generator
            .data_read_at(&report)
            .unwrap_or_else(SystemTime::now);
        self.state().generated_at.insert(key.clone(), read_at);
        let step = Step {
            plan: &plan,
            key: &key,
            manager: &identity.manager,
            existing: existing.as_ref(),
        };
        let written = match desired {
            Desired::Secret(secret) => {
                let owner = owner_reference.then(|| owner_of(&full)).flatten();
                self.write(&step, &secret, mode, owner.as_ref(), action)
                    .await
            }
            Desired::Absent => self.absent(&step).await,
        };
        if let (Ok(AppliedAction::Created), Some(uid)) = (&written, &identity.uid)
            && plan.policy.ownership == Ownership::Owner
        {
            self.prune_renamed(&plan.target, uid, &identity.manager)
                .await;
        }
        match written {
            Ok(action) => Outcome::Applied {
                report,
                action,
                input_digest: plan.input_digest,
            },
            Err(outcome) => outcome,
        }
    }

    /// Writes `secret` and returns what it did, or the outcome that stopped it.
    async fn write(
        &self,
        step: &Step<'_>,
        secret: &DesiredSecret,
        mode: WriteMode,
        owner: Option<&Owner>,
        action: AppliedAction,
    ) -> Result<AppliedAction, Outcome<G::Report>> {
        // Two sources taking one key from each other would write it in turns forever.
        if let Some((key, manager)) = step
            .existing
            .and_then(|e| e.key_of_a_sibling(step.manager, secret.data.keys()))
        {
            return Err(Outcome::Refused {
                message: format!(
                    "key \"{key}\" of Secret \"{}\" is written by another source (field manager \
                     {manager}): give each source its own keys",
                    step.plan.target.name
                ),
            });
        }
        let write = SecretWrite {
            target: &step.plan.target,
            secret,
            owner,
            mode,
            manager: step.manager,
        };
        let version = self.target.apply(&write).await.map_err(|e| failed(&e))?;
        let unchanged =
            step.existing.and_then(|e| e.resource_version.as_deref()) == Some(version.as_str());
        self.remember(
            step.key,
            Seen {
                secret: step.plan.target.clone(),
                version,
                written_from: Some(step.plan.input_digest.clone()),
                written_keys: Some(secret.data.keys().cloned().collect()),
            },
        );
        Ok(match action {
            // A refresh that brought new data is an update.
            AppliedAction::Refreshed if !unchanged => AppliedAction::Updated,
            action => action,
        })
    }

    /// Deletes the Secrets the source made under another name than `target` (its target
    /// was renamed): those it controls and wrote itself, nothing else.
    async fn prune_renamed(&self, target: &SecretRef, uid: &str, manager: &FieldManager) {
        for (secret, existing) in self.target.controlled_by(&target.namespace, uid) {
            if secret == *target || !existing.written_by(manager.name()) {
                continue;
            }
            let version = existing.resource_version.as_deref().unwrap_or_default();
            match self.target.delete(&secret, version).await {
                Ok(()) => info!(
                    secret = %secret.name,
                    target = %target.name,
                    "deleted the Secret left under the old name of a renamed target"
                ),
                Err(e) => warn!(
                    secret = %secret.name,
                    error = %e,
                    "cannot delete the Secret left under the old name of a renamed target"
                ),
            }
        }
    }

    /// Brings about [`Desired::Absent`] as the source's policy says.
    async fn absent(&self, step: &Step<'_>) -> Result<AppliedAction, Outcome<G::Report>> {
        let Some(existing) = step.existing else {
            self.state().seen.remove(step.key);
            return Ok(AppliedAction::Kept);
        };
        match step.plan.policy.when_absent {
            WhenAbsent::Keep => {
                if let Some(version) = existing.resource_version.clone() {
                    self.remember(
                        step.key,
                        Seen {
                            version,
                            written_from: Some(step.plan.input_digest.clone()),
                            ..Seen::of(&step.plan.target)
                        },
                    );
                }
                Ok(AppliedAction::Kept)
            }
            WhenAbsent::Delete => {
                let version = existing.resource_version.as_deref().unwrap_or_default();
                self.target
                    .delete(&step.plan.target, version)
                    .await
                    .map_err(|e| failed(&e))?;
                self.state().seen.remove(step.key);
                Ok(AppliedAction::Deleted)
            }
            WhenAbsent::RemoveOwnKeys => {
                // Applying nothing under the source's field manager removes what only it
                // wrote.
                let nothing = DesiredSecret::default();
                self.write(
                    step,
                    &nothing,
                    WriteMode::Merge,
                    None,
                    AppliedAction::KeysRemoved,
                )
                .await
            }
        }
    }

    /// Drops what this process knows of `source`, which was deleted.
    pub fn forget(&self, source: &G::Source) {
        if let Some(key) = source_key(source) {
            let mut state = self.state();
            state.seen.remove(&key);
            state.generated_at.remove(&key);
            unindex(&mut state, &key);
        }
        self.generator.forget(source);
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("syncer state lock")
    }

    /// Records what `source` depends on under `plan`.
    fn index(&self, source: &SourceKey, plan: &Plan) {
        let dependencies: Vec<Dependency> = std::iter::once(Dependency::secret(&plan.target))
            .chain(plan.dependencies.iter().cloned())
            .collect();
        let mut state = self.state();
        if state.depends_on.get(source) == Some(&dependencies) {
            return;
        }
        unindex(&mut state, source);
        for dependency in &dependencies {
            state
                .dependents
                .entry(dependency.clone())
                .or_default()
                .insert(source.clone());
        }
        state.depends_on.insert(source.clone(), dependencies);
    }

    /// What this process knows of the Secret of `source`, if it is still `secret`.
    fn seen(&self, source: &SourceKey, secret: &SecretRef) -> Option<Seen> {
        self.state()
            .seen
            .get(source)
            .filter(|seen| &seen.secret == secret)
            .cloned()
    }

    fn remember(&self, source: &SourceKey, seen: Seen) {
        self.state().seen.insert(source.clone(), seen);
    }

    /// When the data `source` was last generated from was read, by this process, or when it
    /// was generated, as its status says.
    fn last_sync(&self, source: &G::Source) -> Option<SystemTime> {
        source_key(source)
            .and_then(|key| self.state().generated_at.get(&key).copied())
            .or_else(|| self.generator.synced_at(source))
    }
}

/// What one write step works on.
struct Step<'a> {
    plan: &'a Plan,
    key: &'a SourceKey,
    manager: &'a FieldManager,
    existing: Option<&'a ExistingSecret>,
}

fn unindex(state: &mut State, source: &SourceKey) {
    for dependency in state.depends_on.remove(source).unwrap_or_default() {
        if let Some(sources) = state.dependents.get_mut(&dependency) {
            sources.remove(source);
            if sources.is_empty() {
                state.dependents.remove(&dependency);
            }
        }
    }
}

fn failed<R>(e: &dyn ReasonedError) -> Outcome<R> {
    Outcome::Failed {
        reason: e.reason(),
        message: e.to_string(),
    }
}

fn source_key<K: Resource>(source: &K) -> Option<SourceKey> {
    Some(SourceKey {
        namespace: source.meta().namespace.clone()?,
        name: source.meta().name.clone()?,
    })
}

fn owner_of<K: Resource<DynamicType = ()>>(source: &K) -> Option<Owner> {
    Some(Owner {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: source.meta().name.clone()?,
        uid: source.meta().uid.clone()?,
    })
}

impl AppliedAction {
    /// How an event describes the action.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::DriftReverted => "restored after it was changed or deleted by someone else",
            Self::Adopted => "taken over",
            Self::Refreshed => "refreshed, unchanged",
            Self::Deleted => "deleted: its source wants none",
            Self::KeysRemoved => "left without the source's keys: its source wants none",
            Self::Kept => "kept: its source wants none",
        }
    }
}
