//! The Helm chart (charts/sealsync) renders objects the real API server accepts, RBAC that
//! lets the controller's ServiceAccount do what the controller does and nothing more (the
//! real controller run with that identity, each verb taken away in turn), and settings the
//! controller's flag parser accepts; its schema refuses wrong values, its README lists
//! every value.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, ResourceExt};
use sealsync_api::{SealOptions, SealedSecret, SecretManifest, parse_documents, seal_secret};
use sealsync_crypto::{CertificateParams, PrivateKey, SealingCertificate};
use sealsync_testkit::{
    Component, Process, SealsyncController, TestCluster, binary, events_about, free_port, http_get,
    install_upstream_chart_rbac, project_binary, run_ok, seal_and_wait_unsealed,
    upstream_chart_command_line, wait_for,
};
use serde::Deserialize;
use serde_json::Value;

/// kubeseal's default --controller-name; the chart's default fullname.
const NAME: &str = "sealed-secrets-controller";
const FIELD_MANAGER: &str = "sealsync-chart-test";

fn chart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
        .join("charts/sealsync")
}

fn helm() -> Command {
    Command::new(binary(Component::Helm, "SEALSYNC_HELM"))
}

/// `helm template` of the chart (CRDs included) into `namespace`, one JSON value per object.
fn render(namespace: &str, set: &[&str]) -> Vec<Value> {
    let mut command = helm();
    command.args(["template", "sealsync"]).arg(chart()).args([
        "--namespace",
        namespace,
        "--include-crds",
    ]);
    for value in set {
        command.args(["--set", value]);
    }
    let out = run_ok(&mut command);
    yaml_documents(&String::from_utf8(out.stdout).expect("helm prints UTF-8"))
}

fn find<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn only<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    match find(objects, kind).as_slice() {
        [object] => object,
        other => panic!("expected one {kind}, found {}", other.len()),
    }
}

/// Server-side applies every object, as `helm install` would send it; the API server
/// validates each one (schema, unknown fields, RBAC escalation rules, the Deployment's pod
/// template).
async fn apply_all(client: &Client, namespace: &str, objects: &[Value]) -> anyhow::Result<()> {
    apply_all_into(client, &[namespace], objects).await
}

