//! The engine's semantics on the local directory target, with a small generator that turns
//! ConfigMaps into Secrets: create, skip, drift, ownership guard, merge, failure.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use sealsync_crypto::SecretBytes;
use sealsync_engine::policy::Consent;
use sealsync_engine::target::LocalDirTarget;
use sealsync_engine::{
    AppliedAction, Desired, DesiredSecret, Generator, Outcome, Ownership, Plan, Policy,
    ReasonedError, SecretRef, Syncer, WhenAbsent, digest_of,
};

#[derive(Debug, thiserror::Error)]
#[error("the ConfigMap asks to fail")]
struct Refusal;

impl ReasonedError for Refusal {
    fn reason(&self) -> &'static str {
        "Refused"
    }
}

/// ConfigMaps to Secrets. Annotations choose the policy: `target` (the Secret's name, else
/// the ConfigMap's), `ownership` (`orphan`, `merge`, `merge-create`, else owner), `absent`
/// (`delete`, `remove-own-keys`, else keep) and `refresh` (seconds). An empty ConfigMap
/// wants no Secret.
#[derive(Debug, Default)]
struct ConfigMapToSecret {
    generated: AtomicUsize,
}

impl Generator for ConfigMapToSecret {
    type Source = ConfigMap;
    type Report = ();
    type Error = Refusal;
    const APPLIED_REASON: &'static str = "Generated";
    const REFUSED_REASON: &'static str = "NotOwned";

