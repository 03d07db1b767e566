//go:build tools

// Package tools keeps the command packages built by tests/harness/build.sh
// in the module graph so that `go mod tidy` retains their dependencies.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
)
