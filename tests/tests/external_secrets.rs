//! sealsync's ExternalSecret reconciler against the real API server, moto and Vault: Secrets
//! synced from AWS Secrets Manager and Vault as upstream syncs them, status as upstream
//! writes it, drift reverted at once, refreshes and force-sync, failures that name the
//! ExternalSecret, store and key and leave the last good Secret alone.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::Client;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use sealsync_testkit::{
    Moto, SealsyncController, TestCluster, UpstreamEso, Vault, events_about, wait_for,
};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(90);

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("external-secrets.io", "v1", kind))
}

fn api(client: &Client, ns: &str, kind: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource(kind))
}

async fn apply(client: &Client, ns: &str, object: Value) -> anyhow::Result<()> {
    let kind = object["kind"].as_str().expect("a kind").to_owned();
    let name = object["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_owned();
    api(client, ns, &kind)
        .patch(
            &name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(object),
        )
        .await?;
    Ok(())
}

async fn credentials(
    client: &Client,
    ns: &str,
    name: &str,
    data: &[(&str, &str)],
) -> anyhow::Result<()> {
    let data: BTreeMap<String, ByteString> = data
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(data),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &secret)
        .await?;
    Ok(())
}

fn aws_store(name: &str) -> Value {
    let key_ref = |key: &str| json!({ "name": "aws-credentials", "key": key });
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "SecretStore",
        "metadata": { "name": name },
        "spec": { "provider": { "aws": {
            "service": "SecretsManager",
            "region": Moto::REGION,
            "auth": { "secretRef": {
                "accessKeyIDSecretRef": key_ref("access-key-id"),
                "secretAccessKeySecretRef": key_ref("secret-access-key"),
            } }
        } } }
    })
}

async fn aws_credentials(client: &Client, ns: &str) -> anyhow::Result<()> {
    credentials(
        client,
        ns,
        "aws-credentials",
        &[
            ("access-key-id", Moto::ACCESS_KEY_ID),
            ("secret-access-key", Moto::SECRET_ACCESS_KEY),
        ],
    )
    .await
}

fn external_secret(name: &str, store: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["secretStoreRef"] = json!({ "name": store, "kind": "SecretStore" });
    spec.as_object_mut()
        .expect("an object")
        .entry("refreshInterval")
        .or_insert(json!("1h"));
    json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ExternalSecret",
        "metadata": { "name": name },
        "spec": spec,
    })
}

/// The Ready condition of `kind/name`, if any.
async fn ready(client: &Client, ns: &str, kind: &str, name: &str) -> anyhow::Result<Option<Value>> {
    let object = api(client, ns, kind).get(name).await?;
    Ok(object.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .cloned())
}

async fn wait_ready(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    status: &str,
) -> anyhow::Result<Value> {
    wait_for(&format!("{kind} {name} Ready={status}"), WAIT, None, || {
        let client = client.clone();
        async move {
            let condition = ready(&client, ns, kind, name).await?;
            match condition {
                Some(c) if c["status"] == status => Ok(true),
                other => anyhow::bail!("in {ns}: {other:?}"),
            }
        }
    })
    .await?;
    Ok(ready(client, ns, kind, name).await?.expect("a condition"))
}

async fn secret_data(
    client: &Client,
    ns: &str,
    name: &str,
) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    let secret = Api::<Secret>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await?;
    Ok(secret.map(|s| {
        s.data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
            .collect()
    }))
}

/// Waits until Secret `name` holds exactly `want`; a timeout names the keys that differ
/// (never a value).
async fn wait_data(
    client: &Client,
    ns: &str,
    name: &str,
    want: &[(&str, &str)],
) -> anyhow::Result<()> {
    let want: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let want = &want;
    wait_for(
        &format!("Secret {name} with the expected data"),
        WAIT,
        None,
        || {
            let client = client.clone();
            async move {
                let Some(data) = secret_data(&client, ns, name).await? else {
                    anyhow::bail!(
                        "no Secret; ExternalSecret: {:?}",
                        ready(&client, ns, "ExternalSecret", name)
                            .await
                            .ok()
                            .flatten()
                    );
                };
                let differing: Vec<&String> = want
                    .keys()
                    .chain(data.keys())
                    .filter(|k| want.get(*k) != data.get(*k))
                    .collect();
                anyhow::ensure!(differing.is_empty(), "keys that differ: {differing:?}");
                Ok(true)
            }
        },
    )
    .await
}

