//! sealsync-controller on the real API server facing hostile input: the largest body of
//! garbage `/v1/verify` accepts costs a few dozen RSA decryptions with 12 keys, bodies and
//! SealedSecrets over the caps are refused by their size, and malformed bodies are refused
//! without their values in the answer.

use std::net::SocketAddrV4;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use sealsync_api::{
    MAX_SEALED_VALUES, SealOptions, SealedSecret, SealedSecretSpec, SecretManifest, key_secret,
    parse_documents, seal_secret,
};
use sealsync_crypto::{CertificateParams, PrivateKey, SealingCertificate};
use sealsync_testkit::{SealsyncController, TestCluster, http_post, wait_for};

const KEYS: usize = 12;
const RSA_DECRYPTIONS: &str = "sealsync_rsa_decryptions_total";

/// Status code and body of a plain HTTP/1.0 POST, retried while rate limited (429).
async fn post(addr: SocketAddrV4, path: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    loop {
        let answer = http_post(addr, path, body, Duration::from_secs(60))?;
        if answer.0 != 429 {
            return Ok(answer);
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
}

/// A value of the right form for the controller's 2048-bit keys that no key opens.
fn garbage(seed: usize) -> String {
    let mut bytes = 256u16.to_be_bytes().to_vec();
    bytes.extend((0..256 + 32).map(|i| ((seed * 31 + i * 7) % 251) as u8));
    BASE64.encode(bytes)
}

fn sealed_secret(namespace: &str, values: usize) -> SealedSecret {
    let mut sealed = SealedSecret::new(
        "hostile",
        SealedSecretSpec {
            encrypted_data: (0..values)
                .map(|i| (format!("k{i:04}"), garbage(i)))
                .collect(),
            ..SealedSecretSpec::default()
        },
    );
    sealed.metadata.namespace = Some(namespace.into());
    sealed
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_input_costs_bounded_work_and_shows_no_value() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    let ns = cluster.namespace("app").await?;
    let key_secrets: Api<Secret> = Api::namespaced(cluster.client(), &controller_ns);
    for _ in 0..KEYS {
        let key = PrivateKey::generate(2048)?;
        let cert = SealingCertificate::generate(&key, &CertificateParams::default())?;
        let manifest = key_secret(&key, &cert, &controller_ns);
        key_secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::to_value(&manifest)?)?,
            )
            .await?;
    }
    let mut controller = SealsyncController::start(&cluster, &controller_ns, &[]).await?;
    let api = controller.api();
    let cert = SealingCertificate::from_pem(controller.certificate()?.as_bytes())?;

    // A genuine SealedSecret still opens.
    let yaml = format!(
        "kind: Secret\nmetadata: {{name: good, namespace: {ns}}}\nstringData: {{pin: '1234'}}\n"
    );
    let secret = parse_documents::<SecretManifest>(&yaml, "test", "Secret")?.remove(0);
    let good = seal_secret(&secret, cert.public_key(), &SealOptions::default())?;
    assert_eq!(
        post(api, "/v1/verify", &serde_json::to_vec(&good)?)
            .await?
            .0,
        200
    );

    // The largest body accepted, all garbage: one value fails, its scope is explained once.
    let hostile = serde_json::to_vec(&sealed_secret(&ns, MAX_SEALED_VALUES))?;
    let threads = std::thread::available_parallelism()?.get() as f64;
    for _ in 0..3 {
        let before = controller.metric(RSA_DECRYPTIONS, "")?;
        assert_eq!(post(api, "/v1/verify", &hostile).await?.0, 409);
        let cost = controller.metric(RSA_DECRYPTIONS, "")? - before;
        println!(
            "{} bytes, {MAX_SEALED_VALUES} values: {cost} RSA decryptions",
            hostile.len()
        );
        assert!(
            cost <= KEYS as f64 * (3.0 + threads),
            "{cost} RSA decryptions"
        );
    }

    // One value over the cap: refused by its count, no RSA work.
    let before = controller.metric(RSA_DECRYPTIONS, "")?;
    let too_many = serde_json::to_vec(&sealed_secret(&ns, MAX_SEALED_VALUES + 1))?;
    for path in ["/v1/verify", "/v1/rotate"] {
        let (code, body) = post(api, path, &too_many).await?;
        assert_eq!(code, 413, "{path}: {body}");
        assert_eq!(
            body.trim(),
            format!(
                "SealedSecret {ns}/hostile has {} values, more than the {MAX_SEALED_VALUES} a \
                 SealedSecret may hold: split it into several",
                MAX_SEALED_VALUES + 1
            )
        );
    }
    assert_eq!(controller.metric(RSA_DECRYPTIONS, "")?, before);

    // Values of the wrong type: the 400 names the field and the types only.
    for (value, found) in [
        ("987654321", "an integer"),
        ("true", "a boolean"),
        (r#"{"inner":"s3cr3t-nested"}"#, "a map"),
        (r#"["s3cr3t-item"]"#, "a list"),
    ] {
        let body = format!(
            r#"{{"apiVersion":"bitnami.com/v1alpha1","kind":"SealedSecret","metadata":{{"name":"x","namespace":"{ns}"}},"spec":{{"encryptedData":{{"pin":{value}}}}}}}"#
        );
        for path in ["/v1/verify", "/v1/rotate"] {
            let (code, answer) = post(api, path, body.as_bytes()).await?;
            assert_eq!(code, 400, "{answer}");
            assert!(
                answer.starts_with(&format!(
                    "the body is not a SealedSecret in JSON: spec.encryptedData.pin: expected a string, found {found}"
                )),
                "{answer}"
            );
            for text in ["987654321", "true", "s3cr3t"] {
                assert!(!answer.contains(text), "value in: {answer}");
            }
        }
    }

    // In the cluster: Synced=False naming the object and the cap, nothing decrypted.
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    let mut many = sealed_secret(&ns, MAX_SEALED_VALUES + 1);
    many.spec
        .encrypted_data
        .values_mut()
        .for_each(|v| *v = "AAAA".into());
    sealed_api.create(&PostParams::default(), &many).await?;
    let before = controller.metric(RSA_DECRYPTIONS, "")?;
    wait_for(
        "Synced=False on the SealedSecret over the cap",
        Duration::from_secs(60),
        Some(controller.process()),
        || {
            let sealed_api = sealed_api.clone();
            async move {
                let sealed = sealed_api.get("hostile").await?;
                Ok(sealed.status.is_some_and(|s| {
                    s.conditions.iter().any(|c| {
                        c.type_ == "Synced"
                            && c.status == "False"
                            && c.message.as_deref().is_some_and(|m| {
                                m.contains("has 4097 values, more than the 4096")
                                    && !m.contains("re-seal")
                            })
                    })
                }))
            }
        },
    )
    .await?;
    assert_eq!(controller.metric(RSA_DECRYPTIONS, "")?, before);
    Ok(())
}
