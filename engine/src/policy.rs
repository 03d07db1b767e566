//! The ownership guard and the decision of what to do with a source's Secret, as pure
//! functions of what is known (the plan, the existing Secret's metadata, what we last saw).

use std::collections::{BTreeMap, BTreeSet};

use crate::generator::{AppliedAction, Plan, WriteMode};

/// What the engine knows of an existing Secret without reading its data. Nothing of it is
/// bookkeeping on the Secret: ownership comes from ownerReferences and managedFields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExistingSecret {
    pub resource_version: Option<String>,
    /// The annotations the guard reads (consent); a target may drop the others.
    pub annotations: BTreeMap<String, String>,
    /// UID of the controlling ownerReference, if any.
    pub controller_uid: Option<String>,
    /// Whether our field manager wrote some of its content (data, type).
    pub written_by_us: bool,
    /// Whether another field manager wrote the Secret's data or type after our last write
    /// (from managedFields): an edit made while nobody was watching.
    pub changed_by_others: bool,
    /// The data keys our field manager owns (from managedFields), where the target can
    /// tell: for Secrets of the API server that consent to merging.
    pub our_data_keys: Option<BTreeSet<String>>,
}

/// The source, as the guard needs to know it.
#[derive(Debug, Clone)]
pub struct SourceIdentity {
    /// Its kind, for messages.
    pub kind: String,
    pub uid: Option<String>,
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
        [&self.adopt, &self.merge]
            .into_iter()
            .any(|name| name.as_deref() == Some(annotation))
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
    /// The Secret exists and is not ours; leave it.
    Refuse { message: String },
}

/// Whether `annotations` hold `annotation` set to "true": a Secret's consent to be taken
/// over or merged into.
pub(crate) fn consents(annotations: &BTreeMap<String, String>, annotation: Option<&str>) -> bool {
    annotation
        .and_then(|a| annotations.get(a))
        .is_some_and(|v| v == "true")
}

/// Decides for `plan`. `last_seen` is the resourceVersion this process last wrote or
/// checked, `None` after a start: then an edit is recognised from managedFields instead.
/// `synced_digest` is the input digest the Secret is known to have been generated from
/// (by this process, or as the source's status reports).
pub fn decide(
    plan: &Plan,
    source: &SourceIdentity,
    existing: Option<&ExistingSecret>,
    last_seen: Option<&str>,
    synced_digest: Option<&str>,
    consent: &Consent,
) -> Decision {
    let Some(existing) = existing else {
        // Gone although this process wrote or saw it: deleted by someone else.
        let action = match last_seen {
            Some(_) if !plan.recreate_deleted => return Decision::Skip,
            Some(_) => AppliedAction::DriftReverted,
            None => AppliedAction::Created,
        };
        return Decision::Apply {
            mode: plan.write,
            action,
            owner_reference: plan.owner_reference,
        };
    };
    let consents =
        |annotation: &Option<String>| consents(&existing.annotations, annotation.as_deref());
    let (mode, owner_reference) = if consents(&consent.merge) {
        (
            WriteMode::Merge,
            plan.owner_reference && consents(&consent.adopt),
        )
    } else {
        (plan.write, plan.owner_reference)
    };
    let ours = existing.written_by_us
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
    let action = if synced_digest != Some(plan.input_digest.as_str()) {
        AppliedAction::Updated
    } else if match (mode, &plan.data_keys, &existing.our_data_keys) {
        // Others write the rest of a merged Secret: only losing one of ours is drift (an
        // edit or removal of a key moves it to whoever made it).
        (WriteMode::Merge, Some(keys), Some(ours)) => !keys.is_subset(ours),
        _ => match last_seen {
            Some(seen) => existing.resource_version.as_deref() != Some(seen),
            None => existing.changed_by_others,
        },
    } {
        AppliedAction::DriftReverted
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
    use crate::SecretRef;

    fn plan() -> Plan {
        Plan {
            target: SecretRef {
                namespace: "ns".into(),
                name: "db".into(),
            },
            input_digest: "d1".into(),
            owner_reference: true,
            write: WriteMode::Replace,
            data_keys: Some(keys(&["password", "user"])),
            recreate_deleted: true,
        }
    }

    fn keys(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|k| k.to_string()).collect()
    }

    fn source() -> SourceIdentity {
        SourceIdentity {
            kind: "SealedSecret".into(),
            uid: Some("uid-1".into()),
        }
    }

    fn consent() -> Consent {
        Consent {
            adopt: Some("example/managed".into()),
            merge: Some("example/patch".into()),
        }
    }

    /// A Secret this engine wrote, at resourceVersion `rv`.
    fn ours(rv: &str) -> ExistingSecret {
        ExistingSecret {
            resource_version: Some(rv.into()),
            written_by_us: true,
            ..ExistingSecret::default()
        }
    }

    /// Decides with the Secret known to be generated from digest `synced`.
    fn decide_synced(
        existing: Option<&ExistingSecret>,
        last_seen: Option<&str>,
        synced: Option<&str>,
    ) -> Decision {
        decide(&plan(), &source(), existing, last_seen, synced, &consent())
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
    fn a_missing_secret_is_created_or_restored() {
        assert_eq!(
            decide_for(None, None),
            apply(WriteMode::Replace, AppliedAction::Created)
        );
        assert_eq!(
            decide_for(None, Some("7")),
            apply(WriteMode::Replace, AppliedAction::DriftReverted)
        );
        let keep_deleted = Plan {
            recreate_deleted: false,
            ..plan()
        };
        let decide_deleted = |seen| decide(&keep_deleted, &source(), None, seen, None, &consent());
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
    fn a_write_by_someone_else_is_drift() {
        assert_eq!(
            decide_for(Some(&ours("8")), Some("7")),
            apply(WriteMode::Replace, AppliedAction::DriftReverted)
        );
        // After a restart nothing was seen yet: managedFields tell.
        assert_eq!(decide_for(Some(&ours("8")), None), Decision::Skip);
        let edited = ExistingSecret {
            changed_by_others: true,
            ..ours("8")
        };
        assert_eq!(
            decide_for(Some(&edited), None),
            apply(WriteMode::Replace, AppliedAction::DriftReverted)
        );
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

    #[test]
    fn a_merged_secret_drifts_only_when_one_of_our_keys_is_taken() {
        let merged = |rv: &str, owned: &[&str]| ExistingSecret {
            annotations: [("example/patch".to_string(), "true".to_string())].into(),
            changed_by_others: true,
            our_data_keys: Some(keys(owned)),
            ..ours(rv)
        };
        let merge = |action| Decision::Apply {
            mode: WriteMode::Merge,
            action,
            owner_reference: false,
        };
        // Someone else wrote their own key: the version moved, ours are intact.
        let theirs_edited = merged("8", &["password", "user"]);
        assert_eq!(decide_for(Some(&theirs_edited), Some("7")), Decision::Skip);
        assert_eq!(decide_for(Some(&theirs_edited), None), Decision::Skip);
        // Someone edited or removed one of ours.
        let ours_taken = merged("8", &["user"]);
        assert_eq!(
            decide_for(Some(&ours_taken), Some("7")),
            merge(AppliedAction::DriftReverted)
        );
        assert_eq!(
            decide_for(Some(&ours_taken), None),
            merge(AppliedAction::DriftReverted)
        );
    }
}
