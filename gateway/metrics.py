"""Prometheus metrics that cost a dict increment on the hot path.

Each process counts in plain dicts; with several workers every process writes a snapshot file
to a shared directory once a second and `/metrics` (answered by any worker) sums them. Counter
files of exited workers are kept so totals never go backwards; their gauges are dropped.
No label ever carries a device serial.
"""
from __future__ import annotations

import bisect
import os
import time
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# name -> (help, label names)
COUNTERS = {
    "ota_gateway_http_requests": ("HTTP requests by route template, method and status", ("route", "method", "status")),
    "ota_gateway_polls": ("Device polls by protocol and resolution reason", ("protocol", "reason")),
    "ota_gateway_checkins_written": ("Check-in rows written to the database", ()),
    "ota_gateway_artifact_bytes": ("Artifact bytes sent (body bytes of 200/206 answers)", ()),
    "ota_gateway_slow_transfers_cut": ("Downloads and uploads cut for falling below the minimum rate",
                                       ("direction",)),
    "ota_gateway_mirror_reloads": ("Mirror reloads after database notifications", ()),
    "ota_gateway_ddi_state_loads": ("DDI device states read from the database (a device's first poll in a "
                                    "process that no other process of its host has published, or one "
                                    "invalidated)", ()),
    "ota_gateway_ddi_shared_hits": ("DDI device states a process took from the states its host's processes "
                                    "share, instead of the database", ()),
}
HISTOGRAMS = {
    "ota_gateway_http_request_duration_seconds": ("HTTP request latency by route template", ("route",),
                                                  LATENCY_BUCKETS),
    "ota_gateway_checkin_flush_duration_seconds": ("Duration of one check-in flush", (), FLUSH_BUCKETS),
    "ota_gateway_mirror_reload_duration_seconds": ("Duration of one mirror reload after a notification", (),
                                                   FLUSH_BUCKETS),
}
# name -> (help, how live workers' values combine: every worker mirrors the same projects, so
# those take the max; buffers are per worker, so they add up)
GAUGES = {
    "ota_gateway_checkin_buffer_depth": ("Check-ins waiting in the write-behind buffers", sum),
    "ota_gateway_checkin_known_devices": ("Device check-ins whose stored state the gateway knows (no rewrite "
                                          "needed); the workers share one table", max),
    "ota_gateway_checkin_oldest_age_seconds": ("Age of the oldest buffered check-in (write-behind lag)", max),
    "ota_gateway_mirror_projects": ("Projects loaded in the in-memory mirror", max),
    "ota_gateway_mirror_device_exceptions": (
        "Devices held in memory because they deviate from their cohort default", max),
    "ota_gateway_workers": ("Gateway worker processes reporting", sum),
    "ota_gateway_ddi_cached_devices": ("DDI device states held in memory, summed over processes "
                                       "(each process holds at most OTA_DDI_CACHE_SIZE)", sum),
    "ota_gateway_ddi_shared_devices": ("DDI device states in the table the workers share (at most "
                                       "OTA_DDI_SHARED_SIZE)", max),
}


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple, float]] = {n: {} for n in COUNTERS}
        # histogram name -> labels -> [bucket counts..., +Inf count, sum]
        self.hists: dict[str, dict[tuple, list]] = {n: {} for n in HISTOGRAMS}
        self.gauge_fns: dict[str, callable] = {}
        self.dir: Path | None = None

    # -- hot path --------------------------------------------------------------------------------
    def inc(self, name: str, labels: tuple = (), amount: float = 1) -> None:
        c = self.counters[name]
        c[labels] = c.get(labels, 0) + amount

    def observe(self, name: str, labels: tuple, value: float) -> None:
        h = self.hists[name].get(labels)
        buckets = HISTOGRAMS[name][2]
        if h is None:
            h = self.hists[name][labels] = [0] * (len(buckets) + 2)
        h[bisect.bisect_left(buckets, value)] += 1
        h[-1] += value

    def observe_flush(self, seconds: float, rows: int) -> None:
        self.observe("ota_gateway_checkin_flush_duration_seconds", (), seconds)
        self.inc("ota_gateway_checkins_written", (), rows)

    # -- aggregation ---------------------------------------------------------------------------
    def use_dir(self, path: str | os.PathLike) -> None:
        self.dir = Path(path)
        self.dir.mkdir(parents=True, exist_ok=True)

    def snapshot(self) -> dict:
        return {
            "pid": os.getpid(), "time": time.time(),
            "counters": {n: [[list(k), v] for k, v in d.items()] for n, d in self.counters.items()},
            "hists": {n: [[list(k), v] for k, v in d.items()] for n, d in self.hists.items()},
            "gauges": {n: float(fn()) for n, fn in self.gauge_fns.items()},
        }

    def write_snapshot(self) -> None:
        if self.dir is None:
            return
        tmp = self.dir / f".worker-{os.getpid()}.tmp"
        tmp.write_bytes(orjson.dumps(self.snapshot()))
        tmp.replace(self.dir / f"worker-{os.getpid()}.json")

    def _snapshots(self) -> list[dict]:
        snaps = [self.snapshot()]
        if self.dir is not None:
            for f in self.dir.glob("worker-*.json"):
                if f.name == f"worker-{os.getpid()}.json":
                    continue
                try:
                    snap = orjson.loads(f.read_bytes())
                except (OSError, orjson.JSONDecodeError):
                    continue
                if not _alive(snap["pid"]):
                    snap["gauges"] = {}
                snaps.append(snap)
        return snaps

    def render(self, extra: list | None = None) -> bytes:
        """Prometheus text exposition of the sum over every worker's snapshot, plus `extra`
        metric families computed elsewhere (fleet gauges)."""
        snaps = self._snapshots()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(snaps, extra or []))
        return generate_latest(registry)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Collector:
    def __init__(self, snaps: list[dict], extra: list):
        self.snaps = snaps
        self.extra = extra

    def collect(self):
        yield from self.extra
        for name, (help_, labels) in COUNTERS.items():
            total: dict[tuple, float] = {}
            for s in self.snaps:
                for k, v in s["counters"].get(name, []):
                    total[tuple(k)] = total.get(tuple(k), 0) + v
            fam = CounterMetricFamily(name, help_, labels=labels)
            for k, v in sorted(total.items()):
                fam.add_metric(list(k), v)
            yield fam
        for name, (help_, labels, buckets) in HISTOGRAMS.items():
            total: dict[tuple, list] = {}
            for s in self.snaps:
                for k, v in s["hists"].get(name, []):
                    acc = total.setdefault(tuple(k), [0] * (len(buckets) + 2))
                    for i, x in enumerate(v):
                        acc[i] += x
            fam = HistogramMetricFamily(name, help_, labels=labels)
            for k, v in sorted(total.items()):
                cum, out = 0, []
                for bound, n in zip(list(buckets) + [float("inf")], v[:-1]):
                    cum += n
                    out.append((str(bound) if bound != float("inf") else "+Inf", cum))
                fam.add_metric(list(k), out, v[-1])
            yield fam
        live = [s for s in self.snaps if s["gauges"]]
        for name, (help_, combine) in GAUGES.items():
            if name == "ota_gateway_workers":
                yield GaugeMetricFamily(name, help_, value=len(live))
                continue
            yield GaugeMetricFamily(name, help_, value=combine([s["gauges"].get(name, 0) for s in live] or [0]))


METRICS = Metrics()
