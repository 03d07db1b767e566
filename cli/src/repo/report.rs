//! What `render`, `diff` and `sync` print: Secret manifests (values redacted unless asked),
//! and the per-Secret report of a diff or sync, as text or JSON, values only as hashes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealsync_api::{Format, to_document};
use sealsync_engine::{AppliedAction, DesiredSecret, Outcome, SecretRef};
use serde::Serialize;
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use super::manifests::{Declared, Problem};
use super::store::{Change, KeyChanges, REFUSED};
use crate::reencrypt_all::count;

/// What happened (or, in a diff, would happen) to one Secret of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Created,
    Updated,
    Unchanged,
    Pruned,
    /// Deleted because its source wants none (an ExternalSecret's remote secrets gone,
    /// `deletionPolicy: Delete`).
    Deleted,
    /// The Secret in the store is not this sync's; it was left alone.
    Refused,
    Failed,
}

impl Action {
    fn symbol(self) -> char {
        match self {
            Self::Created => '+',
            Self::Updated => '~',
            Self::Unchanged => '=',
            Self::Pruned | Self::Deleted => '-',
            Self::Refused | Self::Failed => '!',
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Pruned => "pruned",
            Self::Deleted => "deleted",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }
}

/// One Secret of the report.
#[derive(Debug, Serialize)]
pub struct Row {
    /// `namespace/name`.
    pub secret: String,
    pub action: Action,
    /// Where its source is declared, `file:line`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<KeyChanges>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl Row {
    pub fn new(
        secret: &SecretRef,
        action: Action,
        source: Option<String>,
        keys: Option<KeyChanges>,
    ) -> Self {
        Self {
            secret: secret.to_string(),
            action,
            source,
            keys,
            message: None,
        }
    }

    /// A Secret something could not be done to, and why.
    pub fn failed(secret: &SecretRef, message: String) -> Self {
        Self {
            message: Some(message),
            ..Self::new(secret, Action::Failed, None, None)
        }
    }

    /// The row of a source's sync outcome and what it did to the store.
    pub fn of_outcome<S, R>(
        source: &Declared<S>,
        outcome: &Outcome<R>,
        change: Option<Change>,
    ) -> Self {
        let (action, message) = match outcome {
            Outcome::Applied {
                action: AppliedAction::Deleted,
                ..
            } => (Action::Deleted, None),
            Outcome::Applied { .. } => match &change {
                Some(change) if change.modified && change.existed => (Action::Updated, None),
                Some(change) if change.modified => (Action::Created, None),
                _ => (Action::Unchanged, None),
            },
            Outcome::Unchanged => (Action::Unchanged, None),
            Outcome::Refused { message }
            | Outcome::Failed {
                reason: REFUSED,
                message,
            } => (Action::Refused, Some(message.clone())),
            Outcome::Failed { message, .. } => (Action::Failed, Some(message.clone())),
        };
        let keys = change.filter(|_| matches!(outcome, Outcome::Applied { .. }));
        Self {
            message,
            ..Self::new(
                &source.target,
                action,
                Some(source.place()),
                keys.map(|c| c.keys),
            )
        }
    }
}

/// The report of a diff or sync.
#[derive(Debug, Serialize)]
pub struct Report {
    pub command: &'static str,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    pub store: String,
    pub secrets: Vec<Row>,
    pub problems: Vec<Problem>,
    /// ClusterExternalSecrets that select no Namespace the repository declares.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
    /// YAML files (or kustomize outputs) and documents read.
    pub files: usize,
    pub documents: usize,
    /// Whether pruning ran (not when some file could not be read entirely).
    pub pruned: bool,
}

impl Report {
    /// Secrets that failed or were refused, and problems of the repository.
    pub fn failures(&self) -> usize {
        self.problems.len()
            + self
                .secrets
                .iter()
                .filter(|r| matches!(r.action, Action::Failed | Action::Refused))
                .count()
    }

    pub fn text(&self) -> String {
        let mut text = String::new();
        let width = self
            .secrets
            .iter()
            .map(|r| r.secret.len())
            .max()
            .unwrap_or(0);
        for row in &self.secrets {
            let source = row.source.as_deref().unwrap_or("");
            text.push_str(&format!(
                "{} {:width$}  {:9}  {source}\n",
                row.action.symbol(),
                row.secret,
                row.action.word()
            ));
            if let Some(message) = &row.message {
                text.push_str(&format!("    {message}\n"));
            }
            if let Some(keys) = &row.keys
                && row.action != Action::Unchanged
            {
                for (key, hash) in &keys.added {
                    text.push_str(&format!("    + {key}  {hash}\n"));
                }
                for (key, (old, new)) in &keys.changed {
                    text.push_str(&format!("    ~ {key}  {old} -> {new}\n"));
                }
                for (key, hash) in &keys.removed {
                    text.push_str(&format!("    - {key}  {hash}\n"));
                }
            }
        }
        if !self.problems.is_empty() {
            text.push_str("Problems:\n");
            for problem in &self.problems {
                text.push_str(&format!("  {problem}\n"));
            }
        }
        for skipped in &self.skipped {
            text.push_str(&format!("Not synced: {skipped}\n"));
        }
        if !self.pruned {
            text.push_str("Nothing pruned: some files could not be read (see the problems).\n");
        }
        let n = |action| self.secrets.iter().filter(|r| r.action == action).count();
        // `deleted` only when some are: most repositories have no deletionPolicy Delete.
        let deleted = Some(Action::Deleted).filter(|&deleted| n(deleted) > 0);
        let counts = [
            Action::Created,
            Action::Updated,
            Action::Unchanged,
            Action::Pruned,
        ]
        .into_iter()
        .chain(deleted)
        .chain([Action::Refused, Action::Failed])
        .map(|action| format!("{} {}", n(action), action.word()))
        .collect::<Vec<_>>()
        .join(", ");
        let revision = self
            .revision
            .as_ref()
            .map(|r| format!(" at {r}"))
            .unwrap_or_default();
        let (verb, preposition) = match self.command {
            "diff" => ("Diff of", "against"),
            _ => ("Synced", "into"),
        };
        text.push_str(&format!(
            "{verb} {}{revision} {preposition} {} ({}, {}): {counts}; {}\n",
            self.source,
            self.store,
            count(self.files, "file", "files"),
            count(self.documents, "document", "documents"),
            count(self.problems.len(), "problem", "problems")
        ));
        text
    }
}

/// Where a rendered Secret's labels and annotations come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metadata {
    /// The repository's own text (a SealedSecret's template): printed.
    Plain,
    /// Possibly the secret values (an ExternalSecret's templates can put them there, and
    /// its data-hash annotation is an unkeyed hash of them): redacted but ESO's two
    /// bookkeeping labels, unless values are shown.
    FromValues,
}

