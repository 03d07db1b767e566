//! sealsync's ExternalSecret reconciler against the real API server, moto and Vault: Secrets
//! synced from AWS Secrets Manager and Vault as upstream syncs them, status as upstream
//! writes it, drift reverted at once, refreshes and force-sync, failures that name the
//! ExternalSecret, store and key and leave the last good Secret alone.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, CustomResourceExt};
use sealsync_api::external::{
    ClusterExternalSecret, ClusterSecretStore, ExternalSecret, SecretStore,
};
use sealsync_testkit::{Moto, SealsyncController, TestCluster, Vault, events_about, wait_for};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

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

async fn install_crds(cluster: &TestCluster) -> anyhow::Result<()> {
    for crd in [
        ExternalSecret::crd(),
        SecretStore::crd(),
        ClusterSecretStore::crd(),
        ClusterExternalSecret::crd(),
    ] {
        cluster.install_crd(crd).await?;
    }
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
            Ok(condition.is_some_and(|c| c["status"] == status))
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

#[tokio::test(flavor = "multi_thread")]
async fn aws_secrets_are_synced_repaired_refreshed_and_failures_leave_them_alone()
-> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    install_crds(&cluster).await?;
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
    let _controller = controller(&cluster, &ns, &[("AWS_ENDPOINT_URL", moto.endpoint())]).await?;

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
    wait_data(
        &client,
        &ns,
        "db",
        &[
            ("username", "app"),
            ("password", "pw-1"),
            ("port", "5432"),
            ("nested", r#"{"port":5432}"#),
        ],
    )
    .await?;
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
    wait_data(
        &client,
        &ns,
        "db",
        &[
            ("username", "app"),
            ("password", "pw-1"),
            ("port", "5432"),
            ("nested", r#"{"port":5432}"#),
        ],
    )
    .await?;

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
    wait_data(
        &client,
        &ns,
        "db",
        &[
            ("username", "app"),
            ("password", "pw-2"),
            ("port", "5432"),
            ("nested", r#"{"port":5432}"#),
        ],
    )
    .await?;

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
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn vault_kv2_and_kv1_secrets_are_synced_with_token_and_approle_auth() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    install_crds(&cluster).await?;
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
