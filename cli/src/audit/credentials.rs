//! Does a value under a key look like a credential? Known formats first (cloud keys, API
//! tokens, PEM private keys: near-certain), then weaker signs (the key's name, randomness,
//! a password in a URL), each with exclusions that keep false positives low.

use super::report::Rule;

/// Why a value looks like a credential, for the finding's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub rule: Rule,
    pub what: &'static str,
}

/// Most bytes of one value examined: a multi-megabyte blob is not a password.
const MAX_VALUE_LEN: usize = 64 * 1024;

pub fn classify(key: &str, value: &str) -> Option<Match> {
    let end = (0..=MAX_VALUE_LEN.min(value.len()))
        .rev()
        .find(|&i| value.is_char_boundary(i))
        .unwrap_or(0);
    let value = &value[..end];
    known_format(value)
        .map(|what| Match {
            rule: Rule::CredentialFormat,
            what,
        })
        .or_else(|| {
            weak_signs(key, value.trim()).map(|what| Match {
                rule: Rule::CredentialLike,
                what,
            })
        })
}

/// Tokens with a documented prefix and the length of the rest, anywhere in the value.
const TOKEN_FORMATS: &[(&str, usize, &str)] = &[
    ("AKIA", 16, "an AWS access key id"),
    ("ASIA", 16, "an AWS temporary access key id"),
    ("ghp_", 36, "a GitHub personal access token"),
    ("gho_", 36, "a GitHub OAuth token"),
    ("ghs_", 36, "a GitHub app token"),
    ("ghu_", 36, "a GitHub user-to-server token"),
    ("github_pat_", 22, "a GitHub fine-grained token"),
    ("glpat-", 20, "a GitLab access token"),
    ("xoxb-", 10, "a Slack bot token"),
    ("xoxp-", 10, "a Slack user token"),
    ("sk_live_", 16, "a Stripe secret key"),
    ("AIza", 35, "a Google API key"),
];

fn known_format(value: &str) -> Option<&'static str> {
    if value.contains("-----BEGIN ") && value.contains("PRIVATE KEY-----") {
        return Some("a PEM private key");
    }
    TOKEN_FORMATS
        .iter()
        .find(|(prefix, rest, _)| has_token(value, prefix, *rest))
        .map(|(_, _, what)| *what)
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// `prefix` at the start of a word, followed by at least `rest` token characters (AWS key
/// ids: exactly 16 upper-case letters or digits).
fn has_token(value: &str, prefix: &str, rest: usize) -> bool {
    value.match_indices(prefix).any(|(at, _)| {
        let before = value[..at].chars().next_back();
        if before.is_some_and(is_token_char) {
            return false;
        }
        let tail = &value[at + prefix.len()..];
        if prefix.starts_with('A') && prefix.len() == 4 && prefix != "AIza" {
            let id: String = tail
                .chars()
                .take_while(char::is_ascii_alphanumeric)
                .collect();
            return id.len() == rest
                && id
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
        }
        tail.chars().take_while(|&c| is_token_char(c)).count() >= rest
    })
}

/// Key-name words that name a credential.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
    "credentials",
];

/// Key-name words that mean the value is about a credential but is not one: a reference
/// (`existingSecret`, `passwordSecretRef`, `tokenFile`), a setting (`passwordLength`).
const REFERENCE_WORDS: &[&str] = &[
    "existing",
    "name",
    "names",
    "ref",
    "file",
    "path",
    "dir",
    "enabled",
    "enable",
    "length",
    "policy",
    "mount",
    "type",
    "ttl",
    "expiry",
    "expiration",
    "header",
    "url",
    "uri",
    "endpoint",
    "namespace",
    "selector",
    "field",
    "template",
    "env",
    "rotation",
    "duration",
    "version",
    "annotation",
    "annotations",
    "label",
    "labels",
    "mode",
    "provider",
    "store",
    "id",
    "hash",
];

