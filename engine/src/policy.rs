//! The ownership guard and the decision of what to do with a source's Secret, as pure
//! functions of what is known (the plan, the existing Secret's metadata, what we last saw).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::jiff::Timestamp;

use crate::generator::{AppliedAction, Ownership, Plan, WriteMode, hex_sha256};

/// The server-side apply field manager of one source's Secret writes: each source owns its
/// keys, so that several can write one Secret without removing each other's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldManager {
    name: String,
    /// Length of the engine's base name, which the managers of all its sources share.
    base: usize,
}

/// Kubernetes' limit on the length of a field manager.
const MAX_MANAGER_LEN: usize = 128;

impl FieldManager {
    /// `<base>/<kind>/<name>`; a name too long for the API server is shortened and made
    /// unique again with a digest.
    pub fn of_source(base: &str, kind: &str, name: &str) -> Self {
        let mut manager = format!("{base}/{kind}/{name}");
        if manager.len() > MAX_MANAGER_LEN {
            let digest = &hex_sha256(name.as_bytes())[..16];
            let mut cut = MAX_MANAGER_LEN - digest.len() - 1;
            while !manager.is_char_boundary(cut) {
                cut -= 1;
            }
            manager.truncate(cut);
            manager.push('-');
            manager.push_str(digest);
        }
        Self {
            name: manager,
            base: base.len(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `manager` writes for another source of the same engine: its keys are that
    /// source's, never removed or taken by this one.
    pub fn is_sibling(&self, manager: &str) -> bool {
        manager != self.name && manager.starts_with(&self.name[..=self.base])
    }
}

/// A field manager that wrote some of a Secret's content (data, type), from managedFields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Writer {
    pub manager: String,
    /// When it last wrote; `None` where the target does not tell.
    pub time: Option<Timestamp>,
    pub data_keys: BTreeSet<String>,
}

/// What the engine knows of an existing Secret without reading its data. Nothing of it is
/// bookkeeping of the engine's: ownership comes from ownerReferences and managedFields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExistingSecret {
    pub resource_version: Option<String>,
    /// The annotations the guard reads (consent); a target may drop the others.
    pub annotations: BTreeMap<String, String>,
    /// UID of the controlling ownerReference, if any.
    pub controller_uid: Option<String>,
    pub writers: Vec<Writer>,
}

impl ExistingSecret {
    fn writes_of<'a>(&'a self, manager: &'a str) -> impl Iterator<Item = &'a Writer> {
        self.writers.iter().filter(move |w| w.manager == manager)
    }

    /// Whether `manager` wrote some of its content.
    pub fn written_by(&self, manager: &str) -> bool {
        self.writes_of(manager).next().is_some()
    }

    /// Whether another manager (not a sibling source) wrote its content after `manager`
    /// last did: an edit made while nobody was watching.
    pub fn changed_by_others(&self, manager: &FieldManager) -> bool {
        let ours = self.writes_of(manager.name()).map(|w| &w.time).max();
        self.writers
            .iter()
            .filter(|w| w.manager != manager.name() && !manager.is_sibling(&w.manager))
            .any(|w| Some(&w.time) > ours)
    }

    /// The data keys `manager` owns.
    pub fn data_keys_of(&self, manager: &str) -> BTreeSet<String> {
        self.writes_of(manager)
            .flat_map(|w| w.data_keys.iter().cloned())
            .collect()
    }

    /// The first of `keys` another source writes, with its field manager.
    pub fn key_of_a_sibling<'a>(
        &'a self,
        manager: &FieldManager,
        keys: impl IntoIterator<Item = &'a String>,
    ) -> Option<(&'a str, &'a str)> {
        let siblings: Vec<&Writer> = self
            .writers
            .iter()
            .filter(|w| manager.is_sibling(&w.manager))
            .collect();
        keys.into_iter().find_map(|key| {
            siblings
                .iter()
                .find(|w| w.data_keys.contains(key))
                .map(|w| (key.as_str(), w.manager.as_str()))
        })
    }
}

/// The source, as the guard needs to know it.
#[derive(Debug, Clone)]
pub struct SourceIdentity {
    /// Its kind, for messages.
    pub kind: String,
    pub uid: Option<String>,
    pub manager: FieldManager,
}

