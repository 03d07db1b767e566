#!/usr/bin/env bash
# Regenerates the throwaway, test-only keys and certificates of the template PKI tests.
# Nothing here is a secret: every key was made by this script for the tests alone.
set -euo pipefail
cd "$(dirname "$0")"
ec() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
ec root.key; ec intermediate.key; ec leaf.key
openssl req -x509 -new -key root.key -subj /CN=test-root -days 36500 -out root.crt \
  -addext basicConstraints=critical,CA:TRUE -addext subjectKeyIdentifier=hash
cat > ext.cnf <<CNF
[ca]
basicConstraints=critical,CA:TRUE
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
[leaf]
basicConstraints=CA:FALSE
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
CNF
openssl req -new -key intermediate.key -subj /CN=test-intermediate |
  openssl x509 -req -CA root.crt -CAkey root.key -days 36500 -extfile ext.cnf -extensions ca -out intermediate.crt
openssl req -new -key leaf.key -subj /CN=test-leaf |
  openssl x509 -req -CA intermediate.crt -CAkey intermediate.key -days 36500 -extfile ext.cnf -extensions leaf -out leaf.crt
rm ext.cnf intermediate.key root.key
openssl ec -in leaf.key -out leaf.sec1.pem
# The chain, shuffled: the functions must order it.
cat root.crt leaf.crt intermediate.crt > chain-shuffled.pem
cat intermediate.crt root.crt > cas.pem
openssl pkcs12 -export -inkey leaf.key -in leaf.crt -certfile cas.pem -passout pass: -out nopass.p12
openssl pkcs12 -export -inkey leaf.key -in leaf.crt -certfile cas.pem -passout pass:test-only -out pass.p12
openssl pkcs12 -export -legacy -inkey leaf.key -in leaf.crt -certfile cas.pem -passout pass:test-only -out legacy.p12
# Asks for more work than the functions allow.
openssl pkcs12 -export -inkey leaf.key -in leaf.crt -iter 700000 -passout pass:test-only -out costly.p12
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.key
openssl pkey -in rsa.key -pubout -out rsa.pub.pem
openssl pkey -in rsa.key -traditional -out rsa.pkcs1.pem
openssl pkey -in leaf.key -pubout -out leaf.pub.pem
# JWKs of the same keys (python3-cryptography reads the numbers; openssl has no JWK output).
python3 - <<'PY'
import base64, json
from cryptography.hazmat.primitives.serialization import load_pem_private_key
def b(n, size=None):
    size = size or (n.bit_length() + 7) // 8
    return base64.urlsafe_b64encode(n.to_bytes(size, "big")).rstrip(b"=").decode()
rsa = load_pem_private_key(open("rsa.key", "rb").read(), None).private_numbers()
pub = {"kty": "RSA", "n": b(rsa.public_numbers.n), "e": b(rsa.public_numbers.e)}
priv = dict(pub, d=b(rsa.d), p=b(rsa.p), q=b(rsa.q), dp=b(rsa.dmp1), dq=b(rsa.dmq1), qi=b(rsa.iqmp))
ec = load_pem_private_key(open("leaf.key", "rb").read(), None).private_numbers()
ecpub = {"kty": "EC", "crv": "P-256", "x": b(ec.public_numbers.x, 32), "y": b(ec.public_numbers.y, 32)}
ecpriv = dict(ecpub, d=b(ec.private_value, 32))
for name, jwk in [("rsa.pub", pub), ("rsa", priv), ("ec.pub", ecpub), ("ec", ecpriv)]:
    json.dump(jwk, open(name + ".jwk", "w"))
PY
# An Ed25519 key (JWK kty OKP) and its PKCS#8 and PKIX PEMs.
openssl genpkey -algorithm ed25519 -out ed25519.key
openssl pkey -in ed25519.key -pubout -out ed25519.pub.pem
python3 - <<'PY'
import base64, json
from cryptography.hazmat.primitives import serialization as s
key = s.load_pem_private_key(open("ed25519.key", "rb").read(), None)
b = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
x = key.public_key().public_bytes(s.Encoding.Raw, s.PublicFormat.Raw)
d = key.private_bytes(s.Encoding.Raw, s.PrivateFormat.Raw, s.NoEncryption())
json.dump({"kty": "OKP", "crv": "Ed25519", "x": b(x)}, open("ed25519.pub.jwk", "w"))
json.dump({"kty": "OKP", "crv": "Ed25519", "x": b(x), "d": b(d)}, open("ed25519.jwk", "w"))
PY
