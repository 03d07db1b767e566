//! The hashes External Secrets Operator writes into Secrets and statuses: SHA3-224 of Go's
//! `%+v` text of a value. Written the same way so that Secrets made by upstream are taken
//! over unchanged, and the other way round.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use sealsync_crypto::SecretBytes;
use sha3::{Digest, Sha3_224};

fn sha3_224_hex(text: &[u8]) -> String {
    Sha3_224::digest(text)
        .iter()
        .fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// `%+v` of a `map[string]string` (Go sorts map keys when it prints them).
fn go_string_map(map: &BTreeMap<String, String>) -> String {
    let entries: Vec<String> = map.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("map[{}]", entries.join(" "))
}

/// `reconcile.external-secrets.io/data-hash` of a Secret with `data`: Go prints each
/// `[]byte` as its decimal bytes. The text holds the values, so it is wiped once hashed.
pub fn data_hash(data: &BTreeMap<String, SecretBytes>) -> String {
    let mut text = zeroize::Zeroizing::new(String::from("map["));
    for (i, (key, value)) in data.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        text.push_str(key);
        text.push_str(":[");
        for (j, byte) in value.expose().iter().enumerate() {
            if j > 0 {
                text.push(' ');
            }
            let _ = write!(text, "{byte}");
        }
        text.push(']');
    }
    text.push(']');
    sha3_224_hex(text.as_bytes())
}

/// The hash part of `status.syncedResourceVersion`: of an object's labels and annotations.
pub fn metadata_hash(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> String {
    let text = format!(
        "{{annotations:{} labels:{}}}",
        go_string_map(annotations),
        go_string_map(labels)
    );
    sha3_224_hex(text.as_bytes())
}

/// `reconcile.external-secrets.io/created-by` of the Secrets an ExternalSecret owns.
pub fn created_by(namespace: &str, name: &str) -> String {
    sha3_224_hex(format!("{namespace}/{name}").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_of_the_text_go_prints() {
        let data = BTreeMap::from([
            ("b".to_string(), SecretBytes::from(b"\x01\xff".to_vec())),
            ("a".to_string(), SecretBytes::from(b"hi".to_vec())),
        ]);
        assert_eq!(
            data_hash(&data),
            sha3_224_hex(b"map[a:[104 105] b:[1 255]]")
        );
        assert_eq!(data_hash(&BTreeMap::new()), sha3_224_hex(b"map[]"));
        let labels = BTreeMap::from([("team".to_string(), "x".to_string())]);
        assert_eq!(
            metadata_hash(&labels, &BTreeMap::new()),
            sha3_224_hex(b"{annotations:map[] labels:map[team:x]}")
        );
        // SHA3-224 of "" is a published test vector.
        assert_eq!(
            sha3_224_hex(b""),
            "6b4e03423667dbb73b6e15454f0eb1abd4597f9a1b078e3f5b5a6bc7"
        );
    }
}
