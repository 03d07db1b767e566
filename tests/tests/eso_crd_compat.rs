//! Our `external-secrets.io` CRDs accept whatever upstream's (External Secrets Operator
//! v0.16.2, the bundle the harness builds) accept for the AWS and Vault providers: compared
//! schema against schema, then a corpus of upstream-shaped objects applied to two real API
//! servers, one with each set of CRDs, which must store them alike.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use sealsync_api::external::{
    ClusterExternalSecret, ClusterSecretStore, ExternalSecret, SecretStore,
};
use sealsync_testkit::schema::{Allowances, Comparison, compare, names, printer_columns};
use sealsync_testkit::{TestCluster, UpstreamEso, upstream_eso_crds};
use serde_json::{Value, json};

const KINDS: [&str; 4] = [
    "ExternalSecret",
    "SecretStore",
    "ClusterSecretStore",
    "ClusterExternalSecret",
];

fn ours() -> Vec<CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![
        ExternalSecret::crd(),
        SecretStore::crd(),
        ClusterSecretStore::crd(),
        ClusterExternalSecret::crd(),
    ]
}

fn by_kind(crds: Vec<CustomResourceDefinition>, kind: &str) -> Value {
    let crd = crds
        .into_iter()
        .find(|crd| crd.spec.names.kind == kind && crd.spec.group == "external-secrets.io")
        .unwrap_or_else(|| panic!("no CRD of kind {kind}"));
    serde_json::to_value(crd).expect("the CRD serializes")
}

/// v1 fields of ESO releases after v0.16 (the reference's contract) that v0.16 lacks, under
/// `prefix` (an ExternalSecret's spec, or a ClusterExternalSecret's embedded one).
fn later_spec_fields(prefix: &str) -> Vec<String> {
    [
        "syncWindows",
        "data[].remoteRef.nullBytePolicy",
        "dataFrom[].extract.nullBytePolicy",
        "target.template.metadata.finalizers",
        "target.template.templateFrom[].valuesDecodingStrategy",
    ]
    .iter()
    .map(|field| format!("{prefix}.{field}"))
    .collect()
}

/// What ours deliberately differs in, per kind.
struct Differences {
    ours_only: Vec<String>,
    refused: Vec<String>,
    webhook_rules_at: Vec<&'static str>,
}

fn differences(kind: &str, upstream_schema: &Value) -> Differences {
    match kind {
        "ExternalSecret" => Differences {
            ours_only: later_spec_fields("spec"),
            refused: Vec::new(),
            // Upstream's webhook rules (no data and no dataFrom, policies, dataFrom sources).
            webhook_rules_at: vec![""],
        },
        "ClusterExternalSecret" => Differences {
            ours_only: later_spec_fields("spec.externalSecretSpec"),
            refused: Vec::new(),
            webhook_rules_at: Vec::new(),
        },
        _ => {
            // Stores: sealsync implements the AWS and Vault providers only.
            let providers =
                upstream_schema["properties"]["spec"]["properties"]["provider"]["properties"]
                    .as_object()
                    .expect("upstream's stores list providers");
            Differences {
                ours_only: vec![
                    "spec.provider.vault.auth.cert.path".into(),
                    "spec.provider.vault.auth.cert.vaultRole".into(),
                ],
                refused: providers
                    .keys()
                    .filter(|name| !["aws", "vault"].contains(&name.as_str()))
                    .map(|name| format!("spec.provider.{name}"))
                    .collect(),
                webhook_rules_at: Vec::new(),
            }
        }
    }
}

