"""The error tree. Messages are for operators: where, what, and what was expected."""

from __future__ import annotations

from dataclasses import dataclass


class ApplianceError(Exception):
    """Base of every error the appliance raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a config file, located at its line and column (1-based)."""

    source: str
    line: int
    column: int
    path: str  # dotted path such as "pools.web.members[2].ratio"; "" at top level
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.source}:{self.line}:{self.column}: {where}{self.message}"


class ConfigError(ApplianceError):
    """A config file failed validation; carries every issue found, in file order."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.line, i.column))
        super().__init__("\n".join(str(i) for i in self.issues))


class StartError(ApplianceError):
    """The appliance cannot start as configured (a port in use, an unreadable file)."""


class UpstreamError(ApplianceError):
    """A member failed us; `status_hint` is what the client is answered."""

    status_hint = 502


class UpstreamConnectError(UpstreamError):
    """The connect to a member was refused, reset or timed out: retried elsewhere."""

    status_hint = 502


class UpstreamTimeout(UpstreamError):
    """The member accepted the request but did not answer within `timeouts.server`."""

    status_hint = 504


class UpstreamProtocolError(UpstreamError):
    """The member sent something that is not HTTP, or closed mid-response."""

    status_hint = 502