async fn controller(
    cluster: &TestCluster,
    ns: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<SealsyncController> {
    SealsyncController::start_with_env(
        cluster,
        ns,
        &["--external-secrets", "--all-namespaces=false"],
        env,
    )
    .await
}

/// The Secret "db" made from `app/db` with `password`.
fn synced_db(password: &str) -> [(&str, &str); 4] {
    [
        ("username", "app"),
        ("password", password),
        ("port", "5432"),
        ("nested", r#"{"port":5432}"#),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_secrets_are_synced_repaired_refreshed_and_failures_leave_them_alone()
-> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    cluster.install_external_secrets_crds().await?;
    let moto = Moto::start().await?;
    let client = cluster.client();
    let ns = cluster.namespace("es-aws").await?;
    moto.client()
        .create_secret()
        .name("app/db")
        .secret_string(r#"{"username":"app","password":"pw-1","nested":{"port":5432}}"#)
        .send()
        .await?;
    aws_credentials(&client, &ns).await?;
    apply(&client, &ns, aws_store("aws")).await?;
    let mut controller =
        controller(&cluster, &ns, &[("AWS_ENDPOINT_URL", moto.endpoint())]).await?;

    wait_ready(&client, &ns, "SecretStore", "aws", "True").await?;
    apply(
        &client,
        &ns,
        external_secret(
            "db",
            "aws",
            json!({
                "data": [
                    { "secretKey": "password", "remoteRef": { "key": "app/db", "property": "password" } },
                    { "secretKey": "port", "remoteRef": { "key": "app/db", "property": "nested.port" } },
                ],
                "dataFrom": [{ "extract": { "key": "app/db" } }],
            }),
        ),
    )
    .await?;
    wait_data(&client, &ns, "db", &synced_db("pw-1")).await?;
    // Two properties and the extract of one secret: one read of it.
    assert_eq!(
        controller.metric(
            "externalsecret_provider_api_calls_count",
            r#"call="GetSecretValue""#
        )?,
        1.0
    );
    let condition = wait_ready(&client, &ns, "ExternalSecret", "db", "True").await?;
    assert_eq!(condition["reason"], "SecretSynced");
    let es = api(&client, &ns, "ExternalSecret").get("db").await?;
    assert_eq!(es.data["status"]["binding"]["name"], "db");
    assert!(es.data["status"]["refreshTime"].is_string());
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("db")
        .await?;
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["reconcile.external-secrets.io/managed"], "true");
    assert_eq!(
        labels["reconcile.external-secrets.io/created-by"],
        sealsync_external::created_by(&ns, "db")
    );
    let owner = &secret.metadata.owner_references.clone().unwrap_or_default()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("ExternalSecret", "db")
    );

    // A manual edit is reverted at once, without waiting for the hour of refresh.
    Api::<Secret>::namespaced(client.clone(), &ns)
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({ "data": { "password": "ZWRpdGVk" } })),
        )
        .await?;
    wait_data(&client, &ns, "db", &synced_db("pw-1")).await?;

    // A new value at the provider arrives with force-sync.
    moto.client()
        .put_secret_value()
        .secret_id("app/db")
        .secret_string(r#"{"username":"app","password":"pw-2","nested":{"port":5432}}"#)
        .send()
        .await?;
    api(&client, &ns, "ExternalSecret")
        .patch(
            "db",
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": { "force-sync": "1" } } })),
        )
        .await?;
    wait_data(&client, &ns, "db", &synced_db("pw-2")).await?;

    // A key that does not exist: Ready=False naming the ExternalSecret, the store and the
    // key, one Warning event, and the Secret it wrote before is untouched.
    apply(
        &client,
        &ns,
        external_secret(
            "db",
            "aws",
            json!({
                "data": [
                    { "secretKey": "password", "remoteRef": { "key": "app/db", "property": "password" } },
                    { "secretKey": "gone", "remoteRef": { "key": "app/nope" } },
                ],
            }),
        ),
    )
    .await?;
    let failed = wait_ready(&client, &ns, "ExternalSecret", "db", "False").await?;
    let message = failed["message"].as_str().unwrap_or_default();
    assert_eq!(failed["reason"], "SecretSyncedError");
    for part in [format!("{ns}/db"), "SecretStore".into(), "app/nope".into()] {
        assert!(message.contains(&part), "{message:?} names {part}");
    }
    assert!(!message.contains("pw-2"), "no value in {message:?}");
    assert_eq!(
        secret_data(&client, &ns, "db").await?.unwrap()["password"],
        "pw-2",
        "the last good Secret stays"
    );
    let events = events_about(
        &Api::<Event>::namespaced(client.clone(), &ns),
        "ExternalSecret",
        "db",
    )
    .await?;
    let warnings: Vec<_> = events.iter().filter(|e| e.0 == "Warning").collect();
    assert_eq!(warnings.len(), 1, "{events:?}");
    assert_eq!(warnings[0].1, "UpdateFailed");

    // An unknown store says so.
    apply(
        &client,
        &ns,
        external_secret(
            "orphan",
            "missing-store",
            json!({ "data": [
            { "secretKey": "k", "remoteRef": { "key": "app/db" } },
        ] }),
        ),
    )
    .await?;
    let failed = wait_ready(&client, &ns, "ExternalSecret", "orphan", "False").await?;
    assert!(
        failed["message"]
            .as_str()
            .unwrap_or_default()
            .contains("missing-store"),
        "{failed}"
    );

    // No value anywhere but in the Secret: not in the log, events, statuses or metrics.
    let statuses = api(&client, &ns, "ExternalSecret")
        .list(&Default::default())
        .await?;
    let outputs = [
        controller.process().log(),
        format!("{events:?}"),
        serde_json::to_string(&statuses.items)?,
        controller.metrics()?,
    ];
    for output in &outputs {
        for value in ["pw-1", "pw-2"] {
            assert!(!output.contains(value), "a secret value leaked: {value}");
        }
    }
    Ok(())
}

/// moto and Vault stopped (SIGSTOP) mid-run and resumed: Ready=False naming the key, the
/// last good Secrets kept, then both recover.
#[tokio::test(flavor = "multi_thread")]
async fn a_provider_outage_keeps_the_last_good_secret_and_the_sync_recovers() -> anyhow::Result<()>
{
    let cluster = TestCluster::start().await?;
    cluster.install_external_secrets_crds().await?;
    let mut moto = Moto::start().await?;
    let mut vault = Vault::start().await?;
    let client = cluster.client();
    let ns = cluster.namespace("es-outage").await?;
    moto.client()
        .create_secret()
        .name("app/token")
        .secret_string("v1")
        .send()
        .await?;
    let kv = |version: &str| json!({ "token": version });
    vaultrs::kv2::set(&vault.client()?, Vault::KV2_MOUNT, "app/token", &kv("v1")).await?;
    aws_credentials(&client, &ns).await?;
    credentials(&client, &ns, "vault-token", &[("token", Vault::ROOT_TOKEN)]).await?;
    apply(&client, &ns, aws_store("aws")).await?;
    apply(
        &client,
        &ns,
        json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "SecretStore",
            "metadata": { "name": "vault" },
            "spec": { "provider": { "vault": {
                "server": vault.address(), "path": Vault::KV2_MOUNT, "version": "v2",
                "auth": { "tokenSecretRef": { "name": "vault-token", "key": "token" } },
            } } }
        }),
    )
    .await?;
    let _controller = controller(&cluster, &ns, &[("AWS_ENDPOINT_URL", moto.endpoint())]).await?;
    for (name, store, property) in [("token", "aws", None), ("vtoken", "vault", Some("token"))] {
        let mut es = external_secret(
            name,
            store,
            json!({ "data": [{ "secretKey": "token",
                "remoteRef": { "key": "app/token", "property": property } }] }),
        );
        es["spec"]["refreshInterval"] = json!("3s");
        apply(&client, &ns, es).await?;
        wait_data(&client, &ns, name, &[("token", "v1")]).await?;
    }

    // moto and Vault stop answering: the refreshes fail within the calls' bounds, Ready
    // says why, and the Secrets keep their last good values.
    moto.process().stop()?;
    vault.process().stop()?;
    for name in ["token", "vtoken"] {
        let failed = wait_ready(&client, &ns, "ExternalSecret", name, "False").await?;
        assert_eq!(failed["reason"], "SecretSyncedError");
        assert!(
            failed["message"]
                .as_str()
                .unwrap_or_default()
                .contains("app/token"),
            "{failed}"
        );
        assert_eq!(
            secret_data(&client, &ns, name).await?.unwrap()["token"],
            "v1"
        );
    }

    moto.process().resume()?;
    vault.process().resume()?;
    moto.client()
        .put_secret_value()
        .secret_id("app/token")
        .secret_string("v2")
        .send()
        .await?;
    vaultrs::kv2::set(&vault.client()?, Vault::KV2_MOUNT, "app/token", &kv("v2")).await?;
    for name in ["token", "vtoken"] {
        wait_data(&client, &ns, name, &[("token", "v2")]).await?;
        wait_ready(&client, &ns, "ExternalSecret", name, "True").await?;
    }
    Ok(())
}

