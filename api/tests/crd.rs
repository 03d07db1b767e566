//! The committed CRD is the one the Rust types generate.

use kube::CustomResourceExt;
use sealsync_api::SealedSecret;

const COMMITTED: &str = "crds/sealedsecrets.bitnami.com.yaml";
const REGENERATE: &str =
    "cargo run -q -p sealsync-api --bin crdgen > api/crds/sealedsecrets.bitnami.com.yaml";

#[test]
fn committed_crd_matches_the_rust_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}; run `{REGENERATE}`", path.display()));
    let generated = serde_norway::to_string(&SealedSecret::crd()).expect("the CRD serializes");
    assert!(
        committed == generated,
        "api/{COMMITTED} is out of date with api/src/sealed_secret.rs: run `{REGENERATE}` \
         and commit the result"
    );
}
