//! The AWS Secrets Manager provider against the harness's moto: what ESO reads for each
//! kind of `remoteRef` and `find`, byte for byte, and errors that name the key and hold no
//! value.

use std::collections::BTreeMap;

use aws_sdk_secretsmanager::primitives::Blob;
use aws_sdk_secretsmanager::types::Tag;
use sealsync_providers::aws::{AwsConfig, AwsCredentials, SecretsManager};
use sealsync_providers::{ErrorKind, Find, RemoteRef, SecretBytes, SecretProvider};
use sealsync_testkit::Moto;

const PASSWORD: &str = "s3cr3t-aws-provider-value";

fn config(moto: &Moto, prefix: &str) -> AwsConfig {
    AwsConfig {
        region: Moto::REGION.into(),
        credentials: AwsCredentials::Static {
            access_key_id: Moto::ACCESS_KEY_ID.into(),
            secret_access_key: SecretBytes::from(Moto::SECRET_ACCESS_KEY.as_bytes()),
            session_token: None,
        },
        additional_roles: Vec::new(),
        role: None,
        external_id: None,
        prefix: prefix.into(),
        endpoint: Some(moto.endpoint().into()),
    }
}

fn text(value: &SecretBytes) -> String {
    String::from_utf8(value.expose().to_vec()).unwrap()
}

fn key(key: &str) -> RemoteRef {
    RemoteRef {
        key: key.into(),
        ..RemoteRef::default()
    }
}

fn property(key: &str, property: &str) -> RemoteRef {
    RemoteRef {
        property: Some(property.into()),
        ..self::key(key)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_values_properties_versions_binaries_tags_and_finds() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let client = moto.client();
    let json = format!(
        r#"{{"user": "app", "password": "{PASSWORD}", "port": 5432, "a.b": "literal", "a": {{"b": "nested"}}}}"#
    );
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    client
        .create_secret()
        .name("team/db")
        .secret_string(&json)
        .tags(tag("env", "prod"))
        .tags(tag("team", "payments"))
        .send()
        .await?;
    let blob = vec![0u8, 159, 146, 150, 255, 0];
    client
        .create_secret()
        .name("team/blob")
        .secret_binary(Blob::new(blob.clone()))
        .tags(tag("env", "dev"))
        .send()
        .await?;
    let first = client
        .create_secret()
        .name("other/token")
        .secret_string("v1")
        .send()
        .await?;
    client
        .put_secret_value()
        .secret_id("other/token")
        .secret_string("v2")
        .version_stages("AWSCURRENT")
        .send()
        .await?;

    let aws = SecretsManager::connect(config(&moto, "")).await?;
    aws.validate().await?;
    assert_eq!(text(&aws.get(&key("team/db")).await?), json);
    assert_eq!(text(&aws.get(&property("team/db", "user")).await?), "app");
    assert_eq!(text(&aws.get(&property("team/db", "port")).await?), "5432");
    assert_eq!(
        text(&aws.get(&property("team/db", "a.b")).await?),
        "literal",
        "a dotted property names a literal key first"
    );
    assert_eq!(
        text(&aws.get(&property("team/db", "a")).await?),
        r#"{"b": "nested"}"#
    );
    assert_eq!(
        aws.get(&key("team/blob")).await?.expose(),
        blob.as_slice(),
        "binary secrets byte for byte"
    );

    // Versions: AWSCURRENT by default, a stage by name, a VersionId as uuid/<id>.
    assert_eq!(text(&aws.get(&key("other/token")).await?), "v2");
    let stage = RemoteRef {
        version: Some("AWSPREVIOUS".into()),
        ..key("other/token")
    };
    assert_eq!(text(&aws.get(&stage).await?), "v1");
    let by_id = RemoteRef {
        version: Some(format!("uuid/{}", first.version_id().unwrap())),
        ..key("other/token")
    };
    assert_eq!(text(&aws.get(&by_id).await?), "v1");

    // metadataPolicy: Fetch reads the tags.
    let tags = RemoteRef {
        metadata: true,
        ..property("team/db", "team")
    };
    assert_eq!(text(&aws.get(&tags).await?), "payments");

    // extract: one value per key of the JSON object.
    let extracted = aws.get_map(&key("team/db")).await?;
    assert_eq!(text(&extracted["password"]), PASSWORD);
    assert_eq!(text(&extracted["port"]), "5432");

    // find, by name, by path, by tags.
    let names = |found: &BTreeMap<String, SecretBytes>| found.keys().cloned().collect::<Vec<_>>();
    let by_name = Find {
        name: Some("^team/".into()),
        ..Find::default()
    };
    assert_eq!(names(&aws.find(&by_name).await?), ["team/blob", "team/db"]);
    let by_path = Find {
        path: Some("other".into()),
        ..Find::default()
    };
    let found = aws.find(&by_path).await?;
    assert_eq!(names(&found), ["other/token"]);
    assert_eq!(text(&found["other/token"]), "v2");
    let by_tags = Find {
        tags: [("env".to_string(), "prod".to_string())].into(),
        ..Find::default()
    };
    assert_eq!(names(&aws.find(&by_tags).await?), ["team/db"]);

    // A prefix is prepended to every key.
    let prefixed = SecretsManager::connect(config(&moto, "team/")).await?;
    assert_eq!(text(&prefixed.get(&property("db", "user")).await?), "app");

    // Errors: the kind, the key, no value.
    let missing = aws.get(&key("nope")).await.unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound);
    assert!(missing.to_string().contains("\"nope\""), "{missing}");
    let no_property = aws.get(&property("team/db", "missing")).await.unwrap_err();
    assert_eq!(no_property.kind, ErrorKind::NotFound);
    let bad_regexp = aws
        .find(&Find {
            name: Some("(".into()),
            ..Find::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad_regexp.kind, ErrorKind::Invalid);
    for error in [&missing, &no_property, &bad_regexp] {
        let shown = error.to_string();
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(!shown.contains(Moto::SECRET_ACCESS_KEY), "{shown}");
    }

    // An endpoint that answers nothing is an outage, not a missing secret.
    let mut down = config(&moto, "");
    down.endpoint = Some(format!(
        "http://127.0.0.1:{}",
        sealsync_testkit::free_port()
    ));
    let unreachable = SecretsManager::connect(down)
        .await?
        .get(&key("team/db"))
        .await
        .unwrap_err();
    assert_eq!(unreachable.kind, ErrorKind::Unavailable, "{unreachable}");
    Ok(())
}
