// Laid over upstream's generator registry by tests/harness/build.sh (go build
// -overlay): sealsync has no generators, so the harness's External Secrets
// Operator links none (each pulls in a cloud SDK).
package register
