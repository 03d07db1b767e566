//! Upstream's own integration suite (Ginkgo, `integration/` of
//! github.com/bitnami-labs/sealed-secrets, compiled by `tests/harness/build.sh`) run against
//! sealsync-controller, behind Service `kube-system/sealed-secrets-controller`, and sealsync
//! as `kubeseal`: the most complete statement of what "drop-in" means. Each spec is
//! asserted on its own, from the suite's JSON report. The same suite run against the
//! upstream controller and kubeseal checks the harness itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use sealsync_testkit::{
    Component, NetNs, SealsyncController, TestCluster, UpstreamController, binary, project_binary,
    wait_for,
};
use serde::Deserialize;

/// Where the suite looks for the controller: its keys, and its Service for kubeseal.
const CONTROLLER_NAMESPACE: &str = "kube-system";

/// Lines of a failure message shown (Gomega prints whole objects).
const MESSAGE_LINES: usize = 16;

/// Specs not run, against either controller, with the reason (names without regular
/// expression metacharacters: they are passed as `--ginkgo.skip`).
const SKIPPED: &[(&str, &str)] = &[
    (
        "create Secret Recreation With unowned secret without managed annotation should not recreate the secret",
        "racy by construction: it deletes the Secret and looks for 100 ms whether it comes \
         back, while the controller may still be handling the creation; the upstream \
         controller fails it too when run alone",
    ),
    (
        "create Secret Recreation With unowned secret with patch annotation should not recreate the secret",
        "racy by construction, as the one above",
    ),
];

