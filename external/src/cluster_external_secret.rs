//! ClusterExternalSecrets: one ExternalSecret stamped into every namespace the selectors
//! match (owned by the ClusterExternalSecret, so garbage-collected with it), removed from
//! namespaces that stop matching, looked at again when namespaces change and every
//! `refreshTime`; status as upstream writes it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use sealsync_api::external::{
    CONDITION_READY, ClusterExternalSecret, ClusterExternalSecretCondition,
    ClusterExternalSecretMetadata, ClusterExternalSecretNamespaceFailure,
    ClusterExternalSecretStatus, ExternalSecret, STATUS_FALSE, STATUS_TRUE,
};
use sealsync_api::parse_go_duration;
use sealsync_engine::kubernetes::ObjectReporter;
use sealsync_engine::leader::Leadership;
use serde_json::json;
use tracing::warn;

use crate::stores::selects;

/// How often namespaces are looked at again when the spec does not say (upstream's).
const DEFAULT_REFRESH: Duration = Duration::from_secs(3600);
const NOT_LEADING_RETRY: Duration = Duration::from_secs(2);
/// Field manager of the ExternalSecrets written.
const FIELD_MANAGER: &str = "sealsync-controller/ClusterExternalSecret";
/// Upstream's annotation that forces a sync (any change of an ExternalSecret's annotations
/// does), passed on to the ExternalSecrets.
const FORCE_SYNC: &str = "external-secrets.io/force-sync";

struct Context {
    client: Client,
    reporter: ObjectReporter,
    leadership: Leadership,
}

#[derive(Debug, thiserror::Error)]
#[error("ClusterExternalSecret {name}: {source}")]
struct ReconcileError {
    name: String,
    source: kube::Error,
}

