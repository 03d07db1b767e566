//! What sealsync-controller does to the Secrets it writes, as upstream does it: exactly the
//! template's labels and annotations, takeover and merge by the Secret's consent (a merge
//! never makes the Secret garbage-collectable), immutable Secrets left as they are, and a
//! SealedSecret that cannot be read stops nobody else's.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use sealsync_api::{SealOptions, SealedSecret, SecretManifest, parse_documents, seal_secret};
use sealsync_crypto::SealingCertificate;
use sealsync_testkit::{SealsyncController, TestCluster, events_about, wait_for};
use serde_json::json;

const PLAINTEXT: &str = "s3cr3t-ownership-value";
const PATCH: &str = "sealedsecrets.bitnami.com/patch";
const MANAGED: &str = "sealedsecrets.bitnami.com/managed";

fn sealed(
    cert: &SealingCertificate,
    ns: &str,
    name: &str,
    value: &str,
    immutable: bool,
) -> anyhow::Result<SealedSecret> {
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}, \
         labels: {{app: shop}}, annotations: {{note: from-template}}}}\n\
         immutable: {immutable}\nstringData: {{password: {value}}}\n"
    );
    let secret = parse_documents::<SecretManifest>(&yaml, "test", "Secret")?.remove(0);
    Ok(seal_secret(
        &secret,
        cert.public_key(),
        &SealOptions::default(),
    )?)
}

fn value(secret: &Secret, key: &str) -> Option<String> {
    String::from_utf8(secret.data.as_ref()?.get(key)?.0.clone()).ok()
}

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn wait_for_value(
    controller: &mut SealsyncController,
    secrets: &Api<Secret>,
    name: &str,
    key: &str,
    expected: &str,
) -> anyhow::Result<Secret> {
    wait_for(
        &format!("{name}.{key} unsealed"),
        Duration::from_secs(60),
        Some(controller.process()),
        || {
            let secrets = secrets.clone();
            async move {
                Ok(secrets
                    .get_opt(name)
                    .await?
                    .is_some_and(|s| value(&s, key).as_deref() == Some(expected)))
            }
        },
    )
    .await?;
    Ok(secrets.get(name).await?)
}