/// As [`apply_all`], namespaced objects going into one of `namespaces` (the release
/// namespace first, then those the controller watches in namespaced mode).
async fn apply_all_into(
    client: &Client,
    namespaces: &[&str],
    objects: &[Value],
) -> anyhow::Result<()> {
    for value in objects {
        let object: DynamicObject = serde_json::from_value(value.clone())?;
        let types = object.types.as_ref().expect("rendered objects have a kind");
        let gvk = GroupVersionKind::try_from(types)?;
        let (resource, capabilities) = pinned_kind(client, &gvk).await?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => {
                let namespace = object.namespace().unwrap_or_default();
                assert!(
                    namespaces.contains(&namespace.as_str()),
                    "{} {} is rendered into {namespace:?}, not one of {namespaces:?}",
                    gvk.kind,
                    object.name_any()
                );
                Api::namespaced_with(client.clone(), &namespace, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        let name = object.name_any();
        api.patch(
            &name,
            // Strict: a field the API server does not know (a typo in a template) is an
            // error, not silently dropped.
            &PatchParams::apply(FIELD_MANAGER)
                .force()
                .validation_strict(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|e| anyhow::anyhow!("the API server refused {} {name}: {e}", gvk.kind))?;
    }
    Ok(())
}

/// One access decision of the API server's authorizer (RBAC) for `user` in `groups`.
struct Access<'a> {
    user: &'a str,
    groups: Vec<String>,
}

impl Access<'_> {
    async fn allowed(
        &self,
        client: &Client,
        verb: &str,
        (group, resource): (&str, &str),
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> anyhow::Result<bool> {
        let (resource, subresource) = match resource.split_once('/') {
            Some((resource, sub)) => (resource, Some(sub.to_string())),
            None => (resource, None),
        };
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(self.user.to_string()),
                groups: Some(self.groups.clone()),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    subresource,
                    namespace: namespace.map(Into::into),
                    name: name.map(Into::into),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let reviews: Api<SubjectAccessReview> = Api::all(client.clone());
        let answer = reviews.create(&PostParams::default(), &review).await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

/// Verb, (API group, resource or resource/subresource), namespace, object name.
type Check<'a> = (
    &'a str,
    (&'a str, &'a str),
    Option<&'a str>,
    Option<&'a str>,
);

async fn assert_access(
    access: &Access<'_>,
    client: &Client,
    expected: bool,
    checks: &[Check<'_>],
) -> anyhow::Result<()> {
    for &(verb, resource, namespace, name) in checks {
        let allowed = access
            .allowed(client, verb, resource, namespace, name)
            .await?;
        assert_eq!(
            allowed, expected,
            "{} {verb} {resource:?} in {namespace:?} named {name:?}: allowed = {allowed}, \
             expected {expected}",
            access.user
        );
    }
    Ok(())
}

/// The controller's environment as the Deployment sets it, the downward API's namespace
/// filled in.
fn deployment_env(deployment: &Value, namespace: &str) -> Vec<(String, String)> {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let env = container["env"].as_array().expect("the container has env");
    env.iter()
        .map(|variable| {
            let name = variable["name"].as_str().expect("env vars have names");
            let value = match variable["value"].as_str() {
                Some(value) => value,
                None if variable["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace" => {
                    namespace
                }
                None => panic!("unexpected env var {variable}"),
            };
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// The Deployment's container arguments.
fn deployment_args(deployment: &Value) -> Vec<String> {
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args = container["args"].as_array().into_iter().flatten();
    args.map(|arg| arg.as_str().expect("args are strings").to_string())
        .collect()
}

/// The controller's command line as the Deployment gives it (environment turned into the
/// flags that read it), parsed by the controller's own parser.
fn controller_args(deployment: &Value, namespace: &str) -> sealsync_controller::Args {
    let command = sealsync_controller::Args::command();
    let mut argv = vec!["sealsync-controller".to_string()];
    for (name, value) in deployment_env(deployment, namespace) {
        if !name.starts_with("SEALED_SECRETS_") {
            continue;
        }
        let flag = command
            .get_arguments()
            .find(|a| a.get_env().is_some_and(|env| env == name.as_str()))
            .and_then(|a| a.get_long())
            .unwrap_or_else(|| panic!("the controller reads no variable {name}"));
        argv.push(format!("--{flag}={value}"));
    }
    argv.extend(deployment_args(deployment));
    sealsync_controller::Args::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("the controller refuses {argv:?}: {e}"))
}

/// What `helm template` says when it refuses `set`; panics if it renders.
fn refusal(set: &[&str]) -> String {
    let mut command = helm();
    command.args(["template", "sealsync"]).arg(chart());
    for value in set {
        command.args(["--set", value]);
    }
    let out = command.output().expect("helm runs");
    assert!(!out.status.success(), "helm renders with {set:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn helm_lint_passes() {
    let out = run_ok(helm().args(["lint", "--strict"]).arg(chart()));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 chart(s) failed"), "{text}");
    assert!(
        !text.contains("[WARNING]") && !text.contains("[ERROR]"),
        "{text}"
    );
}

#[test]
fn the_schema_refuses_wrong_values_before_anything_is_installed() {
    // The defaults, and values of each accepted form.
    render("kube-system", &[]);
    render(
        "kube-system",
        &[
            "replicaCount=0",
            "keyRenewPeriod=0",
            "keySize=2048",
            "resyncPeriod=1h30m",
            "podDisruptionBudget.minAvailable=50%",
        ],
    );
    for (set, says) in [
        ("replicaCount=-1", "/replicaCount"),
        ("replicaCount=two", "/replicaCount"),
        ("logFormat=xml", "/logFormat"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("service.type=Ingress", "/service/type"),
        ("service.port=70000", "/service/port"),
        ("keySize=big", "/keySize"),
        ("keyRenewPeriod=30d", "/keyRenewPeriod"),
        // A typo is refused rather than silently ignored.
        ("replicas=3", "replicas"),
        ("rbac.crate=false", "crate"),
        // Namespaces listed while every namespace is watched would be ignored.
        ("additionalNamespaces={team-a}", "/additionalNamespaces"),
        ("additionalNamespaces={Team_A}", "/additionalNamespaces"),
    ] {
        let error = refusal(&[set]);
        assert!(
            error.contains("don't meet the specifications of the schema") && error.contains(says),
            "{set}: {error}"
        );
    }
}

/// `helm` with the harness's administrator kubeconfig, its state in the cluster's folder.
fn helm_on(cluster: &TestCluster) -> Command {
    let mut command = helm();
    command
        .env("KUBECONFIG", cluster.kubeconfig())
        .env("HELM_CACHE_HOME", cluster.dir().join("helm/cache"))
        .env("HELM_CONFIG_HOME", cluster.dir().join("helm/config"))
        .env("HELM_DATA_HOME", cluster.dir().join("helm/data"));
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_refuses_wrong_values_before_creating_anything() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let namespace = cluster.namespace("helm").await?;
    let install = |set: &str| {
        let mut command = helm_on(&cluster);
        command.args(["install", "sealsync"]).arg(chart()).args([
            "--namespace",
            &namespace,
            "--set",
            set,
        ]);
        command
    };
    let refused = install("replicaCount=-2").output()?;
    assert!(!refused.status.success());
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("/replicaCount"), "{error}");
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(cluster.client(), &namespace);
    assert!(
        accounts.get_opt(NAME).await?.is_none(),
        "nothing is installed"
    );

    run_ok(&mut install("replicaCount=1"));
    assert!(accounts.get_opt(NAME).await?.is_some());
    let status = run_ok(helm_on(&cluster).args(["status", "sealsync", "--namespace", &namespace]));
    assert!(String::from_utf8_lossy(&status.stdout).contains("STATUS: deployed"));
    Ok(())
}

#[test]
fn service_monitor_is_optional() {
    let objects = render("monitoring", &[]);
    assert!(find(&objects, "ServiceMonitor").is_empty());
    let objects = render("monitoring", &["metrics.serviceMonitor.enabled=true"]);
    let monitor = only(&objects, "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
}

#[test]
fn the_external_secret_alerts_name_metrics_the_reconciler_exposes() {
    let alerts = |set: &[&str]| -> Vec<(String, String)> {
        let objects = render("monitoring", set);
        only(&objects, "PrometheusRule")["spec"]["groups"][0]["rules"]
            .as_array()
            .expect("rules")
            .iter()
            .map(|r| {
                (
                    r["alert"].as_str().unwrap().into(),
                    r["expr"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    let sealed_only = alerts(&["metrics.prometheusRule.enabled=true"]);
    assert!(
        sealed_only
            .iter()
            .all(|(_, expr)| !expr.contains("externalsecret_"))
    );
    let both = alerts(&[
        "metrics.prometheusRule.enabled=true",
        "externalSecrets.enabled=true",
    ]);
    let mut registry = prometheus_client::registry::Registry::default();
    // A failed sync and a failed provider call, as the reconciler records them.
    let metrics = sealsync_external::EsoMetrics::register(&mut registry);
    metrics.synced("app", "db", Duration::from_millis(1), true);
    metrics.ready("app", "db", false);
    metrics.provider_call("AWS/SecretsManager", "GetSecretValue", "error");
    let mut exposed = String::new();
    prometheus_client::encoding::text::encode(&mut exposed, &registry).unwrap();
    let mut named = Vec::new();
    for (alert, expr) in both.iter().filter(|(_, e)| e.contains("externalsecret_")) {
        let metric = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .find(|word| word.starts_with("externalsecret_"))
            .unwrap();
        assert!(
            exposed.contains(&format!("# TYPE {metric} ")),
            "{alert} names {metric}, which the reconciler does not expose:\n{exposed}"
        );
        named.push(alert.as_str());
    }
    assert_eq!(
        named,
        [
            "ExternalSecretSyncErrors",
            "ExternalSecretNotReady",
            "ExternalSecretProviderErrors"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn chart_installs_on_a_real_api_server() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let client = cluster.client();

    // Each case in its own namespace; the ClusterRoleBinding (cluster-wide, one per
    // cluster) follows the latest, so access is checked right after each apply.
    for (set, replicas) in [(&[][..], 2), (&["replicaCount=1"][..], 1)] {
        let namespace = cluster.namespace("chart").await?;
        let objects = render(&namespace, set);

        let service = only(&objects, "Service");
        assert_eq!(service["metadata"]["name"], NAME, "kubeseal's default name");
        let ports = service["spec"]["ports"].as_array().expect("ports");
        // kubeseal proxies to the Service's first port.
        assert_eq!(
            ports[0]["name"], "http",
            "the HTTP API is the Service's first port"
        );
        assert_eq!(ports[0]["port"], 8080);
        assert!(
            ports
                .iter()
                .any(|p| p["name"] == "metrics" && p["port"] == 8081)
        );

        let deployment = only(&objects, "Deployment");
        assert_eq!(deployment["spec"]["replicas"], replicas);
        assert_eq!(
            find(&objects, "PodDisruptionBudget").len(),
            usize::from(replicas > 1),
            "a PodDisruptionBudget only with more than one replica"
        );
        let pod = &deployment["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(container["securityContext"]["runAsNonRoot"], true);
        assert_eq!(
            container["securityContext"]["capabilities"]["drop"],
            serde_json::json!(["ALL"])
        );
        assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(container["livenessProbe"]["httpGet"]["port"], "http");
        assert!(
            container["volumeMounts"]
                .as_array()
                .is_some_and(|m| m.iter().any(|m| m["mountPath"] == "/tmp"))
        );

        let args = controller_args(deployment, &namespace);
        assert_eq!(
            args.controller_namespace.as_deref(),
            Some(namespace.as_str())
        );
        assert_eq!(args.leader_election_lease, NAME);
        assert_eq!(args.listen_addr.port(), 8080);
        assert_eq!(args.listen_metrics_addr.port(), 8081);
        assert_eq!(args.key_renew_period.as_secs(), 720 * 3600);
        assert_eq!(args.log_format, sealsync_controller::LogFormat::Json);

        assert!(!find(&objects, "CustomResourceDefinition").is_empty());
        apply_all(&client, &namespace, &objects).await?;

        let service_account = only(&objects, "ServiceAccount");
        let account = service_account["metadata"]["name"].as_str().expect("named");
        let user = format!("system:serviceaccount:{namespace}:{account}");
        let controller = Access {
            user: &user,
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        };
        let ns = Some(namespace.as_str());
        let elsewhere = Some("some-app");
        let sealed = ("bitnami.com", "sealedsecrets");
        let status = ("bitnami.com", "sealedsecrets/status");
        let secrets = ("", "secrets");
        let leases = ("coordination.k8s.io", "leases");
        assert_access(
            &controller,
            &client,
            true,
            &[
                // Cluster-wide watches of SealedSecrets and of its Secrets' metadata.
                ("list", sealed, None, None),
                ("watch", sealed, None, None),
                ("list", secrets, None, None),
                ("watch", secrets, None, None),
                // Status by server-side apply; Secrets by server-side apply (create+patch).
                ("patch", status, elsewhere, Some("db")),
                ("get", secrets, elsewhere, Some("db")),
                ("create", secrets, elsewhere, None),
                ("patch", secrets, elsewhere, Some("db")),
                ("create", ("events.k8s.io", "events"), elsewhere, None),
                // Its keys and its Lease.
                ("create", secrets, ns, None),
                ("list", secrets, ns, None),
                ("create", leases, ns, None),
                ("get", leases, ns, Some(NAME)),
                ("update", leases, ns, Some(NAME)),
            ],
        )
        .await?;
        assert_access(
            &controller,
            &client,
            false,
            &[
                ("create", leases, elsewhere, None),
                ("update", leases, ns, Some("someone-elses-lease")),
                ("delete", sealed, elsewhere, Some("db")),
                ("list", ("", "configmaps"), None, None),
                // Verbs the controller never uses (least_privilege_* shows the others used).
                ("delete", secrets, elsewhere, Some("db")),
                ("update", secrets, elsewhere, Some("db")),
                ("update", status, elsewhere, Some("db")),
                ("create", ("", "events"), elsewhere, None),
                ("patch", leases, ns, Some(NAME)),
            ],
        )
        .await?;

        // kubeseal users reach the controller through the service proxy: GET on the
        // first port (kubeseal) or the port by name (sealsync), POST for verify/rotate.
        let user = Access {
            user: "alice",
            groups: vec!["system:authenticated".into()],
        };
        let proxy = ("", "services/proxy");
        let by_default = format!("http:{NAME}:");
        let by_port = format!("http:{NAME}:http");
        assert_access(
            &user,
            &client,
            true,
            &[
                ("get", ("", "services"), ns, Some(NAME)),
                ("get", proxy, ns, Some(&by_default)),
                ("get", proxy, ns, Some(&by_port)),
                ("create", proxy, ns, Some(&by_default)),
                ("get", proxy, ns, Some(NAME)),
            ],
        )
        .await?;
        assert_access(
            &user,
            &client,
            false,
            &[
                ("get", proxy, ns, Some("http:another-service:")),
                ("get", secrets, ns, None),
                ("list", sealed, ns, None),
            ],
        )
        .await?;
    }
    Ok(())
}

/// The rows of the values table of the chart's README: key and default (JSON).
fn readme_values_table() -> Vec<(String, Value)> {
    let readme =
        std::fs::read_to_string(chart().join("README.md")).expect("the chart has a README");
    readme
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .map(|row| {
            let (key, rest) = row
                .split_once("` | `")
                .unwrap_or_else(|| panic!("row {row:?}"));
            let (default, description) = rest
                .split_once("` | ")
                .unwrap_or_else(|| panic!("row {row:?}"));
            assert!(
                !description.trim_end_matches('|').trim().is_empty(),
                "{key} has no description in the README"
            );
            let default = serde_json::from_str(default)
                .unwrap_or_else(|e| panic!("the default of {key} is no JSON: {e}"));
            (key.to_string(), default)
        })
        .collect()
}

/// Each value of `values` under `path` is in exactly one row of `rows` (a row may hold a
/// whole object, e.g. `resources`): nothing undocumented, nothing documented twice.
fn assert_covered(
    rows: &std::collections::BTreeMap<String, Value>,
    path: &str,
    value: &Value,
    covered: &mut Vec<String>,
) {
    if rows.contains_key(path) {
        covered.push(path.to_string());
        return;
    }
    match value {
        Value::Object(fields) if !fields.is_empty() => {
            for (key, field) in fields {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                assert_covered(rows, &path, field, covered);
            }
        }
        _ => panic!("values.yaml has {path}, the chart's README does not"),
    }
}

#[test]
fn the_readme_lists_every_value_with_its_default() {
    let text = std::fs::read_to_string(chart().join("values.yaml")).expect("values.yaml");
    let values: Value = serde_norway::from_str(&text).expect("values.yaml is YAML");
    let table = readme_values_table();
    let rows: std::collections::BTreeMap<String, Value> = table.iter().cloned().collect();
    assert_eq!(rows.len(), table.len(), "a key is listed twice");
    let mut covered = Vec::new();
    assert_covered(&rows, "", &values, &mut covered);
    for (key, default) in &rows {
        assert!(
            covered.contains(key),
            "the README lists {key}, values.yaml has no such key (or has it inside another listed one)"
        );
        let actual = key.split('.').fold(&values, |value, field| &value[field]);
        assert_eq!(actual, default, "the README's default of {key}");
    }
}

/// A CRD of the Prometheus Operator (`monitoring.coreos.com/v1`) reduced to the fields the
/// chart renders: the harness has no Prometheus Operator, and its real CRDs are not
/// vendored. Unknown fields are still refused (strict apply), so a misspelt field fails.
fn prometheus_operator_crd(
    kind: &str,
    plural: &str,
    spec: Value,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
        "spec": {
            "group": "monitoring.coreos.com",
            "names": {"kind": kind, "plural": plural, "listKind": format!("{kind}List"), "singular": kind.to_lowercase()},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": spec},
                }},
            }],
        },
    }))
    .expect("a valid CRD")
}

fn object(properties: Value) -> Value {
    serde_json::json!({"type": "object", "properties": properties})
}

fn strings() -> Value {
    serde_json::json!({"type": "object", "additionalProperties": {"type": "string"}})
}

fn list_of(items: Value) -> Value {
    serde_json::json!({"type": "array", "items": items})
}

async fn install_prometheus_operator_crds(cluster: &TestCluster) -> anyhow::Result<()> {
    let string = serde_json::json!({"type": "string"});
    let monitor = object(serde_json::json!({
        "namespaceSelector": object(serde_json::json!({"matchNames": list_of(string.clone())})),
        "selector": object(serde_json::json!({"matchLabels": strings()})),
        "endpoints": list_of(object(serde_json::json!({
            "port": string, "path": string, "interval": string, "scrapeTimeout": string,
        }))),
    }));
    let rule = object(serde_json::json!({
        "groups": list_of(object(serde_json::json!({
            "name": string,
            "rules": list_of(object(serde_json::json!({
                "alert": string, "record": string, "expr": string, "for": string,
                "labels": strings(), "annotations": strings(),
            }))),
        }))),
    }));
    cluster
        .install_crd(prometheus_operator_crd(
            "ServiceMonitor",
            "servicemonitors",
            monitor,
        ))
        .await?;
    cluster
        .install_crd(prometheus_operator_crd(
            "PrometheusRule",
            "prometheusrules",
            rule,
        ))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn each_option_renders_objects_the_api_server_accepts() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let client = cluster.client();
    install_prometheus_operator_crds(&cluster).await?;

    let options: &[&[&str]] = &[
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.serviceMonitor.interval=30s",
            "metrics.serviceMonitor.labels.release=prometheus",
        ],
        &[
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.labels.release=prometheus",
            "metrics.prometheusRule.additionalRules[0].alert=SealedSecretsControllerDown",
            "metrics.prometheusRule.additionalRules[0].expr=absent(sealed_secrets_controller_build_info)",
        ],
        &[
            "networkPolicy.enabled=true",
            "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
            "networkPolicy.egress[0].ports[0].port=6443",
        ],
        &[
            "rbac.auditor.create=true",
            "rbac.auditor.subjects[0].apiGroup=rbac.authorization.k8s.io",
            "rbac.auditor.subjects[0].kind=Group",
            "rbac.auditor.subjects[0].name=auditors",
        ],
        &[
            "replicaCount=3",
            "podDisruptionBudget.minAvailable=50%",
            "resources.requests.cpu=100m",
            "resources.limits.memory=128Mi",
            "livenessProbe.periodSeconds=30",
            "readinessProbe=null",
        ],
    ];
    for set in options {
        let namespace = cluster.namespace("options").await?;
        let objects = render(&namespace, set);
        apply_all(&client, &namespace, &objects)
            .await
            .map_err(|e| anyhow::anyhow!("with {set:?}: {e}"))?;
    }

    // What each option renders, as the API server stored it.
    let namespace = cluster.namespace("options").await?;
    let all: Vec<&str> = options.iter().flat_map(|set| set.iter().copied()).collect();
    let objects = render(&namespace, &all);
    apply_all(&client, &namespace, &objects).await?;

    let monitor = only(&objects, "ServiceMonitor");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["endpoints"][0]["interval"], "30s");

    let rule = only(&objects, "PrometheusRule");
    let rules = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .expect("rules");
    let expr = |alert: &str| {
        rules
            .iter()
            .find(|r| r["alert"] == alert)
            .and_then(|r| r["expr"].as_str())
            .unwrap_or_else(|| panic!("no alert {alert}"))
    };
    // The names the controller exposes (controller/src/metrics.rs), counters with _total.
    assert!(
        expr("SealedSecretsUnsealErrors").contains("sealed_secrets_controller_unseal_errors_total")
    );
    assert!(expr("SealedSecretNotSynced").contains("sealed_secrets_controller_condition_info"));
    assert!(expr("SealedSecretsControllerDown").starts_with("absent("));

    let policy = only(&objects, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    let ports: Vec<&Value> = policy["spec"]["ingress"]
        .as_array()
        .expect("ingress rules")
        .iter()
        .map(|rule| &rule["ports"][0]["port"])
        .collect();
    assert_eq!(
        ports,
        [&serde_json::json!("http"), &serde_json::json!("metrics")]
    );

    let budget = only(&objects, "PodDisruptionBudget");
    assert_eq!(budget["spec"]["minAvailable"], "50%");

    let container = &only(&objects, "Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["resources"]["requests"]["cpu"], "100m");
    assert_eq!(container["resources"]["limits"]["memory"], "128Mi");
    assert_eq!(container["livenessProbe"]["periodSeconds"], 30);
    assert!(
        container["readinessProbe"].is_null(),
        "readinessProbe=null leaves it out"
    );

    // Unseal errors really are exposed under the name the alert uses: a controller given a
    // SealedSecret none of its keys opens counts it.
    let controller_ns = cluster.namespace("controller").await?;
    let app = cluster.namespace("app").await?;
    let controller =
        SealsyncController::start(&cluster, &controller_ns, &["--key-size=2048"]).await?;
    let foreign = PrivateKey::generate(2048)?;
    let foreign = SealingCertificate::generate(&foreign, &CertificateParams::default())?;
    let yaml =
        format!("kind: Secret\nmetadata: {{name: db, namespace: {app}}}\nstringData: {{a: b}}\n");
    let secret = parse_documents::<SecretManifest>(&yaml, "test", "Secret")?.remove(0);
    let sealed = seal_secret(&secret, foreign.public_key(), &SealOptions::default())?;
    Api::<SealedSecret>::namespaced(client.clone(), &app)
        .create(&PostParams::default(), &sealed)
        .await?;
    wait_for(
        "the unseal error and the Synced=False condition on /metrics",
        Duration::from_secs(60),
        None,
        || async {
            let errors = controller
                .metric_if_exposed("sealed_secrets_controller_unseal_errors_total", "")?;
            let synced = controller.metric_if_exposed(
                "sealed_secrets_controller_condition_info",
                "condition=\"Synced\"",
            )?;
            Ok(errors.is_some_and(|n| n >= 1.0) && synced == Some(-1.0))
        },
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaced_mode_grants_roles_only_where_the_controller_unseals() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let client = cluster.client();
    let release = cluster.namespace("tenant-controller").await?;
    let team_a = cluster.namespace("team-a").await?;
    let team_b = cluster.namespace("team-b").await?;
    let other = cluster.namespace("other-tenant").await?;
    let objects = render(
        &release,
        &[
            "allNamespaces=false",
            &format!("additionalNamespaces={{{team_a},{team_b}}}"),
            "keySize=2048",
        ],
    );

    assert!(find(&objects, "ClusterRole").is_empty());
    assert!(find(&objects, "ClusterRoleBinding").is_empty());
    let unsealers: Vec<&str> = find(&objects, "Role")
        .into_iter()
        .filter(|role| role["metadata"]["name"] == format!("{NAME}-unsealer"))
        .map(|role| role["metadata"]["namespace"].as_str().expect("namespaced"))
        .collect();
    assert_eq!(unsealers, [&release, &team_a, &team_b]);
    let args = controller_args(only(&objects, "Deployment"), &release);
    assert_eq!(
        args.scope.scope(&release).namespaces,
        Some(vec![release.clone(), team_a.clone(), team_b.clone()]),
        "the controller watches exactly where the chart grants"
    );

    apply_all_into(&client, &[&release, &team_a, &team_b], &objects).await?;

    let user = format!("system:serviceaccount:{release}:{NAME}");
    let controller = Access {
        user: &user,
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{release}"),
            "system:authenticated".into(),
        ],
    };
    let sealed = ("bitnami.com", "sealedsecrets");
    let status = ("bitnami.com", "sealedsecrets/status");
    let secrets = ("", "secrets");
    for namespace in [&release, &team_a, &team_b] {
        let ns = Some(namespace.as_str());
        assert_access(
            &controller,
            &client,
            true,
            &[
                ("list", sealed, ns, None),
                ("watch", sealed, ns, None),
                ("patch", status, ns, Some("db")),
                ("list", secrets, ns, None),
                ("watch", secrets, ns, None),
                ("create", secrets, ns, None),
                ("patch", secrets, ns, Some("db")),
            ],
        )
        .await?;
    }
    let elsewhere = Some(other.as_str());
    assert_access(
        &controller,
        &client,
        false,
        &[
            // Nothing cluster-wide, nothing in a namespace not listed.
            ("list", secrets, None, None),
            ("list", sealed, None, None),
            ("get", secrets, elsewhere, Some("db")),
            ("list", secrets, elsewhere, None),
            ("watch", secrets, elsewhere, None),
            ("create", secrets, elsewhere, None),
            ("list", sealed, elsewhere, None),
            ("patch", status, elsewhere, Some("db")),
        ],
    )
    .await?;

    // The controller, as that ServiceAccount with these Roles only, unseals in a listed
    // namespace; the same identity reading a Secret of another tenant is refused.
    let kubeconfig = cluster.service_account_kubeconfig(&release, NAME).await?;
    let deployment = only(&objects, "Deployment");
    let (mut controller, api) = run_as_deployed(
        cluster.dir(),
        "namespaced",
        deployment,
        &release,
        &kubeconfig,
    )?;
    let cert = certificate(&mut controller, api).await?;
    seal_and_wait_unsealed(&cluster, &team_b, &cert, "namespaced", &mut controller).await?;
    stop(&mut controller).await?;
    let log = controller.log();
    assert!(!log.contains("forbidden"), "refused something:\n{log}");

    Api::<Secret>::namespaced(client.clone(), &other)
        .create(
            &PostParams::default(),
            &Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some("their-db".into()),
                    ..Default::default()
                },
                string_data: Some([("password".to_string(), "theirs".to_string())].into()),
                ..Default::default()
            },
        )
        .await?;
    let identity = cluster.client_as_service_account(&release, NAME).await?;
    let forbidden = |result: Result<_, kube::Error>| matches!(result, Err(kube::Error::Api(status)) if status.code == 403);
    let theirs: Api<Secret> = Api::namespaced(identity.clone(), &other);
    assert!(forbidden(theirs.get("their-db").await.map(drop)));
    assert!(forbidden(theirs.list(&Default::default()).await.map(drop)));
    let everywhere: Api<Secret> = Api::all(identity.clone());
    assert!(forbidden(
        everywhere.list(&Default::default()).await.map(drop)
    ));
    let own: Api<Secret> = Api::namespaced(identity, &team_b);
    assert!(own.get("db").await.is_ok(), "and it reads where it unseals");
    Ok(())
}

/// `sealsync-controller` as the chart's Deployment runs it (its environment and arguments),
/// authenticated by `kubeconfig`, its two ports moved to free loopback ports. Returns the
/// address of its HTTP API.
fn run_as_deployed(
    dir: &Path,
    name: &str,
    deployment: &Value,
    namespace: &str,
    kubeconfig: &Path,
) -> anyhow::Result<(Process, SocketAddrV4)> {
    let api = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
    let metrics = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
    let mut command = Command::new(project_binary("sealsync-controller"));
    command
        .envs(deployment_env(deployment, namespace))
        .env("SEALED_SECRETS_LISTEN_ADDR", api.to_string())
        .env("SEALED_SECRETS_LISTEN_METRICS_ADDR", metrics.to_string())
        .env("KUBECONFIG", kubeconfig)
        // The engine logs refused watches at debug level.
        .env(
            "RUST_LOG",
            "info,sealsync_engine=debug,sealsync_controller=debug",
        )
        .args(deployment_args(deployment));
    Ok((Process::spawn(name, &mut command, dir)?, api))
}

/// Waits until `process` has logged `text` (quotes as in text logs; the chart's JSON logs
/// escape them).
async fn wait_for_log(process: &Process, text: &str) -> anyhow::Result<()> {
    let log = process.log_path();
    wait_for(
        &format!("the log line {text:?} in {}", log.display()),
        Duration::from_secs(60),
        None,
        || {
            let log = log.clone();
            async move {
                Ok(std::fs::read_to_string(log)?
                    .replace("\\\"", "\"")
                    .contains(text))
            }
        },
    )
    .await
}

async fn stop(process: &mut Process) -> anyhow::Result<()> {
    let status = process.terminate(Duration::from_secs(10)).await?;
    anyhow::ensure!(
        status.is_some(),
        "no exit within 10 s of SIGTERM:\n{}",
        process.log_tail()
    );
    Ok(())
}

/// The certificate of the controller at `api`, once it has its key.
async fn certificate(process: &mut Process, api: SocketAddrV4) -> anyhow::Result<String> {
    wait_for(
        "the controller's certificate",
        Duration::from_secs(120),
        Some(process),
        || async move { Ok(http_get(api, "/v1/cert.pem").is_ok()) },
    )
    .await?;
    http_get(api, "/v1/cert.pem")
}

async fn synced(api: &Api<SealedSecret>, name: &str) -> anyhow::Result<bool> {
    let sealed = api.get(name).await?;
    Ok(sealed.status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Synced" && c.status == "True")
    }))
}

/// Seals SealedSecret `namespace/db` to `cert_pem` and waits until `controller` has unsealed
/// it, written its status `Synced=True` and published an `Unsealed` event about it.
async fn unsealed_and_reported(
    cluster: &TestCluster,
    namespace: &str,
    cert_pem: &str,
    value: &str,
    controller: &mut Process,
) -> anyhow::Result<()> {
    seal_and_wait_unsealed(cluster, namespace, cert_pem, value, controller).await?;
    let sealed_secrets: Api<SealedSecret> = Api::namespaced(cluster.client(), namespace);
    wait_for(
        "status Synced=True",
        Duration::from_secs(60),
        Some(controller),
        || synced(&sealed_secrets, "db"),
    )
    .await?;
    let events = Api::namespaced(cluster.client(), namespace);
    wait_for(
        "an Unsealed event about the SealedSecret",
        Duration::from_secs(60),
        Some(controller),
        || async {
            Ok(events_about(&events, "SealedSecret", "db")
                .await?
                .iter()
                .any(|(_, reason, _)| reason == "Unsealed"))
        },
    )
    .await
}

/// Seals `{a: b}` to `cert_pem` as SealedSecret `namespace/name`.
async fn create_sealed_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    cert_pem: &str,
) -> anyhow::Result<()> {
    let cert = SealingCertificate::from_pem(cert_pem.as_bytes())?;
    let yaml = format!(
        "kind: Secret\nmetadata: {{name: {name}, namespace: {namespace}}}\nstringData: {{a: b}}\n"
    );
    let secret = parse_documents::<SecretManifest>(&yaml, "test", "Secret")?.remove(0);
    let sealed = seal_secret(&secret, cert.public_key(), &SealOptions::default())?;
    Api::<SealedSecret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &sealed)
        .await?;
    Ok(())
}

/// What a SealedSecret controller does at a first start: take the Lease (there is none),
/// load its key (made before, in `release`), unseal a new SealedSecret `app-{run}` in `app`.
async fn sealed_secret_first_start(
    client: &Client,
    release: &str,
    app: &str,
    cert: &str,
    run: usize,
) -> anyhow::Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), release);
    match leases.delete(NAME, &Default::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    create_sealed_secret(client, app, &format!("app-{run}"), cert).await
}

/// `role` without `verb` on `resource` of its rule `index` (the rule's other resources and
/// verbs stay).
fn without_verb(role: &Value, index: usize, resource: &str, verb: &str) -> Value {
    let mut without = role.clone();
    let rules = without["rules"].as_array_mut().expect("rules");
    let rule = rules.remove(index);
    let others = |key: &str, taken: &str| -> Vec<Value> {
        let values = rule[key].as_array().expect(key);
        values.iter().filter(|v| *v != taken).cloned().collect()
    };
    let mut parts = Vec::new();
    let resources = others("resources", resource);
    if !resources.is_empty() {
        let mut rest = rule.clone();
        rest["resources"] = Value::Array(resources);
        parts.push(rest);
    }
    let verbs = others("verbs", verb);
    if !verbs.is_empty() {
        let mut this = rule.clone();
        this["resources"] = serde_json::json!([resource]);
        this["verbs"] = Value::Array(verbs);
        parts.push(this);
    }
    for (offset, part) in parts.into_iter().enumerate() {
        rules.insert(index + offset, part);
    }
    without
}

/// A controller's flow against RBAC with one verb taken away.
struct Flow<'a> {
    client: Client,
    /// The namespace of roles that name none (cluster roles are applied there too).
    release: &'a str,
}

impl Flow<'_> {
    /// Takes each verb of each resource of each rule of `roles` that `checked` (given the
    /// role, the rule, the resource and the verb) selects away
    /// in turn (the others stay), runs `trigger` (with the run's number, for fresh names)
    /// and shows the controller then started by `spawn` refused that verb on that resource,
    /// as its log says. Returns the `verb resource` pairs checked.
    async fn each_verb_needed(
        &self,
        roles: &[&Value],
        checked: impl Fn(&Value, &Value, &str, &str) -> bool,
        trigger: impl AsyncFn(usize) -> anyhow::Result<()>,
        spawn: impl Fn(&str) -> anyhow::Result<Process>,
    ) -> anyhow::Result<Vec<String>> {
        let mut done = Vec::new();
        for &role in roles {
            let namespace = role["metadata"]["namespace"].as_str();
            let namespace = namespace.unwrap_or(self.release);
            let rules = role["rules"].as_array().expect("rules");
            for (index, rule) in rules.iter().enumerate() {
                let resources = rule["resources"].as_array().expect("resources");
                let verbs = rule["verbs"].as_array().expect("verbs");
                for resource in resources.iter().map(|r| r.as_str().expect("a resource")) {
                    for verb in verbs.iter().map(|v| v.as_str().expect("a verb")) {
                        if !checked(role, rule, resource, verb) {
                            continue;
                        }
                        let without = without_verb(role, index, resource, verb);
                        apply_all(&self.client, namespace, &[without]).await?;
                        trigger(done.len()).await?;
                        let mut controller =
                            spawn(&format!("without-{verb}-{}", resource.replace('/', "-")))?;
                        wait_for_log(
                            &controller,
                            &format!("cannot {verb} resource \"{resource}\""),
                        )
                        .await?;
                        // The next run starts afresh anyway; no need for a clean release.
                        controller.kill();
                        apply_all(&self.client, namespace, std::slice::from_ref(role)).await?;
                        done.push(format!("{verb} {resource}"));
                    }
                }
            }
        }
        Ok(done)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn least_privilege_the_charts_rbac_suffices_and_each_verb_is_needed() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let client = cluster.client();
    let release = cluster.namespace("controller").await?;
    let app = cluster.namespace("app").await?;
    // 2048-bit keys: made in a moment, also by a debug build.
    let objects = render(&release, &["keySize=2048"]);
    apply_all(&client, &release, &objects).await?;
    let deployment = only(&objects, "Deployment");
    let kubeconfig = cluster.service_account_kubeconfig(&release, NAME).await?;

    // Sufficient: as the chart's ServiceAccount, with exactly the chart's RBAC, the controller
    // takes the Lease, makes its key, unseals, writes the status and reports an event, and
    // is refused nothing.
    let (mut controller, api) = run_as_deployed(
        cluster.dir(),
        "as-installed",
        deployment,
        &release,
        &kubeconfig,
    )?;
    let cert = certificate(&mut controller, api).await?;
    unsealed_and_reported(&cluster, &app, &cert, "least-privilege", &mut controller).await?;
    stop(&mut controller).await?;
    let log = controller.log();
    assert!(!log.contains("forbidden"), "refused something:\n{log}");

    // Needed: without any one verb of any rule, the same flow (a first start, a new
    // SealedSecret) is refused that verb, as the controller's log says.
    let leader_election = format!("{NAME}-leader-election");
    let roles = [
        only(&objects, "ClusterRole"),
        find(&objects, "Role")
            .into_iter()
            .find(|role| role["metadata"]["name"] == leader_election.as_str())
            .expect("the leader election Role"),
    ];
    let flow = Flow {
        client: client.clone(),
        release: &release,
    };
    let checked = flow
        .each_verb_needed(
            &roles,
            |_, _, _, _| true,
            async |run| sealed_secret_first_start(&client, &release, &app, &cert, run).await,
            |label| {
                run_as_deployed(cluster.dir(), label, deployment, &release, &kubeconfig)
                    .map(|(process, _)| process)
            },
        )
        .await?;
    assert_eq!(
        checked.len(),
        13,
        "every verb of the chart's rules was taken away once: {checked:?}"
    );
    Ok(())
}

/// Multi-document YAML as JSON values.
fn yaml_documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| Value::deserialize(document).expect("valid YAML"))
        .filter(|object| !object.is_null())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn upstreams_rbac_alone_runs_sealsync_and_the_supplement_adds_leader_election()
