"""Tokens, URL signing, Ed25519 and release manifests."""
