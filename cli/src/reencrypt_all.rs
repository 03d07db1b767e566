//! `sealsync reencrypt --all PATH`: every SealedSecret under a path re-encrypted to the
//! newest key in place. Only the bytes of the `encryptedData` values change (replaced by
//! their YAML spans), so comments, key order and formatting survive; atomic per file.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::bail;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use saphyr_parser::ScalarStyle;
use sealsync_api::{SealedSecret, parse_json, reencrypt, unseal};
use sealsync_crypto::{Keyring, SealingCertificate, seal_value};
use serde::Serialize;

use crate::audit::walk::{self, Entry, FileKind};
use crate::audit::yaml::{Node, parse_stream};
use crate::cluster::Controller;
use crate::files::{Sensitivity, load_keyring, replace_atomically, write_output};
use crate::ops::CertSource;

/// One run of `reencrypt --all`.
#[derive(Debug, Clone)]
pub struct ReencryptAllJob {
    pub root: PathBuf,
    /// Offline with these keys (to `cert`); through the controller when empty.
    pub private_keys: Vec<PathBuf>,
    pub cert: CertSource,
    pub json: bool,
    pub dry_run: bool,
}

impl ReencryptAllJob {
    /// Rewrites the files, prints the summary, and fails when any file failed.
    pub fn run(&self) -> anyhow::Result<()> {
        let resealer = if self.private_keys.is_empty() {
            Resealer::Controller(self.cert.cluster.connect()?)
        } else {
            Resealer::Offline {
                keyring: load_keyring(&self.private_keys)?,
                cert: self.cert.load()?,
            }
        };
        let (mut entries, mut findings) = (Vec::new(), Vec::new());
        walk::walk(&self.root, &mut entries, &mut findings);
        entries.retain(|entry| entry.kind == FileKind::Yaml);

        let progress = progress_bar(entries.len(), "files");
        let results: Vec<FileResult> = entries
            .par_iter()
            .map(|entry| {
                let result = self.file(entry, &resealer);
                progress.inc(1);
                result
            })
            .collect();
        progress.finish_and_clear();

        let mut summary = Summary {
            dry_run: self.dry_run,
            files: entries.len(),
            ..Summary::default()
        };
        summary.failures = findings
            .into_iter()
            .map(|finding| Failure {
                file: finding.file,
                message: finding.message,
            })
            .collect();
        for result in results {
            match result.outcome {
                Ok(counts) => {
                    summary.reencrypted += counts.reencrypted;
                    summary.unchanged += counts.unchanged;
                    summary.files_rewritten += usize::from(counts.reencrypted > 0);
                }
                Err(message) => summary.failures.push(Failure {
                    file: result.file,
                    message,
                }),
            }
        }
        summary.failures.sort_by(|a, b| a.file.cmp(&b.file));
        summary.failed = summary.failures.len();
        let text = if self.json {
            serde_json::to_string_pretty(&summary)? + "\n"
        } else {
            summary.text()
        };
        write_output(None, text.as_bytes(), Sensitivity::Public)?;
        if summary.failed > 0 {
            bail!(
                "{} left untouched (listed above): fix and run again",
                count(
                    summary.failed,
                    "file failed and was",
                    "files failed and were"
                )
            );
        }
        Ok(())
    }

    fn file(&self, entry: &Entry, resealer: &Resealer) -> FileResult {
        let outcome = entry
            .read()
            .and_then(|text| rewrite(&text, &entry.path, resealer))
            .and_then(|(text, counts)| {
                if counts.reencrypted > 0 && !self.dry_run {
                    replace_atomically(&entry.path, text.as_bytes())
                        .map_err(|error| format!("{error:#}"))?;
                }
                Ok(counts)
            });
        FileResult {
            file: entry.display.clone(),
            outcome,
        }
    }
}

/// A bar of `len` things (`unit`) done, on standard error when it is a terminal (hidden
/// otherwise, so that logs and pipes stay clean).
pub(crate) fn progress_bar(len: usize, unit: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(len as u64), target);
    let template = format!("{{bar:40}} {{pos}}/{{len}} {unit} ({{eta}} left)");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// Who re-seals: the old private keys to the newest certificate, or the controller, whose
