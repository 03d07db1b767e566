//! Writes the committed seed corpus (`corpus/<target>/seed-*`) from the product code:
//! values and SealedSecrets sealed to the fuzz-only key, so the targets start from inputs
//! that open. Run from anywhere with
//!
//!     cargo run --manifest-path fuzz/Cargo.toml --example gen_seeds
//!
//! Sealing is randomised, so every run writes different (equally valid) bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealsync_api::{
    Format, ObjectMeta, SealOptions, SealedSecret, SecretManifest, parse_documents, seal_secret,
    to_document,
};
use sealsync_crypto::{Scope, SecretBytes, seal_value};
use sealsync_fuzz::{FUZZ_ONLY_KEY_PEM, frame_label, fuzz_key};

/// A sample Secret with made-up values: `data`, `stringData`, labels, annotations and the
/// kubectl annotation that sealing strips.
const SAMPLE_SECRET: &str = "\
apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
  namespace: prod
  labels:
    app: db
  annotations:
    team: storage
    kubectl.kubernetes.io/last-applied-configuration: '{\"kind\":\"Secret\"}'
type: kubernetes.io/basic-auth
data:
  password: ZnV6ei1zZWVkLW5vdC1hLXNlY3JldA==
  empty: ''
stringData:
  username: fuzz-seed-user
  config.json: '{\"retries\": 3}'
";

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("wrote {} ({} bytes)", path.display(), bytes.len());
}

fn corpus_dir(target: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    dir
}

fn open_sealed_value_seeds() {
    let dir = corpus_dir("open_sealed_value");
    let public = fuzz_key().public_key();
    let seal = |label: &[u8], value: &[u8]| seal_value(public, label, value).expect("seals");

    let strict = Scope::Strict.label("prod", "db-password");
    let namespace_wide = Scope::NamespaceWide.label("prod", "db-password");
    let cluster_wide = Scope::ClusterWide.label("prod", "db-password");
    write(
        &dir,
        "seed-strict",
        &frame_label(&strict, &seal(&strict, b"fuzz-seed-value")),
    );
    let long_value: Vec<u8> = (0..=255u8).collect();
    write(
        &dir,
        "seed-namespace-wide",
        &frame_label(&namespace_wide, &seal(&namespace_wide, &long_value)),
    );
    write(
        &dir,
        "seed-cluster-wide-empty",
        &frame_label(&cluster_wide, &seal(&cluster_wide, b"")),
    );
    // Opens under another label only: the NoKeyOpened path.
    write(
        &dir,
        "seed-wrong-label",
        &frame_label(b"prod/other", &seal(&strict, b"v")),
    );
    // Cut inside the RSA part: the Malformed path.
    write(
        &dir,
        "seed-truncated",
        &frame_label(&strict, &seal(&strict, b"v")[..100]),
    );
}