/// One AWS case: a cluster with the CRDs, moto holding `app/token` ("t1"), a namespace with
/// the store `aws` and its credentials, and the controller.
struct AwsCase {
    client: Client,
    ns: String,
    _controller: SealsyncController,
    _moto: Moto,
    _cluster: TestCluster,
}

async fn aws_case(ns: &str) -> anyhow::Result<AwsCase> {
    let cluster = TestCluster::start().await?;
    cluster.install_external_secrets_crds().await?;
    let moto = Moto::start().await?;
    let client = cluster.client();
    let ns = cluster.namespace(ns).await?;
    moto.client()
        .create_secret()
        .name("app/token")
        .secret_string("t1")
        .send()
        .await?;
    aws_credentials(&client, &ns).await?;
    apply(&client, &ns, aws_store("aws")).await?;
    let controller = controller(&cluster, &ns, &[("AWS_ENDPOINT_URL", moto.endpoint())]).await?;
    Ok(AwsCase {
        client,
        ns,
        _controller: controller,
        _moto: moto,
        _cluster: cluster,
    })
}

/// A renamed `target.name` moves the Secret: the new one is written and the one left under
/// the old name, made and owned by the ExternalSecret, is deleted; a Secret under another
/// name that it did not write stays.
#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_target_moves_the_secret() -> anyhow::Result<()> {
    let case = aws_case("es-rename").await?;
    let (client, ns) = (case.client.clone(), case.ns.clone());
    let spec = |target: &str| {
        json!({ "target": { "name": target },
            "data": [{ "secretKey": "token", "remoteRef": { "key": "app/token" } }] })
    };
    apply(&client, &ns, external_secret("token", "aws", spec("first"))).await?;
    wait_data(&client, &ns, "first", &[("token", "t1")]).await?;

    // Someone else's Secret, also controlled by the ExternalSecret.
    let uid = api(&client, &ns, "ExternalSecret")
        .get("token")
        .await?
        .metadata
        .uid
        .unwrap_or_default();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": { "name": "other", "ownerReferences": [{
                    "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
                    "name": "token", "uid": uid, "controller": true }] },
                "stringData": { "mine": "yes" },
            }))?,
        )
        .await?;

    apply(
        &client,
        &ns,
        external_secret("token", "aws", spec("second")),
    )
    .await?;
    wait_data(&client, &ns, "second", &[("token", "t1")]).await?;
    wait_for("the old Secret to be deleted", WAIT, None, || {
        let client = client.clone();
        let ns = ns.clone();
        async move { Ok(secret_data(&client, &ns, "first").await?.is_none()) }
    })
    .await?;
    wait_ready(&client, &ns, "ExternalSecret", "token", "True").await?;
    assert!(
        secret_data(&client, &ns, "other").await?.is_some(),
        "a Secret the ExternalSecret did not write is not pruned"
    );
    Ok(())
}

/// An ExternalSecret made by upstream ESO carries ESO's cleanup finalizer; once sealsync has
/// taken it over, deleting it does not hang: sealsync removes that finalizer (and only it),
/// and the Secret is left to go with its ExternalSecret.
#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_external_secret_with_upstreams_finalizer_does_not_hang() -> anyhow::Result<()>
{
    const UPSTREAM: &str = "externalsecrets.external-secrets.io/externalsecret-cleanup";
    const OTHER: &str = "example.com/keep-me";
    let case = aws_case("es-finalizer").await?;
    let (client, ns) = (case.client.clone(), case.ns.clone());
    let mut es = external_secret(
        "token",
        "aws",
        json!({ "data": [{ "secretKey": "token", "remoteRef": { "key": "app/token" } }] }),
    );
    es["metadata"]["finalizers"] = json!([UPSTREAM, OTHER]);
    apply(&client, &ns, es).await?;
    wait_data(&client, &ns, "token", &[("token", "t1")]).await?;

    let api = api(&client, &ns, "ExternalSecret");
    api.delete("token", &Default::default()).await?;
    wait_for("ESO's finalizer to be removed", WAIT, None, || {
        let api = api.clone();
        async move {
            let finalizers = api
                .get("token")
                .await?
                .metadata
                .finalizers
                .unwrap_or_default();
            anyhow::ensure!(!finalizers.iter().any(|f| f == UPSTREAM), "{finalizers:?}");
            Ok(finalizers == [OTHER])
        }
    })
    .await?;
    // The other controller's finalizer is its own to remove.
    api.patch(
        "token",
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "finalizers": [] } })),
    )
    .await?;
    wait_for("the ExternalSecret to be gone", WAIT, None, || {
        let api = api.clone();
        async move { Ok(api.get_opt("token").await?.is_none()) }
    })
    .await?;
    // The garbage collector takes the Secret by its ownerReference, in its own time (it
    // may not know a kind whose CRD is seconds old).
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get_opt("token")
        .await?;
    let owners = secret.map(|s| s.metadata.owner_references.unwrap_or_default());
    assert!(
        owners.is_none_or(|o| o
            .iter()
            .any(|o| o.kind == "ExternalSecret" && o.controller == Some(true))),
        "the Secret is gone or controlled by its ExternalSecret"
    );
    Ok(())
}

