"""The http monitor's request and verdict, as plain data."""

from __future__ import annotations

import pytest

from appliance.core.checks import BODY_LIMIT, request_for, verdict
from appliance.core.model import (
    Endpoint,
    Monitor,
    MonitorExpect,
    MonitorSend,
    MonitorType,
)


def test_request_defaults_and_overrides() -> None:
    member = Endpoint(host="127.0.0.1", port=9001)
    plain = Monitor(name="m", type=MonitorType.HTTP)
    assert request_for(plain, member) == (
        "GET", "/", [("Host", "127.0.0.1:9001"), ("User-Agent", "appliance-monitor"), ("Connection", "close")]
    )
    custom = Monitor(
        name="m",
        type=MonitorType.HTTPS,
        send=MonitorSend(method="HEAD", path="/health", host="app.test", headers=(("user-agent", "probe/1"), ("X-Check", "1"))),
    )
    method, target, headers = request_for(custom, member)
    assert (method, target) == ("HEAD", "/health")
    assert headers == [("Host", "app.test"), ("Connection", "close"), ("user-agent", "probe/1"), ("X-Check", "1")]


@pytest.mark.parametrize(
    ("expect", "status", "body", "result"),
    [
        (MonitorExpect(), 200, b"", (True, "L7 ok, status 200")),
        (MonitorExpect(), 503, b"", (False, "L7 status 503")),
        (MonitorExpect(status=(200, 204)), 204, b"", (True, "L7 ok, status 204")),
        (MonitorExpect(body="ok"), 200, b"all ok", (True, "L7 ok, status 200, body matched")),
        (MonitorExpect(body="ok"), 200, b"degraded", (False, "body mismatch")),
        (MonitorExpect(body="ok"), 500, b"ok", (False, "L7 status 500")),
        (MonitorExpect(body_regex=r"^(ok|healthy)"), 200, b"healthy\n", (True, "L7 ok, status 200, body matched")),
        (MonitorExpect(body_regex=r"^(ok|healthy)"), 200, b"not ok", (False, "body regex mismatch")),
        (MonitorExpect(body="tail"), 200, b"x" * BODY_LIMIT + b"tail", (False, "body mismatch")),
    ],
)
def test_verdict(expect: MonitorExpect, status: int, body: bytes, result: tuple[bool, str]) -> None:
    assert verdict(expect, status, body) == result
