//! The RSA work of unsealing untrusted SealedSecrets is bounded: counted with the crypto
//! layer's process-wide counter, hence one test in its own binary.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sealsync_api::{
    ApiError, MAX_SEALED_VALUES, SealOptions, SealedSecret, SealedSecretSpec, SecretManifest,
    parse_documents, seal_secret, unseal,
};
use sealsync_crypto::{Keyring, MIN_KEY_BITS, PrivateKey, Scope, rsa_decryptions, seal_value};

const KEYS: usize = 12;

/// A value of the right form for a 2048-bit key that no key opens.
fn garbage(seed: usize) -> String {
    let mut bytes = 256u16.to_be_bytes().to_vec();
    bytes.extend((0..256 + 32).map(|i| ((seed * 31 + i * 7) % 251) as u8));
    STANDARD.encode(bytes)
}

fn sealed_secret(values: BTreeMap<String, String>) -> SealedSecret {
    let mut sealed = SealedSecret::new(
        "db",
        SealedSecretSpec {
            encrypted_data: values,
            ..SealedSecretSpec::default()
        },
    );
    sealed.metadata.namespace = Some("prod".into());
    sealed
}

/// RSA decryptions and the error of unsealing `sealed`.
fn unseal_cost(sealed: &SealedSecret, keyring: &Keyring) -> (u64, String) {
    let before = rsa_decryptions();
    let error = unseal(sealed, keyring).unwrap_err().to_string();
    (rsa_decryptions() - before, error)
}

#[test]
fn hostile_sealed_secrets_cost_a_few_dozen_rsa_decryptions_at_most() {
    let keys: Vec<_> = (0..KEYS)
        .map(|_| PrivateKey::generate(MIN_KEY_BITS).unwrap())
        .collect();
    let newest = keys[0].public_key().clone();
    let oldest = keys[KEYS - 1].public_key().clone();
    let keyring = Keyring::new(keys);
    let threads = rayon::current_num_threads() as u64;
    let keys = KEYS as u64;

    // As many garbage values as accepted: the first one fails, its scope is explained
    // (every key under the two other labels), nothing more.
    let all_garbage: BTreeMap<_, _> = (0..MAX_SEALED_VALUES)
        .map(|i| (format!("k{i:04}"), garbage(i)))
        .collect();
    let (cost, error) = unseal_cost(&sealed_secret(all_garbage.clone()), &keyring);
    assert_eq!(cost, 3 * keys, "{error}");
    assert!(
        error.contains("key \"k0000\" of SealedSecret prod/db"),
        "{error}"
    );
    let (_, again) = unseal_cost(&sealed_secret(all_garbage.clone()), &keyring);
    assert_eq!(again, error, "the same input gets the same message");

    // One good value first: the next round of one value per thread fails, then stops.
    let mut good_first = all_garbage.clone();
    good_first.pop_last();
    let label = Scope::Strict.label("prod", "db");
    let good = STANDARD.encode(seal_value(&newest, &label, b"v").unwrap());
    good_first.insert("a".into(), good.clone());
    let (cost, error) = unseal_cost(&sealed_secret(good_first), &keyring);
    assert!(cost <= 1 + threads * keys + 2 * keys, "{cost} decryptions");
    assert!(error.contains("key \"k0000\""), "{error}");

    // Good values, then one that fails late in key order: the same key is always named.
    let mut late = BTreeMap::from([("z".to_string(), garbage(0))]);
    for i in 0..20 {
        late.insert(format!("a{i:02}"), good.clone());
    }
    for _ in 0..3 {
        let (_, error) = unseal_cost(&sealed_secret(late.clone()), &keyring);
        assert!(error.contains("key \"z\""), "{error}");
    }

    // Values that are not even well-formed cost nothing, wherever they are.
    for (bad, reason) in [
        ("%%%".to_string(), "not valid base64"),
        (STANDARD.encode([1u8]), "2-byte length header"),
        (STANDARD.encode([1u8, 0, 9, 9]), "cut short"),
        (
            STANDARD.encode([vec![2u8, 0], vec![9; 512 + 16]].concat()),
            "not as long as the modulus of any key",
        ),
    ] {
        let mut values = all_garbage.clone();
        values.insert("k2000".into(), bad);
        let (cost, error) = unseal_cost(&sealed_secret(values), &keyring);
        assert_eq!(cost, 0, "{error}");
        assert!(error.contains("key \"k2000\""), "{error}");
        assert!(error.contains(reason), "{error}");
    }

    // Over the cap: refused by its count alone.
    let mut too_many = all_garbage;
    too_many.insert("overflow".into(), garbage(0));
    let (cost, error) = unseal_cost(&sealed_secret(too_many), &keyring);
    assert_eq!(cost, 0);
    assert_eq!(
        error,
        format!(
            "SealedSecret prod/db has {} values, more than the {MAX_SEALED_VALUES} a \
             SealedSecret may hold: split it into several",
            MAX_SEALED_VALUES + 1
        )
    );

    // A dropped scope annotation: explained once, for the first value only.
    let yaml = (0..200).fold(
        "kind: Secret\nmetadata: {name: db, namespace: prod}\nstringData:\n".to_string(),
        |yaml, i| yaml + &format!("  k{i:03}: v\n"),
    );
    let secret = parse_documents::<SecretManifest>(&yaml, "t.yaml", "Secret")
        .unwrap()
        .remove(0);
    let options = SealOptions {
        scope: Some(Scope::NamespaceWide),
        ..SealOptions::default()
    };
    let mut rescoped = seal_secret(&secret, &newest, &options).unwrap();
    rescoped.metadata.annotations = None;
    let before = rsa_decryptions();
    let error = unseal(&rescoped, &keyring).unwrap_err();
    assert!(matches!(error, ApiError::Unseal { ref key, .. } if key == "k000"));
    assert!(
        error
            .to_string()
            .contains("sealed with namespace-wide scope")
    );
    assert!(rsa_decryptions() - before <= 3 * keys);

    // Values that open, all sealed to the oldest key: the first tries every key, the others
    // the key that opened it first (not every key each).
    let values = 40;
    let sealed_to_oldest = (0..values)
        .map(|i| {
            let value = seal_value(&oldest, &label, b"v").unwrap();
            (format!("v{i:02}"), STANDARD.encode(value))
        })
        .collect();
    let before = rsa_decryptions();
    let unsealed = unseal(&sealed_secret(sealed_to_oldest), &keyring).unwrap();
    assert_eq!(unsealed.secret.data.len() as u64, values);
    assert_eq!(rsa_decryptions() - before, keys + values - 1);
}
