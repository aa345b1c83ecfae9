"""Action on service down: what happens to a member's connections when it goes down.

Handlers register the connections they have with a member for as long as they
have them; when the control plane sees a member go down (health) or be forced
offline (not disabled: disabled members keep their connections), it calls
``act`` with the pool's `action_on_service_down`, and each handler acts on its
own connections: it is woken by the cancellation of the scope it registered
and reads what to do from its handle.

- ``none``: nothing; connections end by themselves or by timeout.
- ``drop``: both sides closed at once, quietly (FIN).
- ``reset``: both sides closed at once with an RST (SO_LINGER 0).
"""

from __future__ import annotations

import trio

from appliance.core.model import ServiceDownAction


class Handle:
    """One connection's registration: its scope to cancel, and the action taken.

    A context manager (entered per request on the hot path, so a plain class,
    not a generator-based one): registered on enter, removed on exit.
    """

    __slots__ = ("scope", "action", "_handles")

    def __init__(self, scope: trio.CancelScope, handles: set[Handle]) -> None:
        self.scope = scope
        self.action: ServiceDownAction | None = None
        self._handles = handles

    def __enter__(self) -> Handle:
        self._handles.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handles.discard(self)


class ActiveConnections:
    def __init__(self) -> None:
        self._by_member: dict[tuple[str, str], set[Handle]] = {}

    def held(self, pool: str, member: str, scope: trio.CancelScope) -> Handle:
        """Registers a connection to `pool/member` for the duration of a `with` block."""
        key = (pool, member)
        handles = self._by_member.get(key)
        if handles is None:
            handles = self._by_member[key] = set()
        return Handle(scope, handles)

    def act(self, pool: str, member: str, action: ServiceDownAction) -> int:
        """Applies `action` to every connection to `pool/member`; how many were acted on."""
        if action is ServiceDownAction.NONE:
            return 0
        handles = list(self._by_member.get((pool, member), ()))
        for handle in handles:
            handle.action = action
            handle.scope.cancel()
        return len(handles)

    def count(self, pool: str, member: str) -> int:
        return len(self._by_member.get((pool, member), ()))
