"""Live counters of one member, shared by every snapshot that shows that member.

The data plane writes them, readers (balancers, API, metrics) only read. With
``workers: N`` each worker will own one row in shared memory and readers sum
the rows; keeping every write behind these few methods makes that a change of
storage, not of callers.
"""

from __future__ import annotations


class MemberStats:
    __slots__ = ("active", "total", "requests", "failures", "streak", "bytes_in", "bytes_out")

    def __init__(self) -> None:
        self.active = 0  # open client connections (tcp) or in-flight requests (http)
        self.total = 0  # connections or requests ever sent to the member
        self.requests = 0  # http requests answered by the member
        self.failures = 0  # connect failures and broken responses
        self.streak = 0  # of those, in a row since the last success (passive failure detection)
        self.bytes_in = 0  # from the member
        self.bytes_out = 0  # to the member

    def opened(self) -> None:
        self.active += 1
        self.total += 1

    def closed(self) -> None:
        self.active -= 1

    def failed(self) -> int:
        """Counts a connect failure or broken response; the failures in a row so far."""
        self.failures += 1
        self.streak += 1
        return self.streak

    def succeeded(self) -> None:
        self.streak = 0

    def __repr__(self) -> str:
        return f"<MemberStats active={self.active} total={self.total} failures={self.failures}>"