fn parse_manifests_seeds() {
    let dir = corpus_dir("parse_manifests");
    let public = fuzz_key().public_key();
    write(&dir, "seed-secret.yaml", SAMPLE_SECRET.as_bytes());

    let secret = parse_documents::<SecretManifest>(SAMPLE_SECRET, "sample", "Secret")
        .expect("the sample Secret parses")
        .remove(0);
    let seal = |scope| {
        let options = SealOptions {
            scope: Some(scope),
            ..SealOptions::default()
        };
        seal_secret(&secret, public, &options).expect("the sample Secret seals")
    };
    let strict = seal(Scope::Strict);
    let namespace_wide = seal(Scope::NamespaceWide);
    let cluster_wide = seal(Scope::ClusterWide);
    let doc = |objects: &[SealedSecret], format| to_document(objects, format).expect("writes");

    write(
        &dir,
        "seed-sealedsecret.json",
        doc(std::slice::from_ref(&strict), Format::Json).as_bytes(),
    );
    write(
        &dir,
        "seed-sealedsecret.yaml",
        doc(std::slice::from_ref(&namespace_wide), Format::Yaml).as_bytes(),
    );
    write(
        &dir,
        "seed-sealedsecrets-stream.yaml",
        doc(&[strict.clone(), cluster_wide.clone()], Format::Yaml).as_bytes(),
    );

    let list = serde_json::json!({
        "apiVersion": "v1",
        "kind": "List",
        "items": [serde_json::to_value(&cluster_wide).expect("serializes")],
    });
    write(
        &dir,
        "seed-list.yaml",
        to_document(&[list], Format::Yaml)
            .expect("writes")
            .as_bytes(),
    );

    // The deprecated form: the whole Secret, as JSON, sealed as one value in spec.data.
    let mut legacy = strict.clone();
    legacy.spec.encrypted_data.clear();
    let whole = SecretManifest::new(
        ObjectMeta::default(),
        BTreeMap::from([(
            "password".to_string(),
            SecretBytes::from(&b"fuzz-seed-legacy"[..]),
        )]),
    );
    let whole_json = serde_json::to_vec(&whole).expect("serializes");
    legacy.spec.data =
        Some(STANDARD.encode(seal_value(public, &legacy.label(), &whole_json).expect("seals")));
    write(
        &dir,
        "seed-legacy-data.json",
        doc(&[legacy], Format::Json).as_bytes(),
    );

    // Private-key files: the fuzz-only key as PEM and as upstream's key Secret.
    write(&dir, "seed-key.pem", FUZZ_ONLY_KEY_PEM.as_bytes());
    let key_secret = SecretManifest {
        type_: Some("kubernetes.io/tls".into()),
        ..SecretManifest::new(
            ObjectMeta {
                name: Some("sealed-secrets-key-fuzz".into()),
                namespace: Some("kube-system".into()),
                labels: Some(BTreeMap::from([(
                    sealsync_api::KEY_LABEL.to_string(),
                    sealsync_api::KEY_LABEL_ACTIVE.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            BTreeMap::from([(
                "tls.key".to_string(),
                SecretBytes::from(FUZZ_ONLY_KEY_PEM.as_bytes()),
            )]),
        )
    };
    write(
        &dir,
        "seed-key-secret.yaml",
        to_document(&[key_secret], Format::Yaml)
            .expect("writes")
            .as_bytes(),
    );
}

/// Templates that use each kind of action and the sprig functions, behind the options byte
/// (bit 0: missing keys are errors, bit 1: `<%`/`%>` delimiters).
fn render_template_seeds() {
    let dir = corpus_dir("render_template");
    for (name, options, text) in [
        (
            "seed-config",
            0,
            "db:\n  user: {{ .user | quote }}\n  pass: {{ .password | b64enc }}\n\
             {{- if hasPrefix \"s3\" .user }}\n  role: {{ .role | default \"owner\" }}{{ end }}\n",
        ),
        (
            "seed-range",
            0,
            "{{ range $k, $v := . }}{{ $k }}={{ $v | upper }};{{ else }}none{{ end }}\
             {{ range $i, $k := keys . | sortAlpha }}{{ $i }}{{ end }}",
        ),
        (
            "seed-printf-with",
            0,
            "{{ with .n }}{{ printf \"%05d|%-4s|%.2f\" 42 . 1.5 }}{{ end }}\
             {{ len .user | lt 3 }} {{ and .empty .n }} {{ or .empty .n }}",
        ),
        ("seed-missing-key", 1, "{{ .user }}{{ .nope }}"),
        ("seed-delimiters", 2, "{{ .user }} <%- .n | toJson -%> <%/* c */%>"),
        (
            "seed-nested",
            0,
            "{{ range $a := keys $ }}{{ range $b := keys $ }}{{ $a }}{{ $b }}{{ end }}{{ end }}",
        ),
    ] {
        let mut bytes = vec![options];
        bytes.extend_from_slice(text.as_bytes());
        write(&dir, name, &bytes);
    }
}

fn main() {
    open_sealed_value_seeds();
    parse_manifests_seeds();
    render_template_seeds();
}
