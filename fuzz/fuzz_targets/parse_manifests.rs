//! Arbitrary text (bytes decoded as lossy UTF-8) fed to the manifest readers: Secrets,
//! SealedSecrets (YAML or JSON streams, `v1.List`) and private-key files (PEM or key
//! Secrets). Every SealedSecret that parses is unsealed with a keyring of the fixed
//! fuzz-only key, which drives the base64 and ciphertext paths through whole objects.
//!
//! Must never panic. Beyond that it checks that what `to_document` writes reads back, in
//! both formats: the parts that carry secrets or decide the OAEP label exactly, the rest
//! after one normalising round trip; and that an unsealed SealedSecret accounts for each
//! of its values.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sealsync_api::{
    Format, SealedSecret, SecretManifest, parse_documents, read_private_keys, to_document, unseal,
};
use sealsync_fuzz::{fuzz_keyring, init};
use serde::Serialize;
use serde::de::DeserializeOwned;

const SOURCE: &str = "fuzz-input";

/// Writes `objects` in `format` and reads them back; panics if they do not read back.
fn round_trip<T: Serialize + DeserializeOwned>(
    objects: &[T],
    format: Format,
    kind: &'static str,
) -> Vec<T> {
    let written = to_document(objects, format)
        .unwrap_or_else(|e| panic!("parsed {kind}s do not serialize as {format:?}: {e}"));
    let again = parse_documents::<T>(&written, SOURCE, kind)
        .unwrap_or_else(|e| panic!("{kind}s written as {format:?} do not read back: {e}"));
    assert_eq!(
        again.len(),
        objects.len(),
        "{format:?} round trip changed the count of {kind}s"
    );
    again
}

fn json<T: Serialize>(objects: &[T]) -> serde_json::Value {
    serde_json::to_value(objects).expect("parsed objects serialize to JSON")
}

fn check_secrets(secrets: &[SecretManifest]) {
    for format in [Format::Json, Format::Yaml] {
        let once = round_trip(secrets, format, "Secret");
        for (a, b) in secrets.iter().zip(&once) {
            // `stringData` is write-only by design: only `data` is written.
            assert_eq!(a.data, b.data, "{format:?} round trip changed data");
            assert_eq!(a.metadata.name, b.metadata.name);
            assert_eq!(a.metadata.namespace, b.metadata.namespace);
            assert_eq!(a.metadata.annotations, b.metadata.annotations);
        }
        let twice = round_trip(&once, format, "Secret");
        assert_eq!(
            json(&once),
            json(&twice),
            "{format:?} round trip is not stable"
        );
    }
}

fn check_sealed_secrets(sealed_secrets: &[SealedSecret]) {
    for format in [Format::Json, Format::Yaml] {
        let once = round_trip(sealed_secrets, format, "SealedSecret");
        for (a, b) in sealed_secrets.iter().zip(&once) {
            assert_eq!(
                a.spec.encrypted_data, b.spec.encrypted_data,
                "{format:?} changed encryptedData"
            );
            assert_eq!(a.spec.data, b.spec.data, "{format:?} changed spec.data");
            assert_eq!(a.label(), b.label(), "{format:?} changed the OAEP label");
            assert_eq!(a.metadata.annotations, b.metadata.annotations);
            // Template timestamps lose sub-second digits (k8s-openapi writes whole
            // seconds); what becomes the Secret's values, type and identity must not change.
            let (ta, tb) = (
                a.spec.template.clone().unwrap_or_default(),
                b.spec.template.clone().unwrap_or_default(),
            );
            assert_eq!(
                (&ta.data, &ta.type_, ta.immutable),
                (&tb.data, &tb.type_, tb.immutable)
            );
            let (ma, mb) = (
                ta.metadata.unwrap_or_default(),
                tb.metadata.unwrap_or_default(),
            );
            assert_eq!((&ma.name, &ma.namespace), (&mb.name, &mb.namespace));
            assert_eq!((&ma.labels, &ma.annotations), (&mb.labels, &mb.annotations));
        }
        let twice = round_trip(&once, format, "SealedSecret");
        assert_eq!(
            json(&once),
            json(&twice),
            "{format:?} round trip is not stable"
        );
    }
    for sealed in sealed_secrets {
        match unseal(sealed, fuzz_keyring()) {
            Ok(unsealed) => {
                assert!(
                    unsealed
                        .opened_by
                        .keys()
                        .eq(sealed.spec.encrypted_data.keys())
                );
                for key in sealed.spec.encrypted_data.keys() {
                    assert!(unsealed.secret.data.contains_key(key), "value {key:?} lost");
                }
                check_secrets(std::slice::from_ref(&unsealed.secret));
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    init();
    let text = String::from_utf8_lossy(data);

    if let Ok(secrets) = parse_documents::<SecretManifest>(&text, SOURCE, "Secret") {
        check_secrets(&secrets);
    }
    if let Ok(sealed_secrets) = parse_documents::<SealedSecret>(&text, SOURCE, "SealedSecret") {
        check_sealed_secrets(&sealed_secrets);
    }
    if let Err(e) = read_private_keys(&text, SOURCE) {
        let _ = e.to_string();
    }
});
