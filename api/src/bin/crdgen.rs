//! Prints a CustomResourceDefinition of sealsync's API as YAML, generated from the Rust types:
//! `cargo run -q -p sealsync-api --bin crdgen [NAME] > api/crds/NAME.yaml`, NAME being the
//! CRD's name (default `sealedsecrets.bitnami.com`); `--all` rewrites every file of
//! `api/crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

fn name(crd: &CustomResourceDefinition) -> &str {
    crd.metadata.name.as_deref().unwrap_or_default()
}

fn yaml(crd: &CustomResourceDefinition) -> String {
    serde_norway::to_string(crd).expect("the CRD serializes")
}

fn main() {
    let crds = sealsync_api::crds();
    match std::env::args().nth(1).as_deref() {
        Some("--all") => {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds");
            for crd in &crds {
                let path = dir.join(format!("{}.yaml", name(crd)));
                std::fs::write(&path, yaml(crd))
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            }
        }
        wanted => {
            let wanted = wanted.unwrap_or("sealedsecrets.bitnami.com");
            let Some(crd) = crds.iter().find(|crd| name(crd) == wanted) else {
                let known: Vec<&str> = crds.iter().map(name).collect();
                eprintln!("crdgen: no CRD {wanted}; known: {}", known.join(", "));
                std::process::exit(2)
            };
            print!("{}", yaml(crd));
        }
    }
}
