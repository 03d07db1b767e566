//! `sync --cluster` without private keys: the SealedSecrets are applied for the cluster's
//! controller to open, and the sync reports on their Secrets (docs/sync.md).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use indicatif::ProgressBar;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::core::DeserializeGuard;
use kube::{Client, Resource, ResourceExt};
use sealsync_api::{SealedSecret, SealedSecretStatus};
use sealsync_crypto::SecretBytes;
use sealsync_engine::SecretRef;
use sealsync_engine::kubernetes::{api_message, conflict};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::cluster_store::{list_all, read_secret, scoped, values_of};
use super::manifests::Declared;
use super::parallelism;
use super::report::{Action, Row};
use super::store::{SYNC_LABEL, SYNC_SOURCE_ANNOTATION, ValueHasher, outside, token_refusal};

/// The first pause between two looks at the cluster, doubled up to [`MAX_PAUSE`].
const PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(1);
/// The longest wait for the controller, whatever `--timeout` says.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// How much of a controller's message a report quotes.
const MESSAGE_LIMIT: usize = 1024;
/// Attempts at an apply that the SealedSecret's changing (its status) gets in the way of.
const APPLY_ATTEMPTS: usize = 3;
/// Marks a SealedSecret that a sync of the source it names created, the only kind it may
/// prune: one handed over keeps its creator, whose writes a forced apply may all take.
const CREATED_ANNOTATION: &str = "sealsync.dev/sync-created-by";

/// The SealedSecrets of one source, applied for the cluster's controller to open.
pub struct ThroughController {
    client: Client,
    source: String,
    /// The field manager of this source's SealedSecrets (`sealsync-sync/<digest>`).
    manager: String,
    namespaces: Option<BTreeSet<String>>,
    diff: bool,
    /// How long to wait for the controller to report on the SealedSecrets applied.
    timeout: Duration,
    hasher: ValueHasher,
    /// Whether the cluster serves the SealedSecret API, once asked.
    served: tokio::sync::OnceCell<bool>,
}

/// A SealedSecret applied, waiting for the controller to open it.
struct Applied<'a> {
    declared: &'a Declared<SealedSecret>,
    generation: i64,
    /// Its Secret before the apply: resourceVersion and values.
    before: Option<(String, BTreeMap<String, SecretBytes>)>,
}

/// The controller's word on one SealedSecret: its `Synced` condition, once it has seen the
/// generation applied.
enum Verdict {
    Synced,
    Failed(String),
}

/// Pauses between looks at the cluster, growing, never past a deadline.
struct Pauses {
    next: Duration,
    deadline: Instant,
}

impl Pauses {
    fn until(deadline: Instant) -> Self {
        Self {
            next: PAUSE,
            deadline,
        }
    }

    /// Sleeps for the next pause; `false` once the deadline has passed.
    async fn pause(&mut self) -> bool {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        tokio::time::sleep(self.next.min(left)).await;
        self.next = (self.next * 2).min(MAX_PAUSE);
        true
    }
}

fn failed(declared: &Declared<SealedSecret>, message: String) -> Row {
    Row {
        source: Some(declared.place()),
        ..Row::failed(&declared.target, message)
    }
}

fn refused(declared: &Declared<SealedSecret>, message: String) -> Row {
    Row {
        message: Some(message),
        ..Row::new(
            &declared.target,
            Action::Refused,
            Some(declared.place()),
            None,
        )
    }
}

impl ThroughController {
    pub fn new(
        client: Client,
        source: &str,
        manager: &str,
        namespaces: Option<BTreeSet<String>>,
        diff: bool,
        timeout: Duration,
    ) -> Self {
        Self {
            client,
            source: source.into(),
            manager: manager.into(),
            namespaces,
            diff,
            timeout: timeout.min(MAX_TIMEOUT),
            hasher: ValueHasher::new(),
            served: tokio::sync::OnceCell::new(),
        }
    }

