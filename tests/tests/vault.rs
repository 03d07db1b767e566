//! The Vault dev server answers vaultrs: KV v2, KV v1 and AppRole login.

use std::collections::HashMap;

use sealsync_testkit::Vault;
use vaultrs::{auth::approle, kv1, kv2};

#[tokio::test(flavor = "multi_thread")]
async fn kv_engines_and_approle_work() -> anyhow::Result<()> {
    let vault = Vault::start().await?;
    let root = vault.client()?;

    let data = HashMap::from([("password".to_string(), "pw2".to_string())]);
    kv2::set(&root, Vault::KV2_MOUNT, "app/db", &data).await?;
    let read: HashMap<String, String> = kv2::read(&root, Vault::KV2_MOUNT, "app/db").await?;
    assert_eq!(read["password"], "pw2");

    let data1 = HashMap::from([("token", "t1")]);
    kv1::set(&root, Vault::KV1_MOUNT, "app/api", &data1).await?;
    let read1: HashMap<String, String> = kv1::get(&root, Vault::KV1_MOUNT, "app/api").await?;
    assert_eq!(read1["token"], "t1");

    vault
        .policy(
            "read-app",
            r#"path "secret/data/app/*" { capabilities = ["read"] }"#,
        )
        .await?;
    let (role_id, secret_id) = vault.approle("reader", &["read-app"]).await?;
    let login = approle::login(
        &vault.client_with_token("")?,
        "approle",
        &role_id,
        &secret_id,
    )
    .await?;
    let reader = vault.client_with_token(&login.client_token)?;
    let allowed: HashMap<String, String> = kv2::read(&reader, Vault::KV2_MOUNT, "app/db").await?;
    assert_eq!(allowed["password"], "pw2");
    assert!(
        kv1::get::<HashMap<String, String>>(&reader, Vault::KV1_MOUNT, "app/api")
            .await
            .is_err(),
        "policy limits the role"
    );
    Ok(())
}
