//! moto answers the real aws-sdk-secretsmanager client.

use aws_sdk_secretsmanager::primitives::Blob;
use sealsync_testkit::Moto;

#[tokio::test(flavor = "multi_thread")]
async fn secrets_manager_stores_string_json_and_binary_secrets() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let client = moto.client();

    client
        .create_secret()
        .name("app/db")
        .secret_string(r#"{"username":"app","password":"pw"}"#)
        .send()
        .await?;
    let json = client.get_secret_value().secret_id("app/db").send().await?;
    let parsed: serde_json::Value = serde_json::from_str(json.secret_string().unwrap())?;
    assert_eq!(parsed["username"], "app");

    let bytes = vec![0u8, 159, 146, 150, 255];
    client
        .create_secret()
        .name("app/blob")
        .secret_binary(Blob::new(bytes.clone()))
        .send()
        .await?;
    let binary = client
        .get_secret_value()
        .secret_id("app/blob")
        .send()
        .await?;
    assert_eq!(binary.secret_binary().unwrap().as_ref(), bytes.as_slice());

    client
        .put_secret_value()
        .secret_id("app/db")
        .secret_string("rotated")
        .send()
        .await?;
    let rotated = client.get_secret_value().secret_id("app/db").send().await?;
    assert_eq!(rotated.secret_string(), Some("rotated"));

    let missing = client.get_secret_value().secret_id("nope").send().await;
    assert!(
        missing
            .unwrap_err()
            .into_service_error()
            .is_resource_not_found_exception()
    );
    Ok(())
}
