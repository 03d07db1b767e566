//! Arbitrary bytes as a sealed value, opened with the fixed fuzz-only key under an arbitrary
//! OAEP label. Input: `label length (1 byte) | label | sealed value`.
//!
//! Must never panic. Checks that `open_value` and `Keyring::open` agree, that exactly the
//! structurally broken inputs are `Malformed`, and that anything that opens has the layout
//! of a value sealed to the key (only the committed seeds, or mutations that keep the
//! RSA part and the AES-GCM body intact, can open).

#![no_main]

use std::mem::discriminant;

use libfuzzer_sys::fuzz_target;
use sealsync_crypto::{CryptoError, open_value};
use sealsync_fuzz::{fuzz_key, fuzz_keyring, split_label};

const GCM_TAG_LEN: usize = 16;

fuzz_target!(|data: &[u8]| {
    let (label, sealed) = split_label(data);
    let key = fuzz_key();
    let direct = open_value(key, label, sealed);
    let via_ring = fuzz_keyring().open(label, sealed);

    match (&direct, &via_ring) {
        (Ok(plaintext), Ok(opened)) => {
            assert_eq!(plaintext.expose(), opened.plaintext.expose());
            assert_eq!(opened.key, key.fingerprint());
            let rsa_len = key.public_key().size_bytes();
            assert_eq!(sealed[..2], u16::try_from(rsa_len).unwrap().to_be_bytes());
            assert_eq!(sealed.len(), 2 + rsa_len + plaintext.len() + GCM_TAG_LEN);
        }
        (Err(a), Err(b)) => {
            assert_eq!(discriminant(a), discriminant(b), "{a} vs {b}");
            // Display never panics and never echoes the input's bytes.
            let _ = a.to_string();
        }
        (a, b) => panic!(
            "open_value and Keyring::open disagree: {:?} vs {:?}",
            a.as_ref().map(|_| "Ok"),
            b.as_ref().map(|_| "Ok")
        ),
    }

    let well_framed = sealed
        .split_first_chunk::<2>()
        .is_some_and(|(header, rest)| {
            let rsa_len = usize::from(u16::from_be_bytes(*header));
            rest.len() >= rsa_len + GCM_TAG_LEN
        });
    if !well_framed {
        assert!(
            matches!(direct, Err(CryptoError::Malformed(_))),
            "a badly framed value was not reported Malformed"
        );
    }
});