/// Specs that fail against sealsync for reasons owned by other work, with the reason. The
/// test fails when one of them passes, so that this list only shrinks.
const KNOWN_FAILURES: &[(&str, &str)] = &[];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SuiteReport {
    spec_reports: Vec<SpecReport>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SpecReport {
    container_hierarchy_texts: Option<Vec<String>>,
    leaf_node_text: String,
    leaf_node_type: String,
    state: String,
    failure: Option<Failure>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Failure {
    message: String,
    location: Location,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Location {
    file_name: String,
    line_number: u32,
}

/// One run's outcome: spec name -> (state, the failure with its place in the suite). The
/// suite's messages quote only its own fixture values.
type Outcomes = BTreeMap<String, (String, String)>;

/// Runs the compiled suite with `kubeseal` and `controller` as the programs under test
/// (the controller binary is only asked for `--version`; the running one is found through
/// the cluster) and returns each spec's outcome. Its full output goes to a file in the
/// cluster's folder.
fn run_suite(
    cluster: &TestCluster,
    kubeseal: &Path,
    controller: &Path,
) -> anyhow::Result<Outcomes> {
    let dir = cluster.dir().join("upstream-suite");
    std::fs::create_dir_all(&dir)?;
    let report = dir.join("report.json");
    let log = dir.join("suite.log");
    let skip = SKIPPED
        .iter()
        .map(|(name, _)| name.to_string())
        .collect::<Vec<_>>()
        .join("|");
    let started = Instant::now();
    let status = Command::new(binary(
        Component::SealedSecrets,
        "SEALSYNC_SEALED_SECRETS_INTEGRATION",
    ))
    .current_dir(&dir)
    .arg(format!("--kubeconfig={}", cluster.kubeconfig().display()))
    .arg(format!("--kubeseal-bin={}", kubeseal.display()))
    .arg(format!("--controller-bin={}", controller.display()))
    .arg(format!("--ginkgo.json-report={}", report.display()))
    .arg(format!("--ginkgo.skip={skip}"))
    .arg("--ginkgo.no-color")
    .stdout(std::fs::File::create(&log)?)
    .stderr(std::fs::File::create(dir.join("suite.stderr"))?)
    .status()
    .context("cannot run the compiled upstream suite")?;
    eprintln!(
        "upstream suite: {:.0?}, {status}, output in {}",
        started.elapsed(),
        log.display()
    );
    let text = std::fs::read_to_string(&report)
        .with_context(|| format!("the suite wrote no report; see {}", log.display()))?;
    let suites: Vec<SuiteReport> = serde_json::from_str(&text)?;
    Ok(suites
        .into_iter()
        .flat_map(|suite| suite.spec_reports)
        .filter(|spec| spec.leaf_node_type == "It")
        .map(|spec| {
            let mut name = spec.container_hierarchy_texts.unwrap_or_default();
            name.push(spec.leaf_node_text);
            let failure = spec
                .failure
                .map(|f| {
                    format!(
                        "{}:{}: {}",
                        Path::new(&f.location.file_name)
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        f.location.line_number,
                        f.message
                    )
                })
                .unwrap_or_default();
            (name.join(" "), (spec.state, failure))
        })
        .collect())
}

/// Checks every spec against `known_failures` (and [`SKIPPED`]); lists each mismatch.
fn check(outcomes: &Outcomes, known_failures: &[(&str, &str)]) -> Vec<String> {
    let listed = |list: &[(&str, &str)], name: &str| list.iter().any(|(n, _)| *n == name);
    let mut problems = Vec::new();
    for (name, (state, failure)) in outcomes {
        let skipped = listed(SKIPPED, name);
        let known = listed(known_failures, name);
        match state.as_str() {
            "skipped" if skipped => {}
            "passed" if known => problems.push(format!(
                "passes now, remove it from the known failures: {name}"
            )),
            "passed" if !skipped => {}
            _ if known && !skipped => {}
            _ => problems.push(format!(
                "{state}: {name}: {}",
                failure
                    .lines()
                    .take(MESSAGE_LINES)
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
        }
    }
    for (name, _) in SKIPPED.iter().chain(known_failures) {
        if !outcomes.contains_key(*name) {
            problems.push(format!("the suite has no spec {name:?}"));
        }
    }
    problems
}

fn summary(outcomes: &Outcomes) -> String {
    let mut counts = BTreeMap::<&str, usize>::new();
    for (state, _) in outcomes.values() {
        *counts.entry(state).or_default() += 1;
    }
    counts
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Waits until the API server's service proxy reaches the controller, as kubeseal does.
async fn wait_for_service(cluster: &TestCluster) -> anyhow::Result<()> {
    let client = cluster.client();
    let url = format!(
        "/api/v1/namespaces/{CONTROLLER_NAMESPACE}/services/http:sealed-secrets-controller:http/proxy/v1/cert.pem"
    );
    wait_for(
        "the controller through the service proxy",
        Duration::from_secs(60),
        None,
        || {
            let client = client.clone();
            let request = http::Request::get(url.clone()).body(Vec::new());
            async move { Ok(client.request_text(request?).await?.contains("CERTIFICATE")) }
        },
    )
    .await
}

fn assert_outcomes(who: &str, outcomes: &Outcomes, known_failures: &[(&str, &str)]) {
    for (name, (state, failure)) in outcomes {
        let first_line = failure.lines().next().unwrap_or_default();
        eprintln!("{state:>8}  {name}  {first_line}");
    }
    eprintln!("{who}: {}", summary(outcomes));
    // The suite as pinned: if it changes, the lists above must be looked at again.
    assert_eq!(outcomes.len(), 41, "{who}: the suite has 41 specs");
    let problems = check(outcomes, known_failures);
    assert!(problems.is_empty(), "{who}:\n{}", problems.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sealsync_passes_the_upstream_suite() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let netns = NetNs::create()?;
    let _controller =
        SealsyncController::start_behind_service(&cluster, CONTROLLER_NAMESPACE, &netns, &[])
            .await?;
    wait_for_service(&cluster).await?;
    let bin = tempfile::tempdir()?;
    let kubeseal: PathBuf = bin.path().join("kubeseal");
    std::os::unix::fs::symlink(project_binary("sealsync"), &kubeseal)?;
    let outcomes = run_suite(&cluster, &kubeseal, &project_binary("sealsync-controller"))?;
    assert_outcomes("sealsync", &outcomes, KNOWN_FAILURES);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_controller_and_kubeseal_pass_the_upstream_suite() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let netns = NetNs::create()?;
    let _controller =
        UpstreamController::start_behind_service(&cluster, CONTROLLER_NAMESPACE, &netns).await?;
    wait_for_service(&cluster).await?;
    let outcomes = run_suite(
        &cluster,
        &binary(Component::SealedSecrets, "SEALSYNC_KUBESEAL"),
        &binary(Component::SealedSecrets, "SEALSYNC_UPSTREAM_CONTROLLER"),
    )?;
    assert_outcomes("upstream", &outcomes, &[]);
    Ok(())
}

#[test]
fn the_known_failures_can_only_shrink() {
    let outcome = |state: &str| (state.to_string(), "place: why".to_string());
    let known = [("c fails", "reason"), ("d is fixed", "reason")];
    let mut outcomes: Outcomes = SKIPPED
        .iter()
        .map(|(name, _)| (name.to_string(), outcome("skipped")))
        .collect();
    outcomes.insert("a passes".into(), outcome("passed"));
    outcomes.insert("b fails".into(), outcome("failed"));
    outcomes.insert("c fails".into(), outcome("failed"));
    outcomes.insert("d is fixed".into(), outcome("passed"));
    assert_eq!(
        check(&outcomes, &known),
        [
            "failed: b fails: place: why",
            "passes now, remove it from the known failures: d is fixed",
        ]
    );
    outcomes.insert(SKIPPED[0].0.into(), outcome("passed"));
    outcomes.remove("c fails");
    assert_eq!(
        check(&outcomes, &known),
        [
            "failed: b fails: place: why".to_string(),
            format!("passed: {}: place: why", SKIPPED[0].0),
            "passes now, remove it from the known failures: d is fixed".to_string(),
            "the suite has no spec \"c fails\"".to_string(),
        ]
    );
}
