//! The committed CRDs (the API crate's and the Helm chart's copy) are the one the Rust
//! types generate.

use kube::CustomResourceExt;
use sealsync_api::SealedSecret;

const REGENERATE: &str =
    "cargo run -q -p sealsync-api --bin crdgen > api/crds/sealedsecrets.bitnami.com.yaml";

fn assert_committed(path_from_repo: &str, fix: &str) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("api/ sits in the repository");
    let path = repo.join(path_from_repo);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {fix}", path.display()));
    let generated = serde_norway::to_string(&SealedSecret::crd()).expect("the CRD serializes");
    assert!(
        committed == generated,
        "{path_from_repo} is out of date with api/src/sealed_secret.rs: {fix}, and commit the \
         result"
    );
}

#[test]
fn committed_crd_matches_the_rust_types() {
    assert_committed(
        "api/crds/sealedsecrets.bitnami.com.yaml",
        &format!("run `{REGENERATE}`"),
    );
}

#[test]
fn chart_crd_matches_the_rust_types() {
    assert_committed(
        "charts/sealsync/crds/sealedsecrets.bitnami.com.yaml",
        &format!(
            "run `{REGENERATE}` then `cp api/crds/sealedsecrets.bitnami.com.yaml \
             charts/sealsync/crds/`"
        ),
    );
}
