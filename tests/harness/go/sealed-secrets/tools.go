//go:build tools

// Package tools keeps the command packages built by tests/harness/build.sh (and
// what its compiled tests import) in the module graph so that `go mod tidy`
// retains their dependencies.
package tools

import (
	_ "github.com/bitnami-labs/sealed-secrets/cmd/controller"
	_ "github.com/bitnami-labs/sealed-secrets/cmd/kubeseal"
	_ "github.com/bitnami-labs/sealed-secrets/pkg/apis/sealedsecrets/v1alpha1"
	_ "github.com/bitnami-labs/sealed-secrets/pkg/client/clientset/versioned"
	_ "github.com/bitnami-labs/sealed-secrets/pkg/crypto"
	_ "github.com/onsi/ginkgo/v2"
	_ "github.com/onsi/gomega"
	_ "github.com/onsi/gomega/types"
	_ "k8s.io/api/core/v1"
	_ "k8s.io/apimachinery/pkg/api/errors"
	_ "k8s.io/apimachinery/pkg/apis/meta/v1"
	_ "k8s.io/apimachinery/pkg/fields"
	_ "k8s.io/apimachinery/pkg/runtime"
	_ "k8s.io/client-go/kubernetes/scheme"
	_ "k8s.io/client-go/kubernetes/typed/core/v1"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	_ "k8s.io/client-go/rest"
	_ "k8s.io/client-go/tools/clientcmd"
	_ "k8s.io/client-go/tools/clientcmd/api"
	_ "k8s.io/client-go/tools/clientcmd/api/latest"
	_ "k8s.io/client-go/util/cert"
	_ "k8s.io/client-go/util/keyutil"
)