/// Leaves that the walk must reach, per kind (so that it is not vacuous).
fn leaves(kind: &str) -> &'static [&'static str] {
    match kind {
        "ExternalSecret" => &[
            "spec.refreshInterval",
            "spec.refreshPolicy",
            "spec.secretStoreRef.kind",
            "spec.target.creationPolicy",
            "spec.target.template.templateFrom[].configMap.items[].templateAs",
            "spec.target.template.data.*",
            "spec.data[].remoteRef.decodingStrategy",
            "spec.data[].sourceRef.generatorRef.kind",
            "spec.dataFrom[].find.tags.*",
            "spec.dataFrom[].rewrite[].regexp.target",
            "spec.dataFrom[].rewrite[].transform.template",
            "status.conditions[].lastTransitionTime",
            "status.binding.name",
            "status.refreshTime",
            "status.syncedResourceVersion",
        ],
        "ClusterExternalSecret" => &[
            "spec.externalSecretSpec.dataFrom[].extract.key",
            "spec.namespaceSelectors[].matchExpressions[].values[]",
            "spec.namespaces[]",
            "spec.refreshTime",
            "status.failedNamespaces[].reason",
            "status.provisionedNamespaces[]",
            "status.conditions[].message",
        ],
        _ => &[
            "spec.provider.aws.auth.secretRef.accessKeyIDSecretRef.key",
            "spec.provider.aws.auth.jwt.serviceAccountRef.audiences[]",
            "spec.provider.aws.sessionTags[].value",
            "spec.provider.aws.secretsManager.recoveryWindowInDays",
            "spec.provider.vault.auth.appRole.roleRef.name",
            "spec.provider.vault.auth.kubernetes.serviceAccountRef.name",
            "spec.provider.vault.auth.jwt.kubernetesServiceAccountToken.expirationSeconds",
            "spec.provider.vault.auth.ldap.path",
            "spec.provider.vault.auth.userPass.username",
            "spec.provider.vault.auth.cert.clientCert.key",
            "spec.provider.vault.auth.iam.vaultAwsIamServerID",
            "spec.provider.vault.caProvider.type",
            "spec.provider.vault.headers.*",
            "spec.conditions[].namespaceSelector.matchLabels.*",
            "spec.conditions[].namespaceRegexes[]",
            "spec.refreshInterval",
            "spec.retrySettings.retryInterval",
            "status.capabilities",
            "status.conditions[].reason",
        ],
    }
}

