//! `sealsync audit`: checks a GitOps repository for plaintext secrets, SealedSecrets that
//! will not open or were sealed with old keys, expiring certificates and dangling store
//! references, and reports findings with file and line (docs/audit.md).

mod credentials;
mod keys;
pub(crate) mod manifests;
mod report;
pub(crate) mod walk;
pub(crate) mod yaml;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use rayon::prelude::*;

use crate::cluster::ClusterTarget;
use crate::files::{Sensitivity, write_output};
use manifests::{Facts, scan_file};
use report::{Finding, Totals};
pub use report::{ReportFormat, Severity};

/// One run of `sealsync audit`.
#[derive(Debug, Clone)]
pub struct AuditJob {
    pub paths: Vec<PathBuf>,
    pub private_keys: Vec<PathBuf>,
    /// Ask this controller (`/v1/verify`) when no private key is given.
    pub controller: Option<ClusterTarget>,
    /// Sealing certificates to check for expiry, besides the PEM files in the tree.
    pub certs: Vec<String>,
    pub max_key_age: Option<Duration>,
    pub cert_expiry_warning: Duration,
    pub format: ReportFormat,
    pub fail_on: Severity,
    pub output: Option<PathBuf>,
}

impl AuditJob {
    /// Audits, prints the report, and fails when a finding is at or above `fail_on`.
    pub fn run(&self) -> anyhow::Result<()> {
        if !self.private_keys.is_empty() && self.controller.is_some() {
            bail!("give --private-key or --controller, not both: keys are checked offline");
        }
        let (findings, totals) = self.audit()?;
        let text = report::render(self.format, &findings, totals);
        write_output(self.output.as_deref(), text.as_bytes(), Sensitivity::Public)?;
        let failing = findings
            .iter()
            .filter(|f| f.severity() >= self.fail_on)
            .count();
        if failing > 0 {
            bail!(
                "{failing} findings at or above severity {} (--fail-on)",
                self.fail_on.as_str()
            );
        }
        Ok(())
    }

    fn audit(&self) -> anyhow::Result<(Vec<Finding>, Totals)> {
        let now = time::OffsetDateTime::now_utc();
        let given = keys::Keys::load(&self.private_keys, &self.certs)?;
        let mut findings =
            keys::check_certificates(&given.certificates, now, self.cert_expiry_warning);
        let mut entries = Vec::new();
        let paths = if self.paths.is_empty() {
            vec![PathBuf::from(".")]
        } else {
            self.paths.clone()
        };
        for path in &paths {
            walk::walk(path, &mut entries, &mut findings);
        }
        let scans: Vec<(Vec<Finding>, Facts)> = entries
            .par_iter()
            .map(|entry| scan_file(entry, now, self.cert_expiry_warning))
            .collect();
        let mut facts = Facts::default();
        for (file_findings, file_facts) in scans {
            findings.extend(file_findings);
            facts.extend(file_facts);
        }
        findings.extend(manifests::cross_checks(&mut facts));
        if !given.keyring.is_empty() {
            findings.extend(given.check_sealed(&facts.sealed, now, self.max_key_age));
            if self.max_key_age.is_some() {
                findings.extend(given.unknown_ages());
            }
        } else if let Some(target) = &self.controller {
            findings.extend(keys::verify_through_controller(target, &facts.sealed)?);
        }
        findings.sort_by(|a, b| (&a.file, a.line, a.rule).cmp(&(&b.file, b.line, b.rule)));
        let totals = Totals {
            files: entries.len(),
            documents: facts.documents,
        };
        Ok((findings, totals))
    }
}
