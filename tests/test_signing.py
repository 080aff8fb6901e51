"""Signed release manifests: Ed25519 (checked against RFC 8032's test vectors) over the
artifact hashes, on the Memfault /latest answer and the DDI deployment, verified with an
independent implementation (the openssl command line)."""
from __future__ import annotations

import ast
import base64
import hashlib
import json
import shutil
import subprocess

import pytest
from conftest import PROJECT, PROJECT_KEY, P, auth_headers, deploy, upload_release

from gateway.crypto import ed25519

# RFC 8032, section 7.1: TEST 1 (empty message), TEST 2 (one byte) and TEST 3 (two bytes)
VECTORS = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe2465"
     "5141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb0"
     "0d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc0"
     "27beceea1ec40a"),
]
OPENSSL = shutil.which("openssl")


@pytest.mark.parametrize("seed, public, message, signature", VECTORS)
def test_rfc8032_vectors(seed, public, message, signature):
    seed, message = bytes.fromhex(seed), bytes.fromhex(message)
    assert ed25519.public_key(seed).hex() == public
    assert ed25519.sign(seed, message).hex() == signature
    assert ed25519.verify(bytes.fromhex(public), message, bytes.fromhex(signature))
    assert not ed25519.verify(bytes.fromhex(public), message + b"x", bytes.fromhex(signature))


def test_signing_is_not_written_here():
    """The curve arithmetic is the library's (constant time), not big-integer Python in the module:
    no arithmetic or bit operator, no pow(), no int.from_bytes() in gateway/crypto/ed25519.py."""
    tree = ast.parse(open(ed25519.__file__).read())
    ops = [type(n.op).__name__ for n in ast.walk(tree) if isinstance(n, (ast.BinOp, ast.AugAssign))]
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert ops == [] and not [c for c in calls if c in ("pow", "int.from_bytes", "int.to_bytes")], (ops, calls)
    assert any(isinstance(n, ast.ImportFrom) and n.module.startswith("cryptography.") for n in ast.walk(tree))


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_a_seed_that_is_not_32_bytes_signs_nothing(length):
    with pytest.raises(ValueError):
        ed25519.sign(b"\x01" * length, b"manifest")
    assert len(ed25519.new_seed()) == 32 and ed25519.new_seed() != ed25519.new_seed()


def openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([OPENSSL, *args], capture_output=True)


@pytest.mark.skipif(OPENSSL is None, reason="openssl command line not installed")
def test_openssl_signs_the_same_bytes_from_the_same_seed(tmp_path):
    """An independent signer: openssl, given the seed as a PKCS#8 key, derives the same public
    key PEM and, Ed25519 being deterministic, the same signature bytes."""
    for i in range(4):
        seed = ed25519.new_seed()
        pkcs8 = bytes.fromhex("302e020100300506032b657004220420") + seed  # RFC 8410 PrivateKeyInfo
        (tmp_path / "key.der").write_bytes(pkcs8)
        message = f'{{"artifact":{{"sha256":"{hashlib.sha256(seed).hexdigest()}"}},"n":{i}}}'.encode() * (i + 1)
        (tmp_path / "msg").write_bytes(message)
        pub = openssl("pkey", "-inform", "DER", "-in", str(tmp_path / "key.der"), "-pubout")
        assert pub.returncode == 0, pub.stderr
        assert pub.stdout.decode() == ed25519.public_key_pem(ed25519.public_key(seed))
        out = openssl("pkeyutl", "-sign", "-keyform", "DER", "-inkey", str(tmp_path / "key.der"), "-rawin",
                      "-in", str(tmp_path / "msg"), "-out", str(tmp_path / "sig"))
        assert out.returncode == 0, out.stderr
        assert (tmp_path / "sig").read_bytes() == ed25519.sign(seed, message)