/// Key-name words whose values are random but public (digests, ids, certificates).
const PUBLIC_RANDOM_WORDS: &[&str] = &[
    "id",
    "uuid",
    "digest",
    "checksum",
    "hash",
    "sha",
    "sha256",
    "image",
    "tag",
    "version",
    "fingerprint",
    "commit",
    "revision",
    "ca",
    "cert",
    "certificate",
    "crt",
    "pub",
    "public",
    "salt",
    "nonce",
];

/// Values that stand for a credential without being one.
fn is_placeholder(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    value.starts_with("${")
        || value.starts_with("$(")
        || value.starts_with("{{")
        || value.starts_with('<')
        || value.starts_with('/')
        || value
            .chars()
            .all(|c| c == '*' || c == 'x' || c == 'X' || c == '.')
        || [
            "arn:",
            "vault:",
            "ref+",
            "op://",
            "file://",
            "projects/",
            "secretsmanager:",
        ]
        .iter()
        .any(|p| lower.starts_with(p))
        || matches!(
            lower.as_str(),
            "changeme"
                | "change-me"
                | "redacted"
                | "secret"
                | "password"
                | "token"
                | "none"
                | "nil"
                | "empty"
                | "todo"
                | "tbd"
                | "replaceme"
                | "replace-me"
                | "yes"
                | "no"
        )
}

/// The words of a key: split at non-alphanumerics and lower-to-upper case changes.
fn words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        if !c.is_ascii_alphanumeric() {
            words.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
            previous_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && previous_lower {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        current.push(c.to_ascii_lowercase());
    }
    words.extend((!current.is_empty()).then_some(current));
    words
}

fn weak_signs(key: &str, value: &str) -> Option<&'static str> {
    if value.is_empty() || is_placeholder(value) {
        return None;
    }
    let words = words(key);
    let has = |list: &[&str]| words.iter().any(|w| list.contains(&w.as_str()));
    let joined = words.concat();
    // `passwordKey`, `tokenKey`: the key under which another Secret holds it.
    let names_a_key = words.len() >= 2
        && words.last().is_some_and(|w| w == "key")
        && matches!(words[words.len() - 2].as_str(), "password" | "token");
    let secret_name = SECRET_WORDS.iter().any(|w| joined.contains(w));
    if secret_name
        && !has(REFERENCE_WORDS)
        && !names_a_key
        && value.chars().count() >= 4
        && !value.chars().any(char::is_whitespace)
    {
        return Some("a credential (by its key's name)");
    }
    if url_password(value) {
        return Some("a URL with a password");
    }
    if value.starts_with("eyJ") && value.matches('.').count() == 2 && value.len() >= 32 {
        return Some("a JSON web token");
    }
    if !has(PUBLIC_RANDOM_WORDS) && high_entropy(value) {
        return Some("a random token (high entropy)");
    }
    None
}

/// `scheme://user:password@host` with a password that is not a placeholder.
fn url_password(value: &str) -> bool {
    let Some((_, rest)) = value.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let Some((userinfo, _)) = authority.rsplit_once('@') else {
        return false;
    };
    userinfo
        .split_once(':')
        .is_some_and(|(_, password)| !password.is_empty() && !is_placeholder(password))
}