/// An API server restart in the middle of the first syncs, then a controller killed
/// (SIGKILL) in the middle of a forced re-sync of all of them: everything converges after
/// recovery, and no Secret is deleted or recreated on the way.
#[tokio::test(flavor = "multi_thread")]
async fn external_secrets_converge_after_an_api_server_restart_and_a_killed_controller()
-> anyhow::Result<()> {
    const COUNT: usize = 40;
    const KEYS: usize = 4;
    let mut cluster = TestCluster::start().await?;
    cluster.install_external_secrets_crds().await?;
    let moto = Moto::start().await?;
    let ns = cluster.namespace("es-faults").await?;
    let value = |k: usize, version: u32| format!("value of {k}, v{version}");
    for k in 0..KEYS {
        moto.client()
            .create_secret()
            .name(format!("faults/key-{k}"))
            .secret_string(value(k, 1))
            .send()
            .await?;
    }
    let client = cluster.client();
    aws_credentials(&client, &ns).await?;
    apply(&client, &ns, aws_store("aws")).await?;
    let env = [("AWS_ENDPOINT_URL", moto.endpoint())];
    let mut first = controller(&cluster, &ns, &env).await?;
    for i in 0..COUNT {
        let es = external_secret(
            &format!("es-{i}"),
            "aws",
            json!({ "data": [{ "secretKey": "value",
                "remoteRef": { "key": format!("faults/key-{}", i % KEYS) } }] }),
        );
        apply(&client, &ns, es).await?;
    }
    cluster.restart_apiserver(Duration::from_secs(3)).await?;
    let client = cluster.client();
    for i in 0..COUNT {
        wait_data(
            &client,
            &ns,
            &format!("es-{i}"),
            &[("value", &value(i % KEYS, 1))],
        )
        .await?;
    }
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    let uid = |s: &Secret| s.metadata.uid.clone().unwrap_or_default();
    let mut uids = BTreeMap::new();
    for i in 0..COUNT {
        uids.insert(i, uid(&secrets.get(&format!("es-{i}")).await?));
    }

    // New values, and force-sync on every ExternalSecret; the controller is killed as soon
    // as the first of them is re-synced.
    for k in 0..KEYS {
        moto.client()
            .put_secret_value()
            .secret_id(format!("faults/key-{k}"))
            .secret_string(value(k, 2))
            .send()
            .await?;
    }
    let api = api(&client, &ns, "ExternalSecret");
    for i in 0..COUNT {
        api.patch(
            &format!("es-{i}"),
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "annotations": { "force-sync": "1" } } })),
        )
        .await?;
    }
    wait_for("a first re-sync", WAIT, None, || {
        let client = client.clone();
        let ns = ns.clone();
        async move {
            let mut any = false;
            for i in 0..COUNT {
                any |= secret_data(&client, &ns, &format!("es-{i}"))
                    .await?
                    .is_some_and(|d| d.get("value") == Some(&value(i % KEYS, 2)));
            }
            Ok(any)
        }
    })
    .await?;
    first.process().kill();
    let _second = controller(&cluster, &ns, &env).await?;
    for i in 0..COUNT {
        wait_data(
            &client,
            &ns,
            &format!("es-{i}"),
            &[("value", &value(i % KEYS, 2))],
        )
        .await?;
        wait_ready(&client, &ns, "ExternalSecret", &format!("es-{i}"), "True").await?;
        assert_eq!(
            uid(&secrets.get(&format!("es-{i}")).await?),
            uids[&i],
            "Secret es-{i} was never deleted or recreated"
        );
    }
    Ok(())
}

