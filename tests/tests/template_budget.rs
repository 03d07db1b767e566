//! sealsync-controller on the real API server: a SealedSecret whose template would run
//! for hours is stopped by the template budget, reported, and does not hold up the others.

use std::io::{Read, Write};
use std::net::{SocketAddrV4, TcpStream};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use sealsync_api::{SealOptions, SealedSecret, SecretManifest, parse_documents, seal_secret};
use sealsync_crypto::SealingCertificate;
use sealsync_testkit::{SealsyncController, TestCluster, wait_for};

const PLAINTEXT: &str = "s3cr3t-budget-value";

fn secret(namespace: &str, name: &str) -> anyhow::Result<SecretManifest> {
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\n\
         metadata: {{name: {name}, namespace: {namespace}}}\n\
         stringData: {{a: {PLAINTEXT}, b: x, c: y, d: z}}\n"
    );
    Ok(parse_documents::<SecretManifest>(&yaml, "test", "Secret")?.remove(0))
}

/// Twelve nested ranges over four keys that write nothing: 4^12 iterations, no output.
fn hostile_template() -> String {
    let depth = 12;
    format!(
        "{}{}",
        "{{ range $k := keys $ }}".repeat(depth),
        "{{ end }}".repeat(depth)
    )
}

async fn synced(api: &Api<SealedSecret>, name: &str) -> anyhow::Result<Option<(String, String)>> {
    let Some(sealed) = api.get_opt(name).await? else {
        return Ok(None);
    };
    Ok(sealed.status.and_then(|s| {
        let condition = s.conditions.into_iter().find(|c| c.type_ == "Synced")?;
        Some((condition.status, condition.message.unwrap_or_default()))
    }))
}

/// Status code of a plain HTTP/1.0 POST of a JSON body.
fn http_post(addr: SocketAddrV4, path: &str, body: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no status line in {response:?}"))?;
    Ok(status.parse()?)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_over_its_budget_is_reported_and_others_still_unseal() -> anyhow::Result<()> {
    let cluster = TestCluster::start().await?;
    let controller_ns = cluster.namespace("controller").await?;
    let ns = cluster.namespace("app").await?;
    let mut controller = SealsyncController::start(&cluster, &controller_ns, &[]).await?;
    let cert = SealingCertificate::from_pem(controller.certificate()?.as_bytes())?;
    let sealed_api: Api<SealedSecret> = Api::namespaced(cluster.client(), &ns);
    let secrets: Api<Secret> = Api::namespaced(cluster.client(), &ns);
    let seal = |name: &str| -> anyhow::Result<SealedSecret> {
        Ok(seal_secret(
            &secret(&ns, name)?,
            cert.public_key(),
            &SealOptions::default(),
        )?)
    };

    let mut hostile = seal("hostile")?;
    hostile
        .spec
        .template
        .as_mut()
        .unwrap()
        .data
        .insert("spin".into(), hostile_template());
    sealed_api.create(&PostParams::default(), &hostile).await?;
    // Created after the hostile one, so its reconcile comes after (or beside) it.
    let mut fine = seal("fine")?;
    fine.spec
        .template
        .as_mut()
        .unwrap()
        .data
        .insert("joined".into(), "{{ keys . | join \",\" }}".into());
    sealed_api.create(&PostParams::default(), &fine).await?;

    wait_for(
        "the Secret fine",
        Duration::from_secs(60),
        Some(controller.process()),
        || {
            let secrets = secrets.clone();
            async move { Ok(secrets.get_opt("fine").await?.is_some()) }
        },
    )
    .await?;
    let joined = secrets.get("fine").await?.data.unwrap()["joined"].0.clone();
    assert_eq!(String::from_utf8(joined)?, "a,b,c,d");

    wait_for(
        "Synced=False on hostile",
        Duration::from_secs(60),
        Some(controller.process()),
        || {
            let api = sealed_api.clone();
            async move {
                Ok(synced(&api, "hostile")
                    .await?
                    .is_some_and(|(s, _)| s == "False"))
            }
        },
    )
    .await?;
    let (_, message) = synced(&sealed_api, "hostile").await?.unwrap();
    assert!(
        message.contains(&format!(
            "template.data key \"spin\" of SealedSecret {ns}/hostile: exceeded its execution \
             budget ("
        )),
        "{message}"
    );
    assert!(message.contains("simplify the template"), "{message}");
    assert!(!message.contains(PLAINTEXT), "{message}");
    assert!(
        secrets.get_opt("hostile").await?.is_none(),
        "no Secret for it"
    );

    // The controller's API refuses it as not opening, and still answers for others.
    let verify = |sealed: &SealedSecret| -> anyhow::Result<u16> {
        http_post(
            controller.api(),
            "/v1/verify",
            &serde_json::to_string(sealed)?,
        )
    };
    assert_eq!(verify(&hostile)?, 409);
    assert_eq!(verify(&fine)?, 200);
    Ok(())
}
