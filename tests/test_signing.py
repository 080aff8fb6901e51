"""Signed release manifests: Ed25519 (checked against RFC 8032's test vectors) over the
artifact hashes, on the Memfault /latest answer and the DDI deployment, verified with an
independent implementation (the openssl command line)."""
from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess

import pytest
from conftest import P, PROJECT, PROJECT_KEY, auth_headers, deploy, upload_release

from gateway.crypto import ed25519

# RFC 8032, section 7.1: TEST 1 (empty message) and TEST 2 (one byte)
VECTORS = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe2465"
     "5141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb0"
     "0d291612bb0c00"),
]
OPENSSL = shutil.which("openssl")


@pytest.mark.parametrize("seed, public, message, signature", VECTORS)
def test_rfc8032_vectors(seed, public, message, signature):
    seed, message = bytes.fromhex(seed), bytes.fromhex(message)
    assert ed25519.public_key(seed).hex() == public
    assert ed25519.sign(seed, message).hex() == signature
    assert ed25519.verify(bytes.fromhex(public), message, bytes.fromhex(signature))
    assert not ed25519.verify(bytes.fromhex(public), message + b"x", bytes.fromhex(signature))


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