/// What this process and the source's status know of the source's Secret.
#[derive(Debug, Clone, Copy, Default)]
pub struct History<'a> {
    /// The resourceVersion this process last wrote or checked, `None` after a start: then
    /// an edit is recognised from managedFields instead.
    pub last_seen: Option<&'a str>,
    /// The input digest the Secret is known to have been generated from (by this process,
    /// or as the source's status reports).
    pub synced_digest: Option<&'a str>,
    /// The keys the source writes, when known (planned, or last written).
    pub own_keys: Option<&'a BTreeSet<String>>,
    /// Whether the source's refresh is due ([`crate::Policy::refresh`]).
    pub refresh_due: bool,
}

/// Annotations with which an existing Secret consents to be taken over (`value == "true"`).
#[derive(Debug, Clone, Default)]
pub struct Consent {
    /// Take the Secret over and replace its data (sealed-secrets' `managed`).
    pub adopt: Option<String>,
    /// Merge the generated keys into the Secret (sealed-secrets' `patch`).
    pub merge: Option<String>,
}

impl Consent {
    /// Whether `annotation` is one of the consent annotations (the ones a target keeps).
    pub fn is_consent_annotation(&self, annotation: &str) -> bool {
        self.annotations().any(|name| name == annotation)
    }

    pub fn annotations(&self) -> impl Iterator<Item = &str> {
        [&self.adopt, &self.merge]
            .into_iter()
            .flatten()
            .map(String::as_str)
    }
}

/// What to do with a source's Secret.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The Secret is up to date: open nothing, write nothing.
    Skip,
    Apply {
        mode: WriteMode,
        action: AppliedAction,
        /// Whether the Secret gets an ownerReference to the source: not when it only
        /// consents to a merge, so that deleting the source never deletes a Secret that
        /// holds keys of others.
        owner_reference: bool,
    },
    /// The Secret is not the source's to write (someone else's, or missing and not to be
    /// created); leave it.
    Refuse { message: String },
}

/// Whether `annotations` hold `annotation` set to "true": a Secret's consent to be taken
/// over or merged into.
pub(crate) fn consents(annotations: &BTreeMap<String, String>, annotation: Option<&str>) -> bool {
    annotation
        .and_then(|a| annotations.get(a))
        .is_some_and(|v| v == "true")
}