    /// The API server's message, with what to do when it is a 404 because the cluster has
    /// no SealedSecret API (rather than, say, no such namespace).
    async fn explain(&self, error: &kube::Error) -> String {
        let not_found = matches!(error, kube::Error::Api(status) if status.code == 404);
        if not_found && !self.serves_sealed_secrets().await {
            return format!(
                "the cluster has no SealedSecret API ({}): install a sealing controller \
                 (sealsync's chart, or upstream sealed-secrets)",
                SealedSecret::api_version(&())
            );
        }
        api_message(error)
    }

    async fn serves_sealed_secrets(&self) -> bool {
        *self
            .served
            .get_or_init(|| async {
                match self
                    .client
                    .list_api_group_resources(&SealedSecret::api_version(&()))
                    .await
                {
                    Ok(list) => list
                        .resources
                        .iter()
                        .any(|r| r.name == SealedSecret::plural(&())),
                    Err(kube::Error::Api(status)) => status.code != 404,
                    // Unknown: the API server's own message is told.
                    Err(_) => true,
                }
            })
            .await
    }

    /// The row of a SealedSecret that `what` failed for.
    async fn cannot(&self, declared: &Declared<SealedSecret>, what: &str, e: kube::Error) -> Row {
        let target = &declared.target;
        failed(
            declared,
            format!(
                "cannot {what} SealedSecret {target}: {}",
                self.explain(&e).await
            ),
        )
    }

    fn api(&self, namespace: &str) -> Api<SealedSecret> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Applies each source (as many at once as there are cores), waits for the controller
    /// to open them (`--timeout` from the last apply), and reports one row per source.
    pub async fn sync(
        &self,
        sources: &[Declared<SealedSecret>],
        progress: &ProgressBar,
    ) -> Vec<Row> {
        let steps: Vec<Result<Applied<'_>, Row>> = futures::stream::iter(sources)
            .map(|declared| async move {
                let step = self.apply(declared).await;
                progress.inc(1);
                step
            })
            .buffered(parallelism())
            .collect()
            .await;
        let (mut applied, mut rows) = (Vec::new(), Vec::new());
        for step in steps {
            match step {
                Ok(one) => applied.push(one),
                Err(row) => rows.push(row),
            }
        }
        let deadline = Instant::now() + self.timeout;
        let (verdicts, list_errors) = self.wait(&applied, deadline).await;
        let verdicts = &verdicts;
        let list_errors = &list_errors;
        let reported: Vec<Row> = futures::stream::iter(applied)
            .map(|applied| async move {
                let target = &applied.declared.target;
                match verdicts.get(target) {
                    Some(Verdict::Synced) => self.opened(applied, deadline).await,
                    Some(Verdict::Failed(message)) => failed(applied.declared, message.clone()),
                    None => failed(
                        applied.declared,
                        format!(
                            "SealedSecret {target} applied, but no controller reported on it \
                             within {}{}: check that a sealing controller runs, watches \
                             namespace {} and writes statuses, and see `kubectl describe \
                             sealedsecret -n {} {}`",
                            humantime::format_duration(self.timeout),
                            list_errors
                                .get(target.namespace.as_str())
                                .map(|e| format!(" (listing them failed: {e})"))
                                .unwrap_or_default(),
                            target.namespace,
                            target.namespace,
                            target.name
                        ),
                    ),
                }
            })
            .buffered(parallelism())
            .collect()
            .await;
        rows.extend(reported);
        rows
    }

