"""What an http/https monitor sends and how it judges the answer (pure).

The request: `send.method` `send.path`, `Host` from `send.host` or the member's
address, `send.headers`, and `Connection: close`. The verdict: the status must
be one of `expect.status`, and the first ``BODY_LIMIT`` bytes of the body must
contain `expect.body` or match `expect.body_regex` (searched, Python syntax).
Reasons read like HAProxy's check statuses, for the log line and the API.
"""

from __future__ import annotations

import re
from functools import lru_cache

from appliance.core.model import Endpoint, Monitor, MonitorExpect

BODY_LIMIT = 16 * 1024  # bytes of the body a check reads; HAProxy's check buffer is 16 KiB (tune.bufsize)
USER_AGENT = "appliance-monitor"


def request_for(monitor: Monitor, member: Endpoint) -> tuple[str, str, list[tuple[str, str]]]:
    """The method, target and headers of one probe of `member`."""
    send = monitor.send
    headers = [("Host", send.host or str(member)), ("User-Agent", USER_AGENT), ("Connection", "close")]
    taken = {name.lower() for name, _ in headers}
    for name, value in send.headers:
        if name.lower() in taken:
            headers = [(n, v) for n, v in headers if n.lower() != name.lower()]
        headers.append((name, value))
    return send.method, send.path, headers


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def verdict(expect: MonitorExpect, status: int, body: bytes) -> tuple[bool, str]:
    """(passed, reason) for one answer."""
    if status not in expect.status:
        return False, f"L7 status {status}"
    if expect.body is None and expect.body_regex is None:
        return True, f"L7 ok, status {status}"
    text = body[:BODY_LIMIT].decode("utf-8", "replace")
    if expect.body is not None and expect.body not in text:
        return False, "body mismatch"
    if expect.body_regex is not None and _compiled(expect.body_regex).search(text) is None:
        return False, "body regex mismatch"
    return True, f"L7 ok, status {status}, body matched"
