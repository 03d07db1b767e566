#!/usr/bin/env bash
# Smoke test of the cached binaries: start etcd, kube-apiserver,
# kube-controller-manager, vault (dev), moto on loopback random ports, check
# they answer, run kubeseal/helm/controller --version, then stop everything.
# The command lines here are the reference ones documented in README.md.
#   smoke.sh [--keep] [kube] [sealed] [vault] [moto] [clis]   (default: all)
#   sealed = upstream sealed-secrets controller + kubeseal against the kube
#   section's apiserver (implies kube; needs root for unshare/mount, see README).
#   --keep: leave the work dir (certs, kubeconfigs, logs) in place.
set -euo pipefail
H="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

keep=0; sections=()
for a in "$@"; do
  case "$a" in
    --keep) keep=1 ;;
    kube|sealed|vault|moto|clis) sections+=("$a") ;;
    *) echo "usage: smoke.sh [--keep] [kube] [sealed] [vault] [moto] [clis]" >&2; exit 2 ;;
  esac
done
[[ ${#sections[@]} -gt 0 ]] || sections=(kube sealed vault moto clis)
want() { [[ " ${sections[*]} " == *" $1 "* ]]; }
if want sealed && ! want kube; then sections+=(kube); fi
comps=()
want kube && comps+=(etcd kubernetes)
want sealed && comps+=(sealed-secrets)
want vault && comps+=(vault)
want moto && comps+=(moto)
want clis && comps+=(sealed-secrets helm etcd vault)
env_lines="$("$H/paths.sh" "${comps[@]}")" || exit 1
eval "$env_lines"
W="$(mktemp -d /tmp/sealsync-smoke.XXXXXX)"
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [[ $keep == 1 ]]; then echo "work dir kept: $W"; else rm -rf "$W"; fi
}
trap cleanup EXIT

fail() { echo "SMOKE FAIL: $*" >&2; for f in "$W"/*.log; do echo "--- $f" >&2; tail -n 30 "$f" >&2; done; exit 1; }
ok() { echo "ok: $*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # description timeout-seconds command...
  local what="$1" t="$2"; shift 2
  local end=$((SECONDS + t))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || fail "$what not ready after ${t}s"
    sleep 0.5
  done
  ok "$what ready after $((SECONDS - start))s"
}

# ---------------------------------------------------------------- certs -----
cd "$W"
openssl_quiet() { openssl "$@" 2>/dev/null; }
openssl_quiet req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj "/CN=sealsync-test-ca"
sign() { # name subject san
  openssl_quiet req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2"
  { echo "basicConstraints=CA:FALSE"; echo "keyUsage=digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=serverAuth,clientAuth"; [[ -n "$3" ]] && echo "subjectAltName=$3"; } > "$1.ext"
  openssl_quiet x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile "$1.ext" -out "$1.crt"
}
# 10.0.0.1 = first IP of --service-cluster-ip-range (the "kubernetes" Service).
sign apiserver "/CN=kube-apiserver" "IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=sealsync-admin" ""
sign kcm "/CN=system:kube-controller-manager" ""
openssl_quiet genrsa -out sa.key 2048
openssl_quiet rsa -in sa.key -pubout -out sa.pub

if want kube; then
# ---------------------------------------------------------------- etcd ------
ETCD_PORT=$(free_port); ETCD_PEER_PORT=$(free_port)
start=$SECONDS
"$SEALSYNC_ETCD" --name smoke --data-dir "$W/etcd-data" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "smoke=http://127.0.0.1:$ETCD_PEER_PORT" \
  --unsafe-no-fsync --log-level warn > etcd.log 2>&1 &
pids+=($!)
wait_for etcd 30 curl -fsS "http://127.0.0.1:$ETCD_PORT/health"

# ---------------------------------------------------------------- apiserver -
API_PORT=$(free_port)
start=$SECONDS
"$SEALSYNC_KUBE_APISERVER" \
  --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
  --bind-address 127.0.0.1 --secure-port "$API_PORT" --advertise-address 127.0.0.1 \
  --endpoint-reconciler-type none \
  --tls-cert-file apiserver.crt --tls-private-key-file apiserver.key \
  --client-ca-file ca.crt \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file sa.pub --service-account-signing-key-file sa.key \
  --service-cluster-ip-range 10.0.0.0/24 \
  --authorization-mode RBAC \
  --cert-dir "$W/apiserver-certs" > apiserver.log 2>&1 &
pids+=($!)
API="https://127.0.0.1:$API_PORT"
kcurl() { curl -fsS --cacert ca.crt --cert admin.crt --key admin.key "$@"; }
wait_for kube-apiserver 120 kcurl "$API/readyz"
kcurl "$API/version" | grep -q '"gitVersion": "v' || fail "apiserver /version"
ok "apiserver version $(kcurl "$API/version" | sed -n 's/.*"gitVersion": "\(.*\)".*/\1/p')"

# ---------------------------------------------------------------- kcm -------
kubeconfig() { # file user
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: smoke
  cluster: {server: "$API", certificate-authority: "$W/ca.crt"}
users:
- name: $2
  user: {client-certificate: "$W/$2.crt", client-key: "$W/$2.key"}
contexts:
- name: smoke
  context: {cluster: smoke, user: $2}
current-context: smoke
EOF
}
kubeconfig kcm.kubeconfig kcm
kubeconfig admin.kubeconfig admin
KCM_PORT=$(free_port)
start=$SECONDS
"$SEALSYNC_KUBE_CONTROLLER_MANAGER" \
  --kubeconfig kcm.kubeconfig \
  --authentication-kubeconfig kcm.kubeconfig --authorization-kubeconfig kcm.kubeconfig \
  --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
  --leader-elect=false \
  --service-account-private-key-file sa.key --root-ca-file ca.crt \
  --cluster-signing-cert-file ca.crt --cluster-signing-key-file ca.key \
  --cert-dir "$W/kcm-certs" > kcm.log 2>&1 &
pids+=($!)
wait_for kube-controller-manager 60 curl -fsSk "https://127.0.0.1:$KCM_PORT/healthz"
# Functional check: the serviceaccount controller creates "default" in new namespaces.
kcurl -H 'Content-Type: application/json' -X POST "$API/api/v1/namespaces" \
  -d '{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"smoke"}}' >/dev/null
wait_for "serviceaccount smoke/default (kcm working)" 60 kcurl "$API/api/v1/namespaces/smoke/serviceaccounts/default"

fi

if want sealed; then
# ---------------------------------------------------------------- sealed-secrets
start=$SECONDS
kpost() { # path file-or-json [content-type]
  local d="$2"; [[ -f "$2" ]] && d="@$2"
  kcurl -X POST -H "Content-Type: ${3:-application/json}" --data-binary "$d" "$API$1"
}
kpost /apis/apiextensions.k8s.io/v1/customresourcedefinitions "$SEALSYNC_SEALED_SECRETS_CRD" application/yaml >/dev/null
wait_for "SealedSecret CRD" 30 kcurl "$API/apis/bitnami.com/v1alpha1/sealedsecrets"
# The controller only supports in-cluster config (rest.InClusterConfig): it reads
# /var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt} and
# KUBERNETES_SERVICE_HOST/PORT. Give it a service-account token bound to
# cluster-admin and bind-mount the files there in a private mount namespace.
kpost /api/v1/namespaces/kube-system/serviceaccounts \
  '{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"sealed-secrets-controller"}}' >/dev/null
kpost /apis/rbac.authorization.k8s.io/v1/clusterrolebindings '{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",
  "metadata":{"name":"sealed-secrets-controller"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},
  "subjects":[{"kind":"ServiceAccount","name":"sealed-secrets-controller","namespace":"kube-system"}]}' >/dev/null
mkdir -p "$W/sa-mount" /var/run/secrets/kubernetes.io/serviceaccount
kpost /api/v1/namespaces/kube-system/serviceaccounts/sealed-secrets-controller/token \
  '{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":86400}}' |
  python3 -c 'import json,sys; sys.stdout.write(json.load(sys.stdin)["status"]["token"])' > "$W/sa-mount/token"
cp ca.crt "$W/sa-mount/ca.crt"; printf kube-system > "$W/sa-mount/namespace"
SS_PORT=$(free_port); SS_METRICS_PORT=$(free_port)
# shellcheck disable=SC2016 # "$0"/"$@" are expanded by the inner sh
KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT="$API_PORT" \
unshare --mount --propagation private sh -c 'mount --bind "$0" /var/run/secrets/kubernetes.io/serviceaccount && exec "$@"' \
  "$W/sa-mount" "$SEALSYNC_UPSTREAM_CONTROLLER" \
  --listen-addr "127.0.0.1:$SS_PORT" --listen-metrics-addr "127.0.0.1:$SS_METRICS_PORT" > sealed-controller.log 2>&1 &
pids+=($!)
wait_for "sealed-secrets controller cert" 60 curl -fsS -o cert.pem "http://127.0.0.1:$SS_PORT/v1/cert.pem"
printf '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"sealed-smoke","namespace":"smoke"},"data":{"k":"%s"}}' \
  "$(printf 'hello-sealed' | base64)" > secret.json
KUBECONFIG=admin.kubeconfig "$SEALSYNC_KUBESEAL" --cert cert.pem --format json < secret.json > sealed.json
kpost /apis/bitnami.com/v1alpha1/namespaces/smoke/sealedsecrets sealed.json >/dev/null
wait_for "unsealed Secret smoke/sealed-smoke" 60 kcurl "$API/api/v1/namespaces/smoke/secrets/sealed-smoke"
kcurl "$API/api/v1/namespaces/smoke/secrets/sealed-smoke" | grep -q "\"k\": \"$(printf 'hello-sealed' | base64)\"" ||
  fail "unsealed secret content"
ok "kubeseal -> SealedSecret -> upstream controller -> Secret roundtrip"
fi

if want vault; then
# ---------------------------------------------------------------- vault -----
VAULT_PORT=$(free_port)
start=$SECONDS
# -dev keeps everything in memory; HOME is redirected so no ~/.vault-token is written.
HOME="$W" VAULT_ADDR="http://127.0.0.1:$VAULT_PORT" "$SEALSYNC_VAULT" server -dev \
  -dev-listen-address "127.0.0.1:$VAULT_PORT" -dev-root-token-id root -dev-no-store-token > vault.log 2>&1 &
pids+=($!)
wait_for vault 60 curl -fsS "http://127.0.0.1:$VAULT_PORT/v1/sys/health"
curl -fsS -H 'X-Vault-Token: root' -X POST -d '{"data":{"k":"v"}}' "http://127.0.0.1:$VAULT_PORT/v1/secret/data/smoke" >/dev/null
curl -fsS -H 'X-Vault-Token: root' "http://127.0.0.1:$VAULT_PORT/v1/secret/data/smoke" | grep -q '"k":"v"' || fail "vault kv roundtrip"
ok "vault kv v2 write/read"

fi

if want moto; then
# ---------------------------------------------------------------- moto ------
MOTO_PORT=$(free_port)
start=$SECONDS
"$SEALSYNC_MOTO_SERVER" -H 127.0.0.1 -p "$MOTO_PORT" > moto.log 2>&1 &
pids+=($!)
wait_for moto 60 curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/"
curl -fsS -X POST "http://127.0.0.1:$MOTO_PORT/" \
  -H 'Content-Type: application/x-amz-json-1.1' -H 'X-Amz-Target: secretsmanager.CreateSecret' \
  -H 'Authorization: AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/secretsmanager/aws4_request, SignedHeaders=host, Signature=0' \
  -d '{"Name":"smoke","SecretString":"v"}' | grep -q '"ARN"' || fail "moto secretsmanager CreateSecret"
ok "moto secretsmanager CreateSecret"

fi

if want clis; then
# ---------------------------------------------------------------- CLIs ------
ok "$("$SEALSYNC_KUBESEAL" --version)"
ok "$("$SEALSYNC_UPSTREAM_CONTROLLER" --version 2>&1 | head -n1)"
ok "$(HOME="$W" "$SEALSYNC_HELM" version --short)"
HOME="$W" "$SEALSYNC_HELM" template smoke "$SEALSYNC_SEALED_SECRETS_CHART" --namespace kube-system > chart.yaml ||
  fail "helm template of the sealed-secrets chart"
grep -q '^kind: Deployment' chart.yaml || fail "helm template output has no Deployment"
ok "helm template of the pinned sealed-secrets chart"
ok "$("$SEALSYNC_ETCD" --version | head -n1)"
ok "$("$SEALSYNC_VAULT" version)"
fi
echo "SMOKE OK (${sections[*]})"