    /// Applies one SealedSecret (in a diff, as a dry run, whose row is then final).
    async fn apply<'a>(&self, declared: &'a Declared<SealedSecret>) -> Result<Applied<'a>, Row> {
        let target = &declared.target;
        let not_applied = format!("SealedSecret {target} not applied");
        let refusal = outside("SealedSecret", self.namespaces.as_ref(), target)
            .or_else(|| {
                let template = declared.source.spec.template.as_ref();
                token_refusal(template.and_then(|t| t.type_.as_deref()), &not_applied)
            })
            .or_else(|| {
                // Its Secret's type is sealed inside it, where no check can see it.
                declared.source.spec.data.is_some().then(|| {
                    format!(
                        "{not_applied}: it uses the deprecated spec.data, whose Secret type only \
                         the controller can see; re-seal it into spec.encryptedData (sealsync \
                         reencrypt), or sync it with its keys (-k)"
                    )
                })
            });
        if let Some(refusal) = refusal {
            return Err(refused(declared, refusal));
        }
        let api = self.api(&target.namespace);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let current = match api.get_opt(&target.name).await {
                Ok(current) => current,
                Err(e) => return Err(self.cannot(declared, "read", e).await),
            };
            if let Some(current) = &current
                && !self.marked(current.meta(), SYNC_SOURCE_ANNOTATION)
            {
                return Err(refused(
                    declared,
                    format!(
                        "SealedSecret {target} exists and this sync did not apply it; to hand \
                         it over, annotate it {SYNC_SOURCE_ANNOTATION}={}",
                        self.source
                    ),
                ));
            }
            // Forced over other managers only onto the SealedSecret read just now, which
            // is this source's: one that changed since (another's now) is a conflict.
            let (body, params) = match &current {
                Some(current) => (
                    self.desired(&declared.source, Some(current)),
                    PatchParams::apply(&self.manager).force(),
                ),
                None => (
                    self.desired(&declared.source, None),
                    PatchParams::apply(&self.manager),
                ),
            };
            if self.diff {
                match api
                    .patch(&target.name, &params.dry_run(), &Patch::Apply(&body))
                    .await
                {
                    Ok(planned) => return Err(self.planned(declared, current.as_ref(), &planned)),
                    Err(e) if conflict(&e) && attempts < APPLY_ATTEMPTS => continue,
                    Err(e) => return Err(self.cannot(declared, "apply (dry run)", e).await),
                }
            }
            let before = read_secret(&self.client, target)
                .await
                .map_err(|e| failed(declared, e.to_string()))?
                .map(|secret| {
                    let version = secret["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    (version, values_of(secret))
                });
            match api.patch(&target.name, &params, &Patch::Apply(&body)).await {
                // Made by someone else between the read and the apply, identically (else
                // a conflict): not this source's; what this apply added is taken back.
                Ok(done) if current.is_none() && others_wrote_spec(done.meta(), &self.manager) => {
                    return Err(self.give_back(declared, &api).await);
                }
                Ok(done) => {
                    return Ok(Applied {
                        declared,
                        generation: done.meta().generation.unwrap_or_default(),
                        before,
                    });
                }
                Err(e) if conflict(&e) && attempts < APPLY_ATTEMPTS => {}
                Err(e) => return Err(self.cannot(declared, "apply", e).await),
            }
        }
    }

    /// The row of a SealedSecret someone else created as this sync applied it: the apply's
    /// own fields (the marks) released by an apply of none, the rest theirs.
    async fn give_back(&self, declared: &Declared<SealedSecret>, api: &Api<SealedSecret>) -> Row {
        let target = &declared.target;
        let nothing = json!({
            "apiVersion": SealedSecret::api_version(&()),
            "kind": SealedSecret::kind(&()),
            "metadata": {"name": target.name, "namespace": target.namespace},
        });
        let released = api
            .patch(
                &target.name,
                &PatchParams::apply(&self.manager),
                &Patch::Apply(&nothing),
            )
            .await
            .err()
            .map(|e| {
                format!(
                    " (taking back its marks failed: {}; remove them)",
                    api_message(&e)
                )
            })
            .unwrap_or_default();
        refused(
            declared,
            format!(
                "SealedSecret {target} was created by someone else as this sync applied it, so \
                 it is theirs{released}; to hand it over, annotate it \
                 {SYNC_SOURCE_ANNOTATION}={}",
                self.source
            ),
        )
    }

    /// The SealedSecret as the repository declares it, marked with the source (and, when
    /// it is created, as created by it); applied onto `current`, only onto that version. What
    /// a cluster wrote into an exported manifest (status, owners, finalizers) left out.
    fn desired(&self, sealed: &SealedSecret, current: Option<&SealedSecret>) -> Value {
        let mut labels = sealed.labels().clone();
        labels.insert(SYNC_LABEL.into(), "true".into());
        let mut annotations = sealed.annotations().clone();
        annotations.insert(SYNC_SOURCE_ANNOTATION.into(), self.source.clone());
        // Kept by each apply (an apply without it would remove it), never added later.
        let created = current.is_none_or(|current| self.created(current.meta()));
        if created {
            annotations.insert(CREATED_ANNOTATION.into(), self.source.clone());
        }
        let metadata = ObjectMeta {
            name: sealed.meta().name.clone(),
            namespace: sealed.namespace(),
            labels: Some(labels),
            annotations: Some(annotations),
            resource_version: current.and_then(|current| current.resource_version()),
            ..ObjectMeta::default()
        };
        json!({
            "apiVersion": SealedSecret::api_version(&()),
            "kind": SealedSecret::kind(&()),
            "metadata": metadata,
            "spec": sealed.spec,
        })
    }

    /// The row of a diff: what the apply would change in the SealedSecret, its keys
    /// compared by ciphertext (the values are known only to the controller).
    fn planned(
        &self,
        declared: &Declared<SealedSecret>,
        current: Option<&SealedSecret>,
        planned: &SealedSecret,
    ) -> Row {
        let ciphertexts = |sealed: Option<&SealedSecret>| -> BTreeMap<String, SecretBytes> {
            sealed
                .into_iter()
                .flat_map(|s| &s.spec.encrypted_data)
                .map(|(key, value)| (key.clone(), SecretBytes::from(value.as_bytes())))
                .collect()
        };
        let comparable =
            |sealed: &SealedSecret| json!([sealed.spec, sealed.labels(), sealed.annotations()]);
        let action = match current {
            None => Action::Created,
            Some(current) if comparable(current) != comparable(planned) => Action::Updated,
            Some(_) => Action::Unchanged,
        };
        let keys = self
            .hasher
            .changes(&ciphertexts(current), &ciphertexts(Some(planned)));
        Row {
            message: (action != Action::Unchanged).then(|| {
                "sealed: the controller opens it on sync; keys compared by their ciphertext".into()
            }),
            ..Row::new(&declared.target, action, Some(declared.place()), Some(keys))
        }
    }

    /// The controller's verdicts on `applied`, as its status reports them, until all are
    /// in or the deadline (looked at at least once): one list of this sync's SealedSecrets
    /// per namespace and round. Also the last error of each namespace's lists.
    async fn wait(
        &self,
        applied: &[Applied<'_>],
        deadline: Instant,
    ) -> (HashMap<SecretRef, Verdict>, HashMap<String, String>) {
        let mut verdicts = HashMap::new();
        let mut list_errors = HashMap::new();
        let mut pauses = Pauses::until(deadline);
        let mut first = true;
        loop {
            let pending: BTreeSet<&str> = applied
                .iter()
                .filter(|a| !verdicts.contains_key(&a.declared.target))
                .map(|a| a.declared.target.namespace.as_str())
                .collect();
            if pending.is_empty() {
                break;
            }
            for namespace in pending {
                // Each namespace is looked at once; after that, not past the deadline.
                if !first && Instant::now() >= deadline {
                    break;
                }
                let listed = match self.statuses(namespace).await {
                    Ok(listed) => listed,
                    // Tried again next round, until the deadline.
                    Err(e) => {
                        list_errors.insert(namespace.to_string(), self.explain(&e).await);
                        continue;
                    }
                };
                for applied in applied {
                    let target = &applied.declared.target;
                    if target.namespace != namespace || verdicts.contains_key(target) {
                        continue;
                    }
                    if let Some(verdict) = listed
                        .get(&target.name)
                        .and_then(|status| verdict(target, status, applied.generation))
                    {
                        verdicts.insert(target.clone(), verdict);
                    }
                }
            }
            first = false;
            if !pauses.pause().await {
                break;
            }
        }
        (verdicts, list_errors)
    }

    /// The row of a SealedSecret the controller opened: its Secret before and after (a
    /// Secret deleted by hand is made again shortly after the status says synced).
    async fn opened(&self, applied: Applied<'_>, deadline: Instant) -> Row {
        let declared = applied.declared;
        let mut pauses = Pauses::until(deadline);
        let after = loop {
            match read_secret(&self.client, &declared.target).await {
                Ok(Some(after)) => break after,
                Ok(None) if pauses.pause().await => {}
                Ok(None) => {
                    return failed(
                        declared,
                        format!(
                            "SealedSecret {} is synced, but its Secret is not there",
                            declared.target
                        ),
                    );
                }
                Err(e) => return failed(declared, e.to_string()),
            }
        };
        // A write that changes nothing gives no new resourceVersion.
        let version = after["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (action, before) = match applied.before {
            None => (Action::Created, BTreeMap::new()),
            Some((was, values)) if was != version => (Action::Updated, values),
            Some((_, values)) => (Action::Unchanged, values),
        };
        let keys = self.hasher.changes(&before, &values_of(after));
        Row::new(&declared.target, action, Some(declared.place()), Some(keys))
    }

    /// The statuses of the syncs' SealedSecrets (labelled [`SYNC_LABEL`]) in `namespace`,
    /// by name. Each is read on its own: one that is not a valid SealedSecret (anyone who
    /// may create one can label it) has none, and stops no other.
    async fn statuses(
        &self,
        namespace: &str,
    ) -> Result<HashMap<String, SealedSecretStatus>, kube::Error> {
        let api: Api<DeserializeGuard<SealedSecret>> =
            Api::namespaced(self.client.clone(), namespace);
        let params = ListParams::default().labels(&format!("{SYNC_LABEL}=true"));
        let listed = list_all(params, |params| {
            let api = api.clone();
            async move { api.list(&params).await }
        })
        .await?;
        Ok(listed
            .into_iter()
            .filter_map(|guard| {
                let sealed = guard.0.ok()?;
                Some((sealed.name_any(), sealed.status?))
            })
            .collect())
    }

    /// Deletes the SealedSecrets this source applied that the repository no longer
    /// declares (in a diff, only reports them); the cluster's garbage collector then
    /// deletes the Secrets they own. A cluster without the SealedSecret API has none, and
    /// so has, for a repository that declares no SealedSecret, a namespace where it may not
    /// list them.
    pub async fn prune(
        &self,
        declared: &BTreeSet<&SecretRef>,
        declares_sealed: bool,
    ) -> anyhow::Result<Vec<Row>> {
        let selector = format!("{SYNC_LABEL}=true");
        let mut rows = Vec::new();
        for (api, scope) in scoped::<SealedSecret>(&self.client, self.namespaces.as_ref()) {
            let params = ListParams::default().labels(&selector);
            let listed = list_all(params, |params| {
                let api = api.clone();
                async move { api.list_metadata(&params).await }
            })
            .await;
            let listed = match listed {
                Ok(listed) => listed,
                Err(kube::Error::Api(status))
                    if status.code == 404 || (status.code == 403 && !declares_sealed) =>
                {
                    continue;
                }
                Err(e) => anyhow::bail!(
                    "cannot list the SealedSecrets labelled {selector} in {scope}: {}",
                    api_message(&e)
                ),
            };
            for sealed in listed {
                let target = SecretRef {
                    namespace: sealed.namespace().unwrap_or_default(),
                    name: sealed.name_any(),
                };
                if declared.contains(&target) || !self.is_own(&sealed.metadata) {
                    continue;
                }
                rows.push(self.prune_one(&sealed.metadata, &target).await);
            }
        }
        Ok(rows)
    }

    /// Whether a sync of this source created the SealedSecret of `meta` (marked so).
    fn created(&self, meta: &ObjectMeta) -> bool {
        self.marked(meta, CREATED_ANNOTATION)
    }

    /// Whether the annotation `name` of the object of `meta` names this source.
    fn marked(&self, meta: &ObjectMeta, name: &str) -> bool {
        meta.annotations.as_ref().and_then(|a| a.get(name)) == Some(&self.source)
    }

    /// Whether this source's SealedSecret of `meta` is its own to prune: marked with it, created
    /// by it, and its spec written by this source's manager alone (one handed over keeps
    /// its creator).
    fn is_own(&self, meta: &ObjectMeta) -> bool {
        self.marked(meta, SYNC_SOURCE_ANNOTATION)
            && self.created(meta)
            && !spec_writers(meta).is_empty()
            && !others_wrote_spec(meta, &self.manager)
    }

    /// Prunes one SealedSecret; its row lists the keys of the Secret it owns, which goes
    /// with it (a Secret it does not own stays, and the row says so).
    async fn prune_one(&self, meta: &ObjectMeta, target: &SecretRef) -> Row {
        let secret = match read_secret(&self.client, target).await {
            Ok(secret) => secret,
            Err(e) => return Row::failed(target, format!("not pruned: {e}")),
        };
        let existed = secret.is_some();
        let owned = secret.as_ref().is_some_and(|secret| {
            secret["metadata"]["ownerReferences"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|owner| {
                    owner["uid"].as_str() == meta.uid.as_deref()
                        && owner["controller"].as_bool() == Some(true)
                })
        });
        let values = secret.map(values_of).unwrap_or_default();
        if !self.diff {
            let api = self.api(&target.namespace);
            let mut meta = meta.clone();
            let mut attempts = 0;
            loop {
                attempts += 1;
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: meta.resource_version.clone(),
                        uid: meta.uid.clone(),
                    }),
                    ..DeleteParams::default()
                };
                let refused = match api.delete(&target.name, &params).await {
                    Ok(_) => break,
                    // Changed since it was listed (its status, say): looked at again.
                    Err(e) if conflict(&e) && attempts < APPLY_ATTEMPTS => {
                        match api.get_metadata_opt(&target.name).await {
                            Ok(Some(again)) if self.is_own(&again.metadata) => {
                                meta = again.metadata;
                                continue;
                            }
                            Ok(None) => break,
                            Ok(Some(_)) => "it is no longer this source's alone".to_string(),
                            Err(e) => api_message(&e),
                        }
                    }
                    Err(e) => api_message(&e),
                };
                return Row::failed(
                    target,
                    format!("SealedSecret {target} not pruned: {refused}"),
                );
            }
        }
        if owned || !existed {
            let keys = self.hasher.changes(&values, &BTreeMap::new());
            Row::new(target, Action::Pruned, None, Some(keys))
        } else {
            Row {
                message: Some(format!(
                    "SealedSecret {target} pruned; it does not own a Secret {target}, which \
                     stays"
                )),
                ..Row::new(target, Action::Pruned, None, None)
            }
        }
    }
}