/// Labels that never hold a value: ESO's managed marker and its hash of the
/// ExternalSecret's name.
const PLAIN_LABELS: [&str; 2] = [
    "reconcile.external-secrets.io/managed",
    "reconcile.external-secrets.io/created-by",
];

/// A Secret as `render` prints it: values base64-encoded with `show_values`, else replaced
/// by their length (as `metadata` says, label and annotation values too).
pub fn secret_manifest(
    target: &SecretRef,
    secret: &DesiredSecret,
    metadata_from: Metadata,
    show_values: bool,
) -> Value {
    let shown = |map: &std::collections::BTreeMap<String, String>| -> Value {
        map.iter()
            .map(|(key, value)| {
                let plain = show_values
                    || metadata_from == Metadata::Plain
                    || PLAIN_LABELS.contains(&key.as_str());
                let value = if plain {
                    value.clone()
                } else {
                    format!("(redacted, {} bytes)", value.len())
                };
                (key.clone(), Value::String(value))
            })
            .collect::<Map<String, Value>>()
            .into()
    };
    let mut metadata = Map::new();
    metadata.insert("name".into(), json!(target.name));
    metadata.insert("namespace".into(), json!(target.namespace));
    if !secret.labels.is_empty() {
        metadata.insert("labels".into(), shown(&secret.labels));
    }
    if !secret.annotations.is_empty() {
        metadata.insert("annotations".into(), shown(&secret.annotations));
    }
    let data: Map<String, Value> = secret
        .data
        .iter()
        .map(|(key, value)| {
            let shown = if show_values {
                STANDARD.encode(value.expose())
            } else {
                format!("(redacted, {} bytes)", value.len())
            };
            (key.clone(), Value::String(shown))
        })
        .collect();
    let mut manifest = json!({"apiVersion": "v1", "kind": "Secret", "metadata": metadata});
    if let Some(type_) = &secret.type_ {
        manifest["type"] = json!(type_);
    }
    if let Some(immutable) = secret.immutable {
        manifest["immutable"] = json!(immutable);
    }
    manifest["data"] = Value::Object(data);
    manifest
}

/// The Secrets as YAML documents, or as a JSON `v1` List.
pub fn manifests(secrets: &[Value], json: bool) -> anyhow::Result<Zeroizing<String>> {
    Ok(if json {
        let list = json!({"apiVersion": "v1", "kind": "List", "items": secrets});
        to_document(&[list], Format::Json)?
    } else {
        to_document(secrets, Format::Yaml)?
    })
}

#[cfg(test)]
mod tests {
    use sealsync_crypto::SecretBytes;

    use super::*;

    #[test]
    fn rendered_values_are_redacted_unless_asked() {
        let target = SecretRef {
            namespace: "app".into(),
            name: "db".into(),
        };
        let secret = DesiredSecret {
            data: [(
                "password".to_string(),
                SecretBytes::from(b"hunter2".to_vec()),
            )]
            .into(),
            ..DesiredSecret::default()
        };
        let redacted = secret_manifest(&target, &secret, Metadata::Plain, false);
        assert_eq!(redacted["data"]["password"], "(redacted, 7 bytes)");
        let shown = secret_manifest(&target, &secret, Metadata::Plain, true);
        assert_eq!(shown["data"]["password"], "aHVudGVyMg==");
        assert_eq!(shown["metadata"]["namespace"], "app");
    }

    #[test]
    fn labels_and_annotations_of_external_secrets_are_redacted_unless_asked() {
        let target = SecretRef {
            namespace: "app".into(),
            name: "db".into(),
        };
        let secret = DesiredSecret {
            labels: [
                (PLAIN_LABELS[0].to_string(), "true".to_string()),
                ("password".to_string(), "hunter2".to_string()),
            ]
            .into(),
            annotations: [(
                "reconcile.external-secrets.io/data-hash".to_string(),
                "0123abcd".to_string(),
            )]
            .into(),
            ..DesiredSecret::default()
        };
        let redacted = secret_manifest(&target, &secret, Metadata::FromValues, false);
        let metadata = &redacted["metadata"];
        assert_eq!(metadata["labels"][PLAIN_LABELS[0]], "true");
        assert_eq!(metadata["labels"]["password"], "(redacted, 7 bytes)");
        assert_eq!(
            metadata["annotations"]["reconcile.external-secrets.io/data-hash"],
            "(redacted, 8 bytes)"
        );
        let plain = secret_manifest(&target, &secret, Metadata::Plain, false);
        assert_eq!(plain["metadata"]["labels"]["password"], "hunter2");
        let shown = secret_manifest(&target, &secret, Metadata::FromValues, true);
        assert_eq!(shown["metadata"]["labels"]["password"], "hunter2");
    }
}
