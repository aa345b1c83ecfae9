"""TLS: server contexts with SNI, client contexts for members, and the TLS stream.

Server side. `server_context` loads every certificate of a virtual server into
its own `SSLContext`, all alike (versions, ciphers, ALPN); the first one is the
default and carries an `sni_callback` that moves the connection to the context
whose certificate names the server the client asked for: an exact DNS name
first, then a wildcard `*.example.test` (one label, any case); no SNI or no match
keeps the first certificate. The cipher list follows Mozilla's *intermediate*
profile for TLS 1.2 (forward-secret AEAD suites only, no CBC) and Mozilla's
*old* profile when `min_version` is lowered to 1.0 or 1.1 (with OpenSSL 3's
security level lowered to 0, which those versions need); TLS 1.3 suites are
OpenSSL's defaults. As in Mozilla's intermediate profile the client's cipher
preference wins (every suite offered is strong). Compression and
renegotiation are off.

Keys are loaded with a password callback, always: the passphrase from
`key_password_file`, or a callback that fails, so an encrypted key without a
passphrase is a start error and never a prompt on the terminal. Every problem of
every certificate is collected and raised once as `TlsConfigError` (a
`StartError`), one `FILE:LINE:COL: path: what` line each, pointing at the
certificate's entry in the config.

Streams. trio's `SSLStream` has no handshake deadline of its own, so
`accept_tls`/`connect_tls` run the handshake under one; a failed client
handshake is a `TlsHandshakeError` with a short reason and costs only that
connection. `TlsStream` gives the proxy the surface it uses on `SocketIO`.
Semantics that differ from a plain socket:

- `aclose()` sends close_notify (OpenSSL 3 clients such as `ab` count its
  absence as an error) under a short shielded deadline, then closes the socket.
- A peer that closes without close_notify (a "ragged EOF", common among HTTPS
  clients) reads as b"", as from a plain socket; HTTP frames its own messages.
  trio then treats the stream as broken both ways, so data can no longer be sent
  to such a peer.
- `send_eof()` sends close_notify and keeps the stream readable: TLS 1.3's
  half-close (RFC 8446 §6.1), which OpenSSL supports and trio's public API does
  not expose, so it drives `SSLStream`'s `_retry`/`_ssl_object` (a test guards
  them). A TLS 1.2 peer may answer a close_notify by closing.

The ~40 ms stall per new connection (research/perf-baseline.md), found and
removed: in TLS 1.3 the client's Finished is the last handshake message, and
trio holds the server's session tickets back until its first write (against
OpenSSL issue 7948). So the server sends nothing after that Finished, the
kernel delays its ACK (the connection is in "interactive" mode after the
server's flight), and a client that writes its request with Nagle on (`ab`,
Python's `ssl`; curl sets TCP_NODELAY, hence no stall there) holds the request
until that ACK comes: 40 ms later, the minimum delayed-ACK timer. Measured over
200 sequential handshakes + one request each on loopback: 44 ms per connection
as trio does it, 44 ms with no tickets at all, 2.1 ms when the tickets are sent
at once (the ACK rides on them), 2.4 ms with TCP_QUICKACK set after the
handshake, which sends the pending ACK at once. `accept_tls` does the latter
(`_ack_now`): one syscall, no trio internals, any ticket count. Without the
stall, handshakes are CPU-bound: about 0.85 ms of server CPU per connection
(ECDSA P-256, TLS 1.3, one tiny request), 1.55 ms with RSA-2048, against
HAProxy's 0.57 and 1.3 ms on the same box (process CPU over `ab -n 2000 -c 10`).
Each session ticket adds 2-4 % to that; TICKETS = 1 keeps resumption.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import socket
import ssl
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import trio
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from appliance.core.model import Certificate, Config, ServerTls, UpstreamTls
from appliance.dataplane.sockio import SocketIO
from appliance.dataplane.upstream import MemberTls
from appliance.errors import StartError, UpstreamConnectError

LOGGER = logging.getLogger("appliance.tls")

VERSIONS = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
# Mozilla Server Side TLS 5.7, "intermediate": ECDHE/DHE with AES-GCM or ChaCha20-Poly1305, for TLS 1.2.
# (The DHE suites are offered but not chosen: Python loads no DH parameters unless asked.)
INTERMEDIATE_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "DHE-RSA-AES128-GCM-SHA256", "DHE-RSA-AES256-GCM-SHA384", "DHE-RSA-CHACHA20-POLY1305",
))  # fmt: skip
# Mozilla "old": the above plus CBC and non-forward-secret suites, for clients of TLS 1.0/1.1;
# OpenSSL 3 refuses those versions' SHA-1 signatures above security level 0.
OLD_CIPHERS = INTERMEDIATE_CIPHERS + ":" + ":".join((
    "ECDHE-ECDSA-AES128-SHA256", "ECDHE-RSA-AES128-SHA256", "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES256-SHA384", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA",
    "DHE-RSA-AES128-SHA256", "DHE-RSA-AES256-SHA256", "AES128-GCM-SHA256", "AES256-GCM-SHA384",
    "AES128-SHA256", "AES256-SHA256", "AES128-SHA", "AES256-SHA", "DES-CBC3-SHA",
)) + ":@SECLEVEL=0"  # fmt: skip
TICKETS = 1  # TLS 1.3 session tickets per handshake (OpenSSL: 2): one resumes the next connection, each costs CPU
CLIENT_ALPN = ("http/1.1",)  # what the appliance speaks to members
CLOSE_NOTIFY_TIMEOUT = 0.5  # the alert is 24 bytes: a peer that cannot take them in this long is not reading
MAX_PASSWORD_BYTES = 1024  # a passphrase file is one short line; more is the wrong file

# The server name the client sent, captured by the SNI callback. The callback runs inside
# SSLObject.do_handshake, synchronously in the task that drives the handshake (accept_tls),
# so a per-task context variable carries it back without touching trio's SSLStream.
_SNI_SEEN: contextvars.ContextVar[list[str | None] | None] = contextvars.ContextVar("sni_seen", default=None)


class TlsConfigError(StartError):
    """Certificates, keys or CA files that cannot be used; one operator-facing line per problem."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = tuple(lines)
        super().__init__("\n".join(self.lines))


