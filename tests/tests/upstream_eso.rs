//! The upstream External Secrets Operator that the harness builds works against the
//! harness's API server and moto: the peer for sealsync's ExternalSecret reconciler.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ObjectMeta, PostParams};
use sealsync_testkit::{Moto, TestCluster, UpstreamEso, wait_for};
use serde_json::{Value, json};

fn resource(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("external-secrets.io", "v1", kind))
}

async fn create(cluster: &TestCluster, ns: &str, object: Value) -> anyhow::Result<()> {
    let kind = object["kind"].as_str().expect("a kind").to_owned();
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client(), ns, &resource(&kind));
    api.create(&PostParams::default(), &serde_json::from_value(object)?)
        .await?;
    Ok(())
}

/// The Ready condition of `kind/name`, once there is one.
async fn ready_condition(
    cluster: &TestCluster,
    ns: &str,
    kind: &str,
    name: &str,
) -> anyhow::Result<Option<Value>> {
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client(), ns, &resource(kind));
    let object = api.get(name).await?;
    let conditions = object.data["status"]["conditions"].as_array().cloned();
    Ok(conditions
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready"))
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_eso_syncs_an_aws_secret_from_moto() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    UpstreamEso::install_crds(&cluster).await?;
    let moto = Moto::start().await?;
    let ns = cluster.namespace("upstream-eso").await?;

    moto.client()
        .create_secret()
        .name("app/db")
        .secret_string(r#"{"username":"app","password":"pw-from-moto"}"#)
        .send()
        .await?;
    let credentials = BTreeMap::from([
        (
            "access-key-id".to_owned(),
            ByteString(Moto::ACCESS_KEY_ID.into()),
        ),
        (
            "secret-access-key".to_owned(),
            ByteString(Moto::SECRET_ACCESS_KEY.into()),
        ),
    ]);
    Api::<Secret>::namespaced(cluster.client(), &ns)
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("aws-credentials".into()),
                    ..ObjectMeta::default()
                },
                data: Some(credentials),
                ..Secret::default()
            },
        )
        .await?;
    let key_ref = |key: &str| json!({ "name": "aws-credentials", "key": key });
    create(
        &cluster,
        &ns,
        json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "SecretStore",
            "metadata": { "name": "aws" },
            "spec": { "provider": { "aws": {
                "service": "SecretsManager",
                "region": Moto::REGION,
                "auth": { "secretRef": {
                    "accessKeyIDSecretRef": key_ref("access-key-id"),
                    "secretAccessKeySecretRef": key_ref("secret-access-key"),
                } },
            } } },
        }),
    )
    .await?;
    create(
        &cluster,
        &ns,
        json!({
            "apiVersion": "external-secrets.io/v1",
            "kind": "ExternalSecret",
            "metadata": { "name": "db" },
            "spec": {
                "refreshInterval": "1h",
                "secretStoreRef": { "name": "aws", "kind": "SecretStore" },
                "target": { "name": "db-credentials" },
                "data": [
                    { "secretKey": "user", "remoteRef": { "key": "app/db", "property": "username" } },
                    { "secretKey": "whole", "remoteRef": { "key": "app/db" } },
                ],
                "dataFrom": [ { "extract": { "key": "app/db" } } ],
            },
        }),
    )
    .await?;

    let mut eso = UpstreamEso::start(&cluster, Some(&ns), Some(&moto)).await?;

    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let secrets = &secrets;
    wait_for(
        "upstream ESO to write db-credentials",
        Duration::from_secs(120),
        Some(eso.process()),
        || async move { Ok(secrets.get_opt("db-credentials").await?.is_some()) },
    )
    .await?;
    let secret = secrets.get("db-credentials").await?;
    let data: BTreeMap<String, String> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).expect("UTF-8 values")))
        .collect();
    let expected = BTreeMap::from([
        ("user".to_owned(), "app".to_owned()),
        (
            "whole".to_owned(),
            r#"{"username":"app","password":"pw-from-moto"}"#.to_owned(),
        ),
        ("username".to_owned(), "app".to_owned()),
        ("password".to_owned(), "pw-from-moto".to_owned()),
    ]);
    assert_eq!(data, expected, "the Secret upstream ESO wrote");
    let labels = secret.metadata.labels.unwrap_or_default();
    assert_eq!(
        labels
            .get("reconcile.external-secrets.io/managed")
            .map(String::as_str),
        Some("true")
    );
    let owners = secret.metadata.owner_references.unwrap_or_default();
    assert_eq!(
        owners
            .iter()
            .map(|o| (&*o.kind, &*o.name))
            .collect::<Vec<_>>(),
        [("ExternalSecret", "db")],
        "creationPolicy Owner (the default) makes the ExternalSecret the owner"
    );

    let cluster = &cluster;
    let ns = &ns;
    wait_for(
        "upstream ESO to report the ExternalSecret Ready",
        Duration::from_secs(120),
        Some(eso.process()),
        || async move {
            Ok(ready_condition(cluster, ns, "ExternalSecret", "db")
                .await?
                .is_some_and(|c| c["status"] == "True"))
        },
    )
    .await?;
    let ready = ready_condition(cluster, ns, "ExternalSecret", "db")
        .await?
        .expect("a Ready condition");
    assert_eq!(ready["reason"], "SecretSynced");
    let api: Api<DynamicObject> =
        Api::namespaced_with(cluster.client(), ns, &resource("ExternalSecret"));
    let status = api.get("db").await?.data["status"].clone();
    assert_eq!(status["binding"]["name"], "db-credentials");
    assert!(status["refreshTime"].is_string(), "status: {status}");
    assert!(
        status["syncedResourceVersion"].is_string(),
        "status: {status}"
    );

    wait_for(
        "upstream ESO to validate the SecretStore",
        Duration::from_secs(120),
        Some(eso.process()),
        || async move {
            Ok(ready_condition(cluster, ns, "SecretStore", "aws")
                .await?
                .is_some())
        },
    )
    .await?;
    let store_ready = ready_condition(cluster, ns, "SecretStore", "aws")
        .await?
        .expect("a Ready condition");
    assert_eq!(
        (&store_ready["status"], &store_ready["reason"]),
        (&json!("True"), &json!("Valid"))
    );
    let stores: Api<DynamicObject> =
        Api::namespaced_with(cluster.client(), ns, &resource("SecretStore"));
    assert_eq!(
        stores.get("aws").await?.data["status"]["capabilities"],
        "ReadWrite"
    );
    Ok(())
}