def openssl_verifies(tmp_path, pem: str, message: bytes, signature: bytes) -> bool:
    (tmp_path / "pub.pem").write_text(pem)
    (tmp_path / "msg").write_bytes(message)
    (tmp_path / "sig").write_bytes(signature)
    out = subprocess.run([OPENSSL, "pkeyutl", "-verify", "-pubin", "-inkey", str(tmp_path / "pub.pem"), "-rawin",
                          "-in", str(tmp_path / "msg"), "-sigfile", str(tmp_path / "sig")],
                         capture_output=True, text=True)
    return out.returncode == 0 and "Signature Verified Successfully" in out.stdout


@pytest.mark.skipif(OPENSSL is None, reason="openssl command line not installed")
async def test_latest_and_ddi_carry_a_manifest_openssl_verifies(client, tmp_path):
    content = b"signed firmware " * 500
    await upload_release(client, content, version="1.0.0", software_type="main", hardware_version="mp")
    await deploy(client, "1.0.0")
    params = {"device_serial": "SIG1", "hardware_version": "mp", "software_type": "main"}
    key = {"Memfault-Project-Key": PROJECT_KEY}
    body = await (await client.get("/api/v0/releases/latest", params=params, headers=key)).json()
    assert "signature" not in body  # nothing signed until the project has a key
    assert (await client.get(P + "/signing-key", headers=auth_headers())).status == 404
    r = await client.post(P + "/signing-key", headers=auth_headers())
    assert r.status == 201
    published = (await r.json())["data"]
    assert "seed" not in json.dumps(published) and published["public_key_pem"].startswith("-----BEGIN PUBLIC KEY")

    body = await (await client.get("/api/v0/releases/latest", params=params, headers=key)).json()
    sig = body["signature"]
    assert sig["algorithm"] == "ed25519" and sig["key_id"] == published["key_id"]
    manifest = json.loads(sig["manifest"])
    assert manifest["artifact"]["sha256"] == hashlib.sha256(content).hexdigest() == body["artifacts"][0]["sha256"]
    assert (manifest["project"], manifest["version"], manifest["hardware_version"]) == (PROJECT, "1.0.0", "mp")
    raw = base64.b64decode(sig["value"])
    assert openssl_verifies(tmp_path, published["public_key_pem"], sig["manifest"].encode(), raw)
    tampered = sig["manifest"].replace(manifest["artifact"]["sha256"], "0" * 64).encode()
    assert not openssl_verifies(tmp_path, published["public_key_pem"], tampered, raw)
    flipped = bytes([raw[0] ^ 1]) + raw[1:]  # a signature off by one bit
    assert not openssl_verifies(tmp_path, published["public_key_pem"], sig["manifest"].encode(), flipped)

    # the same manifest and signature reach a DDI device as deployment metadata
    gw = {"Authorization": f"GatewayToken {PROJECT_KEY}"}
    ddi = f"/{PROJECT}/controller/v1/SIG2"
    r = await client.put(ddi + "/configData", headers=gw, json={"mode": "merge", "data": {
        "memfault__hardware_version": "mp", "memfault__software_type": "main", "memfault__current_version": "0.1"}})
    assert r.status == 200
    base_poll = await (await client.get(ddi, headers=gw)).json()
    href = base_poll["_links"]["deploymentBase"]["href"].split("gw.test:8080", 1)[1]
    dep = await (await client.get(href, headers=gw)).json()
    meta = {m["key"]: m["value"] for m in dep["deployment"]["chunks"][0]["metadata"]}
    assert json.loads(meta["ota_gateway_manifest"])["artifact"]["sha256"] == manifest["artifact"]["sha256"]
    assert openssl_verifies(tmp_path, published["public_key_pem"], meta["ota_gateway_manifest"].encode(),
                            base64.b64decode(meta["ota_gateway_signature"]))

    # rotation: a new key signs from now on; deletion stops signing
    rotated = (await (await client.post(P + "/signing-key", headers=auth_headers())).json())["data"]
    assert rotated["key_id"] != published["key_id"]
    body = await (await client.get("/api/v0/releases/latest", params=params, headers=key)).json()
    assert body["signature"]["key_id"] == rotated["key_id"]
    assert (await client.delete(P + "/signing-key", headers=auth_headers())).status == 204
    body = await (await client.get("/api/v0/releases/latest", params=params, headers=key)).json()
    assert "signature" not in body