/// The unit of polling is the remote secret: 24 ExternalSecrets reading 6 AWS secrets (two
/// properties each, created in two waves so that their phases differ) fall into step, and
/// each refresh interval costs one `BatchGetSecretValue` for all 6 secrets instead of 24
/// reads; a changed value still reaches every reader within an interval or two.
#[tokio::test(flavor = "multi_thread")]
async fn readers_of_one_remote_secret_share_its_reads_and_refreshes_are_batched()
-> anyhow::Result<()> {
    const KEYS: usize = 6;
    const READERS: usize = 24;
    const INTERVAL: Duration = Duration::from_secs(6);
    let cluster = TestCluster::start().await?;
    cluster.install_external_secrets_crds().await?;
    let moto = Moto::start().await?;
    let client = cluster.client();
    let ns = cluster.namespace("es-shared").await?;
    let value = |k: usize, property: &str, version: u32| format!("{property} of {k}, v{version}");
    let payload = |k: usize, version: u32| {
        json!({ "a": value(k, "a", version), "b": value(k, "b", version) }).to_string()
    };
    for k in 0..KEYS {
        moto.client()
            .create_secret()
            .name(format!("shared/key-{k}"))
            .secret_string(payload(k, 1))
            .send()
            .await?;
    }
    aws_credentials(&client, &ns).await?;
    apply(&client, &ns, aws_store("aws")).await?;
    let controller = controller(&cluster, &ns, &[("AWS_ENDPOINT_URL", moto.endpoint())]).await?;
    let reader = |i: usize| {
        (
            i % KEYS,
            if (i / KEYS).is_multiple_of(2) {
                "a"
            } else {
                "b"
            },
        )
    };
    for i in 0..READERS {
        if i == READERS / 2 {
            tokio::time::sleep(INTERVAL * 2 / 3).await;
        }
        let (k, property) = reader(i);
        let mut es = external_secret(
            &format!("reader-{i}"),
            "aws",
            json!({ "data": [{ "secretKey": "value", "remoteRef": {
                "key": format!("shared/key-{k}"), "property": property } }] }),
        );
        es["spec"]["refreshInterval"] = json!(format!("{}s", INTERVAL.as_secs()));
        apply(&client, &ns, es).await?;
    }
    for i in 0..READERS {
        let (k, property) = reader(i);
        wait_data(
            &client,
            &ns,
            &format!("reader-{i}"),
            &[("value", &value(k, property, 1))],
        )
        .await?;
    }

    // Two intervals to fall into step, then two intervals counted.
    tokio::time::sleep(INTERVAL * 2).await;
    let syncs_before = controller.metric("externalsecret_sync_calls_total", "")?;
    let calls = sealsync_testkit::MotoCalls::start(&moto)?;
    tokio::time::sleep(INTERVAL * 2).await;
    let by_operation = calls.by_operation()?;
    let syncs = controller.metric("externalsecret_sync_calls_total", "")? - syncs_before;
    let reads: u64 = ["GetSecretValue", "BatchGetSecretValue"]
        .iter()
        .map(|op| by_operation.get(*op).copied().unwrap_or(0))
        .sum();
    assert!(
        syncs >= READERS as f64,
        "every ExternalSecret is still refreshed: {syncs} syncs in two intervals"
    );
    // One read per refresh would be 48; one read per secret per interval 12.
    assert!(
        reads <= KEYS as u64,
        "provider calls in two intervals: {by_operation:?}, for {syncs} syncs"
    );
    assert!(
        by_operation.contains_key("BatchGetSecretValue"),
        "refreshes are read in batches: {by_operation:?}"
    );

    for k in 0..KEYS {
        moto.client()
            .put_secret_value()
            .secret_id(format!("shared/key-{k}"))
            .secret_string(payload(k, 2))
            .send()
            .await?;
    }
    for i in 0..READERS {
        let (k, property) = reader(i);
        wait_data(
            &client,
            &ns,
            &format!("reader-{i}"),
            &[("value", &value(k, property, 2))],
        )
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn vault_kv2_and_kv1_secrets_are_synced_with_token_and_approle_auth() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    cluster.install_external_secrets_crds().await?;
    let vault = Vault::start().await?;
    let client = cluster.client();
    let ns = cluster.namespace("es-vault").await?;
    let root = vault.client()?;
    vaultrs::kv2::set(
        &root,
        Vault::KV2_MOUNT,
        "app/api",
        &json!({ "token": "tk-1", "config": { "url": "https://x" } }),
    )
    .await?;
    vaultrs::kv1::set(
        &root,
        Vault::KV1_MOUNT,
        "legacy",
        &std::collections::HashMap::from([("password", "old-pw")]),
    )
    .await?;
    vault
        .policy("read", r#"path "*" { capabilities = ["read", "list"] }"#)
        .await?;
    let (role_id, secret_id) = vault.approle("reader", &["read"]).await?;
    credentials(&client, &ns, "vault-token", &[("token", Vault::ROOT_TOKEN)]).await?;
    credentials(&client, &ns, "approle", &[("secret-id", &secret_id)]).await?;
    let store = |name: &str, path: &str, version: &str, auth: Value| {
        json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "SecretStore",
            "metadata": { "name": name },
            "spec": { "provider": { "vault": {
                "server": vault.address(), "path": path, "version": version, "auth": auth,
            } } }
        })
    };
    apply(
        &client,
        &ns,
        store(
            "kv2",
            Vault::KV2_MOUNT,
            "v2",
            json!({ "tokenSecretRef": { "name": "vault-token", "key": "token" } }),
        ),
    )
    .await?;
    apply(
        &client,
        &ns,
        store(
            "kv1",
            Vault::KV1_MOUNT,
            "v1",
            json!({ "appRole": { "path": "approle", "roleId": role_id, "secretRef": { "name": "approle", "key": "secret-id" } } }),
        ),
    )
    .await?;
    let _controller = controller(&cluster, &ns, &[]).await?;
    apply(
        &client,
        &ns,
        external_secret(
            "api",
            "kv2",
            json!({
                "data": [{ "secretKey": "url", "remoteRef": { "key": "app/api", "property": "config.url" } }],
                "dataFrom": [{ "extract": { "key": "app/api" } }],
                "target": { "template": {
                    "type": "example.com/api-token",
                    "mergePolicy": "Merge",
                    "data": { "header": "Bearer {{ .token }}" },
                } },
            }),
        ),
    )
    .await?;
    apply(
        &client,
        &ns,
        external_secret(
            "legacy",
            "kv1",
            json!({ "data": [{ "secretKey": "password", "remoteRef": { "key": "legacy", "property": "password" } }] }),
        ),
    )
    .await?;
    wait_data(
        &client,
        &ns,
        "api",
        &[
            ("token", "tk-1"),
            ("config", r#"{"url":"https://x"}"#),
            ("url", "https://x"),
            ("header", "Bearer tk-1"),
        ],
    )
    .await?;
    let secret = Api::<Secret>::namespaced(client.clone(), &ns)
        .get("api")
        .await?;
    assert_eq!(secret.type_.as_deref(), Some("example.com/api-token"));
    wait_data(&client, &ns, "legacy", &[("password", "old-pw")]).await?;
    wait_ready(&client, &ns, "SecretStore", "kv1", "True").await?;
    wait_ready(&client, &ns, "ExternalSecret", "legacy", "True").await?;

    // A deleted Secret comes back at once.
    Api::<Secret>::namespaced(client.clone(), &ns)
        .delete("legacy", &Default::default())
        .await?;
    wait_data(&client, &ns, "legacy", &[("password", "old-pw")]).await?;
    Ok(())
}

/// Vault over TLS: cert auth with a client certificate from a Secret, and a token store
/// presenting a client certificate (`tls`) with its CA from a `caProvider` Secret; a store
/// without the server's CA is refused.
#[tokio::test(flavor = "multi_thread")]
async fn vault_over_tls_with_cert_auth_and_client_certificates() -> anyhow::Result<()> {
    use base64::Engine as _;
    let cluster = TestCluster::start().await?;
    cluster.install_external_secrets_crds().await?;
    let vault = Vault::start_tls().await?;
    let client = cluster.client();
    let ns = cluster.namespace("es-vault-tls").await?;
    let root = vault.client()?;
    vaultrs::kv2::set(
        &root,
        Vault::KV2_MOUNT,
        "app/tls",
        &json!({ "token": "over-tls" }),
    )
    .await?;
    vault
        .policy("read", r#"path "*" { capabilities = ["read", "list"] }"#)
        .await?;
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec!["sealsync-client".to_string()])?;
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key)?.pem();
    let mut role = vaultrs::api::auth::cert::requests::CreateCaCertificateRoleRequest::builder();
    role.token_policies(vec!["read".to_string()]);
    vaultrs::auth::cert::ca_cert_role::set(&root, "cert", "es", &cert, Some(&mut role)).await?;
    let ca = vault.ca_pem()?;
    credentials(
        &client,
        &ns,
        "vault-client",
        &[("tls.crt", &cert), ("tls.key", &key.serialize_pem())],
    )
    .await?;
    credentials(&client, &ns, "vault-ca", &[("ca.crt", &ca)]).await?;
    credentials(&client, &ns, "vault-token", &[("token", Vault::ROOT_TOKEN)]).await?;
    let client_cert = json!({ "name": "vault-client", "key": "tls.crt" });
    let client_key = json!({ "name": "vault-client", "key": "tls.key" });
    let store = |name: &str, vault_spec: Value| {
        let mut spec =
            json!({ "server": vault.address(), "path": Vault::KV2_MOUNT, "version": "v2" });
        spec.as_object_mut()
            .expect("an object")
            .extend(vault_spec.as_object().expect("an object").clone());
        json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "SecretStore",
            "metadata": { "name": name },
            "spec": { "provider": { "vault": spec } }
        })
    };
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(&ca);
    apply(
        &client,
        &ns,
        store(
            "cert",
            json!({ "caBundle": ca_bundle, "auth": { "cert": {
                "clientCert": client_cert, "secretRef": client_key, "vaultRole": "es" } } }),
        ),
    )
    .await?;
    apply(
        &client,
        &ns,
        store(
            "mtls",
            json!({
                "caProvider": { "type": "Secret", "name": "vault-ca", "key": "ca.crt" },
                "tls": { "certSecretRef": client_cert, "keySecretRef": client_key },
                "auth": { "tokenSecretRef": { "name": "vault-token", "key": "token" } },
            }),
        ),
    )
    .await?;
    apply(
        &client,
        &ns,
        store(
            "untrusted",
            json!({ "auth": { "tokenSecretRef": { "name": "vault-token", "key": "token" } } }),
        ),
    )
    .await?;
    let _controller = controller(&cluster, &ns, &[]).await?;
    for store in ["cert", "mtls"] {
        wait_ready(&client, &ns, "SecretStore", store, "True").await?;
        apply(
            &client,
            &ns,
            external_secret(
                store,
                store,
                json!({ "data": [{ "secretKey": "token",
                    "remoteRef": { "key": "app/tls", "property": "token" } }] }),
            ),
        )
        .await?;
        wait_data(&client, &ns, store, &[("token", "over-tls")]).await?;
    }
    let refused = wait_ready(&client, &ns, "SecretStore", "untrusted", "False").await?;
    assert_eq!(refused["reason"], "InvalidProviderConfig", "{refused}");
    Ok(())
}

