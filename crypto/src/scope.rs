//! Sealing scopes and the OAEP labels that bind a ciphertext to a name and namespace.

use std::{fmt, str::FromStr};

/// Annotation that marks a SealedSecret as cluster-wide (checked first).
pub const CLUSTER_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/cluster-wide";
/// Annotation that marks a SealedSecret as namespace-wide.
pub const NAMESPACE_WIDE_ANNOTATION: &str = "sealedsecrets.bitnami.com/namespace-wide";

/// Where a sealed value may be unsealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Only under the same name in the same namespace (label `"<namespace>/<name>"`).
    #[default]
    Strict,
    /// Under any name in the same namespace (label `"<namespace>"`).
    NamespaceWide,
    /// Anywhere in the cluster (empty label).
    ClusterWide,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Strict, Scope::NamespaceWide, Scope::ClusterWide];

    /// The OAEP label for this scope.
    pub fn label(self, namespace: &str, name: &str) -> Vec<u8> {
        match self {
            Scope::Strict => format!("{namespace}/{name}").into_bytes(),
            Scope::NamespaceWide => namespace.as_bytes().to_vec(),
            Scope::ClusterWide => Vec::new(),
        }
    }

    /// The scope declared by an object's annotations, as the upstream controller reads it:
    /// cluster-wide wins over namespace-wide, and only the value `"true"` counts.
    pub fn from_annotations<'a>(lookup: impl Fn(&str) -> Option<&'a str>) -> Scope {
        if lookup(CLUSTER_WIDE_ANNOTATION) == Some("true") {
            Scope::ClusterWide
        } else if lookup(NAMESPACE_WIDE_ANNOTATION) == Some("true") {
            Scope::NamespaceWide
        } else {
            Scope::Strict
        }
    }

    /// The annotation that declares this scope on an object, if any.
    pub fn annotation(self) -> Option<&'static str> {
        match self {
            Scope::Strict => None,
            Scope::NamespaceWide => Some(NAMESPACE_WIDE_ANNOTATION),
            Scope::ClusterWide => Some(CLUSTER_WIDE_ANNOTATION),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Strict => "strict",
            Scope::NamespaceWide => "namespace-wide",
            Scope::ClusterWide => "cluster-wide",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                format!("unknown scope {s:?}: use strict, namespace-wide or cluster-wide")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn labels_match_upstream() {
        assert_eq!(Scope::Strict.label("ns", "db"), b"ns/db");
        assert_eq!(Scope::NamespaceWide.label("ns", "db"), b"ns");
        assert_eq!(Scope::ClusterWide.label("ns", "db"), b"");
    }

    #[test]
    fn cluster_wide_annotation_wins() {
        let annotations = BTreeMap::from([
            (CLUSTER_WIDE_ANNOTATION, "true"),
            (NAMESPACE_WIDE_ANNOTATION, "true"),
        ]);
        let scope = Scope::from_annotations(|k| annotations.get(k).copied());
        assert_eq!(scope, Scope::ClusterWide);
    }

    #[test]
    fn only_true_counts() {
        let annotations = BTreeMap::from([(NAMESPACE_WIDE_ANNOTATION, "yes")]);
        assert_eq!(
            Scope::from_annotations(|k| annotations.get(k).copied()),
            Scope::Strict
        );
    }

    #[test]
    fn parses_its_own_names() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>(), Ok(scope));
        }
        assert!("global".parse::<Scope>().is_err());
    }
}
