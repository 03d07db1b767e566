//! Findings and how they are printed: a table for people, JSON for scripts, SARIF 2.1.0
//! for code-scanning tools. No output ever holds a value, only keys, objects and lines.

use std::fmt::Write as _;

use clap::ValueEnum;
use serde::Serialize;

/// How serious a finding is; `--fail-on` sets the lowest that fails the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing, nothing is wrong yet.
    Info,
    /// Likely a problem: a heuristic match, an old key, a certificate about to expire.
    Warning,
    /// A plaintext secret in the repository, a SealedSecret that will not open, bad input.
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }

    fn sarif_level(self) -> &'static str {
        match self {
            Severity::Info => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// The checks of `sealsync audit`; docs/audit.md describes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    PlaintextSecret,
    CredentialFormat,
    CredentialLike,
    PrivateKeyFile,
    SealedSecretDoesNotOpen,
    SealedSecretMalformed,
    SealedWithInactiveKey,
    SealedWithOldKey,
    KeyAgeUnknown,
    CertificateExpired,
    CertificateExpiring,
    UndeclaredSecretStore,
    DuplicateSecret,
    InvalidYaml,
    InvalidManifest,
    UnknownKind,
    SymlinkOutsideTree,
    UnreadableFile,
}

impl Rule {
    pub const ALL: [Rule; 18] = [
        Rule::PlaintextSecret,
        Rule::CredentialFormat,
        Rule::CredentialLike,
        Rule::PrivateKeyFile,
        Rule::SealedSecretDoesNotOpen,
        Rule::SealedSecretMalformed,
        Rule::SealedWithInactiveKey,
        Rule::SealedWithOldKey,
        Rule::KeyAgeUnknown,
        Rule::CertificateExpired,
        Rule::CertificateExpiring,
        Rule::UndeclaredSecretStore,
        Rule::DuplicateSecret,
        Rule::InvalidYaml,
        Rule::InvalidManifest,
        Rule::UnknownKind,
        Rule::SymlinkOutsideTree,
        Rule::UnreadableFile,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::PlaintextSecret => "plaintext-secret",
            Rule::CredentialFormat => "credential-format",
            Rule::CredentialLike => "credential-like-value",
            Rule::PrivateKeyFile => "private-key-file",
            Rule::SealedSecretDoesNotOpen => "sealed-secret-does-not-open",
            Rule::SealedSecretMalformed => "sealed-secret-malformed",
            Rule::SealedWithInactiveKey => "sealed-with-inactive-key",
            Rule::SealedWithOldKey => "sealed-with-old-key",
            Rule::KeyAgeUnknown => "key-age-unknown",
            Rule::CertificateExpired => "certificate-expired",
            Rule::CertificateExpiring => "certificate-expiring",
            Rule::UndeclaredSecretStore => "undeclared-secret-store",
            Rule::DuplicateSecret => "duplicate-secret",
            Rule::InvalidYaml => "invalid-yaml",
            Rule::InvalidManifest => "invalid-manifest",
            Rule::UnknownKind => "unknown-kind",
            Rule::SymlinkOutsideTree => "symlink-outside-tree",
            Rule::UnreadableFile => "unreadable-file",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Rule::CredentialLike
            | Rule::SealedWithInactiveKey
            | Rule::SealedWithOldKey
            | Rule::CertificateExpiring
            | Rule::UndeclaredSecretStore => Severity::Warning,
            Rule::KeyAgeUnknown => Severity::Info,
            _ => Severity::Error,
        }
    }

    /// One line for SARIF's rule descriptions.
    fn description(self) -> &'static str {
        match self {
            Rule::PlaintextSecret => "A Secret manifest with plaintext data in the repository",
            Rule::CredentialFormat => {
                "A value in the format of a credential (cloud access key, API token, PEM \
                 private key) in a Helm values file, ConfigMap or Kustomize generator"
            }
            Rule::CredentialLike => {
                "A value that looks like a credential (by its key's name, its randomness or a \
                 password in a URL) in a Helm values file, ConfigMap or Kustomize generator"
            }
            Rule::PrivateKeyFile => "A PEM private key file in the repository",
            Rule::SealedSecretDoesNotOpen => {
                "A SealedSecret that the keys or the controller cannot open as it is named, \
                 namespaced and scoped"
            }
            Rule::SealedSecretMalformed => "A SealedSecret value that is not valid base64",
            Rule::SealedWithInactiveKey => "A SealedSecret sealed with a key no longer active",
            Rule::SealedWithOldKey => "A SealedSecret sealed with a key older than --max-key-age",
            Rule::KeyAgeUnknown => "A private key given without its certificate or creation time",
            Rule::CertificateExpired => "A sealing certificate that has expired",
            Rule::CertificateExpiring => {
                "A sealing certificate that expires within --cert-expiry-warning"
            }
            Rule::UndeclaredSecretStore => {
                "An ExternalSecret referencing a store the repository does not declare"
            }
            Rule::DuplicateSecret => "Two manifests in one directory declaring the same Secret",
            Rule::InvalidYaml => "A file that is not valid YAML",
            Rule::InvalidManifest => "A manifest without the fields its kind needs",
            Rule::UnknownKind => "A kind unknown in an API group sealsync reads",
            Rule::SymlinkOutsideTree => "A symbolic link to outside the scanned tree",
            Rule::UnreadableFile => "A file or directory that cannot be read as UTF-8 text",
        }
    }
}

