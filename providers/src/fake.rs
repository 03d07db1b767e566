//! ESO's `fake` provider: the store's spec holds the remote secrets (`data`: key, value,
//! version). Reads never leave the process; it serves demos, tests and local syncs that
//! must work without credentials.

use std::collections::{BTreeMap, HashMap};

use crate::value::property;
use crate::{ErrorKind, Find, ProviderError, RemoteRef, SecretBytes, SecretProvider};

const PROVIDER: &str = "Fake";

/// One remote secret of a fake store.
#[derive(Debug, Clone, Default)]
pub struct FakeSecret {
    pub key: String,
    /// Empty: the version read when a `remoteRef` names none.
    pub version: String,
    pub value: SecretBytes,
}

/// A fake store's secrets, by key and version (a pair, where upstream joins them into one
/// string, so that key `a1` and key `a` at version `1` stay apart).
#[derive(Debug, Default)]
pub struct Fake {
    secrets: HashMap<(String, String), SecretBytes>,
    /// Whether an entry has an empty key or value, which upstream's validation refuses.
    has_empty: bool,
}

impl Fake {
    /// The store of `secrets`; a later entry of the same key and version wins, as upstream.
    pub fn new(secrets: Vec<FakeSecret>) -> Self {
        Self {
            has_empty: secrets
                .iter()
                .any(|s| s.key.is_empty() || s.value.expose().is_empty()),
            secrets: secrets
                .into_iter()
                .map(|s| ((s.key, s.version), s.value))
                .collect(),
        }
    }

    fn not_found(operation: &'static str, key: &str, reason: String) -> ProviderError {
        ProviderError {
            kind: ErrorKind::NotFound,
            provider: PROVIDER,
            operation,
            key: key.into(),
            reason,
        }
    }
}

impl SecretProvider for Fake {
    /// The value, also for `metadataPolicy: Fetch`: the fake provider has no metadata and
    /// upstream's ignores the policy.
    async fn read(&self, reference: &RemoteRef) -> Result<SecretBytes, ProviderError> {
        let version = reference.version.clone().unwrap_or_default();
        self.secrets
            .get(&(reference.key.clone(), version))
            .cloned()
            .ok_or_else(|| {
                Self::not_found(
                    "GetSecret",
                    &reference.key,
                    "the secret does not exist".into(),
                )
            })
    }

    fn select(
        &self,
        payload: &SecretBytes,
        reference: &RemoteRef,
    ) -> Result<SecretBytes, ProviderError> {
        // A gjson path, as upstream.
        property(payload, reference, false).map_err(|property| {
            Self::not_found(
                "GetSecret",
                &reference.key,
                format!("key {property} does not exist in the secret"),
            )
        })
    }

    /// By name only, as upstream (path and tags are not looked at): each matching key at
    /// its highest version.
    async fn find(&self, find: &Find) -> Result<BTreeMap<String, SecretBytes>, ProviderError> {
        let name = find
            .name_regex(PROVIDER, "GetAllSecrets")?
            .ok_or_else(|| ProviderError {
                kind: ErrorKind::Invalid,
                provider: PROVIDER,
                operation: "GetAllSecrets",
                key: String::new(),
                reason: "the fake provider finds by name only".into(),
            })?;
        let mut latest: BTreeMap<String, (&str, SecretBytes)> = BTreeMap::new();
        for ((key, version), value) in &self.secrets {
            if !name.is_match(key) {
                continue;
            }
            if latest
                .get(key)
                .is_none_or(|(newest, _)| *newest < version.as_str())
            {
                latest.insert(key.clone(), (version, value.clone()));
            }
        }
        Ok(latest
            .into_iter()
            .map(|(key, (_, value))| (key, value))
            .collect())
    }

    async fn validate(&self) -> Result<(), ProviderError> {
        if self.has_empty {
            return Err(ProviderError {
                kind: ErrorKind::Invalid,
                provider: PROVIDER,
                operation: "validate",
                key: String::new(),
                reason: "every data entry needs a key and a value".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake() -> Fake {
        let secret = |key: &str, version: &str, value: &str| FakeSecret {
            key: key.into(),
            version: version.into(),
            value: value.as_bytes().into(),
        };
        Fake::new(vec![
            secret("/app/db", "", r#"{"user":"app","password":"p1"}"#),
            secret("/app/db", "v1", r#"{"user":"old"}"#),
            secret("/app/flag", "", "on"),
            secret("/other/x", "", "x"),
        ])
    }

    fn reference(key: &str, version: Option<&str>, property: Option<&str>) -> RemoteRef {
        RemoteRef {
            key: key.into(),
            version: version.map(Into::into),
            property: property.map(Into::into),
            metadata: false,
        }
    }

    fn text(value: &SecretBytes) -> &str {
        std::str::from_utf8(value.expose()).unwrap()
    }

    #[tokio::test]
    async fn reads_by_key_version_and_property() {
        let fake = fake();
        let user = fake
            .get(&reference("/app/db", None, Some("user")))
            .await
            .unwrap();
        assert_eq!(text(&user), "app");
        let old = fake
            .get(&reference("/app/db", Some("v1"), Some("user")))
            .await
            .unwrap();
        assert_eq!(text(&old), "old");
        let missing = fake
            .get(&reference("/app/db", Some("v2"), None))
            .await
            .unwrap_err();
        assert_eq!(missing.kind, ErrorKind::NotFound);
        let no_property = fake
            .get(&reference("/app/db", None, Some("host")))
            .await
            .unwrap_err();
        assert_eq!(no_property.kind, ErrorKind::NotFound);
        assert!(!no_property.to_string().contains("p1"), "{no_property}");
    }

    #[tokio::test]
    async fn entries_without_a_key_or_value_fail_validation() {
        assert!(fake().validate().await.is_ok());
        let empty = Fake::new(vec![FakeSecret {
            key: "k".into(),
            ..FakeSecret::default()
        }]);
        assert_eq!(empty.validate().await.unwrap_err().kind, ErrorKind::Invalid);
    }

    #[tokio::test]
    async fn finds_by_name_at_the_highest_version() {
        let fake = fake();
        let found = fake
            .find(&Find {
                path: Some("/ignored".into()),
                name: Some("^/app/".into()),
                tags: BTreeMap::new(),
            })
            .await
            .unwrap();
        assert_eq!(found.keys().collect::<Vec<_>>(), ["/app/db", "/app/flag"]);
        assert_eq!(
            text(&found["/app/db"]),
            r#"{"user":"old"}"#,
            "v1 > unversioned"
        );
        let tags_only = Find {
            tags: BTreeMap::from([("team".into(), "a".into())]),
            ..Find::default()
        };
        assert_eq!(
            fake.find(&tags_only).await.unwrap_err().kind,
            ErrorKind::Invalid
        );
    }
}
