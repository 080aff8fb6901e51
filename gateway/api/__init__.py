"""Thin adapters: device protocols, artifacts, operations, OpenAPI and the management API."""