#[test]
fn crds_are_compatible_with_upstream() {
    let upstream_crds = upstream_eso_crds().expect("upstream's CRD bundle");
    for kind in KINDS {
        let upstream = by_kind(upstream_crds.clone(), kind);
        let ours = by_kind(ours(), kind);
        assert_eq!(ours["metadata"]["name"], upstream["metadata"]["name"]);
        assert_eq!(names(&ours), names(&upstream), "{kind}: names");
        assert_eq!(
            ours["spec"]["scope"], upstream["spec"]["scope"],
            "{kind}: scope"
        );

        // Upstream still serves the deprecated v1beta1; ESO's later releases do not, and
        // sealsync serves v1 only.
        let our_versions = ours["spec"]["versions"].as_array().unwrap();
        assert_eq!(our_versions.len(), 1, "{kind}: one version");
        let our = &our_versions[0];
        let up = upstream["spec"]["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "v1")
            .unwrap_or_else(|| panic!("upstream serves {kind} v1"));
        assert_eq!(our["name"], "v1");
        assert_eq!(our["served"], up["served"], "{kind}: served");
        assert_eq!(our["storage"], up["storage"], "{kind}: storage");
        assert_eq!(
            our["subresources"], up["subresources"],
            "{kind}: subresources"
        );
        assert_eq!(
            printer_columns(our),
            printer_columns(up),
            "{kind}: additionalPrinterColumns"
        );

        let schema = |v: &Value| v["schema"]["openAPIV3Schema"].clone();
        let upstream_schema = schema(up);
        let differences = differences(kind, &upstream_schema);
        let ours_only: Vec<&str> = differences.ours_only.iter().map(String::as_str).collect();
        let refused: Vec<&str> = differences.refused.iter().map(String::as_str).collect();
        let allowances = Allowances {
            ours_only: &ours_only,
            refused: &refused,
            webhook_rules_at: &differences.webhook_rules_at,
            // Every kind's `spec` (kube-derive requires it): upstream's webhook refuses an
            // ExternalSecret without data and a store without a provider, and a
            // ClusterExternalSecret without spec has nothing to create.
            required_elsewhere: &["spec"],
        };
        let Comparison { visited, problems } = compare(&upstream_schema, &schema(our), &allowances);
        assert!(
            problems.is_empty(),
            "{kind}: our schema rejects objects upstream accepts:\n  {}",
            problems.join("\n  ")
        );
        for path in leaves(kind) {
            assert!(visited.contains(*path), "{kind}: {path} was not compared");
        }
    }
}

/// Key of a Secret, as the stores reference credentials.
fn key(name: &str, key: &str) -> Value {
    json!({ "name": name, "key": key })
}

/// Stores as users write them: each AWS authentication and each Vault auth method, with
/// every option of the two providers somewhere, and the status upstream ESO reports.
fn stores() -> Vec<Value> {
    let status = json!({
        "capabilities": "ReadWrite",
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "Valid",
            "message": "store validated", "lastTransitionTime": "2025-06-01T10:00:00Z"
        }]
    });
    let store = |kind: &str, name: &str, spec: Value| {
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": kind,
            "metadata": { "name": name }, "spec": spec, "status": status,
        })
    };
    vec![
        store(
            "SecretStore",
            "aws-static",
            json!({
                "controller": "default",
                "refreshInterval": 300,
                "retrySettings": { "maxRetries": 5, "retryInterval": "10s" },
                "provider": { "aws": {
                    "service": "SecretsManager",
                    "region": "eu-west-1",
                    "role": "arn:aws:iam::123456789012:role/reader",
                    "additionalRoles": ["arn:aws:iam::123456789012:role/hop"],
                    "externalID": "ext-1",
                    "sessionTags": [{ "key": "team", "value": "a" }],
                    "transitiveTagKeys": ["team"],
                    "prefix": "prod/",
                    "secretsManager": { "forceDeleteWithoutRecovery": true, "recoveryWindowInDays": 7 },
                    "auth": { "secretRef": {
                        "accessKeyIDSecretRef": key("aws", "access-key-id"),
                        "secretAccessKeySecretRef": key("aws", "secret-access-key"),
                        "sessionTokenSecretRef": key("aws", "session-token"),
                    } },
                } },
            }),
        ),
        store(
            "SecretStore",
            "aws-irsa",
            json!({ "provider": { "aws": {
                "service": "ParameterStore",
                "region": "us-east-1",
                "auth": { "jwt": { "serviceAccountRef": {
                    "name": "reader", "audiences": ["sts.amazonaws.com"]
                } } },
            } } }),
        ),
        store(
            "SecretStore",
            "aws-default-chain",
            json!({ "provider": { "aws": { "service": "SecretsManager", "region": "us-east-1" } } }),
        ),
        store(
            "SecretStore",
            "vault-token",
            json!({ "provider": { "vault": {
                "server": "https://vault.example:8200",
                "path": "secret",
                "version": "v1",
                "namespace": "team-a",
                "caBundle": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t",
                "headers": { "X-Team": "a" },
                "readYourWrites": true,
                "forwardInconsistent": true,
                "tls": {
                    "certSecretRef": key("vault-tls", "tls.crt"),
                    "keySecretRef": key("vault-tls", "tls.key"),
                },
                "auth": { "namespace": "team-a/auth", "tokenSecretRef": key("vault", "token") },
            } } }),
        ),
        store(
            "SecretStore",
            "vault-approle",
            json!({ "provider": { "vault": {
                "server": "http://vault:8200",
                "caProvider": { "type": "ConfigMap", "name": "vault-ca", "key": "ca.crt" },
                "auth": { "appRole": {
                    "roleRef": key("approle", "role-id"),
                    "secretRef": key("approle", "secret-id"),
                } },
            } } }),
        ),
        store(
            "SecretStore",
            "vault-kubernetes",
            json!({ "provider": { "vault": {
                "server": "http://vault:8200",
                "auth": { "kubernetes": {
                    "role": "reader",
                    "serviceAccountRef": { "name": "reader", "audiences": ["vault"] },
                } },
            } } }),
        ),
        store(
            "ClusterSecretStore",
            "vault-jwt",
            json!({
                "conditions": [
                    { "namespaceSelector": { "matchLabels": { "team": "a" } } },
                    { "namespaces": ["team-b"], "namespaceRegexes": ["^team-c-.*$"] },
                    { "namespaceSelector": { "matchExpressions": [
                        { "key": "tier", "operator": "In", "values": ["prod"] }
                    ] } },
                ],
                "refreshInterval": 60,
                "provider": { "vault": {
                    "server": "http://vault:8200",
                    "auth": { "jwt": {
                        "path": "jwt-k8s",
                        "role": "reader",
                        "kubernetesServiceAccountToken": {
                            "serviceAccountRef": { "name": "reader", "namespace": "team-a" },
                            "audiences": ["vault"],
                            "expirationSeconds": 600,
                        },
                    } },
                } },
            }),
        ),
        store(
            "ClusterSecretStore",
            "vault-userpass",
            json!({ "provider": { "vault": {
                "server": "http://vault:8200",
                "auth": { "userPass": {
                    "username": "app",
                    "secretRef": { "name": "vault-user", "namespace": "team-a", "key": "password" },
                } },
            } } }),
        ),
        store(
            "ClusterSecretStore",
            "vault-ldap",
            json!({ "provider": { "vault": {
                "server": "http://vault:8200",
                "auth": { "ldap": { "username": "app", "secretRef": key("ldap", "password") } },
            } } }),
        ),
        store(
            "ClusterSecretStore",
            "vault-cert",
            json!({ "provider": { "vault": {
                "server": "https://vault:8200",
                "auth": { "cert": {
                    "clientCert": key("vault-client", "tls.crt"),
                    "secretRef": key("vault-client", "tls.key"),
                } },
            } } }),
        ),
        store(
            "ClusterSecretStore",
            "vault-iam",
            json!({ "provider": { "vault": {
                "server": "https://vault:8200",
                "auth": { "iam": {
                    "path": "aws",
                    "region": "eu-west-1",
                    "role": "arn:aws:iam::123456789012:role/vault",
                    "vaultRole": "reader",
                    "vaultAwsIamServerID": "vault.example",
                    "externalID": "ext-2",
                    "jwt": { "serviceAccountRef": { "name": "reader" } },
                } },
            } } }),
        ),
    ]
}

