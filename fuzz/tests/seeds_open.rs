//! The committed seeds still do what they are for: the sealed ones open with the fuzz-only
//! key, so the fuzzers start from inputs that reach the AES-GCM and unsealing paths.
//! `cargo test --manifest-path fuzz/Cargo.toml` (a plain build, no sanitizer).

use std::path::Path;

use sealsync_api::{SealedSecret, parse_documents, read_private_keys, unseal};
use sealsync_crypto::open_value;
use sealsync_fuzz::{fuzz_key, fuzz_keyring, split_label};

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
        .join(name);
    std::fs::read(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run the gen_seeds example)", path.display()))
}

#[test]
fn sealed_value_seeds_open_or_fail_as_intended() {
    for (name, opens) in [
        ("seed-strict", true),
        ("seed-namespace-wide", true),
        ("seed-cluster-wide-empty", true),
        ("seed-wrong-label", false),
        ("seed-truncated", false),
    ] {
        let data = seed("open_sealed_value", name);
        let (label, sealed) = split_label(&data);
        assert_eq!(
            open_value(fuzz_key(), label, sealed).is_ok(),
            opens,
            "{name}"
        );
    }
}

#[test]
fn sealed_secret_seeds_unseal() {
    for name in [
        "seed-sealedsecret.json",
        "seed-sealedsecret.yaml",
        "seed-sealedsecrets-stream.yaml",
        "seed-list.yaml",
        "seed-legacy-data.json",
    ] {
        let text = String::from_utf8(seed("parse_manifests", name)).unwrap();
        let sealed = parse_documents::<SealedSecret>(&text, name, "SealedSecret").unwrap();
        for s in &sealed {
            let unsealed = unseal(s, fuzz_keyring()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!unsealed.secret.data.is_empty(), "{name}");
        }
    }
}

#[test]
fn key_seeds_read() {
    for name in ["seed-key.pem", "seed-key-secret.yaml"] {
        let text = String::from_utf8(seed("parse_manifests", name)).unwrap();
        let keys = read_private_keys(&text, name).unwrap();
        assert_eq!(keys[0].fingerprint(), fuzz_key().fingerprint(), "{name}");
    }
}
