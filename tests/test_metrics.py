"""/metrics: request and poll counters, the write-behind gauges and the fleet gauges for rollouts."""
from __future__ import annotations

from conftest import PROJECT_KEY, deploy, upload_release

from gateway.app import FLEET
from gateway.appkeys import CHECKINS


def samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def test_metrics_cover_requests_polls_and_the_fleet(client):
    client.server.app[FLEET].ttl = 0  # no caching of the fleet gauges between the two scrapes
    # counters are per process and other test modules ran in this one: compare differences
    before = samples(await (await client.get("/metrics")).text())
    await upload_release(client, b"m" * 500, version="1.0.0", software_type="main", hardware_version="mp")
    await deploy(client, "1.0.0")
    for serial, current in (("MET1", "0.9.0"), ("MET2", "1.0.0"), ("MET3", "1.0.0")):
        r = await client.get("/api/v0/releases/latest", params={
            "device_serial": serial, "hardware_version": "mp", "software_type": "main",
            "current_version": current}, headers={"Memfault-Project-Key": PROJECT_KEY})
        assert r.status in (200, 204)
    await client.server.app[CHECKINS].flush()
    r = await client.get("/metrics")
    assert r.status == 200 and r.content_type == "text/plain"
    m = samples(await r.text())

    def delta(name: str) -> float:
        return m.get(name, 0) - before.get(name, 0)

    assert delta('ota_gateway_polls_total{protocol="memfault",reason="full"}') == 1
    assert delta('ota_gateway_polls_total{protocol="memfault",reason="latest"}') == 2
    route = "/api/v0/releases/latest"
    assert delta(f'ota_gateway_http_requests_total{{method="GET",route="{route}",status="200"}}') == 1
    assert delta(f'ota_gateway_http_request_duration_seconds_count{{route="{route}"}}') == 3
    assert m['ota_gateway_devices{cohort="default",project="smart-sink",software_type="main",version="1.0.0"}'] == 2
    assert m['ota_gateway_devices{cohort="default",project="smart-sink",software_type="main",version="0.9.0"}'] == 1
    assert m['ota_gateway_cohort_devices{cohort="default",project="smart-sink"}'] == 3
    assert not any(k.startswith("ota_gateway_staged_devices{") for k in m)  # no staged rollout yet
    assert any(k.startswith("ota_gateway_build_info{") for k in m)
    assert m["ota_gateway_checkin_buffer_depth"] == 0 and delta("ota_gateway_checkins_written_total") >= 3
    assert "MET1" not in await r.text()


async def test_metrics_token_and_fleet_labels(aiohttp_client, settings):
    """OTA_METRICS_TOKEN protects /metrics; OTA_METRICS_FLEET_LABELS=off drops the per-organization
    fleet gauges (the process metrics stay)."""
    from dataclasses import replace

    from gateway.app import init_app

    client = await aiohttp_client(init_app(replace(settings, metrics_token="s3cret-metrics", metrics_fleet_labels="off")))
    r = await client.get("/metrics")
    assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await client.get("/metrics", headers={"Authorization": "Bearer wrong"})).status == 401
    r = await client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"})
    text = await r.text()
    assert r.status == 200 and "ota_gateway_build_info" in text
    assert "ota_gateway_devices" not in text and "ota_gateway_release_actions" not in text


async def test_metrics_show_fleet_gauges_by_default(client):
    r = await client.get("/metrics")
    assert r.status == 200 and "ota_gateway_cohort_devices" in await r.text()
