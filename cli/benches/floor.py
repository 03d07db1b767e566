# The floor of unsealing: OpenSSL (through Python `cryptography`) decrypting the RSA parts of
# every value of some strict-scope SealedSecrets with their label, the fastest RSA-4096
# OAEP-SHA256 decryption at hand. Used by end_to_end.sh and tests/benches/controller_sync.rs.
#
#   python3 cli/benches/floor.py KEY.pem SEALED.json ROUNDS
#
# SEALED.json holds SealedSecrets: one, a List of them (`items`), or several one after the
# other (what `sealsync seal -o json` writes for several Secrets). One round decrypts every
# value once, in one process (one core). Prints JSON: the OpenSSL version, the number of
# values, each decryption timed alone (wall, s) and, per round, wall and CPU time divided by
# the number of values.
import base64, json, sys, time
from cryptography.hazmat.backends.openssl import backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), password=None)
decoder, text, documents, at = json.JSONDecoder(), open(sys.argv[2]).read(), [], 0
while at < len(text):
    if text[at].isspace():
        at += 1
        continue
    document, at = decoder.raw_decode(text, at)
    documents.extend(document.get("items", [document]))
rounds = int(sys.argv[3])
work = []  # (ciphertext, OAEP padding with the object's label)
for sealed in documents:
    meta = sealed["metadata"]
    label = f'{meta["namespace"]}/{meta["name"]}'.encode()
    pad = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=label)
    for value in sealed["spec"]["encryptedData"].values():
        raw = base64.b64decode(value)
        n = int.from_bytes(raw[:2], "big")
        work.append((raw[2:2 + n], pad))
assert work and all(len(ct) == 512 for ct, _ in work), "not RSA-4096 sealed values"
for ct, pad in work[:5]:  # warm-up; the RSA part is a 32-byte AES key
    assert len(key.decrypt(ct, pad)) == 32
single, batch_wall, batch_cpu = [], [], []
for _ in range(rounds):
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for ct, pad in work:
        t = time.perf_counter()
        key.decrypt(ct, pad)
        single.append(time.perf_counter() - t)
    batch_wall.append((time.perf_counter() - wall0) / len(work))
    batch_cpu.append((time.process_time() - cpu0) / len(work))
print(json.dumps({"openssl": backend.openssl_version_text(), "values": len(work),
                  "single": single, "batch_wall": batch_wall, "batch_cpu": batch_cpu}))
