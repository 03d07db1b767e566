//! The committed CRDs (the API crate's and the Helm chart's copy) are the ones the Rust
//! types generate.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

const REGENERATE: &str = "cargo run -q -p sealsync-api --bin crdgen -- --all";

fn assert_committed(path_from_repo: &str, crd: &CustomResourceDefinition, fix: &str) {
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("api/ sits in the repository");
    let path = repo.join(path_from_repo);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; {fix}", path.display()));
    let generated = serde_norway::to_string(crd).expect("the CRD serializes");
    assert!(
        committed == generated,
        "{path_from_repo} is out of date with the types in api/src: {fix}, and commit the result"
    );
}

#[test]
fn committed_crds_match_the_rust_types() {
    let crds = sealsync_api::crds();
    assert_eq!(
        crds.len(),
        5,
        "SealedSecret and the four external-secrets.io kinds"
    );
    for crd in &crds {
        let name = crd.metadata.name.as_deref().expect("CRDs have names");
        assert_committed(
            &format!("api/crds/{name}.yaml"),
            crd,
            &format!("run `{REGENERATE}`"),
        );
    }
}

#[test]
fn chart_crds_match_the_rust_types() {
    for crd in &sealsync_api::crds() {
        let name = crd.metadata.name.as_deref().expect("CRDs have names");
        assert_committed(
            &format!("charts/sealsync/crds/{name}.yaml"),
            crd,
            &format!("run `{REGENERATE}` then `cp api/crds/{name}.yaml charts/sealsync/crds/`"),
        );
    }
}