/// private keys never leave the cluster.
#[derive(Debug)]
enum Resealer {
    Offline {
        keyring: Keyring,
        cert: SealingCertificate,
    },
    Controller(Controller),
}

impl Resealer {
    /// The new `encryptedData`, or `None` when every value is already sealed to the newest
    /// key (known offline only: the controller does not say which key opened a value).
    fn reseal(&self, sealed: &SealedSecret) -> anyhow::Result<Option<BTreeMap<String, String>>> {
        let (keyring, cert) = match self {
            Resealer::Controller(controller) => {
                return Ok(Some(controller.rotate(sealed)?.spec.encrypted_data));
            }
            Resealer::Offline { keyring, cert } => (keyring, cert),
        };
        let key = cert.public_key();
        let unsealed = unseal(sealed, keyring)?;
        if unsealed
            .opened_by
            .values()
            .all(|fingerprint| fingerprint == key.fingerprint())
        {
            return Ok(None);
        }
        let template_keys = sealed.spec.template.as_ref().map(|t| &t.data);
        let shadowed = template_keys.is_some_and(|template| {
            template
                .keys()
                .any(|k| sealed.spec.encrypted_data.contains_key(k))
        });
        if shadowed {
            // Rendered template keys replaced those values in the unsealed Secret: open
            // the ciphertexts again.
            return Ok(Some(reencrypt(sealed, keyring, key)?.spec.encrypted_data));
        }
        // The values are open already: seal them, rather than open them a second time
        // (RSA decryption is the bulk of the cost).
        let values = unsealed.secret.values();
        let label = sealed.label();
        let resealed = sealed
            .spec
            .encrypted_data
            .par_iter()
            .map(|(name, _)| {
                let value = values
                    .get(name.as_str())
                    .ok_or_else(|| anyhow::anyhow!("value {name:?} did not open"))?;
                let ciphertext = seal_value(key, &label, value.expose())?;
                Ok((name.clone(), STANDARD.encode(ciphertext)))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Some(resealed))
    }
}

#[derive(Debug)]
struct FileResult {
    file: String,
    outcome: Result<Counts, String>,
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    reencrypted: usize,
    unchanged: usize,
}

/// The SealedSecret documents of a stream: top-level ones and those in `kind: List` items.
pub(crate) fn sealed_secret_nodes(documents: &[Node]) -> Vec<&Node> {
    let is_sealed = |node: &Node| {
        node.str_at("kind") == Some("SealedSecret")
            && node
                .str_at("apiVersion")
                .is_some_and(|v| v.starts_with("bitnami.com/"))
    };
    documents
        .iter()
        .flat_map(|document| match document.str_at("kind") {
            Some("List") => document.get("items").map(Node::items).unwrap_or_default(),
            _ => std::slice::from_ref(document),
        })
        .filter(|node| is_sealed(node))
        .collect()
}

fn parse_sealed(node: &Node) -> Result<SealedSecret, String> {
    let bytes = serde_json::to_vec(&node.to_json()).unwrap_or_default();
    parse_json(&bytes)
        .map_err(|e| format!("line {}: not a valid SealedSecret: {e}; fix it", node.line))
}

/// `text` (of the file at `path`) with the `encryptedData` values of its SealedSecrets
/// re-sealed, and the counts; an error (one line, naming the line and object) leaves the
/// file as it is.
fn rewrite(text: &str, path: &Path, resealer: &Resealer) -> Result<(String, Counts), String> {
    // A file that never names the kind holds none (the rest of a repository need not even
    // be valid YAML, e.g. Go templates).
    if !text.contains("SealedSecret") {
        return Ok((text.to_string(), Counts::default()));
    }
    let (documents, error) = parse_stream(text);
    if let Some(error) = error {
        return Err(format!(
            "line {}: not valid YAML ({}): fix it",
            error.line, error.reason
        ));
    }
    let mut counts = Counts::default();
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    let mut expected = Vec::new();
    let mut folder_namespace = None;
    for node in sealed_secret_nodes(&documents) {
        let mut sealed = parse_sealed(node)?;
        if sealed.metadata.namespace.is_none() {
            // Sealed for the namespace its folder's kustomization sets, as audit reads it.
            sealed.metadata.namespace = folder_namespace
                .get_or_insert_with(|| kustomization_namespace(path))
                .clone();
        }
        let object = format!("line {}: SealedSecret {}", node.line, sealed.object_ref());
        if sealed.spec.data.is_some() {
            return Err(format!(
                "{object} uses the deprecated spec.data, which has no values to rewrite in \
                 place: convert it with `sealsync reencrypt -f FILE`"
            ));
        }
        let Some(values) = resealer
            .reseal(&sealed)
            .map_err(|error| format!("{object}: {error:#}"))?
        else {
            counts.unchanged += 1;
            expected.push(None);
            continue;
        };
        let encrypted = node.path(&["spec", "encryptedData"]);
        for (key, value) in encrypted.map(Node::entries).unwrap_or_default() {
            let name = key.scalar().map(|s| s.text()).unwrap_or_default();
            let resealed = values.get(name).ok_or_else(|| {
                format!("{object}: value {name:?} came back without a ciphertext")
            })?;
            let edit = in_style_of(text, value, resealed)
                .map_err(|why| format!("{object}: value {name:?} (line {}) {why}", key.line))?;
            edits.push(edit);
        }
        counts.reencrypted += 1;
        expected.push(Some(values));
    }
    let rewritten = apply(text, edits)?;
    check_only_values_changed(&rewritten, &expected)?;
    Ok((rewritten, counts))
}

/// The `namespace:` of the kustomization next to `file`, if there is one.
pub(crate) fn kustomization_namespace(file: &Path) -> Option<String> {
    let folder = file.parent()?;
    ["kustomization.yaml", "kustomization.yml"]
        .iter()
        .find_map(|name| std::fs::read_to_string(folder.join(name)).ok())
        .and_then(|text| {
            let (documents, _) = parse_stream(&text);
            Some(documents.first()?.str_at("namespace")?.to_string())
        })
}

/// The bytes of the scalar at `node` to replace, and `ciphertext` written the way it is
/// (plain, single or double quoted); base64 needs no escaping in any of them.
fn in_style_of(
    text: &str,
    node: &Node,
    ciphertext: &str,
) -> Result<(Range<usize>, String), &'static str> {
    let source = &text[node.span.clone()];
    let style = node.scalar().map(|s| s.style());
    match (source.chars().next(), style) {
        (Some('*'), _) => Err("is an alias: write the value itself and run again"),
        (Some('&' | '!'), _) => Err("has an anchor or a tag: remove it and run again"),
        (_, Some(ScalarStyle::Plain)) if !source.is_empty() => {
            Ok((node.span.clone(), ciphertext.to_string()))
        }
        (
            Some(quote @ ('\'' | '"')),
            Some(ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted),
        ) => {
            // The span may run on over blanks and a comment to the end of the line: the
            // scalar ends at its closing quote (base64 holds no quote or escape).
            let end = source[1..]
                .find(quote)
                .ok_or("has no closing quote: fix it and run again")?;
            let span = node.span.start..node.span.start + end + 2;
            Ok((span, format!("{quote}{ciphertext}{quote}")))
        }
        (_, Some(ScalarStyle::Literal | ScalarStyle::Folded)) => {
            Err("is a block scalar (| or >): write it on one line and run again")
        }
        _ => Err("is not a ciphertext: seal it again"),
    }
}