/// The cases of the differential test: each ExternalSecret spec, run by both controllers.
fn corpus() -> Vec<(&'static str, Value)> {
    let data = |key: &str, remote: Value| json!({ "secretKey": key, "remoteRef": remote });
    vec![
        (
            "property-and-extract",
            json!({ "secretStoreRef": { "name": "aws" },
                "data": [data("password", json!({ "key": "app/db", "property": "password" })),
                         data("port", json!({ "key": "app/db", "property": "nested.port" }))],
                "dataFrom": [{ "extract": { "key": "app/db" } }] }),
        ),
        (
            "find-by-name",
            json!({ "secretStoreRef": { "name": "aws" },
                "dataFrom": [{ "find": { "name": { "regexp": "^team/" } } }] }),
        ),
        (
            "find-with-rewrite",
            json!({ "secretStoreRef": { "name": "aws" },
                "dataFrom": [{ "find": { "name": { "regexp": "^team/" } },
                               "rewrite": [{ "regexp": { "source": "team/(.*)", "target": "t-$1" } }] }] }),
        ),
        (
            "binary-and-base64",
            json!({ "secretStoreRef": { "name": "aws" },
                "data": [data("blob", json!({ "key": "app/binary" })),
                         data("decoded", json!({ "key": "app/encoded", "decodingStrategy": "Base64" }))] }),
        ),
        (
            "template",
            json!({ "secretStoreRef": { "name": "aws" },
                "data": [data("user", json!({ "key": "app/db", "property": "username" })),
                         data("password", json!({ "key": "app/db", "property": "password" }))],
                "target": { "name": "templated", "template": {
                    "type": "example.com/dsn",
                    "metadata": { "labels": { "app": "{{ .user }}" }, "annotations": { "note": "made" } },
                    "data": { "dsn": "postgres://{{ .user }}:{{ .password | upper }}@db:5432" },
                    "templateFrom": [{ "configMap": { "name": "templates", "items": [{ "key": "extra" }] } }],
                } } }),
        ),
        (
            "pkcs12-bundles",
            json!({ "secretStoreRef": { "name": "aws" },
                "data": [data("b", json!({ "key": "app/p12" })),
                         data("raw", json!({ "key": "app/p12-binary" }))],
                "target": { "template": { "data": {
                    "tls.crt": "{{ .b | b64dec | pkcs12cert }}",
                    "chain.crt": "{{ .raw | pkcs12cert }}",
                    "keystore.p12": "{{ .raw }}",
                } } } }),
        ),
        (
            "jwk-keys",
            json!({ "secretStoreRef": { "name": "aws" },
                "data": [data("ed", json!({ "key": "app/jwk-ed25519" })),
                         data("edpub", json!({ "key": "app/jwk-ed25519-public" })),
                         data("rsapub", json!({ "key": "app/jwk-rsa-public" })),
                         data("ecpub", json!({ "key": "app/jwk-ec-public" }))],
                "target": { "template": { "data": {
                    "ed.key": "{{ .ed | jwkPrivateKeyPem }}",
                    "ed.pub": "{{ .edpub | jwkPublicKeyPem }}",
                    "rsa.pub": "{{ .rsapub | jwkPublicKeyPem }}",
                    "ec.pub": "{{ .ecpub | jwkPublicKeyPem }}",
                } } } }),
        ),
        (
            "yaml-functions",
            json!({ "secretStoreRef": { "name": "aws" },
                "dataFrom": [{ "extract": { "key": "app/db" } }],
                "target": { "template": { "data": {
                    "config": "{{ .nested | fromYaml | toYaml }}",
                    "port": "{{ (fromYaml .nested).port }}",
                } } } }),
        ),
        (
            "orphan-with-metadata",
            json!({ "secretStoreRef": { "name": "aws" },
                "data": [data("password", json!({ "key": "app/db", "property": "password" }))],
                "target": { "creationPolicy": "Orphan" } }),
        ),
        (
            "merge-into-existing",
            json!({ "secretStoreRef": { "name": "aws" },
                "data": [data("password", json!({ "key": "app/db", "property": "password" }))],
                "target": { "name": "existing", "creationPolicy": "Merge" } }),
        ),
        (
            "vault-kv2",
            json!({ "secretStoreRef": { "name": "vault" },
                "data": [data("url", json!({ "key": "app/api", "property": "config.url" }))],
                "dataFrom": [{ "extract": { "key": "app/api" } }] }),
        ),
        (
            "vault-whole-secret",
            json!({ "secretStoreRef": { "name": "vault" },
                "data": [data("all", json!({ "key": "app/api" }))] }),
        ),
    ]
}

/// What the two controllers must agree on of a Secret, bookkeeping aside.
fn comparable(secret: &Secret, ns: &str) -> Value {
    let mut labels = secret.metadata.labels.clone().unwrap_or_default();
    // A hash of the ExternalSecret's namespace and name: checked on its own.
    if let Some(created_by) = labels.remove("reconcile.external-secrets.io/created-by") {
        let owner = &secret.metadata.owner_references.as_ref().expect("an owner")[0].name;
        assert_eq!(created_by, sealsync_external::created_by(ns, owner));
    }
    let data: BTreeMap<&String, String> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k, format!("{:?}", v.0)))
        .collect();
    let owners: Vec<(String, String, Option<bool>)> = secret
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|o| (o.kind.clone(), o.name.clone(), o.controller))
        .collect();
    json!({
        "type": secret.type_,
        "data": data,
        "labels": labels,
        "annotations": secret.metadata.annotations.clone().unwrap_or_default(),
        "owners": owners,
        "immutable": secret.immutable,
    })
}

