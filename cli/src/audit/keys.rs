//! The checks that need keys or the controller: does each SealedSecret open as it is named,
//! namespaced and scoped, and with which key (how old, still active); and the expiry of
//! sealing certificates, given or found in the tree.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rayon::prelude::*;
use sealsync_api::{KEY_LABEL, KEY_LABEL_ACTIVE, SealedSecret, parse_json, unseal};
use sealsync_crypto::{Keyring, SealingCertificate};
use time::OffsetDateTime;

use super::manifests::SealedDoc;
use super::report::{Finding, Rule};
use super::yaml::{Node, parse_stream};
use crate::cluster::ClusterTarget;
use crate::files::{load_keyring, read_certificate, read_input};

/// What is known of a private key besides the key itself.
#[derive(Debug, Default)]
struct KeyInfo {
    file: String,
    /// Its certificate's start of validity: when the controller made the key.
    created: Option<OffsetDateTime>,
    /// The key Secret's label value when it is not `active` (upstream: `compromised`).
    retired_as: Option<String>,
}

/// The private keys (`--private-key`) and certificates (`--cert`) given to the audit.
#[derive(Debug, Default)]
pub struct Keys {
    pub keyring: Keyring,
    /// By key fingerprint.
    info: BTreeMap<String, KeyInfo>,
    /// Location and certificate of each `--cert`.
    pub certificates: Vec<(String, SealingCertificate)>,
}

impl Keys {
    pub fn load(key_files: &[PathBuf], cert_locations: &[String]) -> anyhow::Result<Keys> {
        let mut info: BTreeMap<String, KeyInfo> = BTreeMap::new();
        for path in key_files {
            let file = super::walk::display(path);
            for key in load_keyring(std::slice::from_ref(path))?.keys() {
                info.entry(key.fingerprint().as_str().to_string())
                    .or_default()
                    .file = file.clone();
            }
            let (text, _) = read_input(Some(path))?;
            for (fingerprint, created, label) in certificates_of_keys(&text) {
                if let Some(entry) = info.get_mut(&fingerprint) {
                    entry.created = Some(created);
                    entry.retired_as = label.filter(|l| l != KEY_LABEL_ACTIVE);
                }
            }
        }
        let mut certificates = Vec::new();
        for location in cert_locations {
            let cert = read_certificate(location)?;
            if let Some(entry) = info.get_mut(cert.public_key().fingerprint().as_str()) {
                entry.created.get_or_insert(cert.not_before());
            }
            certificates.push((location.clone(), cert));
        }
        Ok(Keys {
            keyring: load_keyring(key_files)?,
            info,
            certificates,
        })
    }

    /// Opens every SealedSecret with the keys: those that do not open are findings, and so
    /// are those opened by a retired key or one older than `max_age`.
    pub fn check_sealed(
        &self,
        sealed: &[SealedDoc],
        now: OffsetDateTime,
        max_age: Option<Duration>,
    ) -> Vec<Finding> {
        sealed
            .par_iter()
            .flat_map_iter(|doc| self.check_one(doc, now, max_age))
            .collect()
    }

    fn check_one(
        &self,
        doc: &SealedDoc,
        now: OffsetDateTime,
        max_age: Option<Duration>,
    ) -> Vec<Finding> {
        let finding = |rule, message| Finding {
            rule,
            file: doc.file.clone(),
            line: Some(doc.line),
            object: Some(doc.object.clone()),
            message,
        };
        let sealed = match parse_sealed(doc) {
            Ok(sealed) => sealed,
            Err(message) => return vec![finding(Rule::InvalidManifest, message)],
        };
        let opened = match unseal(&sealed, &self.keyring) {
            Ok(unsealed) => unsealed.opened_by,
            Err(error) => {
                return vec![finding(
                    Rule::SealedSecretDoesNotOpen,
                    format!(
                        "{} does not open with the {} keys given: {error}; the controller will \
                         not unseal it either",
                        doc.object,
                        self.keyring.len()
                    ),
                )];
            }
        };
        let mut keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (value, fingerprint) in &opened {
            keys.entry(fingerprint.as_str()).or_default().push(value);
        }
        let mut findings = Vec::new();
        for (fingerprint, values) in keys {
            let Some(info) = self.info.get(fingerprint) else {
                continue;
            };
            let values = values.join(", ");
            if let Some(label) = &info.retired_as {
                findings.push(finding(
                    Rule::SealedWithInactiveKey,
                    format!(
                        "{} is sealed (values {values}) with key {fingerprint}, marked {KEY_LABEL}={label} \
                         in {}: re-encrypt it to an active key (sealsync reencrypt)",
                        doc.object, info.file
                    ),
                ));
            }
            if let (Some(max_age), Some(created)) = (max_age, info.created)
                && now - created > max_age
            {
                findings.push(finding(
                    Rule::SealedWithOldKey,
                    format!(
                        "{} is sealed (values {values}) with key {fingerprint}, made {}, older than \
                         --max-key-age {}: re-encrypt it to the newest key (sealsync reencrypt)",
                        doc.object,
                        created.date(),
                        humantime::format_duration(max_age)
                    ),
                ));
            }
        }
        findings
    }

