//! Reading inputs (files, stdin, certificate URLs, kubeconfig) and writing outputs atomically.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use sealsync_api::{Format, SecretManifest, to_document};
use sealsync_crypto::{Keyring, SealingCertificate};
use serde::Deserialize;
use zeroize::Zeroizing;

/// Reads a whole file, or standard input when `path` is `None` or `-`.
pub fn read_input(path: Option<&Path>) -> anyhow::Result<(Zeroizing<String>, String)> {
    let mut text = Zeroizing::new(String::new());
    match path.filter(|p| p.as_os_str() != "-") {
        Some(path) => {
            let mut file =
                fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
            file.read_to_string(&mut text)
                .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
            Ok((text, path.display().to_string()))
        }
        None => {
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read standard input as UTF-8 text")?;
            Ok((text, "standard input".into()))
        }
    }
}

/// Whether what is written holds plaintext secrets (owner-only permissions) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensitivity {
    Public,
    Private,
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, renamed over
/// the target only once complete, so a failure never leaves a half-written file.
pub fn write_atomically(path: &Path, bytes: &[u8], sensitivity: Sensitivity) -> anyhow::Result<()> {
    let mode = match sensitivity {
        Sensitivity::Public => 0o644,
        Sensitivity::Private => 0o600,
    };
    write_with_mode(path, bytes, mode)
}

/// Replaces the existing file `path` atomically, keeping its permissions.
pub fn replace_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let permissions = fs::metadata(path)
        .with_context(|| format!("cannot read the permissions of {}", path.display()))?
        .permissions();
    #[cfg(unix)]
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        permissions.mode() & 0o7777
    };
    #[cfg(not(unix))]
    let mode = 0o644;
    write_with_mode(path, bytes, mode)
}

/// `mode`: Unix permission bits (ignored elsewhere).
fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let failed = || format!("cannot write {}", path.display());
    let mut file = tempfile::NamedTempFile::new_in(folder).with_context(failed)?;
    file.write_all(bytes).with_context(failed)?;
    file.as_file().sync_all().with_context(failed)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(file.path(), fs::Permissions::from_mode(mode)).with_context(failed)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    file.persist(path)
        .map_err(|e| e.error)
        .with_context(failed)?;
    Ok(())
}

/// Writes to `path`, or to standard output when there is none.
pub fn write_output(
    path: Option<&Path>,
    bytes: &[u8],
    sensitivity: Sensitivity,
) -> anyhow::Result<()> {
    match path.filter(|p| p.as_os_str() != "-") {
        Some(path) => write_atomically(path, bytes, sensitivity),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(bytes)
                .and_then(|()| stdout.flush())
                .context("cannot write to standard output")
        }
    }
}

/// Loads a sealing certificate for sealing, refusing an expired one.
pub fn load_certificate(location: &str) -> anyhow::Result<SealingCertificate> {
    let cert = read_certificate(location)?;
    cert.ensure_current()
        .with_context(|| format!("certificate {location}"))?;
    Ok(cert)
}

/// Reads a certificate from a file path, a `file://` URL or an `http(s)://` URL.
pub fn read_certificate(location: &str) -> anyhow::Result<SealingCertificate> {
    let bytes = if location.starts_with("http://") || location.starts_with("https://") {
        fetch_url(location)?
    } else {
        let path = location.strip_prefix("file://").unwrap_or(location);
        fs::read(path).map_err(|error| anyhow::anyhow!("open {path}: {}", os_reason(&error)))?
    };
    SealingCertificate::from_pem(&bytes).with_context(|| format!("certificate {location}"))
}

/// The reason of an I/O error as Go and C word it (`no such file or directory`), without
/// Rust's ` (os error N)`; kubeseal prints it so and scripts match it.
fn os_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    let reason = error
        .raw_os_error()
        .and_then(|code| text.strip_suffix(&format!(" (os error {code})")))
        .unwrap_or(&text);
    let mut chars = reason.chars();
    chars
        .next()
        .map(|first| first.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

fn fetch_url(url: &str) -> anyhow::Result<Vec<u8>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let agent = ureq::Agent::config_builder()
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .provider(ureq::tls::TlsProvider::Rustls)
                .unversioned_rustls_crypto_provider(provider)
                .root_certs(ureq::tls::RootCerts::PlatformVerifier)
                .build(),
        )
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .new_agent();
    let mut response = agent
        .get(url)
        .call()
        .with_context(|| format!("cannot fetch certificate from {url}"))?;
    response
        .body_mut()
        .with_config()
        .limit(1024 * 1024)
        .read_to_vec()
        .with_context(|| format!("cannot read certificate from {url}"))
}

/// Reads the private keys of every file given (PEM, key Secret or `v1.List` backup).
pub fn load_keyring(paths: &[PathBuf]) -> anyhow::Result<Keyring> {
    let mut keys = Vec::new();
    for path in paths {
        let (text, name) = read_input(Some(path))?;
        let text = typed_list_as_documents(&text).unwrap_or(text);
        keys.extend(sealsync_api::read_private_keys(&text, &name)?);
    }
    Ok(Keyring::new(keys))
}

/// A list of Secrets as Go's `json.Marshal` writes a client-go `SecretList` (no `kind` or
/// `apiVersion`, on the list or its items; how scripts back keys up), or a `List` /
/// `SecretList` whose items lack their kind.
#[derive(Deserialize)]
struct SecretList {
    kind: Option<String>,
    items: Vec<SecretManifest>,
}

/// Such a list rewritten as the key Secrets it holds (JSON documents with their kind), or
/// `None` when `text` is not one.
fn typed_list_as_documents(text: &str) -> Option<Zeroizing<String>> {
    if !text.trim_start().starts_with('{') {
        return None;
    }
    let list: SecretList = serde_json::from_str(text).ok()?;
    if !matches!(list.kind.as_deref(), None | Some("List" | "SecretList")) || list.items.is_empty()
    {
        return None;
    }
    to_document(&list.items, Format::Json).ok()
}
