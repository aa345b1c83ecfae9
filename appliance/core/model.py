"""The configuration model: frozen dataclasses for the whole schema of SPEC §2.

`core.config` builds these from YAML and checks every value; everything else
reads them and never mutates them. Durations are float seconds. Named objects
live in dicts keyed by name, in config order.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(field,))
def frozen(cls: type[_T]) -> type[_T]:
    """`@dataclass(frozen=True, slots=True, kw_only=True)`, spelled so that mypy sees a dataclass."""
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


class Mode(enum.Enum):
    HTTP = "http"
    TCP = "tcp"


class Method(enum.Enum):
    ROUND_ROBIN = "round_robin"
    RATIO = "ratio"
    LEAST_CONNECTIONS = "least_connections"
    RATIO_LEAST_CONNECTIONS = "ratio_least_connections"
    FASTEST = "fastest"
    OBSERVED = "observed"
    PREDICTIVE = "predictive"
    IP_HASH = "ip_hash"


class AdminState(enum.Enum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    FORCED_OFFLINE = "forced_offline"


class MonitorType(enum.Enum):
    TCP = "tcp"
    HTTP = "http"
    HTTPS = "https"


class ServiceDownAction(enum.Enum):
    NONE = "none"
    DROP = "drop"
    RESET = "reset"
    RESELECT = "reselect"


class PersistenceType(enum.Enum):
    COOKIE = "cookie"
    SOURCE_ADDRESS = "source_address"


class CookieMode(enum.Enum):
    INSERT = "insert"
    REWRITE = "rewrite"
    PASSIVE = "passive"


class CookieEncoding(enum.Enum):
    SIGNED = "signed"
    F5 = "f5"


class LogFormat(enum.Enum):
    TEXT = "text"
    JSON = "json"


@frozen
class Endpoint:
    """One IP address and port; `str()` is the operator's spelling."""

    host: str
    port: int

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.is_ipv6 else f"{self.host}:{self.port}"


# ---------------------------------------------------------------- appliance


@frozen
class LogSpec:
    access: str = "stderr"  # "stderr" | "off" | a file path
    format: LogFormat = LogFormat.TEXT


@frozen
class ApplianceSpec:
    name: str = "appliance"
    workers: int = 1
    state_file: str = "var/state.json"
    shutdown_grace: float = 10.0
    log: LogSpec = field(default_factory=LogSpec)


@frozen
class AdminSpec:
    listen: str = "127.0.0.1:9900"  # "HOST:PORT" or "unix:PATH"
    token_file: str = "var/admin.token"
    allow_remote: bool = False  # a non-loopback listen address needs this opt-in
    enabled: bool = False  # the file has an `admin` section: the API runs (none without one)


# ---------------------------------------------------------------- monitors


@frozen
class MonitorSend:
    method: str = "GET"
    path: str = "/"
    host: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # a tuple so monitors hash: probe tasks are keyed by them


@frozen
class MonitorExpect:
    status: tuple[int, ...] = (200,)
    body: str | None = None
    body_regex: str | None = None


@frozen
class Monitor:
    name: str
    type: MonitorType
    interval: float = 5.0
    timeout: float = 2.0
    rise: int = 2
    fall: int = 3
    send: MonitorSend = field(default_factory=MonitorSend)
    expect: MonitorExpect = field(default_factory=MonitorExpect)
    snat: bool = False  # probes of a pool with `snat` leave from its SNAT addresses (a lane of their own)


# ---------------------------------------------------------------- SNAT


@frozen
class AddressSet:
    name: str
    addresses: tuple[str, ...]  # expanded, in order


@frozen
class SnatDraw:
    source: str  # the address set's name (`from` in YAML)
    count: int


@frozen
class Quarantine:
    failures: int = 3
    duration: float = 30.0  # `for` in YAML


@frozen
class SnatPool:
    name: str
    addresses: tuple[str, ...] = ()
    draw: tuple[SnatDraw, ...] = ()
    quarantine: Quarantine = field(default_factory=Quarantine)
    min_interval: float = 0.0
    static: bool = True
    mutable: bool = True


# ---------------------------------------------------------------- pools


@frozen
class QueueSpec:
    size: int = 0
    timeout: float = 5.0


@frozen
class PassiveCheck:
    """Passive failure detection: live traffic's failures take a member out between probes."""

    failures: int = 0  # consecutive connect failures or resets that mark a member down; 0 = off
    down_for: float = 10.0  # a member without a monitor comes back after this (nginx's fail_timeout)


@frozen
class UpstreamTls:
    verify: bool = True
    ca: str | None = None  # PEM bundle of trusted CAs; None: the system store
    server_name: str | None = None  # SNI and the name verified; None: the member's address
    origin: str = field(default="", compare=False)  # "FILE:LINE:COL" of the section, for runtime errors


