//! Our SealedSecret CRD accepts whatever upstream's (Bitnami Sealed Secrets v0.36) accepts:
//! compared schema against schema, then applied to a real API server.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use kube::api::Api;
use sealsync_api::SealedSecret;
use sealsync_testkit::schema::{Allowances, Comparison, compare, names, printer_columns};
use sealsync_testkit::{Component, TestCluster, binary};
use serde_json::{Value, json};

fn upstream_crd() -> Value {
    let path = binary(Component::SealedSecrets, "SEALSYNC_SEALED_SECRETS_CRD");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn our_crd() -> Value {
    serde_json::to_value(SealedSecret::crd()).expect("the CRD serializes")
}

/// Fields only sealsync's controller writes (in the status subresource, never in Git): an
/// upstream object cannot carry them, so typing them rejects nothing users write.
const SEALSYNC_ONLY: [&str; 2] = ["status.keyFingerprints", "status.inputDigest"];

#[test]
fn crd_is_compatible_with_upstream() {
    let upstream = upstream_crd();
    let ours = our_crd();

    assert_eq!(ours["spec"]["group"], upstream["spec"]["group"], "group");
    assert_eq!(ours["metadata"]["name"], upstream["metadata"]["name"]);
    assert_eq!(names(&ours), names(&upstream), "names");
    assert_eq!(ours["spec"]["scope"], upstream["spec"]["scope"], "scope");

    let versions = |crd: &Value| crd["spec"]["versions"].as_array().unwrap().clone();
    let (upstream_versions, our_versions) = (versions(&upstream), versions(&ours));
    assert_eq!(
        our_versions.iter().map(|v| &v["name"]).collect::<Vec<_>>(),
        upstream_versions
            .iter()
            .map(|v| &v["name"])
            .collect::<Vec<_>>(),
        "versions"
    );
    for (up, our) in upstream_versions.iter().zip(&our_versions) {
        let version = up["name"].as_str().unwrap();
        assert_eq!(our["served"], up["served"], "{version}: served");
        assert_eq!(our["storage"], up["storage"], "{version}: storage");
        assert_eq!(
            our["subresources"], up["subresources"],
            "{version}: subresources"
        );
        assert_eq!(
            our["subresources"]["status"],
            json!({}),
            "{version}: status"
        );
        assert_eq!(
            printer_columns(our),
            printer_columns(up),
            "{version}: additionalPrinterColumns"
        );

        let schema = |v: &Value| v["schema"]["openAPIV3Schema"].clone();
        let allowances = Allowances {
            ours_only: &SEALSYNC_ONLY,
            ..Allowances::default()
        };
        let Comparison { visited, problems } = compare(&schema(up), &schema(our), &allowances);
        assert!(
            problems.is_empty(),
            "{version}: our schema rejects objects upstream accepts:\n  {}",
            problems.join("\n  ")
        );
        // The walk reached the leaves (and is not vacuous).
        for path in [
            "spec.encryptedData.*",
            "spec.data",
            "spec.template.type",
            "spec.template.immutable",
            "spec.template.data.*",
            "spec.template.metadata.annotations.*",
            "spec.template.metadata.labels.*",
            "spec.template.metadata.finalizers[]",
            "spec.template.metadata.name",
            "spec.template.metadata.namespace",
            "status.observedGeneration",
            "status.conditions[].type",
            "status.conditions[].status",
            "status.conditions[].lastUpdateTime",
            "status.conditions[].lastTransitionTime",
            "status.conditions[].reason",
            "status.conditions[].message",
        ] {
            assert!(visited.contains(path), "{version}: {path} was not compared");
        }
    }
}

/// A SealedSecret as kubeseal writes it (v0.36's output, plus the `creationTimestamp: null`
/// that earlier releases wrote and repositories still hold), with the status the upstream
/// controller reports, as `kubectl get -o json` exports it.
fn kubeseal_shaped(namespace: &str) -> Value {
    json!({
        "kind": "SealedSecret",
        "apiVersion": "bitnami.com/v1alpha1",
        "metadata": {
            "name": "db",
            "namespace": namespace,
            "creationTimestamp": null,
            "annotations": { "sealedsecrets.bitnami.com/namespace-wide": "true" }
        },
        "spec": {
            "template": {
                "metadata": {
                    "name": "db",
                    "namespace": namespace,
                    "creationTimestamp": null,
                    "labels": { "app": "db" },
                    "annotations": { "sealedsecrets.bitnami.com/namespace-wide": "true" }
                },
                "type": "kubernetes.io/basic-auth",
                "immutable": true,
                "data": { "url": "postgres://app:{{ index . \"password\" }}@db" }
            },
            "encryptedData": {
                "password": "AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq",
                "username": "AgCtr8KMXxWkb2TVm1V7WmFhVNDeFlPi"
            }
        },
        "status": {
            "observedGeneration": 1,
            "conditions": [{
                "type": "Synced",
                "status": "True",
                "lastUpdateTime": "2025-06-01T10:00:00Z",
                "lastTransitionTime": "2025-06-01T10:00:00Z"
            }]
        }
    })
}

/// The corners upstream's schema allows: null template metadata and data, the deprecated
/// whole-Secret `data`, no values, and a failed condition with reason and message.
fn upstream_corners(namespace: &str) -> Value {
    json!({
        "apiVersion": "bitnami.com/v1alpha1",
        "kind": "SealedSecret",
        "metadata": { "name": "legacy", "namespace": namespace },
        "spec": {
            "template": { "metadata": null, "data": null },
            "encryptedData": {},
            "data": "AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq"
        },
        "status": {
            "observedGeneration": 3,
            "conditions": [{
                "type": "Synced",
                "status": "False",
                "lastUpdateTime": "2025-06-01T10:00:00Z",
                "lastTransitionTime": "2025-05-01T08:30:00Z",
                "reason": "ErrUnsealFailed",
                "message": "no key could decrypt secret (password)"
            }]
        }
    })
}

async fn send(client: &kube::Client, method: &str, path: &str, body: &Value) -> Value {
    let content_type = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).unwrap()
        })
        .unwrap();
    client
        .request::<Value>(request)
        .await
        .unwrap_or_else(|e| panic!("{method} {path} refused: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn api_server_keeps_upstream_shaped_sealed_secrets() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let client = cluster.client();

    // The API server fills the names upstream spells out.
    let crd = Api::<CustomResourceDefinition>::all(client.clone())
        .get(SealedSecret::crd_name())
        .await?;
    assert_eq!(
        crd.spec.names.list_kind.as_deref(),
        Some("SealedSecretList")
    );

    let ns = cluster.namespace("crd-compat").await?;
    let collection = format!("/apis/bitnami.com/v1alpha1/namespaces/{ns}/sealedsecrets");
    for object in [kubeseal_shaped(&ns), upstream_corners(&ns)] {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let path = format!("{collection}/{name}");

        // Created as is; the status subresource ignores the status on create.
        let created = send(&client, "POST", &collection, &object).await;
        assert_eq!(created["spec"], object["spec"], "{name}: spec as created");
        assert_eq!(
            created["metadata"]["annotations"], object["metadata"]["annotations"],
            "{name}: annotations"
        );
        let status = json!({ "status": object["status"] });
        send(&client, "PATCH", &format!("{path}/status"), &status).await;

        let read = send(&client, "GET", &path, &Value::Null).await;
        assert_eq!(read["spec"], object["spec"], "{name}: spec read back");
        assert_eq!(read["status"], object["status"], "{name}: status read back");
    }

    // And our type reads kubeseal's shape back.
    let typed = Api::<SealedSecret>::namespaced(client, &ns)
        .get("db")
        .await?;
    let template = typed.spec.template.expect("a template");
    let metadata = template.metadata.expect("template metadata");
    assert_eq!(metadata.name.as_deref(), Some("db"));
    assert_eq!(template.type_.as_deref(), Some("kubernetes.io/basic-auth"));
    assert_eq!(typed.spec.encrypted_data.len(), 2);
    let status = typed.status.expect("a status");
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(status.conditions[0].type_, "Synced");
    Ok(())
}