-> anyhow::Result<()> {
    // docs/migration.md: sealsync's image in upstream's chart (or controller.yaml, whose
    // RBAC is the same) with nothing else changed. Upstream's chart installed in
    // kube-system, as docs/upstream-rbac-supplement.yaml is written for.
    let cluster = TestCluster::start().await?;
    let client = cluster.client();
    let release = "kube-system";
    let app = cluster.namespace("app").await?;
    let set = ["fullnameOverride=sealed-secrets-controller"];
    install_upstream_chart_rbac(&cluster, release, &set).await?;
    let kubeconfig = cluster.service_account_kubeconfig(release, NAME).await?;
    // Upstream's chart's command line, on loopback ports (the last of repeated flags wins).
    let (_, args) = upstream_chart_command_line(&set);
    let spawn = |label: &str| -> anyhow::Result<(Process, SocketAddrV4)> {
        let api = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
        let metrics = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
        let mut command = Command::new(project_binary("sealsync-controller"));
        command
            .args(&args)
            .arg(format!("--listen-addr={api}"))
            .arg(format!("--listen-metrics-addr={metrics}"))
            .env("SEALED_SECRETS_CONTROLLER_NAMESPACE", release)
            .env("SEALED_SECRETS_KEY_SIZE", "2048")
            .env("KUBECONFIG", &kubeconfig)
            .env(
                "RUST_LOG",
                "info,sealsync_engine=debug,sealsync_controller=debug",
            );
        Ok((Process::spawn(label, &mut command, cluster.dir())?, api))
    };

    // Upstream's RBAC alone: it runs as the only replica, makes its key, unseals, writes
    // the status and publishes events.
    let (mut alone, api) = spawn("upstream-rbac-alone")?;
    let cert = certificate(&mut alone, api).await?;
    unsealed_and_reported(&cluster, &app, &cert, "alone", &mut alone).await?;
    // Written by update, the Secret is the one server-side apply makes: the template's
    // data, no label or annotation, owned by its SealedSecret.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &app);
    let secret = secrets.get("db").await?;
    let sealed = Api::<SealedSecret>::namespaced(client.clone(), &app)
        .get("db")
        .await?;
    let keys: Vec<&String> = secret.data.iter().flatten().map(|(k, _)| k).collect();
    assert_eq!(keys, ["password"]);
    assert!(secret.labels().is_empty() && secret.annotations().is_empty());
    let owner = secret
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true))
        .expect("a controlling owner");
    assert_eq!(Some(&owner.uid), sealed.metadata.uid.as_ref());

    // Drift is repaired the same way: an edited value comes back, an added key goes.
    let edit = serde_json::json!({ "stringData": { "password": "edited", "extra": "x" } });
    secrets
        .patch("db", &PatchParams::default(), &Patch::Merge(&edit))
        .await?;
    wait_for(
        "the edited Secret restored",
        Duration::from_secs(60),
        Some(&mut alone),
        || {
            let secrets = secrets.clone();
            async move {
                let data = secrets.get("db").await?.data.unwrap_or_default();
                Ok(data.len() == 1 && data.get("password").is_some_and(|v| v.0 == b"alone"))
            }
        },
    )
    .await?;
    // A Secret that consents to a merge (`patch`) gets the sealed keys, by update too, and
    // keeps its own.
    let consenting: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "merged", "annotations": { "sealedsecrets.bitnami.com/patch": "true" } },
        "stringData": { "theirs": "kept" },
    }))?;
    secrets.create(&PostParams::default(), &consenting).await?;
    create_sealed_secret(&client, &app, "merged", &cert).await?;
    wait_for(
        "the sealed key merged into the consenting Secret",
        Duration::from_secs(60),
        Some(&mut alone),
        || {
            let secrets = secrets.clone();
            async move {
                let data = secrets.get("merged").await?.data.unwrap_or_default();
                Ok(data.get("a").is_some_and(|v| v.0 == b"b")
                    && data.get("theirs").is_some_and(|v| v.0 == b"kept"))
            }
        },
    )
    .await?;
    stop(&mut alone).await?;
    // Each refused call is logged once, with what it is replaced by; nothing else is refused.
    let log = alone.log();
    let refused: Vec<&str> = log.lines().filter(|l| l.contains("forbidden")).collect();
    for expected in [
        "writing Secrets by get and update",
        "writing statuses by get and update of the status subresource",
        "publishing core v1 Events",
        "leader election is off",
    ] {
        let lines = refused.iter().filter(|l| l.contains(expected)).count();
        assert_eq!(lines, 1, "{expected:?} logged once:\n{log}");
    }
    assert_eq!(refused.len(), 4, "refused something else:\n{log}");

    // The supplement adds only leader election: with it, the controller takes the Lease
    // and is refused nothing.
    let supplement_path = chart().join("../../docs/upstream-rbac-supplement.yaml");
    let supplement = yaml_documents(&std::fs::read_to_string(supplement_path)?);
    apply_all(&client, release, &supplement).await?;
    let (mut controller, _) = spawn("upstream-rbac-supplemented")?;
    wait_for_log(&controller, "became the leader").await?;
    stop(&mut controller).await?;
    let log = controller.log();
    assert!(
        log.lines()
            .filter(|l| l.contains("forbidden"))
            .all(|l| !l.contains("lease")),
        "refused the Lease:\n{log}"
    );

    // And each verb of the supplement is needed for that.
    let roles: Vec<&Value> = supplement
        .iter()
        .filter(|object| object["kind"] == "ClusterRole" || object["kind"] == "Role")
        .collect();
    let flow = Flow {
        client: client.clone(),
        release,
    };
    let checked = flow
        .each_verb_needed(
            &roles,
            |_, _, _, _| true,
            async |run| sealed_secret_first_start(&client, release, &app, &cert, run).await,
            |label| spawn(label).map(|(process, _)| process),
        )
        .await?;
    assert_eq!(checked.len(), 3, "{checked:?}");
    Ok(())
}