/// Replaces each span of `text` by its new text.
fn apply(text: &str, mut edits: Vec<(Range<usize>, String)>) -> Result<String, String> {
    edits.sort_by_key(|(span, _)| span.start);
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut at = 0;
    for (span, replacement) in edits {
        if span.start < at {
            return Err(format!(
                "byte {}: one value is written twice (an anchor shared by two keys?): \
                 write each value itself and run again",
                span.start
            ));
        }
        out.push_str(&text[at..span.start]);
        out.push_str(&replacement);
        at = span.end;
    }
    out.push_str(&text[at..]);
    Ok(out)
}

/// Reads the rewritten text back: it must hold the same SealedSecrets, with exactly the new
/// values, so that a bug in the span arithmetic never reaches a file.
fn check_only_values_changed(
    rewritten: &str,
    expected: &[Option<BTreeMap<String, String>>],
) -> Result<(), String> {
    let failed = || {
        "rewriting it in place would change more than its values: left untouched; re-encrypt \
         it with `sealsync reencrypt -f FILE` and report the file's layout"
            .to_string()
    };
    let (documents, error) = parse_stream(rewritten);
    let nodes = sealed_secret_nodes(&documents);
    if error.is_some() || nodes.len() != expected.len() {
        return Err(failed());
    }
    for (node, expected) in nodes.into_iter().zip(expected) {
        if let Some(values) = expected
            && parse_sealed(node).map(|s| s.spec.encrypted_data).as_ref() != Ok(values)
        {
            return Err(failed());
        }
    }
    Ok(())
}