@frozen
class Member:
    address: Endpoint
    name: str
    ratio: int = 1
    priority_group: int = 0
    connection_limit: int = 0
    state: AdminState = AdminState.ENABLED
    cookie_value: str | None = None


@frozen
class Pool:
    name: str
    method: Method = Method.ROUND_ROBIN
    monitors: tuple[str, ...] = ()
    min_active_members: int = 0
    slow_ramp: float = 0.0
    action_on_service_down: ServiceDownAction = ServiceDownAction.NONE
    retries: int = 2
    retry_non_idempotent: bool = False
    queue: QueueSpec = field(default_factory=QueueSpec)
    passive: PassiveCheck = field(default_factory=PassiveCheck)
    hash_mask: int = 32
    snat: str | None = None
    tls: UpstreamTls | None = None
    static: bool = True
    mutable: bool = True
    members: tuple[Member, ...] = ()

    def member(self, name: str) -> Member | None:
        return next((m for m in self.members if m.name == name), None)


# ---------------------------------------------------------------- virtual servers


@frozen
class Listen:
    """One `listen` entry as written, with the endpoints it expands to."""

    spec: str
    endpoints: tuple[Endpoint, ...]


@frozen
class HeaderMatch:
    name: str  # lower case
    equals: str | None = None
    contains: str | None = None
    regex: str | None = None
    present: bool | None = None


@frozen
class Route:
    pool: str
    path: str | None = None
    path_prefix: str | None = None
    path_regex: str | None = None
    host: str | None = None
    header: HeaderMatch | None = None
    method: tuple[str, ...] = ()


@frozen
class Certificate:
    cert: str  # PEM: the certificate, then its intermediates
    key: str  # PEM private key, possibly encrypted
    key_password_file: str | None = None  # its first line is the key's passphrase
    # "FILE:LINE:COL" of the entry, so load errors at start or reload point at the config line.
    # Not compared: moving an entry in the file does not change the certificate.
    origin: str = field(default="", compare=False)


@frozen
class ServerTls:
    certificates: tuple[Certificate, ...]  # SNI picks by their DNS names; the first is the default
    min_version: str = "1.2"
    alpn: tuple[str, ...] = ("http/1.1",)
    handshake_timeout: float = 10.0  # a slow link needs a few round trips; a stalled ClientHello is dropped after this


@frozen
class Persistence:
    type: PersistenceType = PersistenceType.COOKIE
    cookie: str | None = None  # None: LBSESSION, or BIGipServer<pool> with encoding f5
    mode: CookieMode = CookieMode.INSERT
    max_age: float = 0.0
    encoding: CookieEncoding = CookieEncoding.SIGNED
    timeout: float = 1800.0  # source_address: a record is kept this long after its last use
    max_records: int = 100_000  # source_address: records per virtual server, least recently used out first


@frozen
class Timeouts:
    client_header: float = 10.0
    client_idle: float = 60.0
    connect: float = 3.0
    server: float = 60.0
    tunnel: float = 3600.0


@frozen
class Limits:
    max_header_bytes: int = 32768
    max_header_count: int = 100  # HAProxy's tune.http.maxhdr is 101 including the request line


@frozen
class VirtualServer:
    name: str
    listen: tuple[Listen, ...]
    mode: Mode = Mode.HTTP
    pool: str | None = None
    routes: tuple[Route, ...] = ()
    tls: ServerTls | None = None
    persistence: Persistence | None = None
    connection_limit: int = 0
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(ep for entry in self.listen for ep in entry.endpoints)


# ---------------------------------------------------------------- HA


@frozen
class HaHooks:
    master: tuple[tuple[str, ...], ...] = ()
    backup: tuple[tuple[str, ...], ...] = ()
    fault: tuple[tuple[str, ...], ...] = ()


@frozen
class Ha:
    priority: int = 100
    preempt: bool = True
    preempt_delay: float = 0.0
    advert_interval: float = 1.0
    listen: Endpoint
    peers: tuple[Endpoint, ...]
    secret_file: str
    virtual_servers: tuple[str, ...] | None = None  # None means "all"
    track_pools: Mapping[str, int] = field(default_factory=dict)
    hooks: HaHooks = field(default_factory=HaHooks)


# ---------------------------------------------------------------- the whole file


@frozen
class Config:
    source: str  # the file it came from, for messages
    appliance: ApplianceSpec = field(default_factory=ApplianceSpec)
    admin: AdminSpec = field(default_factory=AdminSpec)
    monitors: Mapping[str, Monitor] = field(default_factory=dict)
    address_sets: Mapping[str, AddressSet] = field(default_factory=dict)
    snat_pools: Mapping[str, SnatPool] = field(default_factory=dict)
    pools: Mapping[str, Pool] = field(default_factory=dict)
    virtual_servers: Mapping[str, VirtualServer] = field(default_factory=dict)
    ha: Ha | None = None
    not_yet_supported: tuple[str, ...] = ()  # dotted paths accepted but not acted on yet