    /// The keys whose age `--max-key-age` cannot judge: given without a certificate.
    pub fn unknown_ages(&self) -> Vec<Finding> {
        self.info
            .iter()
            .filter(|(_, info)| info.created.is_none())
            .map(|(fingerprint, info)| Finding {
                rule: Rule::KeyAgeUnknown,
                file: info.file.clone(),
                line: None,
                object: None,
                message: format!(
                    "key {fingerprint} comes without its certificate, so --max-key-age cannot \
                     judge it: give the key Secret or backup (with tls.crt), or its --cert"
                ),
            })
            .collect()
    }
}

fn parse_sealed(doc: &SealedDoc) -> Result<SealedSecret, String> {
    let bytes = serde_json::to_vec(&doc.json).unwrap_or_default();
    parse_json(&bytes).map_err(|e| format!("{} is not a valid SealedSecret: {e}", doc.object))
}

/// The certificates next to private keys: PEM bundles, or key Secrets (alone, in a
/// `v1.List` backup or a kind-less list) with their `tls.crt` and key label.
fn certificates_of_keys(text: &str) -> Vec<(String, OffsetDateTime, Option<String>)> {
    let fingerprint = |cert: &SealingCertificate| {
        (
            cert.public_key().fingerprint().as_str().to_string(),
            cert.not_before(),
        )
    };
    if text.trim_start().starts_with("-----BEGIN") {
        return pem_blocks(text)
            .filter_map(|(_, block)| SealingCertificate::from_pem(block.as_bytes()).ok())
            .map(|cert| {
                let (fp, created) = fingerprint(&cert);
                (fp, created, None)
            })
            .collect();
    }
    let mut found = Vec::new();
    let (documents, _) = parse_stream(text);
    let mut pending: Vec<&Node> = documents.iter().collect();
    while let Some(node) = pending.pop() {
        pending.extend(node.get("items").map(Node::items).unwrap_or_default());
        let Some(encoded) = node.path(&["data", "tls.crt"]).and_then(|n| n.scalar()) else {
            continue;
        };
        let Some(cert) = STANDARD
            .decode(encoded.text().trim())
            .ok()
            .and_then(|pem| SealingCertificate::from_pem(&pem).ok())
        else {
            continue;
        };
        let label = node
            .path(&["metadata", "labels", KEY_LABEL])
            .and_then(|n| n.scalar())
            .map(|s| s.text().to_string());
        let (fp, created) = fingerprint(&cert);
        found.push((fp, created, label));
    }
    found
}

/// The PEM blocks of a text, with the line each starts on.
fn pem_blocks(text: &str) -> impl Iterator<Item = (usize, String)> + '_ {
    let mut lines = text.lines().enumerate();
    std::iter::from_fn(move || {
        let (start, first) = lines.find(|(_, l)| l.trim_start().starts_with("-----BEGIN "))?;
        let mut block = format!("{}\n", first.trim());
        for (_, line) in lines.by_ref() {
            block.push_str(line.trim());
            block.push('\n');
            if line.trim_start().starts_with("-----END ") {
                break;
            }
        }
        Some((start + 1, block))
    })
}