fn external_secret_status() -> Value {
    json!({
        "refreshTime": "2025-06-01T10:00:00Z",
        "syncedResourceVersion": "1-4d5e6f",
        "binding": { "name": "app" },
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "SecretSynced",
            "message": "secret synced", "lastTransitionTime": "2025-06-01T10:00:00Z"
        }]
    })
}

/// ExternalSecrets covering every field upstream's v0.16 schema has: data with every
/// remoteRef option and a per-entry store, dataFrom with extract, find, rewrites and a
/// generator, templates from every source, and each policy.
fn external_secrets() -> Vec<Value> {
    let external_secret = |name: &str, spec: Value| {
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": name }, "spec": spec, "status": external_secret_status(),
        })
    };
    vec![
        external_secret(
            "everything",
            json!({
                "refreshInterval": "15m",
                "refreshPolicy": "Periodic",
                "secretStoreRef": { "name": "aws-static", "kind": "SecretStore" },
                "target": {
                    "name": "app",
                    "creationPolicy": "Merge",
                    "deletionPolicy": "Merge",
                    "immutable": false,
                    "template": {
                        "type": "kubernetes.io/basic-auth",
                        "engineVersion": "v2",
                        "mergePolicy": "Merge",
                        "metadata": {
                            "labels": { "app": "web" },
                            "annotations": { "team": "a" },
                        },
                        "data": { "url": "postgres://{{ .user }}:{{ .password }}@db" },
                        "templateFrom": [
                            { "configMap": { "name": "tpl", "items": [
                                { "key": "config.yaml", "templateAs": "KeysAndValues" }
                            ] } },
                            { "secret": { "name": "tpl-secret", "items": [{ "key": "extra" }] },
                              "target": "Annotations" },
                            { "literal": "{{ .user }}", "target": "Labels" },
                        ],
                    },
                },
                "data": [
                    { "secretKey": "user", "remoteRef": {
                        "key": "app/db", "property": "username", "version": "AWSCURRENT",
                        "conversionStrategy": "Default", "decodingStrategy": "None",
                        "metadataPolicy": "None",
                    } },
                    { "secretKey": "password", "remoteRef": {
                        "key": "app/db", "property": "password", "decodingStrategy": "Base64",
                    }, "sourceRef": { "storeRef": { "name": "vault-jwt", "kind": "ClusterSecretStore" } } },
                    { "secretKey": "tags", "remoteRef": { "key": "app/db", "metadataPolicy": "Fetch" } },
                ],
                "dataFrom": [
                    { "extract": {
                        "key": "app/config", "version": "uuid/123", "conversionStrategy": "Unicode",
                        "decodingStrategy": "Auto",
                    }, "rewrite": [
                        { "regexp": { "source": "^(.*)$", "target": "cfg_$1" } },
                        { "transform": { "template": "{{ .value | upper }}" } },
                    ] },
                    { "find": {
                        "path": "app/",
                        "name": { "regexp": "^app-.*" },
                        "tags": { "env": "prod" },
                        "conversionStrategy": "Default",
                        "decodingStrategy": "Base64URL",
                    } },
                    { "extract": { "key": "other" },
                      "sourceRef": { "storeRef": { "name": "vault-token" } } },
                ],
            }),
        ),
        // The defaults fill in: target, refreshInterval, remoteRef's strategies.
        external_secret(
            "minimal",
            json!({
                "secretStoreRef": { "name": "vault-token" },
                "dataFrom": [{ "extract": { "key": "app" } }],
            }),
        ),
        external_secret(
            "owned-and-deleted",
            json!({
                "refreshInterval": "0s",
                "refreshPolicy": "CreatedOnce",
                "secretStoreRef": { "name": "aws-static" },
                "target": { "creationPolicy": "Owner", "deletionPolicy": "Delete" },
                "data": [{ "secretKey": "token", "remoteRef": { "key": "token" } }],
            }),
        ),
        external_secret(
            "orphan-on-change",
            json!({
                "refreshPolicy": "OnChange",
                "secretStoreRef": { "name": "aws-static" },
                "target": { "creationPolicy": "Orphan" },
                "data": [{ "secretKey": "token", "remoteRef": { "key": "token" } }],
            }),
        ),
        // Generators: sealsync has none, but upstream's manifests that name one stay valid.
        external_secret(
            "generated",
            json!({
                "refreshInterval": "1h",
                "target": { "creationPolicy": "Owner" },
                "dataFrom": [{ "sourceRef": { "generatorRef": {
                    "apiVersion": "generators.external-secrets.io/v1alpha1",
                    "kind": "Password", "name": "pw",
                } } }],
            }),
        ),
    ]
}

