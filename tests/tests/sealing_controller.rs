//! sealsync-controller on the real API server: SealedSecrets become Secrets, drift is
//! reverted, bad input is reported without touching anything, resyncs open nothing.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use sealsync_api::{SealOptions, SealedSecret, SecretManifest, parse_documents, seal_secret};
use sealsync_crypto::SealingCertificate;
use sealsync_testkit::{SealsyncController, TestCluster, events_about, wait_for};
use serde_json::json;

const PLAINTEXTS: [&str; 3] = [
    "s3cr3t-user-value",
    "s3cr3t-pass-value",
    "s3cr3t-other-value",
];

const CONDITION_INFO: &str = "sealed_secrets_controller_condition_info";

fn secret(namespace: &str, name: &str) -> anyhow::Result<SecretManifest> {
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/basic-auth\n\
         metadata: {{name: {name}, namespace: {namespace}, labels: {{app: shop}}}}\n\
         stringData: {{username: {}, password: {}, other: {}}}\n",
        PLAINTEXTS[0], PLAINTEXTS[1], PLAINTEXTS[2]
    );
    Ok(parse_documents::<SecretManifest>(&yaml, "test", "Secret")?.remove(0))
}

fn value(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

async fn synced(api: &Api<SealedSecret>, name: &str) -> anyhow::Result<Option<(String, String)>> {
    let Some(sealed) = api.get_opt(name).await? else {
        return Ok(None);
    };
    Ok(sealed.status.and_then(|s| {
        let condition = s.conditions.into_iter().find(|c| c.type_ == "Synced")?;
        Some((condition.status, condition.message.unwrap_or_default()))
    }))
}

/// Waits until the Secret `name` holds every `(key, plaintext)` of `expected`.
async fn wait_for_values(
    what: &str,
    secrets: &Api<Secret>,
    controller: &mut SealsyncController,
    name: &str,
    expected: &[(&str, &str)],
) -> anyhow::Result<()> {
    wait_for(
        what,
        Duration::from_secs(90),
        Some(controller.process()),
        || {
            let secrets = secrets.clone();
            async move {
                let secret = secrets.get(name).await?;
                Ok(expected
                    .iter()
                    .all(|(key, plaintext)| value(&secret, key).as_deref() == Some(*plaintext)))
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn unseals_reverts_drift_and_refuses_what_it_must_not_touch() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    let ns = cluster.namespace("app").await?;
    let mut controller =
        SealsyncController::start(&cluster, &controller_ns, &["--resync-period=2s"]).await?;
    let cert = SealingCertificate::from_pem(controller.certificate()?.as_bytes())?;
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let events: Api<Event> = Api::namespaced(cluster.client(), &ns);
    let seal = |name: &str| -> anyhow::Result<SealedSecret> {
        Ok(seal_secret(
            &secret(&ns, name)?,
            cert.public_key(),
            &SealOptions::default(),
        )?)
    };

    // A SealedSecret becomes its Secret: values, type, template labels, ownerReference.
    let mut db = seal("db")?;
    db.spec.template.as_mut().unwrap().data.insert(
        "dsn".into(),
        "postgres://{{ .username }}:{{ .password | urlquery }}@db".into(),
    );
    let sealed = sealed_api.create(&PostParams::default(), &db).await?;
    wait_for(
        "the Secret db",
        Duration::from_secs(60),
        Some(controller.process()),
        || {
            let secrets = secrets.clone();
            async move { Ok(secrets.get_opt("db").await?.is_some()) }
        },
    )
    .await?;
    let db = secrets.get("db").await?;
    assert_eq!(value(&db, "password").as_deref(), Some(PLAINTEXTS[1]));
    assert_eq!(
        value(&db, "dsn"),
        Some(format!("postgres://{}:{}@db", PLAINTEXTS[0], PLAINTEXTS[1])),
        "template.data rendered over the values"
    );
    assert_eq!(db.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(db.metadata.labels.as_ref().unwrap()["app"], "shop");
    let owner = &db.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.uid, sealed.metadata.uid.clone().unwrap());
    assert_eq!(owner.controller, Some(true));
    wait_for(
        "status Synced=True",
        Duration::from_secs(30),
        Some(controller.process()),
        || {
            let api = sealed_api.clone();
            async move { Ok(synced(&api, "db").await?.is_some_and(|(s, _)| s == "True")) }
        },
    )
    .await?;
    let status = sealed_api.get("db").await?.status.unwrap();
    assert_eq!(status.observed_generation, sealed.metadata.generation);
    assert_eq!(
        status.key_fingerprints,
        vec![cert.public_key().fingerprint().to_string()],
        "the status names the key that opened it"
    );

    // A resync where nothing changed opens nothing.
    let opened = controller.metric("sealsync_values_opened_total", "")?;
    // (No resync may have come yet.)
    let unchanged = controller
        .metric_if_exposed("sealsync_reconciles_total", "result=\"unchanged\"")?
        .unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        controller.metric("sealsync_reconciles_total", "result=\"unchanged\"")? > unchanged,
        "resyncs ran"
    );
    assert_eq!(
        controller.metric("sealsync_values_opened_total", "")?,
        opened
    );

    // A manual edit of a value, then a deletion, are reverted.
    secrets
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "edited"}})),
        )
        .await?;
    wait_for_values(
        "the edit reverted",
        &secrets,
        &mut controller,
        "db",
        &[("password", PLAINTEXTS[1])],
    )
    .await?;
    secrets.delete("db", &DeleteParams::default()).await?;
    wait_for(
        "the deleted Secret restored",
        Duration::from_secs(30),
        Some(controller.process()),
        || {
            let secrets = secrets.clone();
            async move {
                Ok(secrets
                    .get_opt("db")
                    .await?
                    .is_some_and(|s| s.metadata.deletion_timestamp.is_none()))
            }
        },
    )
    .await?;
    assert!(controller.metric("sealsync_secret_writes_total", "drift_reverted")? >= 2.0);
    // Each revert is announced (events are published after the write: wait for them).
    wait_for(
        "two Unsealed events saying the Secret was restored",
        Duration::from_secs(30),
        Some(controller.process()),
        || {
            let events = events.clone();
            async move {
                let about_db = events_about(&events, "SealedSecret", "db").await?;
                let restored = about_db
                    .iter()
                    .filter(|(type_, reason, note)| {
                        type_ == "Normal" && reason == "Unsealed" && note.contains("restored")
                    })
                    .count();
                anyhow::ensure!(restored >= 2, "so far: {about_db:?}");
                Ok(true)
            }
        },
    )
    .await?;
    let db_events = events_about(&events, "SealedSecret", "db").await?;
    assert_eq!(
        db_events
            .first()
            .map(|(t, r, n)| (t.as_str(), r.as_str(), n.as_str())),
        Some(("Normal", "Unsealed", "Secret created")),
        "{db_events:?}"
    );

    // A corrupted value: Synced=False naming the key, and no Secret.
    let mut corrupted = seal("corrupted")?;
    let value_of_other = corrupted.spec.encrypted_data.get_mut("other").unwrap();
    *value_of_other = format!("AgB{}", &value_of_other[3..value_of_other.len() - 8]) + "AAAAAAA=";
    sealed_api
        .create(&PostParams::default(), &corrupted)
        .await?;
    // Sealed for another name: the scope does not match.
    let mut renamed = seal("original-name")?;
    renamed.metadata.name = Some("renamed".into());
    sealed_api.create(&PostParams::default(), &renamed).await?;
    // Same name as a Secret nobody manages: refused, the Secret left alone. (Of the
    // template's type: a Secret's type cannot change, so upstream cannot take over one of
    // another type either.)
    let foreign: Secret = serde_json::from_value(json!({
        "metadata": {"name": "taken", "namespace": ns},
        "type": "kubernetes.io/basic-auth",
        "stringData": {"mine": "keep-me", "username": "placeholder"}
    }))?;
    secrets.create(&PostParams::default(), &foreign).await?;
    sealed_api
        .create(&PostParams::default(), &seal("taken")?)
        .await?;

    // A Secret of another type that consents to merging: its type cannot change, and it is
    // not deleted to change it (its other keys are someone else's).
    let typed: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": "typed",
            "namespace": ns,
            "annotations": {"sealedsecrets.bitnami.com/patch": "true"}
        },
        "stringData": {"theirs": "keep-me"}
    }))?;
    secrets.create(&PostParams::default(), &typed).await?;
    sealed_api
        .create(&PostParams::default(), &seal("typed")?)
        .await?;

    for (name, expected) in [
        ("corrupted", "\"other\""),
        ("renamed", "scope"),
        ("taken", "already exists and is not managed"),
        ("typed", "immutable"),
    ] {
        wait_for(
            &format!("{name}: Synced=False"),
            Duration::from_secs(30),
            Some(controller.process()),
            || {
                let api = sealed_api.clone();
                async move { Ok(synced(&api, name).await?.is_some_and(|(s, _)| s == "False")) }
            },
        )
        .await?;
        let (_, message) = synced(&sealed_api, name).await?.unwrap();
        assert!(message.contains(expected), "{name}: {message}");
        // The event follows the status write: wait for it.
        wait_for(
            &format!("{name}: a Warning event"),
            Duration::from_secs(30),
            Some(controller.process()),
            || {
                let events = events.clone();
                async move {
                    Ok(!events_about(&events, "SealedSecret", name)
                        .await?
                        .is_empty())
                }
            },
        )
        .await?;
        let warnings = events_about(&events, "SealedSecret", name).await?;
        assert!(
            warnings
                .iter()
                .all(|(type_, reason, note)| type_ == "Warning"
                    && reason.starts_with("Err")
                    && note.contains(expected)),
            "{name}: Warning events with the status message: {warnings:?}"
        );
        for plaintext in PLAINTEXTS {
            assert!(!message.contains(plaintext));
            assert!(!warnings.iter().any(|(_, _, note)| note.contains(plaintext)));
        }
    }
    assert!(secrets.get_opt("corrupted").await?.is_none());
    assert!(secrets.get_opt("renamed").await?.is_none());
    assert_eq!(
        value(&secrets.get("typed").await?, "theirs").as_deref(),
        Some("keep-me")
    );
    assert_eq!(
        value(&secrets.get("taken").await?, "mine").as_deref(),
        Some("keep-me")
    );

    // Once the Secret says it may be managed, it is taken over.
    secrets
        .patch(
            "taken",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"sealedsecrets.bitnami.com/managed": "true"}}}),
            ),
        )
        .await?;
    wait_for_values(
        "the managed Secret taken over",
        &secrets,
        &mut controller,
        "taken",
        &[("password", PLAINTEXTS[1])],
    )
    .await?;
    assert_eq!(
        value(&secrets.get("taken").await?, "mine"),
        None,
        "a taken-over Secret holds exactly the sealed keys"
    );

    // A Secret that consents to merging keeps its own keys. A write to them is not drift
    // (nothing opened, no revert); an edit of one of the sealed keys is.
    let shared: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": "shared",
            "namespace": ns,
            "annotations": {"sealedsecrets.bitnami.com/patch": "true"}
        },
        "type": "kubernetes.io/basic-auth",
        "stringData": {"username": "placeholder", "theirs": "keep-me"}
    }))?;
    secrets.create(&PostParams::default(), &shared).await?;
    sealed_api
        .create(&PostParams::default(), &seal("shared")?)
        .await?;
    wait_for_values(
        "the sealed keys merged into shared",
        &secrets,
        &mut controller,
        "shared",
        &[("password", PLAINTEXTS[1]), ("theirs", "keep-me")],
    )
    .await?;
    let edit_data =
        |key: &str, plaintext: &str| Patch::Merge(json!({"data": {key: BASE64.encode(plaintext)}}));
    // (The failing SealedSecrets above are still retried: count writes, not openings.)
    let writes = controller.metric("sealsync_secret_writes_total", "")?;
    let unchanged = controller.metric("sealsync_reconciles_total", "result=\"unchanged\"")?;
    secrets
        .patch(
            "shared",
            &PatchParams::default(),
            &edit_data("theirs", "changed"),
        )
        .await?;
    // Two resyncs (--resync-period=2s) and the watch event of the edit.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        controller.metric("sealsync_reconciles_total", "result=\"unchanged\"")? >= unchanged + 2.0,
        "resyncs ran meanwhile (a hung controller reverts nothing either)"
    );
    let shared = secrets.get("shared").await?;
    assert_eq!(value(&shared, "theirs").as_deref(), Some("changed"));
    assert_eq!(value(&shared, "password").as_deref(), Some(PLAINTEXTS[1]));
    assert_eq!(
        controller.metric("sealsync_secret_writes_total", "")?,
        writes,
        "a write to the other keys of a merged Secret is not reverted"
    );
    assert!(
        !events_about(&events, "SealedSecret", "shared")
            .await?
            .iter()
            .any(|(_, _, note)| note.contains("restored")),
        "and is not announced as drift"
    );
    secrets
        .patch(
            "shared",
            &PatchParams::default(),
            &edit_data("password", "edited"),
        )
        .await?;
    wait_for_values(
        "the edited sealed key of shared restored",
        &secrets,
        &mut controller,
        "shared",
        &[("password", PLAINTEXTS[1]), ("theirs", "changed")],
    )
    .await?;

    // Deleting a SealedSecret deletes its Secret (ownerReference, garbage collector) and
    // its condition series.
    assert_eq!(controller.metric(CONDITION_INFO, "name=\"db\"")?, 1.0);
    sealed_api.delete("db", &DeleteParams::default()).await?;
    wait_for(
        "db garbage-collected",
        Duration::from_secs(60),
        Some(controller.process()),
        || {
            let secrets = secrets.clone();
            async move { Ok(secrets.get_opt("db").await?.is_none()) }
        },
    )
    .await?;

    wait_for(
        "the condition series of db removed",
        Duration::from_secs(30),
        None,
        || async {
            Ok(controller
                .metric_if_exposed(CONDITION_INFO, "name=\"db\"")?
                .is_none())
        },
    )
    .await?;
    assert_eq!(
        controller.metric(CONDITION_INFO, "name=\"taken\"")?,
        1.0,
        "other series stay"
    );

    // No value in the controller's log.
    let log = controller.process().log();
    for plaintext in PLAINTEXTS {
        assert!(!log.contains(plaintext), "the log shows a value");
    }
    Ok(())
}
