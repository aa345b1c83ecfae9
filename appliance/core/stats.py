"""Live counters: one ``MemberStats`` per member, one ``VirtualServerStats`` per virtual server.

The data plane writes them, readers (balancers, API, metrics) only read. With
``workers: N`` each worker will own one row in shared memory and readers sum
the rows; keeping every write behind these few methods and attributes makes
that a change of storage, not of callers.

Writes are plain attribute increments (a request costs a handful of integer
additions and no dict lookup): a handler holds the counters object it writes
for its whole connection. Responses are counted by class in a list indexed by
``response_class(status)``, named by ``RESPONSE_CLASSES``.

Directions follow each object's point of view: a member's ``bytes_in`` came
from the member (responses), its ``bytes_out`` went to it (requests); a virtual
server's ``bytes_in`` came from clients, its ``bytes_out`` went to them. In
mode http the bytes are message bodies (heads are not counted); in mode tcp
every byte relayed.
"""

from __future__ import annotations

from collections.abc import Iterator

RESPONSE_CLASSES = ("other", "1xx", "2xx", "3xx", "4xx", "5xx")  # index = response_class(status)


def response_class(status: int) -> int:
    """The index into ``RESPONSE_CLASSES`` of an HTTP status (0, "other", outside 100..599)."""
    index = status // 100
    return index if 0 < index < 6 else 0


class MemberStats:
    __slots__ = ("active", "total", "requests", "failures", "streak", "bytes_in", "bytes_out", "responses")

    def __init__(self) -> None:
        self.active = 0  # open client connections (tcp) or in-flight requests (http)
        self.total = 0  # connections or requests ever sent to the member
        self.requests = 0  # http requests answered by the member (a response head reached the client)
        self.failures = 0  # connect failures and broken responses
        self.streak = 0  # of those, in a row since the last success (passive failure detection)
        self.bytes_in = 0  # from the member
        self.bytes_out = 0  # to the member
        self.responses = [0] * len(RESPONSE_CLASSES)  # http: answered requests by RESPONSE_CLASSES

    def opened(self) -> None:
        self.active += 1
        self.total += 1

    def closed(self) -> None:
        self.active -= 1

    def answered(self, status: int, body_bytes: int) -> None:
        """Mode http: the member's response head with `status` reached the client, then `body_bytes`."""
        self.requests += 1
        index = status // 100  # response_class, inline: once per request
        self.responses[index if 0 < index < 6 else 0] += 1
        self.bytes_in += body_bytes

    def failed(self) -> int:
        """Counts a connect failure or broken response; the failures in a row so far."""
        self.failures += 1
        self.streak += 1
        return self.streak

    def succeeded(self) -> None:
        self.streak = 0

    def __repr__(self) -> str:
        return f"<MemberStats active={self.active} total={self.total} failures={self.failures}>"


class VirtualServerStats:
    """What one virtual server's clients did: connections, requests, responses, bytes."""

    __slots__ = ("active", "total", "requests", "responses", "bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.active = 0  # open client connections
        self.total = 0  # client connections ever accepted
        self.requests = 0  # http requests, including those the appliance refused itself
        self.responses = [0] * len(RESPONSE_CLASSES)  # http: answers by RESPONSE_CLASSES, the appliance's own too
        self.bytes_in = 0  # from clients
        self.bytes_out = 0  # to clients

    def opened(self) -> None:
        self.active += 1
        self.total += 1

    def closed(self) -> None:
        self.active -= 1

    def answered(self, status: int, body_bytes: int) -> None:
        """Mode http: one request ended; `status` 0 means no response reached the client."""
        self.requests += 1
        if status:
            index = status // 100  # response_class, inline: once per request
            self.responses[index if 0 < index < 6 else 0] += 1
        self.bytes_out += body_bytes

    def __repr__(self) -> str:
        return f"<VirtualServerStats active={self.active} total={self.total} requests={self.requests}>"


class ServerStats:
    """The ``VirtualServerStats`` of every virtual server by name, for the process's lifetime.

    Entries are made on first use and kept across reloads, so a virtual server
    that stays keeps counting; one removed by a reload keeps its (idle) entry,
    which readers skip by reading only the names in the current config.
    """

    __slots__ = ("_by_name",)

    def __init__(self) -> None:
        self._by_name: dict[str, VirtualServerStats] = {}

    def of(self, name: str) -> VirtualServerStats:
        """The counters of virtual server `name`, made on first use."""
        stats = self._by_name.get(name)
        if stats is None:
            stats = self._by_name[name] = VirtualServerStats()
        return stats

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __repr__(self) -> str:
        return f"<ServerStats {len(self._by_name)} virtual server(s)>"