fn cluster_external_secrets() -> Vec<Value> {
    vec![json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret",
        "metadata": { "name": "shared" },
        "spec": {
            "externalSecretName": "shared-db",
            "externalSecretMetadata": {
                "labels": { "app": "web" }, "annotations": { "team": "platform" },
            },
            "namespaceSelectors": [
                { "matchLabels": { "shared-db": "yes" } },
                { "matchExpressions": [{ "key": "tier", "operator": "Exists" }] },
            ],
            "namespaceSelector": { "matchLabels": { "legacy": "yes" } },
            "namespaces": ["team-a"],
            "refreshTime": "1m",
            "externalSecretSpec": {
                "secretStoreRef": { "name": "vault-jwt", "kind": "ClusterSecretStore" },
                "refreshInterval": "30m",
                "dataFrom": [{ "extract": { "key": "shared/db" } }],
            },
        },
        "status": {
            "externalSecretName": "shared-db",
            "provisionedNamespaces": ["team-a"],
            "failedNamespaces": [{
                "namespace": "team-b",
                "reason": "external secret already exists in namespace"
            }],
            "conditions": [{ "type": "Ready", "status": "False", "message": "one namespace failed" }],
        },
    })]
}

fn api(cluster: &TestCluster, ns: &str, kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("external-secrets.io", "v1", kind));
    if kind.starts_with("Cluster") {
        Api::all_with(cluster.client(), &resource)
    } else {
        Api::namespaced_with(cluster.client(), ns, &resource)
    }
}