async fn provision(client: &Client, ns: &str, vault: &Vault) -> anyhow::Result<()> {
    aws_credentials(client, ns).await?;
    credentials(client, ns, "vault-token", &[("token", Vault::ROOT_TOKEN)]).await?;
    credentials(client, ns, "existing", &[("kept", "by-someone-else")]).await?;
    let maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns);
    maps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": { "name": "templates" },
            "data": { "extra": "for {{ .user }}" },
        }))?,
    )
    .await?;
    apply(client, ns, aws_store("aws")).await?;
    apply(
        client,
        ns,
        json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "SecretStore",
            "metadata": { "name": "vault" },
            "spec": { "provider": { "vault": {
                "server": vault.address(), "path": Vault::KV2_MOUNT, "version": "v2",
                "auth": { "tokenSecretRef": { "name": "vault-token", "key": "token" } },
            } } }
        }),
    )
    .await?;
    for (name, spec) in corpus() {
        let mut es = external_secret(name, "unused", spec.clone());
        es["spec"]["secretStoreRef"] =
            json!({ "name": spec["secretStoreRef"]["name"], "kind": "SecretStore" });
        es["metadata"]["labels"] = json!({ "team": "payments" });
        es["metadata"]["annotations"] = json!({ "owner": "team-payments@example.com" });
        apply(client, ns, es).await?;
    }
    Ok(())
}

fn target_of(name: &str, spec: &Value) -> String {
    spec["target"]["name"].as_str().unwrap_or(name).to_string()
}

async fn wait_all_ready(client: &Client, ns: &str) -> anyhow::Result<()> {
    for (name, _) in corpus() {
        wait_ready(client, ns, "ExternalSecret", name, "True").await?;
    }
    Ok(())
}

