//! Sealing and opening one value with RSA-4096 keys, and the private-key OAEP decryption
//! of aws-lc-rs (what `sealsync` uses) next to the pure-Rust `rsa` crate's, measured on
//! the same ciphertext in the same run.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/bench-target cargo bench -p sealsync-crypto --bench sealing
//! python3 crypto/benches/summarize.py /work/bench-target/criterion   # medians and ranges
//! ```
//!
//! Keys are generated once, when the first group needs them, and never written to disk.

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, criterion_group, criterion_main};
use rsa::Oaep;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::EncodePrivateKey;
use rsa::sha2::Sha256;
use sealsync_crypto::{Keyring, PrivateKey, Scope, open_value, seal_value};

const KEY_BITS: usize = 4096;
/// The largest keyring benchmarked; the pool holds this many keys, newest first.
const MAX_RING: usize = 10;
const RING_SIZES: [usize; 3] = [1, 3, 10];
/// A typical Secret value: a 32-character password.
const VALUE: &[u8] = b"correct-horse-battery-staple-0042";

fn label() -> Vec<u8> {
    Scope::Strict.label("prod", "db-password")
}

/// PKCS#1 PEMs of `MAX_RING` fresh RSA-4096 keys, newest first, generated once.
fn key_pems() -> &'static [String] {
    static PEMS: OnceLock<Vec<String>> = OnceLock::new();
    PEMS.get_or_init(|| {
        let started = Instant::now();
        let pems = (0..MAX_RING)
            .map(|_| {
                let key = PrivateKey::generate(KEY_BITS).expect("RSA-4096 key generation");
                key.to_pkcs1_pem().to_string()
            })
            .collect();
        eprintln!(
            "generated {MAX_RING} RSA-{KEY_BITS} keys in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        pems
    })
}

fn key(index: usize) -> PrivateKey {
    PrivateKey::from_pem(&key_pems()[index]).expect("a generated key parses")
}

/// Small samples and short runs: RSA-4096 private-key operations take milliseconds and
/// the whole bench must finish in a few minutes on a 2-core machine. `seconds` is enough
/// for 20 samples (210 iterations) of the slowest benchmark of the group on a quiet machine;
/// criterion stretches it when the machine is busy.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, seconds: u64) {
    group
        .sample_size(20)
        .nresamples(20_000)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(seconds));
}

fn bench_seal_value(c: &mut Criterion) {
    let key = key(0);
    let label = label();
    let mut group = c.benchmark_group("seal_value");
    configure(&mut group, 2);
    group.bench_function("rsa4096_32B", |b| {
        b.iter(|| seal_value(key.public_key(), black_box(&label), black_box(VALUE)).unwrap())
    });
    group.finish();
}

/// One value opened by sealsync (aws-lc-rs OAEP + AES-GCM), and the RSA part alone
/// decrypted by aws-lc-rs directly and by the `rsa` crate, all on the same ciphertext.
fn bench_open_value(c: &mut Criterion) {
    let key = key(0);
    let label = label();
    let sealed = seal_value(key.public_key(), &label, VALUE).unwrap();
    let rsa_len = usize::from(u16::from_be_bytes([sealed[0], sealed[1]]));
    let rsa_part = sealed[2..2 + rsa_len].to_vec();

    let rsa_key = rsa::PrivateKey::from_pkcs1_pem(&key_pems()[0]).unwrap();
    let pkcs8 = rsa_key.to_pkcs8_der().unwrap();
    let aws_key =
        OaepPrivateDecryptingKey::new(PrivateDecryptingKey::from_pkcs8(pkcs8.as_bytes()).unwrap())
            .unwrap();

    // The three paths agree before anything is timed.
    let session_key = rsa_key
        .decrypt(Oaep::<Sha256>::new_with_label(label.clone()), &rsa_part)
        .unwrap();
    assert_eq!(session_key.len(), 32);
    let mut out = vec![0u8; aws_key.min_output_size()];
    let by_aws = aws_key
        .decrypt(&OAEP_SHA256_MGF1SHA256, &rsa_part, &mut out, Some(&label))
        .unwrap();
    assert_eq!(by_aws, &session_key[..]);
    assert_eq!(open_value(&key, &label, &sealed).unwrap().expose(), VALUE);

    let mut group = c.benchmark_group("open_value");
    configure(&mut group, 5);
    group.bench_function("sealsync_open_value", |b| {
        b.iter(|| open_value(&key, black_box(&label), black_box(&sealed)).unwrap())
    });
    group.bench_function("aws_lc_rs_oaep_decrypt", |b| {
        let mut out = vec![0u8; aws_key.min_output_size()];
        b.iter(|| {
            aws_key
                .decrypt(
                    &OAEP_SHA256_MGF1SHA256,
                    black_box(&rsa_part),
                    &mut out,
                    Some(black_box(&label)),
                )
                .unwrap()
                .len()
        })
    });
    group.bench_function("rsa_crate_oaep_decrypt", |b| {
        b.iter(|| {
            rsa_key
                .decrypt(
                    Oaep::<Sha256>::new_with_label(black_box(label.clone())),
                    black_box(&rsa_part),
                )
                .unwrap()
        })
    });
    group.finish();
}

/// `Keyring::open` with 1, 3 and 10 keys, the value sealed to the newest key (tried first)
/// or to the oldest (every key is tried).
fn bench_keyring_open(c: &mut Criterion) {
    let label = label();
    let mut group = c.benchmark_group("keyring_open");
    configure(&mut group, 6);
    for size in RING_SIZES {
        let ring = Keyring::new((0..size).map(key).collect());
        let newest = ring.newest().unwrap();
        let oldest = &ring.keys()[size - 1];
        for (which, sealed_to) in [("newest", newest), ("oldest", oldest)] {
            let sealed = seal_value(sealed_to.public_key(), &label, VALUE).unwrap();
            let opened = ring.open(&label, &sealed).unwrap();
            assert_eq!(opened.key, sealed_to.fingerprint());
            group.bench_with_input(BenchmarkId::new(which, size), &sealed, |b, sealed| {
                b.iter(|| ring.open(black_box(&label), black_box(sealed)).unwrap())
            });
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    bench_seal_value,
    bench_open_value,
    bench_keyring_open
);
criterion_main!(benches);
