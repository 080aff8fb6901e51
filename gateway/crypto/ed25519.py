"""Ed25519 signatures (RFC 8032) for release manifests, through pyca `cryptography` (its OpenSSL
constant-time implementation): no curve arithmetic is written here.

Keys travel as raw bytes: a 32-byte private seed (stored per project) and a 32-byte public key;
signatures are the 64 raw bytes. `verify` is for the tests and for tools; devices use their own
verifier, fed the PEM from `public_key_pem`."""
from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)


def new_seed() -> bytes:
    """A fresh 32-byte private seed."""
    return Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


def public_key(seed: bytes) -> bytes:
    """The 32-byte public key of a 32-byte private seed."""
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def sign(seed: bytes, message: bytes) -> bytes:
    """A 64-byte signature of `message` (deterministic: the same seed and message, the same bytes)."""
    return Ed25519PrivateKey.from_private_bytes(seed).sign(message)


def verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` is a valid signature of `message` by `public`; False for a malformed
    key or signature."""
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def public_key_pem(public: bytes) -> str:
    """PEM (SubjectPublicKeyInfo), as `openssl pkeyutl -verify -pubin` reads it."""
    key = Ed25519PublicKey.from_public_bytes(public)
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()