fn expiry(
    cert: &SealingCertificate,
    now: OffsetDateTime,
    warning: Duration,
) -> Option<(Rule, String)> {
    let not_after = cert.not_after();
    let fingerprint = cert.public_key().fingerprint();
    if not_after <= now {
        Some((
            Rule::CertificateExpired,
            format!(
                "sealing certificate {fingerprint} expired on {}: fetch the controller's current \
                 one (sealsync seal fetches it) or renew the key",
                not_after.date()
            ),
        ))
    } else if not_after - now < warning {
        Some((
            Rule::CertificateExpiring,
            format!(
                "sealing certificate {fingerprint} expires on {}, within {}: renew the key or \
                 plan the rotation",
                not_after.date(),
                humantime::format_duration(warning)
            ),
        ))
    } else {
        None
    }
}

/// Expiry of the `--cert` certificates.
pub fn check_certificates(
    certificates: &[(String, SealingCertificate)],
    now: OffsetDateTime,
    warning: Duration,
) -> Vec<Finding> {
    certificates
        .iter()
        .filter_map(|(location, cert)| {
            let (rule, message) = expiry(cert, now, warning)?;
            Some(Finding {
                rule,
                file: location.clone(),
                line: None,
                object: None,
                message,
            })
        })
        .collect()
}

/// A PEM file in the tree: private keys do not belong in Git; sealing certificates (RSA;
/// others are not sealsync's) are checked for expiry.
pub fn scan_pem(file: &str, text: &str, now: OffsetDateTime, warning: Duration) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (line, block) in pem_blocks(text) {
        let finding = |rule, message| Finding {
            rule,
            file: file.to_string(),
            line: Some(line),
            object: None,
            message,
        };
        let header = block.lines().next().unwrap_or_default();
        if header.contains("PRIVATE KEY-----") {
            findings.push(finding(
                Rule::PrivateKeyFile,
                "a PEM private key in the repository: remove it, rotate the key, and keep key \
                 backups out of Git (or encrypted)"
                    .to_string(),
            ));
        } else if header.contains("BEGIN CERTIFICATE")
            && let Ok(cert) = SealingCertificate::from_pem(block.as_bytes())
            && let Some((rule, message)) = expiry(&cert, now, warning)
        {
            findings.push(finding(rule, message));
        }
    }
    findings
}

