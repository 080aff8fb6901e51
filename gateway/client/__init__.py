"""`ota-gateway` management subcommands: a thin client of the REST API.

Connection settings come from flags or the environment: --url/OTA_URL, --token/OTA_TOKEN,
--org/OTA_ORG, --project/OTA_PROJECT. Every command exits non-zero with the server's message on
failure; `--json` prints the raw `data` for scripts.

`http` holds the REST client, `commands` what every subcommand shares (connection flags, wiring,
printing), `output` the tables and readable views; the subcommands themselves are in `fleet`
(cohorts, devices, keys, inspect), `releases` (upload, releases, deployments, activate, abort,
matrix) and `audit` (approval requests, the audit log).
"""
from __future__ import annotations

import argparse

from gateway.client import audit, fleet, releases
from gateway.client.commands import Commands, run
from gateway.client.http import Client, CliError, Pending
from gateway.client.output import format_inspect, format_matrix

__all__ = ["register", "run", "Client", "CliError", "Pending", "format_matrix", "format_inspect"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the management subcommands to the `ota-gateway` parser."""
    commands = Commands(sub)
    # in the order `ota-gateway --help` lists them
    for add in (releases.add_upload, fleet.add_cohorts, fleet.add_devices, fleet.add_keys, releases.add_releases,
                releases.add_deployments, releases.add_activate, releases.add_abort, audit.add_requests,
                releases.add_matrix, fleet.add_inspect, audit.add_audit):
        add(commands)