/// One problem, at a file and line.
#[derive(Debug, Clone)]
pub struct Finding {
    pub rule: Rule,
    /// The path as shown to the user (under the scanned path).
    pub file: String,
    /// 1-based; `None` for what concerns the whole file.
    pub line: Option<usize>,
    /// `Kind namespace/name` of the object concerned, when there is one.
    pub object: Option<String>,
    /// What is wrong and what to do; never a value.
    pub message: String,
}

impl Finding {
    pub fn severity(&self) -> Severity {
        self.rule.severity()
    }

    fn location(&self) -> String {
        match self.line {
            Some(line) => format!("{}:{line}", self.file),
            None => self.file.clone(),
        }
    }
}

/// What was scanned, for the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub files: usize,
    pub documents: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Sarif,
}

pub fn render(format: ReportFormat, findings: &[Finding], totals: Totals) -> String {
    match format {
        ReportFormat::Table => table(findings, totals),
        ReportFormat::Json => json(findings, totals),
        ReportFormat::Sarif => sarif(findings),
    }
}

fn counts(findings: &[Finding]) -> [usize; 3] {
    let mut counts = [0; 3];
    for finding in findings {
        counts[finding.severity() as usize] += 1;
    }
    counts
}

fn table(findings: &[Finding], totals: Totals) -> String {
    let mut out = String::new();
    if !findings.is_empty() {
        let locations: Vec<String> = findings.iter().map(Finding::location).collect();
        let width = |column: &dyn Fn(usize) -> usize, header: &str| {
            (0..findings.len())
                .map(column)
                .chain([header.len()])
                .max()
                .unwrap_or(0)
        };
        let rule_width = width(&|i| findings[i].rule.id().len(), "RULE");
        let location_width = width(&|i| locations[i].len(), "LOCATION");
        let _ = writeln!(
            out,
            "{:<8} {:<rule_width$} {:<location_width$} MESSAGE",
            "SEVERITY", "RULE", "LOCATION"
        );
        for (finding, location) in findings.iter().zip(&locations) {
            let _ = writeln!(
                out,
                "{:<8} {:<rule_width$} {:<location_width$} {}",
                finding.severity().as_str(),
                finding.rule.id(),
                location,
                finding.message
            );
        }
        out.push('\n');
    }
    let [info, warning, error] = counts(findings);
    let _ = writeln!(
        out,
        "{} findings ({error} errors, {warning} warnings, {info} info) in {} files, {} documents",
        findings.len(),
        totals.files,
        totals.documents
    );
    out
}

fn json(findings: &[Finding], totals: Totals) -> String {
    let [info, warning, error] = counts(findings);
    let findings: Vec<_> = findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "rule": f.rule.id(),
                "severity": f.severity(),
                "file": f.file,
                "line": f.line,
                "object": f.object,
                "message": f.message,
            })
        })
        .collect();
    let report = serde_json::json!({
        "findings": findings,
        "summary": {
            "files": totals.files,
            "documents": totals.documents,
            "errors": error,
            "warnings": warning,
            "info": info,
        },
    });
    serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
}