/// Decides for `plan` from what is known of the Secret.
pub fn decide(
    plan: &Plan,
    source: &SourceIdentity,
    existing: Option<&ExistingSecret>,
    history: &History<'_>,
    consent: &Consent,
) -> Decision {
    let policy = &plan.policy;
    let (planned_mode, planned_owner) = match policy.ownership {
        Ownership::Owner => (WriteMode::Replace, true),
        Ownership::Orphan => (WriteMode::Replace, false),
        Ownership::Merge { .. } => (WriteMode::Merge, false),
    };
    let Some(existing) = existing else {
        if policy.ownership == (Ownership::Merge { create: false }) {
            return Decision::Refuse {
                message: format!(
                    "Secret \"{}\" does not exist: this {} merges its keys into a Secret it \
                     does not create; create the Secret",
                    plan.target.name, source.kind
                ),
            };
        }
        // Gone although this process wrote or saw it: deleted by someone else.
        let action = match history.last_seen {
            Some(_) if !policy.recreate_deleted => return Decision::Skip,
            Some(_) => AppliedAction::DriftReverted,
            None => AppliedAction::Created,
        };
        return Decision::Apply {
            mode: planned_mode,
            action,
            owner_reference: planned_owner,
        };
    };
    let consents =
        |annotation: &Option<String>| consents(&existing.annotations, annotation.as_deref());
    let (mode, owner_reference) = if consents(&consent.merge) {
        (WriteMode::Merge, planned_owner && consents(&consent.adopt))
    } else {
        (planned_mode, planned_owner)
    };
    let ours = planned_mode == WriteMode::Merge
        || existing.written_by(source.manager.name())
        || (existing.controller_uid.is_some() && existing.controller_uid == source.uid);
    if !ours {
        return if consents(&consent.adopt) || consents(&consent.merge) {
            Decision::Apply {
                mode,
                action: AppliedAction::Adopted,
                owner_reference,
            }
        } else {
            Decision::Refuse {
                message: format!(
                    "Resource \"{}\" already exists and is not managed by {}: delete it, or \
                     annotate it {} to let it be taken over",
                    plan.target.name,
                    source.kind,
                    consent
                        .adopt
                        .as_deref()
                        .map(|a| format!("{a}=true"))
                        .unwrap_or_else(|| "as managed".into()),
                ),
            }
        };
    }
    let drifted = || match (mode, history.own_keys) {
        // Others write the rest of a merged Secret: only losing one of ours is drift (an
        // edit or removal of a key moves it to whoever made it).
        (WriteMode::Merge, Some(keys)) => {
            !keys.is_subset(&existing.data_keys_of(source.manager.name()))
        }
        _ => match history.last_seen {
            Some(seen) => existing.resource_version.as_deref() != Some(seen),
            None => existing.changed_by_others(&source.manager),
        },
    };
    let action = if history.synced_digest != Some(plan.input_digest.as_str()) {
        AppliedAction::Updated
    } else if policy.repair_drift && drifted() {
        AppliedAction::DriftReverted
    } else if history.refresh_due {
        AppliedAction::Refreshed
    } else {
        return Decision::Skip;
    };
    Decision::Apply {
        mode,
        action,
        owner_reference,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Policy, SecretRef};

    fn plan() -> Plan {
        Plan {
            target: SecretRef {
                namespace: "ns".into(),
                name: "db".into(),
            },
            input_digest: "d1".into(),
            policy: Policy::default(),
            data_keys: Some(keys(&["password", "user"])),
            dependencies: Vec::new(),
        }
    }

    fn keys(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|k| k.to_string()).collect()
    }

    const BASE: &str = "engine";

    fn manager(name: &str) -> FieldManager {
        FieldManager::of_source(BASE, "SealedSecret", name)
    }

    fn source() -> SourceIdentity {
        SourceIdentity {
            kind: "SealedSecret".into(),
            uid: Some("uid-1".into()),
            manager: manager("db"),
        }
    }

    fn consent() -> Consent {
        Consent {
            adopt: Some("example/managed".into()),
            merge: Some("example/patch".into()),
        }
    }

    fn writer(manager: &FieldManager, second: i64, data_keys: &[&str]) -> Writer {
        Writer {
            manager: manager.name().into(),
            time: Some(Timestamp::from_second(second).unwrap()),
            data_keys: keys(data_keys),
        }
    }

    /// A Secret this engine wrote, at resourceVersion `rv`.
    fn ours(rv: &str) -> ExistingSecret {
        ExistingSecret {
            resource_version: Some(rv.into()),
            writers: vec![writer(&manager("db"), 100, &["password", "user"])],
            ..ExistingSecret::default()
        }
    }

    fn history<'a>(last_seen: Option<&'a str>, synced: Option<&'a str>) -> History<'a> {
        History {
            last_seen,
            synced_digest: synced,
            ..History::default()
        }
    }

    /// Decides with the Secret known to be generated from digest `synced`.
    fn decide_synced(
        existing: Option<&ExistingSecret>,
        last_seen: Option<&str>,
        synced: Option<&str>,
    ) -> Decision {
        decide(
            &plan(),
            &source(),
            existing,
            &history(last_seen, synced),
            &consent(),
        )
    }

    fn decide_for(existing: Option<&ExistingSecret>, last_seen: Option<&str>) -> Decision {
        decide_synced(existing, last_seen, Some("d1"))
    }

    fn apply(mode: WriteMode, action: AppliedAction) -> Decision {
        Decision::Apply {
            mode,
            action,
            owner_reference: true,
        }
    }

    #[test]
    fn field_managers_are_per_source_and_fit_the_api_servers_limit() {
        let db = manager("db");
        assert_eq!(db.name(), "engine/SealedSecret/db");
        assert!(db.is_sibling("engine/SealedSecret/other"));
        assert!(db.is_sibling("engine/ExternalSecret/db"));
        assert!(!db.is_sibling("engine/SealedSecret/db"));
        assert!(
            !db.is_sibling("engine"),
            "the engine's own name is no source's"
        );
        assert!(!db.is_sibling("kubectl-edit"));
        let long = |tail: &str| manager(&format!("{}{tail}", "n".repeat(250)));
        assert_eq!(long("a").name().len(), MAX_MANAGER_LEN);
        assert_ne!(long("a"), long("b"), "shortened names stay apart");
        assert!(long("a").is_sibling(long("b").name()));
    }

    #[test]
    fn a_missing_secret_is_created_or_restored() {
        assert_eq!(
            decide_for(None, None),
            apply(WriteMode::Replace, AppliedAction::Created)
        );
        assert_eq!(
            decide_for(None, Some("7")),
            apply(WriteMode::Replace, AppliedAction::DriftReverted)
        );
        let mut keep_deleted = plan();
        keep_deleted.policy.recreate_deleted = false;
        let decide_deleted = |seen| {
            decide(
                &keep_deleted,
                &source(),
                None,
                &history(seen, None),
                &consent(),
            )
        };
        assert_eq!(decide_deleted(Some("7")), Decision::Skip);
        assert_eq!(
            decide_deleted(None),
            apply(WriteMode::Replace, AppliedAction::Created),
            "a Secret that never existed is created"
        );
    }

    #[test]
    fn an_unchanged_secret_is_skipped_and_a_changed_source_updates_it() {
        assert_eq!(decide_for(Some(&ours("7")), Some("7")), Decision::Skip);
        assert_eq!(
            decide_synced(Some(&ours("7")), Some("7"), Some("d0")),
            apply(WriteMode::Replace, AppliedAction::Updated)
        );
        // Nothing says what it was generated from (e.g. a status that was never written).
        assert_eq!(
            decide_synced(Some(&ours("7")), Some("7"), None),
            apply(WriteMode::Replace, AppliedAction::Updated)
        );
    }

    #[test]
    fn a_due_refresh_generates_again_and_drift_repair_can_be_off() {
        let due = History {
            refresh_due: true,
            ..history(Some("7"), Some("d1"))
        };
        assert_eq!(
            decide(&plan(), &source(), Some(&ours("7")), &due, &consent()),
            apply(WriteMode::Replace, AppliedAction::Refreshed)
        );
        let mut no_repair = plan();
        no_repair.policy.repair_drift = false;
        let decide_edited = |plan: &Plan| {
            decide(
                plan,
                &source(),
                Some(&ours("8")),
                &history(Some("7"), Some("d1")),
                &consent(),
            )
        };
        assert_eq!(
            decide_edited(&plan()),
            apply(WriteMode::Replace, AppliedAction::DriftReverted)
        );
        assert_eq!(decide_edited(&no_repair), Decision::Skip);
    }

    #[test]
    fn a_write_by_someone_else_is_drift() {
        assert_eq!(
            decide_for(Some(&ours("8")), Some("7")),
            apply(WriteMode::Replace, AppliedAction::DriftReverted)
        );
        // After a restart nothing was seen yet: managedFields tell.
        assert_eq!(decide_for(Some(&ours("8")), None), Decision::Skip);
        let mut edited = ours("8");
        edited.writers.push(Writer {
            manager: "kubectl-edit".into(),
            time: Some(Timestamp::from_second(200).unwrap()),
            data_keys: keys(&["password"]),
        });
        assert_eq!(
            decide_for(Some(&edited), None),
            apply(WriteMode::Replace, AppliedAction::DriftReverted)
        );
        // Another source's later write is not an edit of ours.
        let mut shared = ours("8");
        shared
            .writers
            .push(writer(&manager("other"), 200, &["extra"]));
        assert_eq!(decide_for(Some(&shared), None), Decision::Skip);
    }

    #[test]
    fn a_secret_owned_by_the_source_uid_is_ours_without_our_writes() {
        // Created by the upstream controller: ownerReference only.
        let upstream = ExistingSecret {
            controller_uid: Some("uid-1".into()),
            resource_version: Some("3".into()),
            ..ExistingSecret::default()
        };
        assert_eq!(
            decide_synced(Some(&upstream), None, None),
            apply(WriteMode::Replace, AppliedAction::Updated)
        );
    }

    #[test]
    fn a_secret_written_for_another_source_is_not_ours() {
        let others = ExistingSecret {
            resource_version: Some("3".into()),
            controller_uid: Some("uid-2".into()),
            writers: vec![writer(&manager("other"), 100, &["password"])],
            ..ExistingSecret::default()
        };
        assert!(matches!(
            decide_for(Some(&others), None),
            Decision::Refuse { .. }
        ));
    }

    #[test]
    fn someone_elses_secret_is_refused_unless_it_consents() {
        let foreign = ExistingSecret {
            controller_uid: Some("other".into()),
            ..ExistingSecret::default()
        };
        let Decision::Refuse { message } = decide_for(Some(&foreign), None) else {
            panic!("must refuse");
        };
        assert!(message.contains("\"db\" already exists and is not managed by SealedSecret"));
        assert!(message.contains("example/managed=true"));

        let with = |annotations: &[&str]| {
            let mut secret = foreign.clone();
            for annotation in annotations {
                secret
                    .annotations
                    .insert(annotation.to_string(), "true".into());
            }
            decide_for(Some(&secret), None)
        };
        assert_eq!(
            with(&["example/managed"]),
            apply(WriteMode::Replace, AppliedAction::Adopted)
        );
        // A merge into someone else's Secret never makes it ours to garbage-collect.
        assert_eq!(
            with(&["example/patch"]),
            Decision::Apply {
                mode: WriteMode::Merge,
                action: AppliedAction::Adopted,
                owner_reference: false,
            }
        );
        assert_eq!(
            with(&["example/patch", "example/managed"]),
            apply(WriteMode::Merge, AppliedAction::Adopted)
        );
    }

    fn merge(action: AppliedAction) -> Decision {
        Decision::Apply {
            mode: WriteMode::Merge,
            action,
            owner_reference: false,
        }
    }

    #[test]
    fn a_merged_secret_drifts_only_when_one_of_our_keys_is_taken() {
        let own_keys = keys(&["password", "user"]);
        let merged = |rv: &str, owned: &[&str]| ExistingSecret {
            annotations: [("example/patch".to_string(), "true".to_string())].into(),
            resource_version: Some(rv.into()),
            writers: vec![
                writer(&manager("db"), 100, owned),
                Writer {
                    manager: "kubectl".into(),
                    time: Some(Timestamp::from_second(200).unwrap()),
                    data_keys: keys(&["theirs"]),
                },
            ],
            ..ExistingSecret::default()
        };
        let decide_merged = |existing: &ExistingSecret, seen| {
            let history = History {
                own_keys: Some(&own_keys),
                ..history(seen, Some("d1"))
            };
            decide(&plan(), &source(), Some(existing), &history, &consent())
        };
        // Someone else wrote their own key: the version moved, ours are intact.
        let theirs_edited = merged("8", &["password", "user"]);
        assert_eq!(decide_merged(&theirs_edited, Some("7")), Decision::Skip);
        assert_eq!(decide_merged(&theirs_edited, None), Decision::Skip);
        // Someone edited or removed one of ours.
        let ours_taken = merged("8", &["user"]);
        assert_eq!(
            decide_merged(&ours_taken, Some("7")),
            merge(AppliedAction::DriftReverted)
        );
        assert_eq!(
            decide_merged(&ours_taken, None),
            merge(AppliedAction::DriftReverted)
        );
    }

    #[test]
    fn a_merging_source_writes_into_any_secret_and_creates_one_only_when_asked() {
        let mut merging = plan();
        merging.policy.ownership = Ownership::Merge { create: false };
        let foreign = ExistingSecret {
            resource_version: Some("3".into()),
            controller_uid: Some("someone".into()),
            ..ExistingSecret::default()
        };
        let decide_merging = |plan: &Plan, existing| {
            decide(plan, &source(), existing, &history(None, None), &consent())
        };
        assert_eq!(
            decide_merging(&merging, Some(&foreign)),
            merge(AppliedAction::Updated)
        );
        let Decision::Refuse { message } = decide_merging(&merging, None) else {
            panic!("a missing Secret is not created");
        };
        assert!(message.contains("\"db\" does not exist"), "{message}");
        merging.policy.ownership = Ownership::Merge { create: true };
        assert_eq!(
            decide_merging(&merging, None),
            merge(AppliedAction::Created)
        );
    }

    #[test]
    fn a_key_another_source_writes_is_found() {
        let mut shared = ours("3");
        shared
            .writers
            .push(writer(&manager("other"), 100, &["token"]));
        shared.writers.push(Writer {
            manager: "kubectl".into(),
            data_keys: keys(&["note"]),
            ..Writer::default()
        });
        let wanted = keys(&["note", "token", "user"]);
        assert_eq!(
            shared.key_of_a_sibling(&manager("db"), &wanted),
            Some(("token", "engine/SealedSecret/other"))
        );
        assert_eq!(
            shared.key_of_a_sibling(&manager("db"), &keys(&["note", "user"])),
            None
        );
    }
}