async fn secrets_of(client: &Client, ns: &str) -> anyhow::Result<BTreeMap<String, Secret>> {
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    let mut out = BTreeMap::new();
    for (name, spec) in corpus() {
        let target = target_of(name, &spec);
        out.insert(name.to_string(), secrets.get(&target).await?);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn sealsync_writes_the_secrets_upstream_eso_writes_and_takes_them_over_unchanged()
-> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    // Upstream's CRDs: sealsync runs on them as on its own.
    UpstreamEso::install_crds(&cluster).await?;
    let moto = Moto::start().await?;
    let vault = Vault::start().await?;
    let client = cluster.client();
    let aws = moto.client();
    aws.create_secret()
        .name("app/db")
        .secret_string(r#"{"username":"app","password":"pw-1","nested":{"port":5432}}"#)
        .send()
        .await?;
    for (name, value) in [("team/alpha", "a-1"), ("team/beta", r#"{"k":"v"}"#)] {
        aws.create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await?;
    }
    aws.create_secret()
        .name("app/binary")
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(vec![
            0u8, 159, 146, 150, 255,
        ]))
        .send()
        .await?;
    aws.create_secret()
        .name("app/encoded")
        .secret_string("aGVsbG8gd29ybGQ=")
        .send()
        .await?;
    let p12 = include_bytes!("../../template/testdata/pki/nopass.p12");
    aws.create_secret()
        .name("app/p12")
        .secret_string(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            p12,
        ))
        .send()
        .await?;
    for (name, jwk) in [
        (
            "app/jwk-ed25519",
            include_str!("../../template/testdata/pki/ed25519.jwk"),
        ),
        (
            "app/jwk-ed25519-public",
            include_str!("../../template/testdata/pki/ed25519.pub.jwk"),
        ),
        (
            "app/jwk-rsa-public",
            include_str!("../../template/testdata/pki/rsa.pub.jwk"),
        ),
        (
            "app/jwk-ec-public",
            include_str!("../../template/testdata/pki/ec.pub.jwk"),
        ),
    ] {
        aws.create_secret()
            .name(name)
            .secret_string(jwk)
            .send()
            .await?;
    }
    aws.create_secret()
        .name("app/p12-binary")
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(p12.to_vec()))
        .send()
        .await?;
    vaultrs::kv2::set(
        &vault.client()?,
        Vault::KV2_MOUNT,
        "app/api",
        &json!({ "token": "tk-1", "config": { "url": "https://x" }, "n": 3, "on": true }),
    )
    .await?;

    let upstream_ns = cluster.namespace("diff-upstream").await?;
    let ours_ns = cluster.namespace("diff-sealsync").await?;
    let mut upstream = UpstreamEso::start(&cluster, Some(&upstream_ns), Some(&moto)).await?;
    let _ours = controller(&cluster, &ours_ns, &[("AWS_ENDPOINT_URL", moto.endpoint())]).await?;
    provision(&client, &upstream_ns, &vault).await?;
    provision(&client, &ours_ns, &vault).await?;
    wait_all_ready(&client, &upstream_ns).await?;
    wait_all_ready(&client, &ours_ns).await?;

    let theirs = secrets_of(&client, &upstream_ns).await?;
    let ours = secrets_of(&client, &ours_ns).await?;
    let mut differences = Vec::new();
    for (case, secret) in &theirs {
        let (mut expected, mut got) = (
            comparable(secret, &upstream_ns),
            comparable(&ours[case], &ours_ns),
        );
        // Deliberate: upstream hashes a merged Secret's data, others' keys included; a
        // server-side apply of sealsync's own keys leaves that annotation to its writer.
        if case == "merge-into-existing" {
            for side in [&mut expected, &mut got] {
                side["annotations"]
                    .as_object_mut()
                    .expect("annotations")
                    .remove("reconcile.external-secrets.io/data-hash");
            }
        }
        if expected != got {
            differences.push(format!("{case}:\n  upstream {expected}\n  sealsync {got}"));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));

    // Takeover: upstream stops, sealsync takes its namespace; every Secret stays as it was.
    upstream.process().kill();
    let before = secrets_of(&client, &upstream_ns).await?;
    let _takeover = controller(
        &cluster,
        &upstream_ns,
        &[("AWS_ENDPOINT_URL", moto.endpoint())],
    )
    .await?;
    let secrets = Api::<Secret>::namespaced(client.clone(), &upstream_ns);
    wait_for(
        "sealsync to have written every Secret it repairs",
        WAIT,
        None,
        || {
            let secrets = secrets.clone();
            async move {
                // An orphaned Secret is not repaired (as upstream): it is next written at its
                // refresh, an hour away.
                for (name, spec) in corpus()
                    .into_iter()
                    .filter(|(n, _)| !n.starts_with("orphan"))
                {
                    let secret = secrets.get(&target_of(name, &spec)).await?;
                    let ours = secret.metadata.managed_fields.iter().flatten().any(|f| {
                        f.manager
                            .as_deref()
                            .is_some_and(|m| m.starts_with("sealsync-controller/ExternalSecret/"))
                    });
                    if !ours {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
        },
    )
    .await?;
    let after = secrets_of(&client, &upstream_ns).await?;
    for (case, secret) in &before {
        assert_eq!(
            comparable(secret, &upstream_ns),
            comparable(&after[case], &upstream_ns),
            "{case} changed on takeover"
        );
    }
    // No write loop between the two bookkeeping schemes: nothing moves afterwards.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let settled = secrets_of(&client, &upstream_ns).await?;
    for (case, secret) in &after {
        assert_eq!(
            secret.metadata.resource_version, settled[case].metadata.resource_version,
            "{case} is written again and again"
        );
    }
    Ok(())
}

async fn label_namespace(client: &Client, ns: &str, labels: Value) -> anyhow::Result<()> {
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .patch(
            ns,
            &PatchParams::default(),
            &Patch::Merge(json!({ "metadata": { "labels": labels } })),
        )
        .await?;
    Ok(())
}

/// The status of ClusterExternalSecret `name`.
async fn cluster_status(client: &Client, name: &str) -> anyhow::Result<Value> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource("ClusterExternalSecret"));
    Ok(api.get(name).await?.data["status"].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_external_secret_follows_its_namespace_selector() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    cluster.install_external_secrets_crds().await?;
    let moto = Moto::start().await?;
    let client = cluster.client();
    moto.client()
        .create_secret()
        .name("shared/token")
        .secret_string("t-1")
        .send()
        .await?;
    let controller_ns = cluster.namespace("ces-controller").await?;
    aws_credentials(&client, &controller_ns).await?;
    let key_ref =
        |key: &str| json!({ "name": "aws-credentials", "key": key, "namespace": controller_ns });
    let store = json!({
        "apiVersion": "external-secrets.io/v1",
        "kind": "ClusterSecretStore",
        "metadata": { "name": format!("aws-{controller_ns}") },
        "spec": { "provider": { "aws": {
            "service": "SecretsManager",
            "region": Moto::REGION,
            "auth": { "secretRef": {
                "accessKeyIDSecretRef": key_ref("access-key-id"),
                "secretAccessKeySecretRef": key_ref("secret-access-key"),
            } }
        } } }
    });
    let stores: Api<DynamicObject> = Api::all_with(client.clone(), &resource("ClusterSecretStore"));
    stores
        .patch(
            store["metadata"]["name"].as_str().expect("a name"),
            &PatchParams::apply("test").force(),
            &Patch::Apply(store.clone()),
        )
        .await?;
    let team = format!("payments-{controller_ns}");
    let (a, b, c) = (
        cluster.namespace("ces-a").await?,
        cluster.namespace("ces-b").await?,
        cluster.namespace("ces-c").await?,
    );
    for ns in [&a, &b] {
        label_namespace(&client, ns, json!({ "team": team })).await?;
    }
    // b already has an ExternalSecret of that name, not the ClusterExternalSecret's.
    apply(
        &client,
        &b,
        external_secret(
            "token",
            "elsewhere",
            json!({ "data": [
            { "secretKey": "x", "remoteRef": { "key": "x" } },
        ] }),
        ),
    )
    .await?;
    let mut controller = SealsyncController::start_with_env(
        &cluster,
        &controller_ns,
        &["--external-secrets"],
        &[("AWS_ENDPOINT_URL", moto.endpoint())],
    )
    .await?;
    let name = format!("token-{controller_ns}");
    let ces: Api<DynamicObject> = Api::all_with(client.clone(), &resource("ClusterExternalSecret"));
    ces.patch(
        &name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "ClusterExternalSecret",
            "metadata": { "name": name },
            "spec": {
                "externalSecretName": "token",
                "namespaceSelectors": [{ "matchLabels": { "team": team } }],
                "externalSecretSpec": {
                    "secretStoreRef": { "name": store["metadata"]["name"], "kind": "ClusterSecretStore" },
                    "data": [{ "secretKey": "token", "remoteRef": { "key": "shared/token" } }],
                },
            },
        })),
    )
    .await?;
    wait_data(&client, &a, "token", &[("token", "t-1")]).await?;
    wait_for("the ClusterExternalSecret's status", WAIT, None, || {
        let client = client.clone();
        let (name, a, b) = (&name, &a, &b);
        async move {
            let status = cluster_status(&client, name).await?;
            Ok(status["provisionedNamespaces"] == json!([a])
                && status["failedNamespaces"]
                    == json!([{ "namespace": b, "reason": "external secret already exists in namespace" }])
                && status["conditions"][0]["status"] == "False")
        }
    })
    .await?;

    // A namespace that starts matching gets it; one that stops matching loses it.
    label_namespace(&client, &c, json!({ "team": team })).await?;
    wait_data(&client, &c, "token", &[("token", "t-1")]).await?;
    label_namespace(&client, &a, json!({ "team": null })).await?;
    wait_for(
        "the ExternalSecret to leave namespace a",
        WAIT,
        None,
        || {
            let client = client.clone();
            let a = &a;
            async move {
                Ok(api(&client, a, "ExternalSecret")
                    .get_opt("token")
                    .await?
                    .is_none())
            }
        },
    )
    .await?;

    // A new value at the provider comes before the refresh (an hour) when the
    // ClusterExternalSecret is forced: it forces its ExternalSecrets.
    moto.client()
        .put_secret_value()
        .secret_id("shared/token")
        .secret_string("t-2")
        .send()
        .await?;
    ces.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "metadata": { "annotations": {
            "external-secrets.io/force-sync": "1",
        } } })),
    )
    .await?;
    if let Err(e) = wait_data(&client, &c, "token", &[("token", "t-2")]).await {
        let es = api(&client, &c, "ExternalSecret").get("token").await?;
        anyhow::bail!(
            "{e:#}\nthe ExternalSecret's annotations: {:?}, status: {}\n{}",
            es.metadata.annotations,
            es.data["status"],
            controller.process().log_tail()
        );
    }
    Ok(())
}