/// Creates `object` (an `external-secrets.io/v1` object as JSON) in `namespace`, or
/// cluster-wide when `None`.
async fn create_external(
    client: &Client,
    namespace: Option<&str>,
    object: Value,
) -> anyhow::Result<DynamicObject> {
    let kind = object["kind"].as_str().expect("a kind");
    let (resource, _) = pinned_kind(
        client,
        &GroupVersionKind::gvk("external-secrets.io", "v1", kind),
    )
    .await?;
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    Ok(api
        .create(&PostParams::default(), &serde_json::from_value(object)?)
        .await?)
}

/// A controlling ownerReference to `owner`.
fn controlled_by(owner: &DynamicObject) -> Value {
    let types = owner.types.as_ref().expect("a created object has its type");
    serde_json::json!([{
        "apiVersion": types.api_version, "kind": types.kind,
        "name": owner.metadata.name, "uid": owner.metadata.uid, "controller": true,
    }])
}

/// ESO's finalizer, which sealsync removes from an ExternalSecret being deleted.
const ESO_FINALIZER: &str = "externalsecrets.external-secrets.io/externalsecret-cleanup";

/// What an ExternalSecret controller does at a start, for every rule the chart adds with
/// externalSecrets.enabled: in `app`, new ExternalSecrets (suffix `-{run}`) from a new
/// SecretStore with `keys` (`s`), from a new ClusterSecretStore that selects `app` by its
/// labels (`c`), with a templateFrom ConfigMap (`t`), from the SecretStore on IRSA
/// (`jwt.serviceAccountRef`, `j`), one being deleted with ESO's finalizer (`f`), one whose
/// remote secret is gone (`d`), and, `cluster_wide`, a ClusterExternalSecret stamping
/// `e-{run}` into `app` and one that no longer selects it (`r`). Returns the Secrets to
/// expect.
async fn external_secrets_start(
    client: &Client,
    app: &str,
    keys: &Value,
    run: usize,
    cluster_wide: bool,
) -> anyhow::Result<Vec<String>> {
    // New stores, whose statuses are written.
    let store = format!("s-{run}");
    let cluster_store = format!("{app}-c-{run}");
    create_external(
        client,
        Some(app),
        serde_json::json!({
            "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
            "metadata": { "name": store }, "spec": { "provider": keys },
        }),
    )
    .await?;
    // Selecting by labels, so that the controller reads the Namespace.
    create_external(
        client,
        None,
        serde_json::json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ClusterSecretStore",
            "metadata": { "name": cluster_store },
            "spec": { "provider": keys, "conditions": [{ "namespaceSelector": {
                "matchLabels": { "kubernetes.io/metadata.name": app },
            } }] },
        }),
    )
    .await?;
    let data = serde_json::json!([
        { "secretKey": "password", "remoteRef": { "key": "app/db", "property": "password" } },
    ]);
    let template = serde_json::json!({ "templateFrom": [
        { "configMap": { "name": "template", "items": [{ "key": "password" }] } },
    ] });
    let spec = |kind: &str, store: &str, template: Option<&Value>| {
        let mut spec = serde_json::json!({
            "secretStoreRef": { "name": store, "kind": kind },
            "data": data,
        });
        if let Some(template) = template {
            spec["target"] = serde_json::json!({ "template": template });
        }
        spec
    };
    let external_secret = |name: String, spec: Value| {
        serde_json::json!({
            "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
            "metadata": { "name": name }, "spec": spec,
        })
    };
    let made = [
        (format!("s-{run}"), spec("SecretStore", &store, None)),
        (
            format!("c-{run}"),
            spec("ClusterSecretStore", &cluster_store, None),
        ),
        (
            format!("t-{run}"),
            spec("SecretStore", "aws", Some(&template)),
        ),
        (format!("j-{run}"), spec("SecretStore", "irsa", None)),
    ];
    for (name, spec) in &made {
        create_external(
            client,
            Some(app),
            external_secret(name.clone(), spec.clone()),
        )
        .await?;
    }
    // Being deleted: ESO's finalizer holds it until sealsync removes it.
    let mut finalized = external_secret(format!("f-{run}"), spec("SecretStore", "aws", None));
    finalized["metadata"]["finalizers"] = serde_json::json!([ESO_FINALIZER]);
    create_external(client, Some(app), finalized).await?;
    external_secrets(client, Some(app))
        .await?
        .delete(&format!("f-{run}"), &Default::default())
        .await?;
    // Its remote secret gone (deletionPolicy Delete): its Secret, which it controls, is
    // deleted.
    let mut deleting = spec("SecretStore", "aws", None);
    deleting["data"][0]["remoteRef"]["key"] = "app/gone".into();
    deleting["target"] = serde_json::json!({ "deletionPolicy": "Delete" });
    let deleting = create_external(
        client,
        Some(app),
        external_secret(format!("d-{run}"), deleting),
    )
    .await?;
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": format!("d-{run}"), "ownerReferences": controlled_by(&deleting) },
        "data": { "password": "b2xk" },
    }))?;
    Api::<Secret>::namespaced(client.clone(), app)
        .create(&PostParams::default(), &secret)
        .await?;
    let mut secrets: Vec<String> = made.into_iter().map(|(name, _)| name).collect();
    if cluster_wide {
        create_external(
            client,
            None,
            serde_json::json!({
                "apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret",
                "metadata": { "name": format!("e-{app}-{run}") },
                "spec": {
                    "externalSecretName": format!("e-{run}"),
                    "namespaceSelectors": [{ "matchLabels": { "kubernetes.io/metadata.name": app } }],
                    "externalSecretSpec": spec("SecretStore", "aws", None),
                },
            }),
        )
        .await?;
        // A ClusterExternalSecret that provisioned `app` and no longer selects it: its
        // ExternalSecret there is deleted.
        let shrunk = create_external(
            client,
            None,
            serde_json::json!({
                "apiVersion": "external-secrets.io/v1", "kind": "ClusterExternalSecret",
                "metadata": { "name": format!("r-{app}-{run}") },
                "spec": {
                    "externalSecretName": format!("r-{run}"),
                    "namespaceSelectors": [{ "matchLabels": { "sealsync.test/selects": "none" } }],
                    "externalSecretSpec": spec("SecretStore", "aws", None),
                },
            }),
        )
        .await?;
        let (resource, _) = pinned_kind(
            client,
            &GroupVersionKind::gvk("external-secrets.io", "v1", "ClusterExternalSecret"),
        )
        .await?;
        Api::<DynamicObject>::all_with(client.clone(), &resource)
            .patch_status(
                &format!("r-{app}-{run}"),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": { "provisionedNamespaces": [app] } })),
            )
            .await?;
        let mut left = external_secret(format!("r-{run}"), spec("SecretStore", "aws", None));
        left["metadata"]["ownerReferences"] = controlled_by(&shrunk);
        create_external(client, Some(app), left).await?;
        secrets.push(format!("e-{run}"));
    }
    Ok(secrets)
}