/// At least 24 characters of base64/URL-safe alphabet with upper case, lower case and
/// digits, and a Shannon entropy of at least 4.2 bits per character: random keys pass,
/// words, paths, hex digests, UUIDs and host names do not.
fn high_entropy(value: &str) -> bool {
    let len = value.len();
    if !(24..=4096).contains(&len)
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=_-".contains(&b))
        || !value.bytes().any(|b| b.is_ascii_uppercase())
        || !value.bytes().any(|b| b.is_ascii_lowercase())
        || !value.bytes().any(|b| b.is_ascii_digit())
    {
        return false;
    }
    let mut counts = [0usize; 256];
    for b in value.bytes() {
        counts[b as usize] += 1;
    }
    let entropy: f64 = counts
        .iter()
        .filter(|&&n| n > 0)
        .map(|&n| {
            let p = n as f64 / len as f64;
            -p * p.log2()
        })
        .sum();
    entropy >= 4.2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(key: &str, value: &str) -> Option<Rule> {
        classify(key, value).map(|m| m.rule)
    }

    #[test]
    fn known_formats_anywhere_in_a_value() {
        let format = Some(Rule::CredentialFormat);
        assert_eq!(rule("x", "AKIAIOSFODNN7EXAMPLE"), format);
        assert_eq!(
            rule("env", "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE\n"),
            format
        );
        assert_eq!(
            rule(
                "key.pem",
                "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\n"
            ),
            format
        );
        assert_eq!(rule("x", &format!("ghp_{}", "a1".repeat(18))), format);
        // Not an id: too short, lower case, inside a word.
        assert_eq!(rule("x", "AKIAIOSFODNN7"), None);
        assert_eq!(rule("x", "AKIAiosfodnn7example"), None);
        assert_eq!(rule("x", "XAKIAIOSFODNN7EXAMPLE"), None);
        assert_eq!(rule("x", "-----BEGIN CERTIFICATE-----"), None);
    }

    #[test]
    fn key_names_with_real_looking_values() {
        let like = Some(Rule::CredentialLike);
        for key in [
            "password",
            "dbPassword",
            "DB_PASSWORD",
            "secretKey",
            "api-key",
            "apiKey",
            "auth.token",
            "clientSecret",
        ] {
            assert_eq!(rule(key, "hunter22"), like, "{key}");
        }
        for key in [
            "existingSecret",
            "passwordSecretRef",
            "tokenFile",
            "passwordLength",
            "secretName",
            "passwordKey",
            "existingSecretPasswordKey",
            "tokenUrl",
            "username",
        ] {
            assert_eq!(rule(key, "hunter22"), None, "{key}");
        }
        for value in [
            "",
            "${DB_PASSWORD}",
            "{{ .Values.pw }}",
            "<your-password>",
            "changeme",
            "****",
            "a b c d",
            "arn:aws:secretsmanager:x",
            "/run/secrets/db",
            "abc",
        ] {
            assert_eq!(rule("password", value), None, "{value}");
        }
    }

    #[test]
    fn urls_with_passwords_and_tokens() {
        let like = Some(Rule::CredentialLike);
        assert_eq!(rule("database", "postgres://app:s3cr3t@db:5432/app"), like);
        assert_eq!(rule("database", "postgres://app@db:5432/app"), None);
        assert_eq!(rule("database", "postgres://app:${PW}@db/app"), None);
        assert_eq!(rule("database", "https://example.com/a:b@c"), None);
        assert_eq!(
            rule(
                "session",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl"
            ),
            like
        );
    }

    #[test]
    fn randomness_without_a_public_key_name() {
        let like = Some(Rule::CredentialLike);
        let random = "q8Z2vN4xK7pL1mR9tW3yB6cF0hJ5dG";
        assert_eq!(rule("setting", random), like);
        assert_eq!(rule("imageDigest", random), None);
        assert_eq!(rule("clientId", random), None);
        // Hex digests, UUIDs, host names, identifiers, sentences.
        for value in [
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "123e4567-e89b-12d3-a456-426614174000",
            "my-service.prod.svc.cluster.local",
            "MyApplicationConfigurationName1",
            "registry.example.com/team/app:1.2.3",
        ] {
            assert_eq!(rule("setting", value), None, "{value}");
        }
    }

    #[test]
    fn words_split_at_case_and_punctuation() {
        assert_eq!(
            words("existingSecretPasswordKey"),
            ["existing", "secret", "password", "key"]
        );
        assert_eq!(words("DB_PASSWORD"), ["db", "password"]);
        assert_eq!(words("auth.api-key"), ["auth", "api", "key"]);
    }
}