    fn plan(&self, source: &ConfigMap) -> Result<Plan, Refusal> {
        let annotation = |name: &str| {
            source
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(name))
                .map(String::as_str)
        };
        let ownership = match annotation("ownership") {
            Some("orphan") => Ownership::Orphan,
            Some("merge") => Ownership::Merge { create: false },
            Some("merge-create") => Ownership::Merge { create: true },
            _ => Ownership::Owner,
        };
        let when_absent = match annotation("absent") {
            Some("delete") => WhenAbsent::Delete,
            Some("remove-own-keys") => WhenAbsent::RemoveOwnKeys,
            _ => WhenAbsent::Keep,
        };
        let refresh = annotation("refresh").map(|s| Duration::from_secs(s.parse().unwrap()));
        Ok(Plan {
            target: SecretRef {
                namespace: source.metadata.namespace.clone().unwrap(),
                name: annotation("target")
                    .map(str::to_string)
                    .or_else(|| source.metadata.name.clone())
                    .unwrap(),
            },
            input_digest: digest_of(&(&source.data, &source.metadata.annotations)),
            policy: Policy {
                ownership,
                when_absent,
                refresh,
                ..Policy::default()
            },
            data_keys: None,
            dependencies: Vec::new(),
        })
    }

    async fn generate(&self, source: &ConfigMap) -> Result<(Desired, ()), Refusal> {
        self.generated.fetch_add(1, Ordering::SeqCst);
        let data = source.data.clone().unwrap_or_default();
        if data.contains_key("fail") {
            return Err(Refusal);
        }
        if data.is_empty() {
            return Ok((Desired::Absent, ()));
        }
        let secret = DesiredSecret {
            data: data
                .into_iter()
                .map(|(k, v)| (k, SecretBytes::from(v.into_bytes())))
                .collect(),
            ..DesiredSecret::default()
        };
        Ok((Desired::Secret(secret), ()))
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

fn new_syncer(dir: &std::path::Path) -> Syncer<ConfigMapToSecret, LocalDirTarget> {
    Syncer::new(
        Arc::new(ConfigMapToSecret::default()),
        LocalDirTarget::new(dir),
        "test-manager",
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
    let syncer = new_syncer(dir.path());
    let source = config_map(&[("password", "pw")]);

    assert_eq!(
        action(syncer.sync(&source).await),
        Some(AppliedAction::Created)
    );
    let written = std::fs::read_to_string(path(dir.path())).unwrap();
    assert!(written.contains("password: cHc="), "{written}");
    assert!(
        written.contains(
            r#"sealsync.dev/managed-keys: '{"test-manager/ConfigMap/app":["password"]}'"#
        ),
        "{written}"
    );
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
    let syncer = new_syncer(dir.path());
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

/// A ConfigMap named `name` with `annotations` (see [`ConfigMapToSecret`]).
fn annotated(name: &str, annotations: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    let mut source = config_map(data);
    source.metadata.name = Some(name.into());
    source.metadata.uid = Some(format!("uid-{name}"));
    source.metadata.annotations = Some(
        annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    source
}

fn read(dir: &std::path::Path) -> String {
    std::fs::read_to_string(path(dir)).unwrap()
}

#[tokio::test]
async fn sources_merging_into_one_secret_own_their_keys_and_do_not_ping_pong() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = new_syncer(dir.path());
    let into_app = |name, kind, data: &[(&str, &str)]| {
        annotated(name, &[("target", "app"), ("ownership", kind)], data)
    };
    let first = into_app("first", "merge", &[("a", "1")]);
    let Outcome::Refused { message } = syncer.sync(&first).await else {
        panic!("a merge without create waits for the Secret");
    };
    assert!(message.contains("\"app\" does not exist"), "{message}");

    let second = into_app("second", "merge-create", &[("b", "2")]);
    assert_eq!(
        action(syncer.sync(&second).await),
        Some(AppliedAction::Created)
    );
    assert_eq!(
        action(syncer.sync(&first).await),
        Some(AppliedAction::Updated)
    );
    let both = read(dir.path());
    assert!(
        both.contains("a: MQ==") && both.contains("b: Mg=="),
        "{both}"
    );

    // Each source changes only its own keys: `first` now writes c instead of a.
    let first = into_app("first", "merge", &[("c", "3")]);
    assert_eq!(
        action(syncer.sync(&first).await),
        Some(AppliedAction::Updated)
    );
    let written = read(dir.path());
    assert!(!written.contains("a: MQ=="), "its old key goes: {written}");
    assert!(written.contains("b: Mg==") && written.contains("c: Mw=="));

    // Converged: neither sees the other's write as drift.
    for source in [&first, &second, &first, &second] {
        assert_eq!(action(syncer.sync(source).await), None);
    }
    assert_eq!(read(dir.path()), written);

    // A third source wanting a key another writes is refused, and nothing changes.
    let greedy = into_app("greedy", "merge", &[("b", "mine")]);
    let Outcome::Refused { message } = syncer.sync(&greedy).await else {
        panic!("a key of another source is not taken");
    };
    assert!(
        message.contains("key \"b\"") && message.contains("test-manager/ConfigMap/second"),
        "{message}"
    );
    assert!(!message.contains("mine"), "no value in messages");
    assert_eq!(read(dir.path()), written);

    // A failure changes nothing either.
    let failing = into_app("first", "merge", &[("fail", "yes")]);
    let Outcome::Failed { reason, .. } = syncer.sync(&failing).await else {
        panic!("must fail");
    };
    assert_eq!(reason, "Refused");
    assert_eq!(read(dir.path()), written);
}

#[tokio::test]
async fn a_secret_owned_by_one_source_is_not_written_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = new_syncer(dir.path());
    let owner = annotated("app", &[], &[("a", "1")]);
    assert_eq!(
        action(syncer.sync(&owner).await),
        Some(AppliedAction::Created)
    );
    let intruder = annotated("intruder", &[("target", "app")], &[("a", "2")]);
    assert!(matches!(
        syncer.sync(&intruder).await,
        Outcome::Refused { .. }
    ));
    // A merging source's keys are kept by the owner's next write.
    let merging = annotated(
        "extra",
        &[("target", "app"), ("ownership", "merge")],
        &[("x", "9")],
    );
    assert_eq!(
        action(syncer.sync(&merging).await),
        Some(AppliedAction::Updated)
    );
    let owner = annotated("app", &[], &[("a", "3")]);
    assert_eq!(
        action(syncer.sync(&owner).await),
        Some(AppliedAction::Updated)
    );
    let written = read(dir.path());
    assert!(
        written.contains("a: Mw==") && written.contains("x: OQ=="),
        "{written}"
    );
}

#[tokio::test]
async fn a_source_that_wants_no_secret_keeps_deletes_or_removes_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = new_syncer(dir.path());
    let with = |absent, data: &[(&str, &str)]| {
        annotated(
            "mine",
            &[
                ("target", "app"),
                ("ownership", "merge-create"),
                ("absent", absent),
            ],
            data,
        )
    };
    let other = annotated(
        "other",
        &[("target", "app"), ("ownership", "merge")],
        &[("theirs", "t")],
    );
    assert_eq!(
        action(syncer.sync(&with("keep", &[("a", "1")])).await),
        Some(AppliedAction::Created)
    );
    assert_eq!(
        action(syncer.sync(&other).await),
        Some(AppliedAction::Updated)
    );
    let both = read(dir.path());
    assert_eq!(
        action(syncer.sync(&with("keep", &[])).await),
        Some(AppliedAction::Kept)
    );
    assert_eq!(read(dir.path()), both, "kept as it is");

    assert_eq!(
        action(syncer.sync(&with("remove-own-keys", &[])).await),
        Some(AppliedAction::KeysRemoved)
    );
    let left = read(dir.path());
    assert!(
        !left.contains("a: MQ==") && left.contains("theirs: dA=="),
        "{left}"
    );

    let owned = annotated("app", &[("absent", "delete")], &[("k", "v")]);
    let dir = tempfile::tempdir().unwrap();
    let syncer = new_syncer(dir.path());
    assert_eq!(
        action(syncer.sync(&owned).await),
        Some(AppliedAction::Created)
    );
    let emptied = annotated("app", &[("absent", "delete")], &[]);
    assert_eq!(
        action(syncer.sync(&emptied).await),
        Some(AppliedAction::Deleted)
    );
    assert!(!path(dir.path()).exists());
    assert_eq!(
        action(syncer.sync(&emptied).await),
        Some(AppliedAction::Kept),
        "nothing left to delete"
    );
}

#[tokio::test]
async fn a_due_refresh_generates_again_and_reports_new_data_as_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let syncer = new_syncer(dir.path());
    let hourly = annotated("app", &[("refresh", "3600")], &[("a", "1")]);
    assert_eq!(
        action(syncer.sync(&hourly).await),
        Some(AppliedAction::Created)
    );
    assert!(
        !syncer.only_refresh_due(&hourly),
        "synced, and not due for an hour"
    );
    assert_eq!(action(syncer.sync(&hourly).await), None, "not due yet");
    let due = syncer.due_in(&hourly).expect("a refresh");
    assert!(
        due > Duration::from_secs(3590) && due <= Duration::from_secs(3600),
        "{due:?}"
    );
    assert_eq!(syncer.due_in(&config_map(&[("a", "1")])), None);

    let always = annotated("app", &[("refresh", "0")], &[("a", "1")]);
    assert!(
        !syncer.only_refresh_due(&always),
        "due, but its inputs changed: more than a refresh"
    );
    let never_synced = annotated("other", &[("refresh", "0")], &[("a", "1")]);
    assert!(!syncer.only_refresh_due(&never_synced), "a first sync");
    let before = syncer.generator().generated.load(Ordering::SeqCst);
    assert_eq!(
        action(syncer.sync(&always).await),
        Some(AppliedAction::Updated),
        "its inputs changed (the annotation)"
    );
    assert!(syncer.only_refresh_due(&always));
    assert_eq!(
        action(syncer.sync(&always).await),
        Some(AppliedAction::Refreshed)
    );
    assert_eq!(
        syncer.generator().generated.load(Ordering::SeqCst),
        before + 2,
        "a due refresh generates"
    );
}