/// Runs the ClusterExternalSecret controller for as long as the process runs.
pub async fn run(client: Client, reporter: ObjectReporter, leadership: Leadership) {
    let context = Arc::new(Context {
        client: client.clone(),
        reporter,
        leadership,
    });
    let controller = Controller::new(
        Api::<ClusterExternalSecret>::all(client.clone()),
        watcher::Config::default(),
    );
    let cluster_secrets = controller.store();
    controller
        .owns(
            Api::<ExternalSecret>::all(client.clone()),
            watcher::Config::default(),
        )
        // A namespace created, relabelled or deleted may change where each one goes.
        .watches(
            Api::<Namespace>::all(client),
            watcher::Config::default(),
            move |_| {
                cluster_secrets
                    .state()
                    .iter()
                    .map(|c| ObjectRef::from_obj(c.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            // Watch failures (e.g. a missing permission) come through here.
            if let Err(e) = result {
                warn!(error = %e, "ClusterExternalSecret controller");
            }
        })
        .await;
}

fn error_policy(_: Arc<ClusterExternalSecret>, error: &ReconcileError, _: Arc<Context>) -> Action {
    warn!(error = %error, "cannot reconcile; retrying");
    Action::requeue(Duration::from_secs(10))
}

/// Whether `namespace` gets the ExternalSecret of `ces`: any selector, or the list of
/// names.
fn matches(ces: &ClusterExternalSecret, namespace: &Namespace) -> bool {
    selected_by_labels(ces, namespace.labels())
        || ces
            .spec
            .namespaces
            .iter()
            .any(|n| *n == namespace.name_any())
}

/// Whether one of the namespace selectors of `ces` selects a namespace with `labels`.
pub fn selected_by_labels(ces: &ClusterExternalSecret, labels: &BTreeMap<String, String>) -> bool {
    ces.spec
        .namespace_selectors
        .iter()
        .chain(ces.spec.namespace_selector.iter())
        .any(|s| selects(s, labels))
}

async fn reconcile(
    ces: Arc<ClusterExternalSecret>,
    context: Arc<Context>,
) -> Result<Action, ReconcileError> {
    if ces.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if !context.leadership.is_leading() {
        return Ok(Action::requeue(NOT_LEADING_RETRY));
    }
    let name = ces.name_any();
    let failed = |source| ReconcileError {
        name: name.clone(),
        source,
    };
    let es_name = external_secret_name(&ces);
    let namespaces = Api::<Namespace>::all(context.client.clone())
        .list(&ListParams::default())
        .await
        .map_err(failed)?;
    let wanted: BTreeSet<String> = namespaces
        .items
        .iter()
        .filter(|ns| ns.meta().deletion_timestamp.is_none() && matches(&ces, ns))
        .map(ResourceExt::name_any)
        .collect();
    let mut provisioned = Vec::new();
    let mut failures = Vec::new();
    for namespace in &wanted {
        match provision(&context.client, &ces, namespace, &es_name).await {
            Ok(()) => provisioned.push(namespace.clone()),
            Err(reason) => {
                // In the status too, but a refused permission is the operator's to see.
                warn!(
                    cluster_external_secret = %name,
                    %namespace,
                    error = %reason,
                    "cannot write the ExternalSecret into the namespace"
                );
                failures.push(ClusterExternalSecretNamespaceFailure {
                    namespace: namespace.clone(),
                    reason: Some(reason),
                })
            }
        }
    }
    let before = ces.status.clone().unwrap_or_default();
    for namespace in before
        .provisioned_namespaces
        .iter()
        .filter(|n| !wanted.contains(*n))
    {
        let api: Api<ExternalSecret> = Api::namespaced(context.client.clone(), namespace);
        let owned = api
            .get_opt(&es_name)
            .await
            .map_err(failed)?
            .is_some_and(|es| owned_by(&es, &ces));
        if owned {
            api.delete(&es_name, &Default::default())
                .await
                .map_err(failed)?;
        }
    }
    let status = ClusterExternalSecretStatus {
        external_secret_name: Some(es_name),
        conditions: vec![ClusterExternalSecretCondition {
            type_: CONDITION_READY.into(),
            status: if failures.is_empty() {
                STATUS_TRUE
            } else {
                STATUS_FALSE
            }
            .into(),
            message: (!failures.is_empty()).then(|| "one or more namespaces failed".into()),
        }],
        failed_namespaces: failures,
        provisioned_namespaces: provisioned,
    };
    if status != before {
        let value = serde_json::to_value(&status).expect("a status serializes");
        context
            .reporter
            .write_status(ces.as_ref(), value)
            .await
            .map_err(failed)?;
    }
    let refresh = ces
        .spec
        .refresh_time
        .as_deref()
        .and_then(|t| parse_go_duration(t).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_REFRESH);
    Ok(Action::requeue(refresh))
}

/// The name of the ExternalSecrets `ces` stamps: `externalSecretName`, else its own.
pub fn external_secret_name(ces: &ClusterExternalSecret) -> String {
    ces.spec
        .external_secret_name
        .clone()
        .unwrap_or_else(|| ces.name_any())
}

/// The labels and annotations of the ExternalSecrets `ces` stamps.
pub fn external_secret_metadata(ces: &ClusterExternalSecret) -> ClusterExternalSecretMetadata {
    let mut metadata = ces
        .spec
        .external_secret_metadata
        .clone()
        .unwrap_or_default();
    // Forcing a sync of the ClusterExternalSecret forces one of each ExternalSecret.
    if let Some(force) = ces.annotations().get(FORCE_SYNC) {
        metadata
            .annotations
            .insert(FORCE_SYNC.into(), force.clone());
    }
    metadata
}

fn owned_by(es: &ExternalSecret, ces: &ClusterExternalSecret) -> bool {
    es.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == ces.meta().uid.as_ref())
}

/// Writes the ExternalSecret into `namespace`, unless another one of that name is there.
async fn provision(
    client: &Client,
    ces: &ClusterExternalSecret,
    namespace: &str,
    es_name: &str,
) -> Result<(), String> {
    let api: Api<ExternalSecret> = Api::namespaced(client.clone(), namespace);
    let existing = api.get_opt(es_name).await.map_err(|e| e.to_string())?;
    if existing.is_some_and(|es| !owned_by(&es, ces)) {
        return Err("external secret already exists in namespace".into());
    }
    let metadata = external_secret_metadata(ces);
    let owner = ces
        .controller_owner_ref(&())
        .ok_or("the ClusterExternalSecret has no uid yet")?;
    let es = json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": {
            "name": es_name,
            "labels": metadata.labels,
            "annotations": metadata.annotations,
            "ownerReferences": [owner],
        },
        "spec": ces.spec.external_secret_spec,
    });
    api.patch(
        es_name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(es),
    )
    .await
    .map(drop)
    .map_err(|e| e.to_string())
}
