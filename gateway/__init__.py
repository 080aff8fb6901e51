"""ota-gateway: a self-hostable OTA update server (hawkBit DDI + Memfault device APIs)."""

__version__ = "0.1.0"
