// sealsync's test harness: laid over Vault's file of this path by `go build -overlay`
// (tests/harness/build.sh). The harness builds Vault with `-tags minimal`, which leaves out
// the database, cloud and other plugins the tests never mount; the tests log in with the
// Kubernetes auth method too, so this build registers it besides the minimal set.

//go:build minimal

package builtinplugins

import credKube "github.com/hashicorp/vault-plugin-auth-kubernetes"

func extendAddonPlugins(r *registry) {
	r.credentialBackends["kubernetes"] = credentialBackend{Factory: credKube.Factory}
}