/// The ExternalSecrets API in `namespace`, or of all namespaces.
async fn external_secrets(
    client: &Client,
    namespace: Option<&str>,
) -> anyhow::Result<Api<DynamicObject>> {
    let gvk = GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret");
    let (resource, _) = pinned_kind(client, &gvk).await?;
    Ok(match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &resource),
        None => Api::all_with(client.clone(), &resource),
    })
}

/// What the ExternalSecret flows read in `app`: a remote secret in moto, its credentials,
/// a template ConfigMap, a ServiceAccount for IRSA, and the SecretStores `aws` (keys) and
/// `irsa`. Returns the provider of the stores with keys.
async fn external_secrets_fixture(
    client: &Client,
    app: &str,
    moto: &sealsync_testkit::Moto,
) -> anyhow::Result<Value> {
    moto.client()
        .create_secret()
        .name("app/db")
        .secret_string(r#"{"password":"from-moto"}"#)
        .send()
        .await?;
    let credentials: Secret = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "aws" },
        "stringData": {
            "id": sealsync_testkit::Moto::ACCESS_KEY_ID,
            "secret": sealsync_testkit::Moto::SECRET_ACCESS_KEY,
        },
    }))?;
    Api::<Secret>::namespaced(client.clone(), app)
        .create(&PostParams::default(), &credentials)
        .await?;
    let template: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "template" },
        "data": { "password": "{{ .password }}" },
    }))?;
    Api::<ConfigMap>::namespaced(client.clone(), app)
        .create(&PostParams::default(), &template)
        .await?;
    // IRSA: moto's STS exchanges any token for credentials of the annotated role.
    let account: ServiceAccount = serde_json::from_value(serde_json::json!({
        "metadata": { "name": "irsa", "annotations": {
            "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/app",
        } },
    }))?;
    Api::<ServiceAccount>::namespaced(client.clone(), app)
        .create(&PostParams::default(), &account)
        .await?;
    let aws = |auth: Value| {
        serde_json::json!({ "aws": {
            "service": "SecretsManager",
            "region": sealsync_testkit::Moto::REGION,
            "auth": auth,
        } })
    };
    let keys = aws(serde_json::json!({ "secretRef": {
        "accessKeyIDSecretRef": { "name": "aws", "key": "id", "namespace": app },
        "secretAccessKeySecretRef": { "name": "aws", "key": "secret", "namespace": app },
    } }));
    let irsa = aws(serde_json::json!({ "jwt": { "serviceAccountRef": { "name": "irsa" } } }));
    for (name, provider) in [("aws", &keys), ("irsa", &irsa)] {
        create_external(
            client,
            Some(app),
            serde_json::json!({
                "apiVersion": "external-secrets.io/v1", "kind": "SecretStore",
                "metadata": { "name": name }, "spec": { "provider": provider },
            }),
        )
        .await?;
    }
    Ok(keys)
}

