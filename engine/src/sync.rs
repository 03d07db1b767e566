//! One convergence step for one source, independent of where Secrets live: plan, guard,
//! generate only when needed, write, and remember what was written to recognise drift.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use kube::Resource;

use crate::generator::{AppliedAction, Generator, Outcome, ReasonedError, SecretRef};
use crate::policy::{Consent, Decision, SourceIdentity, decide};
use crate::target::{Owner, SecretTarget, SecretWrite};

/// Converges sources of one generator into one target.
#[derive(Debug)]
pub struct Syncer<G, T> {
    generator: Arc<G>,
    target: T,
    consent: Consent,
    /// Each Secret as this process last wrote or checked it.
    last_seen: Mutex<HashMap<SecretRef, Seen>>,
    /// The source (by name, in the Secret's namespace) that each Secret was planned for,
    /// so that a change of the Secret reconciles its source.
    sources: Mutex<HashMap<SecretRef, String>>,
}

/// What this process knows of a Secret it handled.
#[derive(Debug, Clone, Default)]
struct Seen {
    version: String,
    /// The input digest this process generated and wrote it from (its status was written
    /// in the same reconcile, even if the watch has not shown that status yet).
    written_from: Option<String>,
}

impl<G: Generator, T: SecretTarget> Syncer<G, T> {
    pub fn new(generator: Arc<G>, target: T, consent: Consent) -> Self {
        Self {
            generator,
            target,
            consent,
            last_seen: Mutex::default(),
            sources: Mutex::default(),
        }
    }

    pub fn target(&self) -> &T {
        &self.target
    }

    pub fn generator(&self) -> &G {
        &self.generator
    }

    /// The name of the source whose Secret `secret` is, if one was planned for it.
    pub fn source_of(&self, secret: &SecretRef) -> Option<String> {
        self.sources
            .lock()
            .expect("sources lock")
            .get(secret)
            .cloned()
    }

    /// Brings the Secret of `source` to its desired state, or says why not. Never deletes.
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
        let failed = |e: &dyn ReasonedError| Outcome::Failed {
            reason: e.reason(),
            message: e.to_string(),
        };
        let plan = match self.generator.plan(source) {
            Ok(plan) => plan,
            Err(e) => return failed(&e),
        };
        if let Some(name) = source.meta().name.clone() {
            self.sources
                .lock()
                .expect("sources lock")
                .insert(plan.target.clone(), name);
        }
        let existing = match self.target.existing(&plan.target).await {
            Ok(existing) => existing,
            Err(e) => return failed(&e),
        };
        let identity = SourceIdentity {
            kind: G::Source::kind(&()).into_owned(),
            uid: source.meta().uid.clone(),
        };
        let seen = self.last_seen(&plan.target);
        let synced = seen
            .as_ref()
            .and_then(|s| s.written_from.clone())
            .or_else(|| self.generator.synced_digest(source));
        let decision = decide(
            &plan,
            &identity,
            existing.as_ref(),
            seen.as_ref().map(|s| s.version.as_str()),
            synced.as_deref(),
            &self.consent,
        );
        let (mode, action, owner_reference) = match decision {
            Decision::Skip => {
                if let Some(version) = existing.and_then(|e| e.resource_version) {
                    self.remember(&plan.target, version, seen.and_then(|s| s.written_from));
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
        let (secret, report) = match self.generator.generate(&full).await {
            Ok(generated) => generated,
            Err(e) => return failed(&e),
        };
        let owner = owner_reference.then(|| owner_of(&full)).flatten();
        let write = SecretWrite {
            target: &plan.target,
            secret: &secret,
            owner: owner.as_ref(),
            mode,
        };
        match self.target.apply(&write).await {
            Ok(version) => {
                self.remember(&plan.target, version, Some(plan.input_digest.clone()));
                Outcome::Applied {
                    report,
                    action,
                    input_digest: plan.input_digest,
                }
            }
            Err(e) => failed(&e),
        }
    }

    /// Drops what this process knows of `source`, which was deleted.
    pub fn forget(&self, source: &G::Source) {
        if let Ok(plan) = self.generator.plan(source) {
            self.last_seen
                .lock()
                .expect("last_seen lock")
                .remove(&plan.target);
            self.sources
                .lock()
                .expect("sources lock")
                .remove(&plan.target);
        }
        self.generator.forget(source);
    }
    fn last_seen(&self, secret: &SecretRef) -> Option<Seen> {
        self.last_seen
            .lock()
            .expect("last_seen lock")
            .get(secret)
            .cloned()
    }

    fn remember(&self, secret: &SecretRef, version: String, written_from: Option<String>) {
        self.last_seen.lock().expect("last_seen lock").insert(
            secret.clone(),
            Seen {
                version,
                written_from,
            },
        );
    }
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
        }
    }
}
