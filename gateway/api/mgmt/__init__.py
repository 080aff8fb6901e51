"""The management REST API, one module per resource family, over gateway.services."""