/// Waits until the first start of [`external_secrets_start`] is done: every Secret
/// `expected` synced from moto, and the ExternalSecret being deleted, the Secret whose
/// remote secret is gone and, `cluster_wide`, the ExternalSecret no longer selected gone.
/// Then stops the controller and shows it was refused nothing.
async fn external_secrets_first_start_done(
    client: &Client,
    app: &str,
    expected: &[String],
    controller: &mut Process,
    cluster_wide: bool,
) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), app);
    for name in expected {
        wait_for(
            &format!("Secret {name} synced from moto"),
            Duration::from_secs(90),
            Some(&mut *controller),
            || {
                let secrets = secrets.clone();
                async move {
                    let secret = secrets.get_opt(name).await?;
                    Ok(secret
                        .and_then(|s| s.data)
                        .is_some_and(|d| d.get("password").is_some_and(|v| v.0 == b"from-moto")))
                }
            },
        )
        .await?;
    }
    let in_app = external_secrets(client, Some(app)).await?;
    wait_for(
        "the ExternalSecret being deleted gone",
        Duration::from_secs(60),
        Some(&mut *controller),
        || async { Ok(in_app.get_opt("f-0").await?.is_none()) },
    )
    .await?;
    wait_for(
        "the Secret of the ExternalSecret whose remote secret is gone deleted",
        Duration::from_secs(60),
        Some(&mut *controller),
        || async { Ok(secrets.get_opt("d-0").await?.is_none()) },
    )
    .await?;
    if cluster_wide {
        wait_for(
            "the ExternalSecret of a namespace the ClusterExternalSecret no longer selects gone",
            Duration::from_secs(60),
            Some(&mut *controller),
            || async { Ok(in_app.get_opt("r-0").await?.is_none()) },
        )
        .await?;
    }
    stop(controller).await?;
    let log = controller.log();
    assert!(!log.contains("forbidden"), "refused something:\n{log}");
    Ok(())
}

