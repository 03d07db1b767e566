//! The engine's semantics on the local directory target, with a small generator that turns
//! ConfigMaps into Secrets: create, skip, drift, ownership guard, merge, failure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use sealsync_crypto::SecretBytes;
use sealsync_engine::policy::Consent;
use sealsync_engine::target::LocalDirTarget;
use sealsync_engine::{
    AppliedAction, DesiredSecret, Generator, Outcome, Plan, ReasonedError, SecretRef, Syncer,
    WriteMode, digest_of,
};

#[derive(Debug, thiserror::Error)]
#[error("the ConfigMap asks to fail")]
struct Refusal;

impl ReasonedError for Refusal {
    fn reason(&self) -> &'static str {
        "Refused"
    }
}

#[derive(Debug, Default)]
struct ConfigMapToSecret {
    generated: AtomicUsize,
    merge: bool,
}

impl Generator for ConfigMapToSecret {
    type Source = ConfigMap;
    type Report = ();
    type Error = Refusal;
    const APPLIED_REASON: &'static str = "Generated";
    const REFUSED_REASON: &'static str = "NotOwned";

    fn plan(&self, source: &ConfigMap) -> Result<Plan, Refusal> {
        Ok(Plan {
            target: SecretRef {
                namespace: source.metadata.namespace.clone().unwrap(),
                name: source.metadata.name.clone().unwrap(),
            },
            input_digest: digest_of(&source.data),
            owner_reference: true,
            write: if self.merge {
                WriteMode::Merge
            } else {
                WriteMode::Replace
            },
            data_keys: None,
            recreate_deleted: true,
        })
    }

    async fn generate(&self, source: &ConfigMap) -> Result<(DesiredSecret, ()), Refusal> {
        self.generated.fetch_add(1, Ordering::SeqCst);
        let data = source.data.clone().unwrap_or_default();
        if data.contains_key("fail") {
            return Err(Refusal);
        }
        let secret = DesiredSecret {
            data: data
                .into_iter()
                .map(|(k, v)| (k, SecretBytes::from(v.into_bytes())))
                .collect(),
            ..DesiredSecret::default()
        };
        Ok((secret, ()))
    }

    fn synced_digest(&self, _: &ConfigMap) -> Option<String> {
        None
    }

    fn status(&self, _: &ConfigMap, _: &Outcome<()>) -> Option<serde_json::Value> {
        None
    }
}

fn config_map(data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some("app".into()),
            namespace: Some("ns".into()),
            uid: Some("uid-1".into()),
            ..ObjectMeta::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..ConfigMap::default()
    }
}

fn syncer(dir: &std::path::Path, merge: bool) -> Syncer<ConfigMapToSecret, LocalDirTarget> {
    Syncer::new(
        Arc::new(ConfigMapToSecret {
            merge,
            ..ConfigMapToSecret::default()
        }),
        LocalDirTarget::new(dir, "test-manager"),
        Consent {
            adopt: Some("example.com/managed".into()),
            merge: None,
        },
    )
}

fn action(outcome: Outcome<()>) -> Option<AppliedAction> {
    match outcome {
        Outcome::Applied { action, .. } => Some(action),
        Outcome::Unchanged => None,
        other => panic!("unexpected {other:?}"),
    }
}

fn path(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("ns/app.yaml")
}

#[tokio::test]
async fn creates_then_skips_without_generating_and_reverts_hand_edits() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = syncer(dir.path(), false);
    let source = config_map(&[("password", "pw")]);

    assert_eq!(
        action(syncer.sync(&source).await),
        Some(AppliedAction::Created)
    );
    let written = std::fs::read_to_string(path(dir.path())).unwrap();
    assert!(written.contains("password: cHc="), "{written}");
    assert!(written.contains("sealsync.dev/written-by: test-manager"));
    assert!(written.contains("uid: uid-1"), "owner reference");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path(dir.path()))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    assert_eq!(action(syncer.sync(&source).await), None);
    assert_eq!(
        syncer.generator().generated.load(Ordering::SeqCst),
        1,
        "skip opens nothing"
    );

    std::fs::write(path(dir.path()), written.replace("cHc=", "ZWRpdGVk")).unwrap();
    assert_eq!(
        action(syncer.sync(&source).await),
        Some(AppliedAction::DriftReverted)
    );
    assert!(
        std::fs::read_to_string(path(dir.path()))
            .unwrap()
            .contains("cHc=")
    );

    let changed = config_map(&[("password", "new")]);
    assert_eq!(
        action(syncer.sync(&changed).await),
        Some(AppliedAction::Updated)
    );
}

#[tokio::test]
async fn someone_elses_secret_is_left_alone_until_it_consents() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("ns")).unwrap();
    let foreign = "apiVersion: v1\nkind: Secret\nmetadata: {name: app, namespace: ns}\ndata: {mine: a2VlcA==}\n";
    std::fs::write(path(dir.path()), foreign).unwrap();
    let syncer = syncer(dir.path(), false);
    let source = config_map(&[("password", "pw")]);

    let Outcome::Refused { message } = syncer.sync(&source).await else {
        panic!("must refuse");
    };
    assert!(message.contains("example.com/managed=true"), "{message}");
    assert_eq!(std::fs::read_to_string(path(dir.path())).unwrap(), foreign);

    std::fs::write(
        path(dir.path()),
        foreign.replace(
            "namespace: ns}",
            "namespace: ns, annotations: {example.com/managed: 'true'}}",
        ),
    )
    .unwrap();
    assert_eq!(
        action(syncer.sync(&source).await),
        Some(AppliedAction::Adopted)
    );
    let written = std::fs::read_to_string(path(dir.path())).unwrap();
    assert!(
        !written.contains("mine"),
        "replace mode keeps only the generated keys"
    );
}

#[tokio::test]
async fn merge_mode_keeps_other_keys_and_a_failure_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = syncer(dir.path(), true);
    assert_eq!(
        action(syncer.sync(&config_map(&[("a", "1")])).await),
        Some(AppliedAction::Created)
    );
    let merged = config_map(&[("b", "2")]);
    assert_eq!(
        action(syncer.sync(&merged).await),
        Some(AppliedAction::Updated)
    );
    let written = std::fs::read_to_string(path(dir.path())).unwrap();
    assert!(
        written.contains("a: MQ==") && written.contains("b: Mg=="),
        "{written}"
    );

    let failing = config_map(&[("fail", "yes")]);
    let Outcome::Failed { reason, .. } = syncer.sync(&failing).await else {
        panic!("must fail");
    };
    assert_eq!(reason, "Refused");
    assert_eq!(std::fs::read_to_string(path(dir.path())).unwrap(), written);
}