/// SARIF 2.1.0 with every rule described, and results located by a URI relative to the
/// working directory (where CI runs the audit), or a `file://` URI for absolute paths.
fn sarif(findings: &[Finding]) -> String {
    let rules: Vec<_> = Rule::ALL
        .iter()
        .map(|rule| {
            serde_json::json!({
                "id": rule.id(),
                "shortDescription": {"text": rule.description()},
                "defaultConfiguration": {"level": rule.severity().sarif_level()},
            })
        })
        .collect();
    let results: Vec<_> = findings
        .iter()
        .map(|f| {
            let mut location = serde_json::json!({
                "physicalLocation": {
                    "artifactLocation": {"uri": sarif_uri(&f.file)},
                }
            });
            if let Some(line) = f.line {
                location["physicalLocation"]["region"] = serde_json::json!({"startLine": line});
            }
            serde_json::json!({
                "ruleId": f.rule.id(),
                "ruleIndex": Rule::ALL.iter().position(|r| *r == f.rule),
                "level": f.severity().sarif_level(),
                "message": {"text": f.message},
                "locations": [location],
            })
        })
        .collect();
    let log = serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "sealsync",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&log).unwrap_or_default() + "\n"
}

/// A URI reference for a path: relative paths keep their form (with `/`), absolute ones
/// become `file://` URIs; characters URIs reserve are percent-encoded.
fn sarif_uri(path: &str) -> String {
    let path = path.replace('\\', "/");
    let mut uri = String::new();
    if path.starts_with('/') {
        uri.push_str("file://");
    }
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                uri.push(byte as char)
            }
            _ => {
                let _ = write!(uri, "%{byte:02X}");
            }
        }
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rule: Rule, line: Option<usize>) -> Finding {
        Finding {
            rule,
            file: "dir name/secret.yaml".into(),
            line,
            object: Some("Secret prod/db".into()),
            message: "seal it".into(),
        }
    }

    #[test]
    fn sarif_has_rules_levels_and_locations() {
        let findings = [
            finding(Rule::PlaintextSecret, Some(7)),
            finding(Rule::KeyAgeUnknown, None),
        ];
        let log: serde_json::Value =
            serde_json::from_str(&render(ReportFormat::Sarif, &findings, Totals::default()))
                .unwrap();
        assert_eq!(log["version"], "2.1.0");
        let run = &log["runs"][0];
        assert_eq!(
            run["tool"]["driver"]["rules"].as_array().unwrap().len(),
            Rule::ALL.len()
        );
        let result = &run["results"][0];
        assert_eq!(result["ruleId"], "plaintext-secret");
        assert_eq!(run["results"][1]["ruleId"], "key-age-unknown");
        assert_eq!(result["level"], "error");
        let location = &result["locations"][0]["physicalLocation"];
        assert_eq!(
            location["artifactLocation"]["uri"],
            "dir%20name/secret.yaml"
        );
        assert_eq!(location["region"]["startLine"], 7);
        assert_eq!(run["results"][1]["level"], "note");
        assert!(run["results"][1]["locations"][0]["physicalLocation"]["region"].is_null());
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(
            run["tool"]["driver"]["rules"][index]["id"],
            "plaintext-secret"
        );
    }

    #[test]
    fn absolute_paths_become_file_uris() {
        assert_eq!(sarif_uri("/tmp/a b#.yaml"), "file:///tmp/a%20b%23.yaml");
    }

    #[test]
    fn table_lines_up_and_counts() {
        let text = render(
            ReportFormat::Table,
            &[finding(Rule::PlaintextSecret, Some(7))],
            Totals {
                files: 3,
                documents: 5,
            },
        );
        assert!(text.starts_with("SEVERITY RULE"), "{text}");
        assert!(
            text.contains("error    plaintext-secret dir name/secret.yaml:7 seal it"),
            "{text}"
        );
        assert!(
            text.ends_with("1 findings (1 errors, 0 warnings, 0 info) in 3 files, 5 documents\n")
        );
    }

    #[test]
    fn rule_ids_are_unique() {
        let ids: std::collections::BTreeSet<_> = Rule::ALL.iter().map(|r| r.id()).collect();
        assert_eq!(ids.len(), Rule::ALL.len());
    }
}