/// Asks the controller (`POST /v1/verify`) about every SealedSecret; its rate limit makes
/// this about two objects a second.
pub fn verify_through_controller(
    target: &ClusterTarget,
    sealed: &[SealedDoc],
) -> anyhow::Result<Vec<Finding>> {
    if sealed.is_empty() {
        return Ok(Vec::new());
    }
    let controller = target.connect()?;
    let mut findings = Vec::new();
    for doc in sealed {
        let finding = |rule, message| Finding {
            rule,
            file: doc.file.clone(),
            line: Some(doc.line),
            object: Some(doc.object.clone()),
            message,
        };
        match parse_sealed(doc) {
            Err(message) => findings.push(finding(Rule::InvalidManifest, message)),
            Ok(sealed) => {
                if let Err(error) = controller.verify(&sealed) {
                    findings.push(finding(Rule::SealedSecretDoesNotOpen, format!("{error:#}")));
                }
            }
        }
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealsync_api::{
        Format, SealOptions, key_secret, parse_documents, seal_secret, to_document,
    };
    use sealsync_crypto::{CertificateParams, MIN_KEY_BITS, PrivateKey};

    const SECRET: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: db, namespace: prod}\nstringData: {password: hunter2}\n";

    fn sealed_doc(sealed: &SealedSecret) -> SealedDoc {
        let yaml = to_document(std::slice::from_ref(sealed), Format::Yaml).unwrap();
        let (documents, _) = parse_stream(&yaml);
        SealedDoc::new(
            "SealedSecret prod/db".into(),
            documents[0].to_json(),
            "s.yaml",
            2,
        )
    }

    fn cert(key: &PrivateKey, validity: Duration) -> SealingCertificate {
        let params = CertificateParams {
            common_name: String::new(),
            validity,
        };
        SealingCertificate::generate(key, &params).unwrap()
    }

    fn rules(findings: &[Finding]) -> Vec<Rule> {
        findings.iter().map(|f| f.rule).collect()
    }

    #[test]
    fn key_checks_find_retired_old_and_mismatched() {
        let dir = tempfile::tempdir().unwrap();
        let active = PrivateKey::generate(MIN_KEY_BITS).unwrap();
        let retired = PrivateKey::generate(MIN_KEY_BITS).unwrap();
        let bare = PrivateKey::generate(MIN_KEY_BITS).unwrap();
        let year = Duration::from_secs(365 * 86400);
        let mut retired_secret = key_secret(&retired, &cert(&retired, year), "kube-system");
        retired_secret
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(KEY_LABEL.into(), "compromised".into());
        let backup = [
            key_secret(&active, &cert(&active, year), "kube-system"),
            retired_secret,
        ];
        std::fs::write(
            dir.path().join("backup.yaml"),
            to_document(&backup, Format::Yaml).unwrap().as_bytes(),
        )
        .unwrap();
        std::fs::write(dir.path().join("bare.pem"), bare.to_pkcs1_pem().as_bytes()).unwrap();
        let keys = Keys::load(
            &[dir.path().join("backup.yaml"), dir.path().join("bare.pem")],
            &[],
        )
        .unwrap();

        let secret = parse_documents(SECRET, "s", "Secret").unwrap().remove(0);
        let seal = |key: &PrivateKey| {
            seal_secret(&secret, key.public_key(), &SealOptions::default()).unwrap()
        };
        let now = OffsetDateTime::now_utc();
        let check =
            |sealed: &SealedSecret, max_age| keys.check_sealed(&[sealed_doc(sealed)], now, max_age);

        assert!(check(&seal(&active), Some(year)).is_empty());
        assert!(check(&seal(&bare), Some(Duration::ZERO)).is_empty());
        let findings = check(&seal(&retired), None);
        assert_eq!(rules(&findings), [Rule::SealedWithInactiveKey]);
        assert!(
            findings[0]
                .message
                .contains("marked sealedsecrets.bitnami.com/sealed-secrets-key=compromised"),
            "{}",
            findings[0].message
        );
        let later = now + Duration::from_secs(3600);
        let findings = keys.check_sealed(
            &[sealed_doc(&seal(&active))],
            later,
            Some(Duration::from_secs(60)),
        );
        assert_eq!(rules(&findings), [Rule::SealedWithOldKey]);

        let mut renamed = seal(&active);
        renamed.metadata.name = Some("renamed".into());
        let findings = check(&renamed, None);
        assert_eq!(rules(&findings), [Rule::SealedSecretDoesNotOpen]);
        assert!(
            findings[0].message.contains("\"prod/renamed\""),
            "{}",
            findings[0].message
        );
        assert!(!findings[0].message.contains("hunter2"));

        let unknown = keys.unknown_ages();
        assert_eq!(rules(&unknown), [Rule::KeyAgeUnknown]);
        assert!(unknown[0].message.contains(bare.fingerprint().as_str()));
    }

    #[test]
    fn pem_files_private_keys_and_expiring_certificates() {
        let key = PrivateKey::generate(MIN_KEY_BITS).unwrap();
        let soon = cert(&key, Duration::from_secs(86400));
        let text = format!("{}\n{}", soon.pem(), *key.to_pkcs1_pem());
        let now = OffsetDateTime::now_utc();
        let findings = scan_pem("certs/all.pem", &text, now, Duration::from_secs(30 * 86400));
        assert_eq!(
            rules(&findings),
            [Rule::CertificateExpiring, Rule::PrivateKeyFile]
        );
        assert_eq!(findings[0].line, Some(1));
        assert!(findings[1].line.unwrap() > 2);
        let later = now + Duration::from_secs(2 * 86400);
        let findings = scan_pem(
            "certs/all.pem",
            soon.pem(),
            later,
            Duration::from_secs(86400),
        );
        assert_eq!(rules(&findings), [Rule::CertificateExpired]);
        assert!(scan_pem("c.pem", soon.pem(), now, Duration::from_secs(3600)).is_empty());
    }
}