/// What `reencrypt --all` did, printed at the end (`-o json` for scripts).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    dry_run: bool,
    /// YAML files read.
    files: usize,
    /// Files written (or, with `--dry-run`, that would be).
    files_rewritten: usize,
    /// SealedSecrets re-encrypted (or that would be).
    reencrypted: usize,
    /// SealedSecrets already sealed to the newest key.
    unchanged: usize,
    /// Files left untouched because of an error, listed in `failures`.
    failed: usize,
    failures: Vec<Failure>,
}

#[derive(Debug, Serialize)]
struct Failure {
    file: String,
    message: String,
}

impl Summary {
    fn text(&self) -> String {
        let verb = if self.dry_run {
            "Would re-encrypt"
        } else {
            "Re-encrypted"
        };
        let mut text = format!(
            "{verb} {} in {} of {}; {} already sealed to the newest key; {}{}\n",
            count(self.reencrypted, "SealedSecret", "SealedSecrets"),
            self.files_rewritten,
            count(self.files, "file", "files"),
            self.unchanged,
            count(self.failed, "file failed", "files failed"),
            if self.failures.is_empty() { "" } else { ":" }
        );
        for failure in &self.failures {
            text.push_str(&format!("  {}: {}\n", failure.file, failure.message));
        }
        text
    }
}

pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each value of mapping `text` rewritten to `NEW`, as the rewrite does.
    fn rewritten(text: &str) -> Result<String, String> {
        let (documents, error) = parse_stream(text);
        assert_eq!(error, None);
        let edits = documents[0]
            .entries()
            .iter()
            .map(|(_, value)| in_style_of(text, value, "NEW").map_err(str::to_string))
            .collect::<Result<Vec<_>, _>>()?;
        apply(text, edits)
    }

    #[test]
    fn values_keep_their_quotes_and_what_follows_them() {
        let text = "a: old   # one\nb: 'old'  # two\nc: \"old\"\n";
        assert_eq!(
            rewritten(text).unwrap(),
            "a: NEW   # one\nb: 'NEW'  # two\nc: \"NEW\"\n"
        );
        assert_eq!(
            rewritten("{a: old, b: 'old'}\n").unwrap(),
            "{a: NEW, b: 'NEW'}\n"
        );
    }

    #[test]
    fn values_that_cannot_be_rewritten_in_place_are_refused() {
        for (text, why) in [
            ("a: |\n  old\n", "block scalar"),
            ("a: &x old\n", "anchor or a tag"),
            ("a: !!str old\n", "anchor or a tag"),
            ("x: &x old\na: *x\n", "anchor or a tag"),
            ("a:\n", "not a ciphertext"),
        ] {
            let error = rewritten(text).unwrap_err();
            assert!(error.contains(why), "{text:?}: {error}");
        }
    }
}
