"""Fleet gauges for rollouts, computed from the database when /metrics is scraped and cached
briefly, so several scrapers (or workers) don't each run the aggregates every few seconds.

Labels carry project, cohort, software type, version and status: never a device serial."""
from __future__ import annotations

import platform
import time

from prometheus_client.core import GaugeMetricFamily

from gateway import __version__
from gateway.store import insight as insight_store


class FleetMetrics:
    def __init__(self, ttl: float = 30.0):
        self.ttl = ttl
        self._at = 0.0
        self._families: list = []

    async def families(self, pool) -> list:
        """The cached families, refreshed when older than `ttl`; the last good ones on failure."""
        if time.monotonic() - self._at < self.ttl:
            return self._families
        try:
            async with pool.acquire() as conn:
                versions = await insight_store.fleet_version_counts(conn)
                staged = await insight_store.fleet_staged_counts(conn)
                cohorts = await insight_store.fleet_cohort_counts(conn)
                actions = await insight_store.fleet_action_counts(conn)
        except Exception:  # metrics must never fail the scrape: serve the last snapshot
            return self._families
        devices = GaugeMetricFamily("ota_gateway_devices", "Devices per cohort and current version",
                                    labels=["project", "cohort", "software_type", "version"])
        for r in versions:
            devices.add_metric([r["project"], r["cohort"], r["software_type"], r["version"]], r["n"])
        rollout = ["project", "cohort", "software_type"]
        staged_f = GaugeMetricFamily("ota_gateway_staged_devices",
                                     "Devices actually staged by a cohort's staged rollout", labels=rollout)
        percent_f = GaugeMetricFamily("ota_gateway_rollout_percent",
                                      "The configured percentage of a cohort's staged rollout", labels=rollout)
        for r in staged:
            staged_f.add_metric([r["project"], r["cohort"], r["software_type"]], r["staged"])
            percent_f.add_metric([r["project"], r["cohort"], r["software_type"]], r["rollout_percent"])
        cohort_f = GaugeMetricFamily("ota_gateway_cohort_devices", "Devices per cohort", labels=["project", "cohort"])
        for r in cohorts:
            cohort_f.add_metric([r["project"], r["cohort"]], r["n"])
        actions_f = GaugeMetricFamily("ota_gateway_release_actions",
                                      "DDI actions per release and status (open, succeeded, failed, ...)",
                                      labels=["project", "software_type", "release", "status"])
        for r in actions:
            actions_f.add_metric([r["project"], r["software_type"], r["version"], r["status"]], r["n"])
        self._families = [devices, staged_f, percent_f, cohort_f, actions_f]
        self._at = time.monotonic()
        return self._families


def build_info() -> GaugeMetricFamily:
    fam = GaugeMetricFamily("ota_gateway_build_info", "Build information (always 1)",
                            labels=["version", "python"])
    fam.add_metric([__version__, platform.python_version()], 1)
    return fam
