//go:build tools

// Package tools keeps the command packages built by tests/harness/build.sh (and
// what its compiled tests import) in the module graph so that `go mod tidy`
// retains their dependencies.
package tools

import (
	_ "sigs.k8s.io/kustomize/kustomize/v5"
)
