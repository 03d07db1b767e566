//! Prints the SealedSecret CustomResourceDefinition as YAML, generated from the Rust types:
//! `cargo run -q -p sealsync-api --bin crdgen > api/crds/sealedsecrets.bitnami.com.yaml`

use kube::CustomResourceExt;
use sealsync_api::SealedSecret;

fn main() {
    let yaml = serde_norway::to_string(&SealedSecret::crd()).expect("the CRD serializes");
    print!("{yaml}");
}