/// Creates `object` and writes its status as a controller would; what the API server kept.
async fn store_in(cluster: &TestCluster, ns: &str, object: &Value) -> anyhow::Result<Value> {
    let kind = object["kind"].as_str().expect("a kind");
    let name = object["metadata"]["name"].as_str().expect("a name");
    let api = api(cluster, ns, kind);
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object.clone())?,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{kind} {name} refused: {e}"))?;
    let status = json!({ "status": object["status"] });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    let stored = serde_json::to_value(api.get(name).await?)?;
    Ok(json!({ "spec": stored["spec"], "status": stored["status"] }))
}

#[tokio::test(flavor = "multi_thread")]
async fn api_servers_keep_upstream_shaped_objects_alike() -> anyhow::Result<()> {
    let (upstream, ours_cluster) = tokio::try_join!(TestCluster::start(), TestCluster::start())?;
    UpstreamEso::install_crds(&upstream).await?;
    for crd in ours() {
        ours_cluster.install_crd(crd).await?;
    }
    let upstream_ns = upstream.namespace("eso-compat").await?;
    let our_ns = ours_cluster.namespace("eso-compat").await?;

    let corpus = [stores(), external_secrets(), cluster_external_secrets()].concat();
    for object in &corpus {
        let kind = object["kind"].as_str().unwrap();
        let name = object["metadata"]["name"].as_str().unwrap();
        let upstream_kept = store_in(&upstream, &upstream_ns, object).await?;
        let ours_kept = store_in(&ours_cluster, &our_ns, object).await?;
        assert_eq!(
            ours_kept, upstream_kept,
            "{kind} {name}: ours stores it otherwise than upstream (pruned fields or defaults)"
        );
        assert_eq!(
            ours_kept["status"], object["status"],
            "{kind} {name}: status kept"
        );
    }

    // Our Rust types read everything back.
    let client = ours_cluster.client();
    for store in Api::<SecretStore>::namespaced(client.clone(), &our_ns)
        .list(&Default::default())
        .await?
    {
        assert!(store.spec.provider.aws.is_some() != store.spec.provider.vault.is_some());
    }
    let cluster_stores = Api::<ClusterSecretStore>::all(client.clone())
        .list(&Default::default())
        .await?;
    assert_eq!(cluster_stores.items.len(), 5);
    let external_secrets = Api::<ExternalSecret>::namespaced(client.clone(), &our_ns);
    let minimal = external_secrets.get("minimal").await?;
    let target = minimal.spec.target.expect("the default target");
    assert_eq!(
        serde_json::to_value((target.creation_policy, target.deletion_policy))?,
        json!(["Owner", "Retain"])
    );
    assert_eq!(minimal.spec.refresh_interval.as_deref(), Some("1h"));
    let status = minimal.status.expect("a status");
    assert_eq!(status.conditions[0].reason.as_deref(), Some("SecretSynced"));
    assert_eq!(status.binding.expect("a binding").name, "app");
    let shared = Api::<ClusterExternalSecret>::all(client)
        .get("shared")
        .await?;
    let status = shared.status.expect("a status");
    assert_eq!(status.provisioned_namespaces, ["team-a"]);
    assert_eq!(status.failed_namespaces[0].namespace, "team-b");
    Ok(())
}

