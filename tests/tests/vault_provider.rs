//! The Vault provider against the harness's Vault dev server: KV v2 and v1 reads with
//! ESO's path building, properties, versions, metadata, find by path/name/tags, AppRole
//! login with one token kept and revoked, and errors that name the key and hold no value.

use std::collections::BTreeMap;

use sealsync_providers::vault::{KvVersion, Vault as VaultProvider, VaultAuth, VaultConfig};
use sealsync_providers::{ErrorKind, Find, RemoteRef, SecretBytes, SecretProvider};
use sealsync_testkit::Vault;

const PASSWORD: &str = "s3cr3t-vault-provider-value";

fn config(vault: &Vault, mount: Option<&str>, version: KvVersion, auth: VaultAuth) -> VaultConfig {
    VaultConfig {
        server: vault.address().into(),
        mount: mount.map(str::to_string),
        version,
        namespace: None,
        ca_pem: None,
        client_identity: None,
        auth,
    }
}

fn root() -> VaultAuth {
    VaultAuth::Token(SecretBytes::from(Vault::ROOT_TOKEN.as_bytes()))
}

fn text(value: &SecretBytes) -> String {
    String::from_utf8(value.expose().to_vec()).unwrap()
}

fn reference(key: &str, property: Option<&str>) -> RemoteRef {
    RemoteRef {
        key: key.into(),
        property: property.map(str::to_string),
        ..RemoteRef::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_kv_v2_and_v1_finds_and_keeps_one_approle_token() -> anyhow::Result<()> {
    let vault = Vault::start().await?;
    let admin = vault.client()?;
    let db = serde_json::json!({"user": "app", "password": PASSWORD, "port": 5432,
        "a.b": "literal", "a": {"b": "nested"}});
    vaultrs::kv2::set(&admin, Vault::KV2_MOUNT, "team/db", &db).await?;
    vaultrs::kv2::set(
        &admin,
        Vault::KV2_MOUNT,
        "team/db",
        &serde_json::json!({"user": "v2"}),
    )
    .await?;
    vaultrs::kv2::set(&admin, Vault::KV2_MOUNT, "team/db", &db).await?;
    vaultrs::kv2::set(
        &admin,
        Vault::KV2_MOUNT,
        "team/nested/api",
        &serde_json::json!({"token": "t"}),
    )
    .await?;
    vaultrs::kv2::set(
        &admin,
        Vault::KV2_MOUNT,
        "other/x",
        &serde_json::json!({"k": "v"}),
    )
    .await?;
    let tags: std::collections::HashMap<String, String> =
        [("env".to_string(), "prod".to_string())].into();
    let mut metadata = vaultrs::api::kv2::requests::SetSecretMetadataRequest::builder();
    metadata.custom_metadata(tags);
    vaultrs::kv2::set_metadata(&admin, Vault::KV2_MOUNT, "team/db", Some(&mut metadata)).await?;
    vaultrs::kv1::set(
        &admin,
        Vault::KV1_MOUNT,
        "legacy",
        &[("user", "old")]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
    )
    .await?;

    // KV v2 with the mount in the key (no `path`), and with `path` set.
    let kv2 = VaultProvider::connect(config(&vault, None, KvVersion::V2, root())).await?;
    kv2.validate().await?;
    let whole: serde_json::Value =
        serde_json::from_slice(kv2.get(&reference("secret/team/db", None)).await?.expose())?;
    assert_eq!(whole, db);
    let mounted =
        VaultProvider::connect(config(&vault, Some("secret"), KvVersion::V2, root())).await?;
    for key in ["team/db", "secret/team/db", "secret/data/team/db"] {
        assert_eq!(
            text(&mounted.get(&reference(key, Some("user"))).await?),
            "app",
            "{key}"
        );
    }
    assert_eq!(
        text(&mounted.get(&reference("team/db", Some("port"))).await?),
        "5432"
    );
    assert_eq!(
        text(&mounted.get(&reference("team/db", Some("a.b"))).await?),
        "literal",
        "an exact top-level key wins"
    );
    assert_eq!(
        text(&mounted.get(&reference("team/db", Some("a"))).await?),
        r#"{"b":"nested"}"#
    );

    // Versions: the number of a KV v2 version.
    let second = RemoteRef {
        version: Some("2".into()),
        ..reference("team/db", Some("user"))
    };
    assert_eq!(text(&mounted.get(&second).await?), "v2");

    // Metadata: custom metadata and the current version.
    let tag = RemoteRef {
        metadata: true,
        ..reference("team/db", Some("env"))
    };
    assert_eq!(text(&mounted.get(&tag).await?), "prod");
    let current = RemoteRef {
        metadata: true,
        ..reference("team/db", Some("current_version"))
    };
    assert_eq!(text(&mounted.get(&current).await?), "3");

    // extract.
    let map = mounted.get_map(&reference("team/db", None)).await?;
    assert_eq!(text(&map["password"]), PASSWORD);

    // find: everything under a path (recursively), by name, by tags.
    let names = |found: &BTreeMap<String, SecretBytes>| found.keys().cloned().collect::<Vec<_>>();
    let under = Find {
        path: Some("team".into()),
        ..Find::default()
    };
    assert_eq!(
        names(&mounted.find(&under).await?),
        ["team/db", "team/nested/api"]
    );
    let by_name = Find {
        path: Some("secret".into()),
        name: Some("api$".into()),
        ..Find::default()
    };
    assert_eq!(
        names(&kv2.find(&by_name).await?),
        ["secret/team/nested/api"]
    );
    let by_tags = Find {
        tags: [("env".to_string(), "prod".to_string())].into(),
        ..Find::default()
    };
    let tagged = mounted.find(&by_tags).await?;
    assert_eq!(names(&tagged), ["team/db"]);

    // KV v1: the key passes through.
    let kv1 = VaultProvider::connect(config(&vault, None, KvVersion::V1, root())).await?;
    assert_eq!(
        text(&kv1.get(&reference("kv1/legacy", Some("user"))).await?),
        "old"
    );

    // AppRole: one login, its token used for every read, then revoked.
    vault
        .policy(
            "read-team",
            r#"path "secret/data/team/*" { capabilities = ["read"] }"#,
        )
        .await?;
    let (role_id, secret_id) = vault.approle("reader", &["read-team"]).await?;
    let approle = VaultProvider::connect(config(
        &vault,
        Some("secret"),
        KvVersion::V2,
        VaultAuth::AppRole {
            mount: "approle".into(),
            role_id,
            secret_id: SecretBytes::from(secret_id.as_bytes()),
        },
    ))
    .await?;
    assert_eq!(
        text(&approle.get(&reference("team/db", Some("user"))).await?),
        "app"
    );
    // With the secret id gone no login can succeed: reads go on with the kept token.
    vaultrs::auth::approle::role::secret::delete(&admin, "approle", "reader", &secret_id).await?;
    for _ in 0..3 {
        assert_eq!(
            text(&approle.get(&reference("team/db", Some("user"))).await?),
            "app"
        );
    }
    let denied = approle.get(&reference("other/x", None)).await.unwrap_err();
    assert_eq!(denied.kind, ErrorKind::Denied, "{denied}");
    approle.revoke().await?;
    let revoked = approle.get(&reference("team/db", None)).await.unwrap_err();
    assert_eq!(revoked.kind, ErrorKind::Denied, "{revoked}");

    // Errors: the kind, the key, no value.
    let missing = mounted
        .get(&reference("team/nope", None))
        .await
        .unwrap_err();
    assert_eq!(missing.kind, ErrorKind::NotFound, "{missing}");
    assert!(missing.to_string().contains("team/nope"), "{missing}");
    let no_property = mounted
        .get(&reference("team/db", Some("missing")))
        .await
        .unwrap_err();
    assert_eq!(no_property.kind, ErrorKind::NotFound);
    for error in [&missing, &no_property, &denied, &revoked] {
        let shown = error.to_string();
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(!shown.contains(Vault::ROOT_TOKEN), "{shown}");
    }
    let bad = VaultProvider::connect(VaultConfig {
        server: "not a url".into(),
        ..config(&vault, None, KvVersion::V2, root())
    })
    .await
    .unwrap_err();
    assert_eq!(bad.kind, ErrorKind::Invalid, "{bad}");
    Ok(())
}
