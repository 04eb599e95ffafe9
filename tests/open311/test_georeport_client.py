"""A real Open311 client (`georeport` from PyPI) against a real server: `xihu migrate`,
`xihu demo --load-only`, `xihu serve` in a subprocess on a free port, with a fresh data directory (SQLite,
or a PostgreSQL database of its own on the PostgreSQL pass)."""

from __future__ import annotations

import subprocess

import pytest

from servers import demo_server

georeport = pytest.importorskip("georeport", reason="the georeport client (PyPI) is not installed")
requests = pytest.importorskip("requests")


@pytest.fixture(scope="module")
def server():  # type: ignore[no-untyped-def]
    """A real server with the demo data, on a free port; stopped afterwards."""
    with demo_server("xihu-open311-", XIHU_IN_PROCESS_WORKER="0") as srv:
        yield srv


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_georeport_client_reads_services_and_requests(server, fmt: str) -> None:  # type: ignore[no-untyped-def]
    client = georeport.GeoReport(f"{server['base']}/open311/v2", output_format=fmt)
    services = client.get_service_list()
    assert len(services) >= 7
    codes = {s["service_code"] for s in services}
    assert "CXJS" in codes

    definition = client.get_service_definition("CXJS")
    assert definition["service_code"] == "CXJS"

    found = client.get_service_requests()
    found = found if isinstance(found, list) else [found]  # xmltodict gives a dict for a single item
    assert found, "the demo's 20 appeals should be listed"
    first = found[0]
    assert first["status"] in ("open", "closed")
    assert first["requested_datetime"].endswith("+08:00")

    one = client.get_service_request(first["service_request_id"])
    assert one["service_request_id"] == first["service_request_id"]
    by_status = client.get_service_requests(status="open")
    by_status = by_status if isinstance(by_status, list) else [by_status]
    assert all(r["status"] == "open" for r in by_status)


def test_create_key_then_post_and_read_back(server) -> None:  # type: ignore[no-untyped-def]
    done = subprocess.run(
        [server["xihu"], "open311", "create-key", "测试客户端"],
        env=server["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    assert len(key) >= 32 and " " not in key
    base = f"{server['base']}/open311/v2"

    refused = requests.post(
        f"{base}/requests.json", data={"api_key": "nope", "service_code": "CXJS"}, timeout=10
    )
    assert refused.status_code == 403 and refused.json()[0]["code"] == 403

    resp = requests.post(
        f"{base}/requests.json",
        data={
            "api_key": key,
            "service_code": "HJBH",
            "lat": "30.27",
            "long": "120.12",
            "description": "河道里有黑臭水体，气味很大",
            "phone": "13912345678",
        },
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    code = resp.json()[0]["service_request_id"]
    one = georeport.GeoReport(base).get_service_request(code)
    assert one["service_request_id"] == code
    assert "13912345678" not in str(one)