async fn wait_for_event(
    controller: &mut SealsyncController,
    events: &Api<Event>,
    name: &str,
    reason: &str,
) -> anyhow::Result<String> {
    wait_for(
        &format!("a {reason} event about {name}"),
        Duration::from_secs(60),
        Some(controller.process()),
        || {
            let events = events.clone();
            async move {
                Ok(events_about(&events, "SealedSecret", name)
                    .await?
                    .iter()
                    .any(|(_, r, _)| r == reason))
            }
        },
    )
    .await?;
    let (type_, _, note) = events_about(events, "SealedSecret", name)
        .await?
        .into_iter()
        .find(|(_, r, _)| r == reason)
        .expect("found above");
    assert_eq!(type_, "Warning", "{name}: {reason}");
    Ok(note)
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_carry_only_the_template_and_consent_decides_ownership() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    let ns = cluster.namespace("app").await?;
    let mut controller =
        SealsyncController::start(&cluster, &controller_ns, &["--resync-period=2s"]).await?;
    let cert = SealingCertificate::from_pem(controller.certificate()?.as_bytes())?;
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let events: Api<Event> = Api::namespaced(cluster.client(), &ns);
    let create = |name: &str, immutable: bool| {
        let sealed = sealed(&cert, &ns, name, PLAINTEXT, immutable);
        let api = sealed_api.clone();
        async move { anyhow::Ok(api.create(&PostParams::default(), &sealed?).await?) }
    };
    let existing = |name: &str, labels: &[(&str, &str)], annotations: &[(&str, &str)]| {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": map(labels), "annotations": map(annotations)},
            "stringData": {"theirs": "keep-me"},
        }))
        .expect("a Secret");
        let api = secrets.clone();
        async move { anyhow::Ok(api.create(&PostParams::default(), &secret).await?) }
    };

    // A SealedSecret that the API server accepts but that does not deserialize (a string
    // where ObjectMeta has an integer) comes first: it must not stop the others.
    let poison = ApiResource::erase::<SealedSecret>(&());
    let poison_api: Api<DynamicObject> = Api::namespaced_with(cluster.client(), &ns, &poison);
    let mut unreadable = serde_json::to_value(sealed(&cert, &ns, "poison", PLAINTEXT, false)?)?;
    unreadable["spec"]["template"]["metadata"]["generation"] = json!("1");
    poison_api
        .create(&PostParams::default(), &serde_json::from_value(unreadable)?)
        .await?;

    // Plain: the Secret has exactly the template's labels and annotations.
    let plain = create("plain", false).await?;
    let secret = wait_for_value(&mut controller, &secrets, "plain", "password", PLAINTEXT).await?;
    assert_eq!(secret.metadata.labels, Some(map(&[("app", "shop")])));
    assert_eq!(
        secret.metadata.annotations,
        Some(map(&[("note", "from-template")]))
    );
    assert_eq!(
        secret.metadata.owner_references.as_ref().unwrap()[0].uid,
        plain.metadata.uid.clone().unwrap()
    );

    // The unreadable one is named in a Warning event and the log, and skipped.
    let note = wait_for_event(&mut controller, &events, "poison", "ErrInvalidObject").await?;
    assert!(note.contains("SealedSecret"), "{note}");
    assert!(!note.contains("\"1\""), "no value in the event: {note}");
    assert!(controller.process().log().contains(&format!("{ns}/poison")));
    assert!(secrets.get_opt("poison").await?.is_none());

    // `managed`: taken over, ending with exactly the template's labels and annotations.
    existing(
        "taken",
        &[("old", "label")],
        &[(MANAGED, "true"), ("old-note", "x")],
    )
    .await?;
    let taken_source = create("taken", false).await?;
    let taken = wait_for_value(&mut controller, &secrets, "taken", "password", PLAINTEXT).await?;
    assert_eq!(taken.metadata.labels, Some(map(&[("app", "shop")])));
    assert_eq!(
        taken.metadata.annotations,
        Some(map(&[("note", "from-template")]))
    );
    assert_eq!(
        taken.data.as_ref().unwrap().keys().collect::<Vec<_>>(),
        ["password"]
    );
    assert_eq!(
        taken.metadata.owner_references.as_ref().unwrap()[0].uid,
        taken_source.metadata.uid.clone().unwrap()
    );

    // `patch` alone: merged, no ownerReference, and deleting the SealedSecret leaves the
    // Secret (while an owned one is garbage-collected in the same time).
    existing("merged", &[("team", "a")], &[(PATCH, "true")]).await?;
    create("merged", false).await?;
    let merged = wait_for_value(&mut controller, &secrets, "merged", "password", PLAINTEXT).await?;
    assert_eq!(value(&merged, "theirs").as_deref(), Some("keep-me"));
    assert_eq!(merged.metadata.labels.as_ref().unwrap()["team"], "a");
    assert!(
        merged
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty(),
        "a merge never makes the Secret the SealedSecret's"
    );
    sealed_api
        .delete("merged", &DeleteParams::default())
        .await?;
    sealed_api.delete("plain", &DeleteParams::default()).await?;
    wait_for(
        "the owned Secret garbage-collected",
        Duration::from_secs(60),
        Some(controller.process()),
        || {
            let secrets = secrets.clone();
            async move { Ok(secrets.get_opt("plain").await?.is_none()) }
        },
    )
    .await?;
    let kept = secrets.get("merged").await?;
    assert_eq!(value(&kept, "theirs").as_deref(), Some("keep-me"));

    // An immutable Secret is left as it is when its SealedSecret changes.
    create("frozen", true).await?;
    let frozen = wait_for_value(&mut controller, &secrets, "frozen", "password", PLAINTEXT).await?;
    assert_eq!(frozen.immutable, Some(true));
    let changed = sealed(&cert, &ns, "frozen", "s3cr3t-changed-value", true)?;
    sealed_api
        .patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": changed.spec})),
        )
        .await?;
    let note = wait_for_event(&mut controller, &events, "frozen", "ErrUpdateFailed").await?;
    assert!(note.contains("immutable"), "{note}");
    let status = sealed_api.get("frozen").await?.status.unwrap();
    let condition = &status.conditions[0];
    assert_eq!(condition.status, "False");
    assert!(condition.message.as_deref().unwrap().contains("immutable"));
    let still = secrets.get("frozen").await?;
    assert_eq!(still.metadata.uid, frozen.metadata.uid, "never re-created");
    assert_eq!(value(&still, "password").as_deref(), Some(PLAINTEXT));

    let log = controller.process().log();
    for plaintext in [PLAINTEXT, "s3cr3t-changed-value"] {
        assert!(!log.contains(plaintext));
    }
    Ok(())
}
