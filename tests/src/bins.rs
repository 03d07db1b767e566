//! Where the real components' binaries are: `SEALSYNC_*` variables (set by `tests/run.sh`),
//! else the harness cache as `tests/harness/paths.sh` reports it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A component built by `tests/harness/build.sh`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Kubernetes,
    Etcd,
    Vault,
    SealedSecrets,
    Helm,
    Moto,
    ExternalSecrets,
    Kustomize,
}

impl Component {
    fn name(self) -> &'static str {
        match self {
            Component::Kubernetes => "kubernetes",
            Component::Etcd => "etcd",
            Component::Vault => "vault",
            Component::SealedSecrets => "sealed-secrets",
            Component::Helm => "helm",
            Component::Moto => "moto",
            Component::ExternalSecrets => "external-secrets",
            Component::Kustomize => "kustomize",
        }
    }
}

pub(crate) fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository")
}

/// The binary that `variable` (e.g. `SEALSYNC_KUBE_APISERVER`) names. Panics with the
/// command that builds it when it is missing: a test never skips silently.
pub fn binary(component: Component, variable: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(variable).map(PathBuf::from)
        && path.is_file()
    {
        return path;
    }
    let build_hint = format!(
        "{variable} is not set and {} is not built: run `bash tests/harness/build.sh {}`",
        component.name(),
        component.name()
    );
    let output = Command::new("bash")
        .arg(repo_root().join("tests/harness/paths.sh"))
        .arg(component.name())
        .output()
        .expect("bash runs");
    let listing = String::from_utf8_lossy(&output.stdout);
    listing
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{variable}=")))
        .map(PathBuf::from)
        .filter(|path| path.is_file())
        .unwrap_or_else(|| panic!("{build_hint}"))
}

/// A binary of this workspace (`sealsync`, later `sealsync-controller`), built by cargo for
/// the integration tests.
pub fn project_binary(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace` first",
        path.display()
    );
    path
}