/// The field managers that wrote the spec of the object of `meta` (its status and
/// metadata-only writers aside).
fn spec_writers(meta: &ObjectMeta) -> Vec<Option<&str>> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.subresource.is_none())
        .filter(|entry| {
            entry
                .fields_v1
                .as_ref()
                .is_some_and(|fields| fields.0.get("f:spec").is_some())
        })
        .map(|entry| entry.manager.as_deref())
        .collect()
}

/// Whether a field manager other than `manager` wrote the spec of the object of `meta`.
fn others_wrote_spec(meta: &ObjectMeta, manager: &str) -> bool {
    spec_writers(meta)
        .into_iter()
        .any(|writer| writer != Some(manager))
}

/// The controller's verdict on the SealedSecret `target`, once its status covers
/// `generation`.
fn verdict(target: &SecretRef, status: &SealedSecretStatus, generation: i64) -> Option<Verdict> {
    if status.observed_generation.unwrap_or_default() < generation {
        return None;
    }
    let synced = status.conditions.iter().find(|c| c.type_ == "Synced")?;
    Some(match synced.status.as_str() {
        "True" => Verdict::Synced,
        _ => {
            let message = synced
                .message
                .as_deref()
                .filter(|m| !m.is_empty())
                .unwrap_or("no reason given; see its events");
            let mut end = message.len().min(MESSAGE_LIMIT);
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            Verdict::Failed(format!(
                "the controller did not open SealedSecret {target}: {}",
                &message[..end]
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: &str = "sealsync-sync/0123456789ab";

    fn written_by(entries: &[(&str, Option<&str>, Value)]) -> ObjectMeta {
        let entries: Vec<Value> = entries
            .iter()
            .map(|(manager, subresource, fields)| {
                json!({
                    "manager": manager, "operation": "Apply", "fieldsType": "FieldsV1",
                    "fieldsV1": fields, "subresource": subresource,
                })
            })
            .collect();
        serde_json::from_value(json!({"name": "db", "managedFields": entries})).unwrap()
    }

    #[test]
    fn only_writers_of_the_spec_count_and_any_other_makes_it_not_ours_alone() {
        let spec = json!({"f:spec": {"f:encryptedData": {"f:password": {}}}});
        let annotation = json!({"f:metadata": {"f:annotations": {"f:team": {}}}});
        let status = json!({"f:status": {"f:conditions": {}}});
        let ours = written_by(&[
            (OURS, None, spec.clone()),
            ("kubectl-annotate", None, annotation),
            ("sealsync-controller", Some("status"), status.clone()),
        ]);
        assert_eq!(spec_writers(&ours), [Some(OURS)]);
        assert!(!others_wrote_spec(&ours, OURS));
        let shared = written_by(&[
            (OURS, None, spec.clone()),
            ("argocd-controller", None, spec),
        ]);
        assert!(others_wrote_spec(&shared, OURS));
        let unwritten = written_by(&[("sealsync-controller", Some("status"), status)]);
        assert!(spec_writers(&unwritten).is_empty());
        assert!(!others_wrote_spec(&unwritten, OURS));
    }

    #[test]
    fn a_verdict_waits_for_the_generation_applied_and_quotes_a_bounded_message() {
        let target = SecretRef {
            namespace: "app".into(),
            name: "db".into(),
        };
        let status = |generation: i64, synced: &str, message: &str| -> SealedSecretStatus {
            serde_json::from_value(json!({
                "observedGeneration": generation,
                "conditions": [{"type": "Synced", "status": synced, "message": message}],
            }))
            .unwrap()
        };
        assert!(verdict(&target, &status(1, "True", ""), 2).is_none());
        assert!(matches!(
            verdict(&target, &status(2, "True", ""), 2),
            Some(Verdict::Synced)
        ));
        let long = "é".repeat(MESSAGE_LIMIT);
        let Some(Verdict::Failed(message)) = verdict(&target, &status(3, "False", &long), 2) else {
            panic!("not failed");
        };
        assert!(message.starts_with("the controller did not open SealedSecret app/db: é"));
        assert!(message.len() < MESSAGE_LIMIT + 100, "{}", message.len());
        let Some(Verdict::Failed(message)) = verdict(&target, &status(2, "False", ""), 2) else {
            panic!("not failed");
        };
        assert!(message.ends_with("no reason given; see its events"));
    }
}
