"""Runtime changes laid over the configuration file: admin states, members added and removed.

The file is the desired state; the admin API (and the state file at start)
records changes here, and the runtime runs the *effective* config, the file's
with these applied. They survive a reload, except where the reloaded file
itself changed the same thing (an edited `state:` of that member, or a member
of that name now in the file): an operator's edit of the file is the newer
decision. `static` pools are re-seeded from the file at every start (the state
file's changes for them are not re-applied); `mutable: false` pools refuse API
changes (checked by the operations layer).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from appliance.core.model import AdminState, Config, Member

Json = dict[str, Any]
STATE_VERSION = 1  # the state file's format; a file of another version is ignored (and reported)


@dataclass
class Overrides:
    admin: dict[tuple[str, str], tuple[AdminState, str]] = field(default_factory=dict)  # (pool, member) -> state, source
    added: dict[str, dict[str, Member]] = field(default_factory=dict)  # pool -> name -> member, in order added
    removed: dict[str, set[str]] = field(default_factory=dict)  # pool -> names of the file's members taken out
    # SNAT: (kind, name) -> addresses added / taken out; kind is "snat_pools" or "address_sets"
    addresses_added: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    addresses_removed: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def effective(self, config: Config) -> Config:
        """The config with the members and addresses added and removed (admin states are applied by the runtime)."""
        config = self._effective_addresses(config)
        if not self.added and not self.removed:
            return config
        pools = dict(config.pools)
        for name, pool in config.pools.items():
            removed = self.removed.get(name, set())
            added = self.added.get(name, {})
            if not removed and not added:
                continue
            kept = tuple(m for m in pool.members if m.name not in removed)
            names = {m.name for m in kept}
            pools[name] = dataclasses.replace(pool, members=kept + tuple(m for m in added.values() if m.name not in names))
        return dataclasses.replace(config, pools=pools)

    def _effective_addresses(self, config: Config) -> Config:
        if not self.addresses_added and not self.addresses_removed:
            return config
        sets = {name: dataclasses.replace(s, addresses=self._laid("address_sets", name, s.addresses)) for name, s in config.address_sets.items()}
        pools = {name: dataclasses.replace(p, addresses=self._laid("snat_pools", name, p.addresses)) for name, p in config.snat_pools.items()}
        return dataclasses.replace(config, address_sets=sets, snat_pools=pools)

    def _laid(self, kind: str, name: str, addresses: tuple[str, ...]) -> tuple[str, ...]:
        """`addresses` without those taken out, then those added."""
        removed = self.addresses_removed.get((kind, name), set())
        kept = tuple(a for a in addresses if a not in removed)
        return kept + tuple(a for a in self.addresses_added.get((kind, name), []) if a not in kept)

    def drop_stale(self, config: Config) -> list[str]:
        """Drops what names pools, members or addresses `config` does not have; one message each."""
        return self.superseded_by(config, config)

    def superseded_by(self, old: Config, new: Config) -> list[str]:
        """Drops what a reloaded file decides anew; one message per change dropped.

        Also drops what refers to pools that are gone, and admin states of members that are gone.
        """
        dropped: list[str] = []
        for (pool, member), (state, source) in list(self.admin.items()):
            before, after = _member(old, pool, member), _member(new, pool, member)
            in_file = after is not None or member in self.added.get(pool, {})
            if pool not in new.pools or not in_file:
                del self.admin[(pool, member)]
                dropped.append(f"{pool}/{member}: admin state {state.value} ({source}) dropped: the member is gone")
            elif before is not None and after is not None and before.state is not after.state:
                del self.admin[(pool, member)]
                dropped.append(f"{pool}/{member}: admin state {state.value} ({source}) replaced by the file's {after.state.value}")
        for pool in list(self.removed):  # the file's member taken out: until the file edits or drops it
            for name in list(self.removed[pool]):
                before, after = _member(old, pool, name), _member(new, pool, name)
                if after is None or before != after:
                    self.removed[pool].discard(name)
                    if after is not None:
                        dropped.append(f"{pool}/{name}: removal dropped: the file changed that member")
            if pool not in new.pools or not self.removed[pool]:
                del self.removed[pool]
        for pool in list(self.added):
            if pool not in new.pools:
                del self.added[pool]
                continue
            for name in list(self.added[pool]):
                # A name the file (newly, or again after an edit) defines is the file's; one the
                # operator took out of the file's pool and added anew stays the operator's.
                if _member(new, pool, name) is not None and name not in self.removed.get(pool, set()):
                    del self.added[pool][name]
                    dropped.append(f"{pool}/{name}: added member replaced by the file's member of that name")
            if not self.added[pool]:
                del self.added[pool]
        for (kind, name), addresses in list(self.addresses_added.items()):
            table = getattr(new, kind)
            if name not in table:
                del self.addresses_added[(kind, name)]
                continue
            listed = [a for a in addresses if a in table[name].addresses]
            for address in listed:
                addresses.remove(address)
                dropped.append(f"{kind}.{name}: added address {address} is in the file now")
            if not addresses:
                del self.addresses_added[(kind, name)]
        for (kind, name), gone in list(self.addresses_removed.items()):
            table = getattr(new, kind)
            gone &= set(table[name].addresses) if name in table else set()
            if not gone:
                del self.addresses_removed[(kind, name)]
        return dropped

    def for_pool(self, pool: str) -> int:
        """How many changes concern `pool`."""
        return (
            sum(1 for (p, _) in self.admin if p == pool)
            + len(self.added.get(pool, {}))
            + len(self.removed.get(pool, set()))
        )

    def for_snat(self, kind: str, name: str) -> int:
        return len(self.addresses_added.get((kind, name), [])) + len(self.addresses_removed.get((kind, name), set()))

    def without_pools(self, pools: set[str], snat_pools: set[str]) -> Overrides:
        """A copy without the changes to `pools` and `snat_pools` (the static ones, at start)."""
        return Overrides(
            admin={key: value for key, value in self.admin.items() if key[0] not in pools},
            added={pool: dict(members) for pool, members in self.added.items() if pool not in pools},
            removed={pool: set(names) for pool, names in self.removed.items() if pool not in pools},
            addresses_added={
                key: list(v) for key, v in self.addresses_added.items() if not (key[0] == "snat_pools" and key[1] in snat_pools)
            },
            addresses_removed={
                key: set(v) for key, v in self.addresses_removed.items() if not (key[0] == "snat_pools" and key[1] in snat_pools)
            },
        )

    # ------------------------------------------------------------ the state file's JSON

    def to_json(self) -> Json:
        return {
            "version": STATE_VERSION,
            "admin_states": [
                {"pool": pool, "member": member, "state": state.value, "source": source}
                for (pool, member), (state, source) in self.admin.items()
            ],
            "added_members": [
                {"pool": pool, "member": member_json(member)} for pool, members in self.added.items() for member in members.values()
            ],
            "removed_members": [{"pool": pool, "member": name} for pool, names in self.removed.items() for name in sorted(names)],
            "added_addresses": [
                {"kind": kind, "name": name, "address": a} for (kind, name), addresses in self.addresses_added.items() for a in addresses
            ],
            "removed_addresses": [
                {"kind": kind, "name": name, "address": a}
                for (kind, name), addresses in self.addresses_removed.items()
                for a in sorted(addresses)
            ],
        }


def member_json(member: Member) -> Json:
    """A member as a config entry (what the API's POST takes and the state file keeps)."""
    data: Json = {
        "address": str(member.address),
        "name": member.name,
        "ratio": member.ratio,
        "priority_group": member.priority_group,
        "connection_limit": member.connection_limit,
        "state": member.state.value,
    }
    if member.cookie_value is not None:
        data["cookie_value"] = member.cookie_value
    return data


def _member(config: Config, pool: str, name: str) -> Member | None:
    found = config.pools.get(pool)
    return found.member(name) if found is not None else None


ADDRESS_KINDS = ("snat_pools", "address_sets")


def _address_key(row: Mapping[str, Any]) -> tuple[str, str]:
    kind = str(row["kind"])
    if kind not in ADDRESS_KINDS:
        raise ValueError(f"address kind {kind!r}, expected one of {', '.join(ADDRESS_KINDS)}")
    return kind, str(row["name"])


def from_json(data: Mapping[str, Any], parse_member: Callable[[Any], Member]) -> Overrides:
    """Reads the state file's JSON; `parse_member(dict) -> Member` validates added members.

    Raises:
        ValueError: the data is not a state file of this version (the message says why).
    """
    if data.get("version") != STATE_VERSION:
        raise ValueError(f"version {data.get('version')!r}, expected {STATE_VERSION}")
    overrides = Overrides()
    try:
        for row in data.get("admin_states", []):
            overrides.admin[(str(row["pool"]), str(row["member"]))] = (AdminState(row["state"]), str(row.get("source", "api")))
        for row in data.get("added_members", []):
            member = parse_member(row["member"])
            overrides.added.setdefault(str(row["pool"]), {})[member.name] = member
        for row in data.get("removed_members", []):
            overrides.removed.setdefault(str(row["pool"]), set()).add(str(row["member"]))
        for row in data.get("added_addresses", []):
            overrides.addresses_added.setdefault(_address_key(row), []).append(str(row["address"]))
        for row in data.get("removed_addresses", []):
            overrides.addresses_removed.setdefault(_address_key(row), set()).add(str(row["address"]))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"malformed entry ({type(exc).__name__}: {exc})") from None
    return overrides