class TlsHandshakeError(Exception):
    """A client's handshake failed; `str()` is a short reason for the log. Only that connection is lost."""


# ---------------------------------------------------------------- server contexts


def server_context(vs_name: str, tls: ServerTls) -> ssl.SSLContext:
    """The SSLContext of virtual server `vs_name`: the first certificate's, switching by SNI.

    Raises:
        TlsConfigError: any certificate, key or passphrase file cannot be used (all of them listed).
    """
    problems: list[str] = []
    loaded: list[tuple[ssl.SSLContext, list[str]]] = []
    for index, cert in enumerate(tls.certificates):
        where = _where(cert.origin, f"virtual_servers.{vs_name}.tls.certificates[{index}]")
        ctx = _base_server_context(tls)
        try:
            names = _load_pair(ctx, cert)
        except _Problem as exc:
            problems.append(f"{where}: {exc}")
            continue
        loaded.append((ctx, names))
    if problems or not loaded:
        raise TlsConfigError(problems or [f"virtual_servers.{vs_name}.tls: no certificates"])
    default = loaded[0][0]
    default.sni_callback = _sni_chooser(default, loaded)
    return default


def _base_server_context(tls: ServerTls) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    legacy = tls.min_version in ("1.0", "1.1")
    with warnings.catch_warnings():  # Python deprecates TLS 1.0/1.1; the operator lowered min_version on purpose
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = VERSIONS[tls.min_version]
    ctx.set_ciphers(OLD_CIPHERS if legacy else INTERMEDIATE_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    ctx.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE  # Mozilla intermediate: every suite is strong, the client picks
    ctx.num_tickets = TICKETS
    if tls.alpn:
        ctx.set_alpn_protocols(list(tls.alpn))
    return ctx


def _sni_chooser(
    default: ssl.SSLContext, loaded: list[tuple[ssl.SSLContext, list[str]]]
) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], None]:
    """The SNI callback: exact names first, then one-label wildcards; the first certificate wins a tie."""
    exact: dict[str, ssl.SSLContext] = {}
    wildcard: dict[str, ssl.SSLContext] = {}  # "example.test" for "*.example.test"
    for ctx, names in loaded:
        for name in names:
            if name.startswith("*."):
                wildcard.setdefault(name[2:], ctx)
            else:
                exact.setdefault(name, ctx)

    def choose(ssl_object: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        seen = _SNI_SEEN.get()
        if seen is not None:
            seen[0] = server_name
        if server_name is None:
            return
        name = server_name.lower().rstrip(".")
        chosen = exact.get(name)
        if chosen is None and "." in name:
            chosen = wildcard.get(name.split(".", 1)[1])
        if chosen is not None and chosen is not default:
            ssl_object.context = chosen

    return choose


class _Problem(Exception):
    """One thing wrong with one certificate entry; the message names the file."""


class _NoPassphrase(Exception):
    """Raised by the password callback of a key without `key_password_file`: never a terminal prompt."""


def _load_pair(ctx: ssl.SSLContext, cert: Certificate) -> list[str]:
    """Loads `cert` into `ctx` and returns the DNS names it serves (lower case).

    OpenSSL decides; `cryptography` explains: its error strings ("PEM lib") do not say what is wrong.
    """
    password = _passphrase(cert) if cert.key_password_file else None
    try:
        ctx.load_cert_chain(cert.cert, cert.key, password=_password_callback(cert, password))
    except (OSError, ssl.SSLError, _NoPassphrase) as exc:
        raise _Problem(_explain(cert, password, exc)) from None
    try:
        return _dns_names(x509.load_pem_x509_certificates(_read(cert.cert, "certificate"))[0])
    except ValueError:  # OpenSSL took it, cryptography does not: served as the default only
        LOGGER.warning("certificate %s: cannot read its names; it serves clients without a matching SNI", cert.cert)
        return []


def _passphrase(cert: Certificate) -> bytes:
    assert cert.key_password_file is not None
    data = _read(cert.key_password_file, "key_password_file", limit=MAX_PASSWORD_BYTES)
    line = data.splitlines()[0] if data else b""
    if not line:
        raise _Problem(f"key_password_file {cert.key_password_file}: the first line (the passphrase) is empty")
    return line


def _password_callback(cert: Certificate, password: bytes | None) -> Callable[[], bytes]:
    def give() -> bytes:
        if password is None:
            raise _NoPassphrase(f"key {cert.key} is encrypted")
        return password

    return give


def _explain(cert: Certificate, password: bytes | None, exc: BaseException) -> str:
    """What is wrong with the pair, in words, by reading both files again with `cryptography`."""
    cert_pem = _read(cert.cert, "certificate")
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        return f"certificate {cert.cert} is not a PEM certificate (no -----BEGIN CERTIFICATE----- block that parses)"
    key_pem = _read(cert.key, "key")
    encrypted = b"ENCRYPTED" in key_pem
    if encrypted and password is None:
        return f"cannot load key {cert.key}: it is encrypted and no key_password_file is set"
    try:
        key = serialization.load_pem_private_key(key_pem, password if encrypted else None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as error:
        if encrypted:
            return f"cannot load key {cert.key}: wrong passphrase in key_password_file {cert.key_password_file}"
        if b"PRIVATE KEY-----" not in key_pem:
            return f"cannot load key {cert.key}: not a PEM private key (no -----BEGIN PRIVATE KEY----- block)"
        return f"cannot load key {cert.key}: unusable private key ({_first_line(error)})"
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        return f"cannot load key {cert.key}: key does not match certificate {cert.cert}"
    return f"cannot load certificate {cert.cert} with key {cert.key}: {_first_line(exc)}"


def _read(path: str, what: str, limit: int | None = None) -> bytes:
    try:
        with open(path, "rb") as stream:
            return stream.read() if limit is None else stream.read(limit)
    except OSError as exc:
        raise _Problem(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _dns_names(cert: x509.Certificate) -> list[str]:
    """The SAN DNS names; without a SAN extension, the subject's CN (as browsers did before RFC 6125)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(name) for name in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = [str(attr.value) for attr in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return [name.lower().rstrip(".") for name in names]


def _where(origin: str, path: str) -> str:
    return f"{origin}: {path}" if origin else path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# ---------------------------------------------------------------- client contexts and the check


def client_context(tls: UpstreamTls, where: str, *, alpn: Iterable[str] = CLIENT_ALPN) -> ssl.SSLContext:
    """The context for re-encrypting to the members of a pool; `where` is its config path (pools.web.tls).

    `verify: true` checks the chain against `ca` (or the system store) and the name against
    `server_name` or, without one, the member's IP address (an IP SAN). TLS 1.2 or later.
    `alpn` is offered (http/1.1; a TCP-mode pool may pass () to offer nothing).

    Raises:
        TlsConfigError: the `ca` file cannot be read or holds no certificate.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED and check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    protocols = list(alpn)
    if protocols:
        ctx.set_alpn_protocols(protocols)
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif tls.ca is None:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        try:
            ctx.load_verify_locations(cafile=tls.ca)
        except ssl.SSLError:  # before OSError, its base class
            message = f"ca {tls.ca} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            raise TlsConfigError([f"{_where(tls.origin, where)}: {message}"]) from None
        except OSError as exc:
            raise TlsConfigError([f"{_where(tls.origin, where)}: cannot read ca {tls.ca}: {exc.strerror or exc}"]) from None
    return ctx


def contexts_for(config: Config) -> tuple[dict[str, ssl.SSLContext], dict[str, MemberTls]]:
    """Every virtual server's server context and every pool's TLS to its members.

    Certificates, keys and CAs are read here: at start, at every reload, and by
    `appliance check`.

    Raises:
        TlsConfigError: every problem of every file, one line each.
    """
    lines: list[str] = []
    servers: dict[str, ssl.SSLContext] = {}
    members: dict[str, MemberTls] = {}
    for name, server in config.virtual_servers.items():
        if server.tls is not None:
            try:
                servers[name] = server_context(name, server.tls)
            except TlsConfigError as exc:
                lines.extend(exc.lines)
    for name, pool in config.pools.items():
        if pool.tls is not None:
            try:
                context = client_context(pool.tls, f"pools.{name}.tls")
            except TlsConfigError as exc:
                lines.extend(exc.lines)
                continue
            members[name] = MemberTls(context=context, server_name=pool.tls.server_name)
    if lines:
        raise TlsConfigError(lines)
    return servers, members


def check_tls(config: Config) -> list[str]:
    """The TLS problems of `config`, one line each (empty when every file loads)."""
    try:
        contexts_for(config)
    except TlsConfigError as exc:
        return list(exc.lines)
    return []


# ---------------------------------------------------------------- the stream


class TlsStream(trio.abc.HalfCloseableStream):
    """A TLS connection over a `SocketIO`, with the surface the proxy uses on `SocketIO`."""

    __slots__ = ("_closed", "_eof_sent", "_server_name", "_ssl", "_transport")

    def __init__(self, ssl_stream: trio.SSLStream[SocketIO], transport: SocketIO, server_name: str | None) -> None:
        self._ssl = ssl_stream
        self._transport = transport
        self._server_name = server_name
        self._closed = False
        self._eof_sent = False

    @property
    def transport(self) -> SocketIO:
        return self._transport

    @property
    def alpn(self) -> str | None:
        protocol: str | None = self._ssl.selected_alpn_protocol()  # forwarded by SSLStream.__getattr__: Any
        return protocol

    @property
    def server_name(self) -> str | None:
        """The SNI name the client sent (server side; None without SNI), or the one we sent (client side)."""
        return self._server_name

    @property
    def version(self) -> str | None:
        version: str | None = self._ssl.version()
        return version

    @property
    def cipher(self) -> str | None:
        cipher = self._ssl.cipher()
        return None if cipher is None else cipher[0]

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Decrypted bytes; b"" at the peer's close_notify, and also at a TCP FIN without one (a ragged EOF)."""
        try:
            data = await self._ssl.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            if _is_eof(exc.__cause__):
                return b""
            raise
        return data if isinstance(data, bytes) else bytes(data)

    async def receive_when_ready(self, max_bytes: int | None = None) -> bytes:
        """The same as `receive_some`: decrypted bytes may be buffered already, with nothing left on the socket."""
        return await self.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._ssl.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._ssl.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        """Sends close_notify and keeps reading: TLS's half-close (see the module notes). Idempotent."""
        if self._eof_sent or self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._eof_sent = True
        retry = getattr(self._ssl, "_retry", None)
        ssl_object = getattr(self._ssl, "_ssl_object", None)
        if retry is None or ssl_object is None:  # a trio without these internals: the alert goes at aclose
            LOGGER.warning("trio.SSLStream internals changed: send_eof cannot send close_notify before close")
            await trio.lowlevel.checkpoint()
            return
        await retry(ssl_object.unwrap, ignore_want_read=True)

    async def aclose(self) -> None:
        """Sends close_notify (within CLOSE_NOTIFY_TIMEOUT, even when cancelled), then closes the socket.

        A peer that is gone or not reading is not an error: the socket is closed all the same.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        try:
            with (
                trio.CancelScope(deadline=trio.current_time() + CLOSE_NOTIFY_TIMEOUT, shield=True),
                contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError),
            ):
                await self._ssl.aclose()
        finally:
            self._transport.close()

    def close(self) -> None:
        """Closes the socket at once, without close_notify (a reset or an abort)."""
        self._closed = True
        self._transport.close()

    def getpeername(self) -> Any:
        return self._transport.getpeername()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<TlsStream {self.version} {self._server_name or '-'} over fd={self._transport.sock.fileno()}{state}>"


async def accept_tls(stream: SocketIO, ctx: ssl.SSLContext, timeout: float) -> TlsStream:
    """Runs the server handshake on an accepted connection within `timeout` seconds.

    On failure the socket is closed (callers may close it again) and the reason raised.

    Raises:
        TlsHandshakeError: timeout, not TLS, closed or reset by the client, nothing in common.
    """
    ssl_stream = trio.SSLStream(stream, ctx, server_side=True, https_compatible=False)
    seen: list[str | None] = [None]
    token = _SNI_SEEN.set(seen)
    try:
        with trio.move_on_after(timeout) as scope:
            await ssl_stream.do_handshake()
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        stream.close()
        raise TlsHandshakeError(_handshake_failure(exc, "client")) from None
    except BaseException:
        stream.close()
        raise
    finally:
        _SNI_SEEN.reset(token)
    if scope.cancelled_caught:
        stream.close()
        raise TlsHandshakeError(f"handshake timeout after {timeout:g}s")
    _ack_now(stream)
    return TlsStream(ssl_stream, stream, seen[0])


async def connect_tls(stream: SocketIO, ctx: ssl.SSLContext, server_name: str | None, timeout: float) -> TlsStream:
    """Runs the client handshake to a member within `timeout` seconds.

    `server_name` is sent as SNI and verified (when the context verifies); None verifies the
    member's IP address instead. On failure the socket is closed.

    Raises:
        UpstreamConnectError: "TLS handshake failed: <why>" or "TLS handshake timeout after <t>s".
    """
    name = server_name if server_name is not None else str(stream.getpeername()[0])
    ssl_stream = trio.SSLStream(stream, ctx, server_side=False, server_hostname=name, https_compatible=False)
    try:
        with trio.move_on_after(timeout) as scope:
            await ssl_stream.do_handshake()
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        stream.close()
        raise UpstreamConnectError(f"TLS handshake failed: {_handshake_failure(exc, 'member')}") from None
    except BaseException:
        stream.close()
        raise
    if scope.cancelled_caught:
        stream.close()
        raise UpstreamConnectError(f"TLS handshake timeout after {timeout:g}s")
    return TlsStream(ssl_stream, stream, name)


def _ack_now(stream: SocketIO) -> None:
    """Acknowledges the client's Finished now rather than after the 40 ms delayed-ACK timer.

    Setting TCP_QUICKACK sends a pending delayed ACK at once (Linux). The client, if it writes
    its request with Nagle on, was waiting for exactly that ACK; see the module notes.
    """
    quickack = getattr(socket, "TCP_QUICKACK", None)
    if quickack is not None:
        with contextlib.suppress(OSError):
            stream.sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)


_NOT_TLS = {"HTTP_REQUEST": "not TLS (plain HTTP?)", "HTTPS_PROXY_REQUEST": "not TLS (a proxy CONNECT?)"}
_GARBAGE = {
    "WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG", "RECORD_LENGTH_MISMATCH",
    "UNEXPECTED_MESSAGE", "UNEXPECTED_RECORD", "RECORD_LAYER_FAILURE", "LENGTH_MISMATCH", "BAD_PACKET_LENGTH",
}  # fmt: skip
_VERSION = {
    "UNSUPPORTED_PROTOCOL", "VERSION_TOO_LOW", "VERSION_TOO_HIGH", "NO_PROTOCOLS_AVAILABLE",
    "TLSV1_ALERT_PROTOCOL_VERSION", "TLSV1_ALERT_INSUFFICIENT_SECURITY",
}  # fmt: skip
_CIPHER = {"NO_SHARED_CIPHER", "NO_CIPHERS_AVAILABLE", "NO_SHARED_GROUPS", "NO_SUITABLE_SIGNATURE_ALGORITHM",
           "SSLV3_ALERT_HANDSHAKE_FAILURE"}  # fmt: skip


def _handshake_failure(exc: BaseException, peer: str) -> str:
    """A short reason for a failed handshake, from the ssl or socket error under trio's BrokenResourceError."""
    if isinstance(exc, trio.ClosedResourceError):
        return "connection closed during handshake"
    cause = exc.__cause__
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {cause.verify_message}"
    if _is_eof(cause):
        return f"{peer} closed during handshake"
    if isinstance(cause, ssl.SSLError):
        reason = cause.reason or ""
        if reason in _NOT_TLS:
            return _NOT_TLS[reason]
        if reason in _GARBAGE:
            return f"not TLS ({reason.lower().replace('_', ' ')})"
        if reason in _VERSION:
            return f"no shared protocol version ({reason.lower().replace('_', ' ')})"
        if reason in _CIPHER:
            return f"no shared cipher ({reason.lower().replace('_', ' ')})"
        if reason == "NO_APPLICATION_PROTOCOL" or reason == "TLSV1_ALERT_NO_APPLICATION_PROTOCOL":
            return "no shared ALPN protocol"
        if reason.startswith(("SSLV3_ALERT", "TLSV1_ALERT")):
            return f"{peer} sent alert {reason.split('_ALERT_', 1)[1].lower().replace('_', ' ')}"
        return f"TLS error: {reason.lower().replace('_', ' ') if reason else _first_line(cause)}"
    if isinstance(exc.__cause__, OSError):  # the transport's own error: SocketIO raises BrokenResourceError from it
        return f"{peer} reset during handshake ({exc.__cause__.strerror or exc.__cause__})"
    return f"handshake failed: {_first_line(cause or exc)}"


def _is_eof(exc: BaseException | None) -> bool:
    """An EOF where TLS wanted more: SSLEOFError, or the same under another class on some builds (as trio checks)."""
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return True
    if isinstance(exc, ssl.SSLSyscallError):
        return True  # OpenSSL's "syscall" error with errno 0: the socket read b"" mid-record
    return isinstance(exc, ssl.SSLError) and "UNEXPECTED_EOF_WHILE_READING" in str(exc.strerror or "")