/// ExternalSecrets that upstream's admission webhook refuses (its CRD alone accepts them),
/// each with the message our CEL rules give.
fn refused_by_webhook() -> Vec<(Value, &'static str)> {
    let external_secret = |name: &str, spec: Value| {
        json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": name }, "spec": spec,
        })
    };
    let data = json!([{ "secretKey": "k", "remoteRef": { "key": "k" } }]);
    vec![
        (
            external_secret("nothing", json!({ "secretStoreRef": { "name": "s" } })),
            "either data or dataFrom should be specified",
        ),
        (
            external_secret(
                "empty-lists",
                json!({ "secretStoreRef": { "name": "s" }, "data": [], "dataFrom": [] }),
            ),
            "either data or dataFrom should be specified",
        ),
        (
            external_secret(
                "delete-merged",
                json!({ "data": data, "target": { "creationPolicy": "Merge", "deletionPolicy": "Delete" } }),
            ),
            "deletionPolicy=Delete must not be used",
        ),
        (
            external_secret(
                "delete-unwritten",
                json!({ "data": data, "target": { "creationPolicy": "None", "deletionPolicy": "Delete" } }),
            ),
            "deletionPolicy=Delete must not be used",
        ),
        (
            external_secret(
                "merge-unwritten",
                json!({ "data": data, "target": { "creationPolicy": "None", "deletionPolicy": "Merge" } }),
            ),
            "deletionPolicy=Merge must not be used with creationPolicy=None",
        ),
        (
            external_secret(
                "two-sources",
                json!({ "dataFrom": [{ "extract": { "key": "a" }, "find": { "path": "b" } }] }),
            ),
            "a dataFrom entry takes one of extract, find or sourceRef.generatorRef",
        ),
        (
            external_secret(
                "no-source",
                json!({ "dataFrom": [{ "rewrite": [{ "transform": { "template": "x" } }] }] }),
            ),
            "each dataFrom entry needs extract, find or sourceRef",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn cel_rules_refuse_what_upstreams_webhook_refuses() -> anyhow::Result<()> {
    let (upstream, ours_cluster) = tokio::try_join!(TestCluster::start(), TestCluster::start())?;
    UpstreamEso::install_crds(&upstream).await?;
    for crd in ours() {
        ours_cluster.install_crd(crd).await?;
    }
    let upstream_ns = upstream.namespace("eso-cel").await?;
    let our_ns = ours_cluster.namespace("eso-cel").await?;
    for (object, message) in refused_by_webhook() {
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let parsed: DynamicObject = serde_json::from_value(object)?;
        // Upstream's schema lets it through: only its webhook refuses it.
        api(&upstream, &upstream_ns, "ExternalSecret")
            .create(&PostParams::default(), &parsed)
            .await
            .map_err(|e| anyhow::anyhow!("upstream's CRD refused {name}: {e}"))?;
        let refused = api(&ours_cluster, &our_ns, "ExternalSecret")
            .create(&PostParams::default(), &parsed)
            .await
            .expect_err(&format!("our CRD accepted {name}"));
        assert!(
            refused.to_string().contains(message),
            "{name}: refused with {refused}, expected {message:?}"
        );
    }
    // Delete with Orphan passes (upstream's webhook only refuses Merge and None).
    let orphan_delete = json!({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": { "name": "orphan-delete" },
        "spec": {
            "data": [{ "secretKey": "k", "remoteRef": { "key": "k" } }],
            "target": { "creationPolicy": "Orphan", "deletionPolicy": "Delete" },
        },
    });
    api(&ours_cluster, &our_ns, "ExternalSecret")
        .create(
            &PostParams::default(),
            &serde_json::from_value(orphan_delete)?,
        )
        .await?;
    Ok(())
}