/// The verbs the chart adds for ExternalSecrets in the namespaces it grants (the unsealer's
/// rules for them) and for ClusterSecretStores, in the order they are checked.
const EXTERNAL_SECRET_VERBS: [&str; 15] = [
    "list externalsecrets",
    "watch externalsecrets",
    "list secretstores",
    "watch secretstores",
    "patch externalsecrets",
    "patch externalsecrets/status",
    "patch secretstores/status",
    "delete secrets",
    "get configmaps",
    "get serviceaccounts",
    "create serviceaccounts/token",
    "list clustersecretstores",
    "watch clustersecretstores",
    "patch clustersecretstores/status",
    "get namespaces",
];

/// Takes each verb of `roles` that `checked` selects away in turn ([`Flow`]) and shows a
/// start of [`external_secrets_start`] in `app` (runs from 1: run 0 was the sufficient
/// one) refused it, the controller run as `deployment` with `kubeconfig`.
async fn external_secret_verbs_needed(
    cluster: &TestCluster,
    (release, app): (&str, &str),
    (deployment, kubeconfig): (&Value, &Path),
    keys: &Value,
    roles: &[&Value],
    checked: impl Fn(&Value, &Value, &str, &str) -> bool,
    cluster_wide: bool,
) -> anyhow::Result<Vec<String>> {
    let client = cluster.client();
    let flow = Flow {
        client: client.clone(),
        release,
    };
    flow.each_verb_needed(
        roles,
        checked,
        async |run| {
            external_secrets_start(&client, app, keys, run + 1, cluster_wide)
                .await
                .map(drop)
        },
        |label| {
            run_as_deployed(cluster.dir(), label, deployment, release, kubeconfig)
                .map(|(process, _)| process)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn external_secrets_sync_with_the_charts_rbac_and_each_verb_is_needed() -> anyhow::Result<()>
{
    let cluster = TestCluster::start().await?;
    let client = cluster.client();
    let release = cluster.namespace("controller").await?;
    let app = cluster.namespace("app").await?;
    let moto = sealsync_testkit::Moto::start().await?;
    let endpoint = format!("extraEnv[0].value={}", moto.endpoint());
    let objects = render(
        &release,
        &[
            "keySize=2048",
            "externalSecrets.enabled=true",
            "extraEnv[0].name=AWS_ENDPOINT_URL",
            &endpoint,
        ],
    );
    apply_all(&client, &release, &objects).await?;
    let deployment = only(&objects, "Deployment");
    let kubeconfig = cluster.service_account_kubeconfig(&release, NAME).await?;
    let keys = external_secrets_fixture(&client, &app, &moto).await?;

    // Sufficient: as the chart's ServiceAccount, with exactly the chart's RBAC, every
    // ExternalSecret syncs, the one being deleted goes, and nothing is refused.
    let expected = external_secrets_start(&client, &app, &keys, 0, true).await?;
    let (mut controller, _) = run_as_deployed(
        cluster.dir(),
        "external-secrets-as-installed",
        deployment,
        &release,
        &kubeconfig,
    )?;
    external_secrets_first_start_done(&client, &app, &expected, &mut controller, true).await?;

    // Needed: without any one verb the chart adds for ExternalSecrets, the same start is
    // refused that verb, as the controller's log says.
    let base = render(&release, &["keySize=2048"]);
    let base_rules = only(&base, "ClusterRole")["rules"]
        .as_array()
        .expect("rules")
        .clone();
    let roles: Vec<&Value> = find(&objects, "ClusterRole");
    assert_eq!(roles.len(), 2, "the unsealer's and the cluster stores'");
    let checked = external_secret_verbs_needed(
        &cluster,
        (&release, &app),
        (deployment, &kubeconfig),
        &keys,
        &roles,
        |_, rule, _, _| !base_rules.contains(rule),
        true,
    )
    .await?;
    let cluster_external_secrets = [
        "list clusterexternalsecrets",
        "watch clusterexternalsecrets",
        "patch clusterexternalsecrets/status",
        "get externalsecrets",
        "create externalsecrets",
        "delete externalsecrets",
        "list namespaces",
        "watch namespaces",
    ];
    assert_eq!(
        checked,
        [&EXTERNAL_SECRET_VERBS[..], &cluster_external_secrets].concat(),
        "each verb the chart adds for ExternalSecrets taken away once"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaced_external_secrets_sync_with_roles_and_each_verb_is_needed() -> anyhow::Result<()>
{
    let cluster = TestCluster::start().await?;
    let client = cluster.client();
    let release = cluster.namespace("tenant-controller").await?;
    let app = cluster.namespace("team").await?;
    let moto = sealsync_testkit::Moto::start().await?;
    let namespaced = [
        "allNamespaces=false".to_string(),
        format!("additionalNamespaces={{{app}}}"),
        "keySize=2048".into(),
    ];
    let mut set: Vec<String> = namespaced.to_vec();
    set.extend([
        "externalSecrets.enabled=true".into(),
        "extraEnv[0].name=AWS_ENDPOINT_URL".into(),
        format!("extraEnv[0].value={}", moto.endpoint()),
    ]);
    let objects = render(
        &release,
        &set.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // `default`: events about ClusterSecretStores.
    apply_all_into(&client, &[&release, &app, "default"], &objects).await?;
    let deployment = only(&objects, "Deployment");
    let kubeconfig = cluster.service_account_kubeconfig(&release, NAME).await?;
    let keys = external_secrets_fixture(&client, &app, &moto).await?;

    // Sufficient: with the Roles of the namespaces it watches and the cluster stores'
    // ClusterRole, every ExternalSecret of the tenant's namespace syncs.
    let expected = external_secrets_start(&client, &app, &keys, 0, false).await?;
    let (mut controller, _) = run_as_deployed(
        cluster.dir(),
        "namespaced-external-secrets",
        deployment,
        &release,
        &kubeconfig,
    )?;
    external_secrets_first_start_done(&client, &app, &expected, &mut controller, false).await?;

    // Needed: each verb the chart adds for ExternalSecrets, to the Role of the tenant's
    // namespace and to the ClusterRole.
    let base = render(
        &release,
        &namespaced.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let in_app = |objects: &[Value]| -> Value {
        find(objects, "Role")
            .into_iter()
            .find(|role| {
                role["metadata"]["name"] == format!("{NAME}-unsealer")
                    && role["metadata"]["namespace"] == app.as_str()
            })
            .expect("the unsealer's Role in the tenant's namespace")
            .clone()
    };
    let base_rules = in_app(&base)["rules"].as_array().expect("rules").clone();
    let unsealer = in_app(&objects);
    let mut roles: Vec<&Value> = vec![&unsealer];
    roles.extend(find(&objects, "ClusterRole"));
    roles.extend(
        find(&objects, "Role")
            .into_iter()
            .filter(|role| role["metadata"]["namespace"] == "default"),
    );
    assert_eq!(
        roles.len(),
        3,
        "the unsealer's Role, the cluster stores' ClusterRole, the events Role in default"
    );
    // The unsealer's Role holds the SealedSecret rules too; the events Role is only for
    // ExternalSecrets.
    let checked = external_secret_verbs_needed(
        &cluster,
        (&release, &app),
        (deployment, &kubeconfig),
        &keys,
        &roles,
        |role, rule, _, _| role["metadata"]["namespace"] == "default" || !base_rules.contains(rule),
        false,
    )
    .await?;
    assert_eq!(
        checked,
        [&EXTERNAL_SECRET_VERBS[..], &["create events"]].concat(),
        "each verb the chart adds for ExternalSecrets taken away once, nothing cluster-wide \
         but the cluster stores"
    );
    Ok(())
}

/// `sealsync keys` as `kubeconfig`'s identity against the controller in `release`.
fn keys_as(kubeconfig: &Path, release: &str, args: &[&str]) -> std::process::Output {
    Command::new(project_binary("sealsync"))
        .env("KUBECONFIG", kubeconfig)
        .env("SEALSYNC_KEYS_PASSPHRASE", "correct horse battery staple")
        .arg("keys")
        .args(args)
        .args(["--controller-namespace", release])
        .output()
        .expect("sealsync starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn auditors_list_keys_with_the_charts_role_and_touch_no_secret() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let client = cluster.client();
    let release = cluster.namespace("keys-audit").await?;
    let audit = cluster.namespace("audit").await?;
    let account: ServiceAccount =
        serde_json::from_value(serde_json::json!({ "metadata": { "name": "auditor" } }))?;
    Api::<ServiceAccount>::namespaced(client.clone(), &audit)
        .create(&PostParams::default(), &account)
        .await?;
    // The auditor's roles only: not the service proxier's, which every user has by default.
    let namespace = format!("rbac.auditor.subjects[0].namespace={audit}");
    let objects = render(
        &release,
        &[
            "rbac.serviceProxier.create=false",
            "rbac.auditor.create=true",
            "rbac.auditor.subjects[0].kind=ServiceAccount",
            "rbac.auditor.subjects[0].name=auditor",
            &namespace,
        ],
    );
    let auditor_objects: Vec<Value> = objects
        .iter()
        .filter(|o| {
            o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("-auditor"))
        })
        .cloned()
        .collect();
    assert_eq!(
        auditor_objects.len(),
        4,
        "a ClusterRole, a Role and their bindings"
    );
    apply_all(&client, &release, &auditor_objects).await?;
    let netns = sealsync_testkit::NetNs::create()?;
    let _controller = SealsyncController::start_behind_service(
        &cluster,
        &release,
        &netns,
        &["--key-size=2048", "--key-renew-period=1h"],
    )
    .await?;
    let kubeconfig = cluster
        .service_account_kubeconfig(&audit, "auditor")
        .await?;
    let mut outputs = String::new();
    let mut ok = |args: &[&str]| {
        let out = keys_as(&kubeconfig, &release, args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        outputs.push_str(&stdout);
        outputs.push_str(&String::from_utf8_lossy(&out.stderr));
        assert!(
            out.status.success(),
            "keys {args:?} as the auditor: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };

    let listed: Value = serde_json::from_str(&ok(&["list", "-o", "json"]))?;
    let statuses: Vec<&str> = listed["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["status"].as_str().expect("a status"))
        .collect();
    assert_eq!(statuses, ["active"]);
    let text = ok(&["list"]);
    assert!(text.contains("active (sealing)"), "{text}");

    // Key administration is not the auditor's: rotation (a patch of a key Secret) refused.
    let refused = keys_as(&kubeconfig, &release, &["rotate", "--wait", "0s"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        stderr.contains("needs `patch` on Secrets there"),
        "{stderr}"
    );
    outputs.push_str(&stderr);

    // No key material: a backup is refused, and so is any read of a Secret.
    let backup = cluster.dir().join("auditor-backup.age");
    let refused = keys_as(
        &kubeconfig,
        &release,
        &["backup", "-o", backup.to_str().expect("a UTF-8 path")],
    );
    assert!(!refused.status.success());
    assert!(!backup.exists());
    outputs.push_str(&String::from_utf8_lossy(&refused.stderr));
    let identity = cluster.client_as_service_account(&audit, "auditor").await?;
    let secrets: Api<Secret> = Api::namespaced(identity, &release);
    let forbidden = |result: Result<(), kube::Error>| matches!(result, Err(kube::Error::Api(s)) if s.code == 403);
    assert!(forbidden(secrets.list(&Default::default()).await.map(drop)));
    let key = Api::<Secret>::namespaced(client.clone(), &release)
        .list(&kube::api::ListParams::default().labels(sealsync_api::KEY_LABEL))
        .await?
        .items
        .remove(0);
    assert!(forbidden(secrets.get(&key.name_any()).await.map(drop)));
    let empty = Patch::Merge(serde_json::json!({}));
    assert!(forbidden(
        secrets
            .patch(&key.name_any(), &PatchParams::default(), &empty)
            .await
            .map(drop)
    ));
    let private_key = key.data.expect("data")["tls.key"].0.clone();
    let line = String::from_utf8_lossy(&private_key)
        .lines()
        .nth(1)
        .expect("a PEM body line")
        .to_string();
    assert!(!outputs.contains(&line), "no key material in any output");
    Ok(())
}
