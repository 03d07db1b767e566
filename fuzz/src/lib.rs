//! Fixtures shared by the fuzz targets and the seed generator: the fixed fuzz-only key and
//! the input framing of `open_sealed_value`.

use std::sync::OnceLock;

use sealsync_crypto::{Keyring, PrivateKey};

/// A throw-away 2048-bit key, committed so that runs and reproductions are deterministic
/// (see `testdata/README.md`). Never use it outside `fuzz/`.
pub const FUZZ_ONLY_KEY_PEM: &str = include_str!("../testdata/fuzz-only-key.pem");

/// The fixed key, parsed once per process.
pub fn fuzz_key() -> &'static PrivateKey {
    static KEY: OnceLock<PrivateKey> = OnceLock::new();
    KEY.get_or_init(|| PrivateKey::from_pem(FUZZ_ONLY_KEY_PEM).expect("the fuzz-only key parses"))
}

/// A keyring holding only the fixed key (its own copy: `Keyring` owns its keys).
pub fn fuzz_keyring() -> &'static Keyring {
    static RING: OnceLock<Keyring> = OnceLock::new();
    RING.get_or_init(|| {
        Keyring::new(vec![
            PrivateKey::from_pem(FUZZ_ONLY_KEY_PEM).expect("the fuzz-only key parses"),
        ])
    })
}

/// Once per process: keep rayon (used by `unseal`) on one worker thread, so a fuzzing run
/// takes one core and its stack traces stay short.
pub fn init() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        // Fails only if a pool already exists, which is as good.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build_global();
    });
}

/// Splits an `open_sealed_value` input into `(label, sealed value)`: the first byte is the
/// label's length (cut to what is there), then the label, then the sealed value.
pub fn split_label(data: &[u8]) -> (&[u8], &[u8]) {
    match data.split_first() {
        None => (&[], &[]),
        Some((&len, rest)) => rest.split_at(usize::from(len).min(rest.len())),
    }
}

/// The inverse of [`split_label`], for making seeds.
pub fn frame_label(label: &[u8], sealed: &[u8]) -> Vec<u8> {
    let len = u8::try_from(label.len()).expect("seed labels are shorter than 256 bytes");
    let mut framed = Vec::with_capacity(1 + label.len() + sealed.len());
    framed.push(len);
    framed.extend_from_slice(label);
    framed.extend_from_slice(sealed);
    framed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trips() {
        let framed = frame_label(b"prod/db", b"\x01\x00rest");
        assert_eq!(
            split_label(&framed),
            (&b"prod/db"[..], &b"\x01\x00rest"[..])
        );
        assert_eq!(split_label(&[]), (&[][..], &[][..]));
        assert_eq!(split_label(&[9, b'a']), (&b"a"[..], &[][..]));
    }
}
