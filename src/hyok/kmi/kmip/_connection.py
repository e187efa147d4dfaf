"""TLS connections to a KMIP server, in a bounded pool, with reconnection.

Each connection is a TLS socket with a client certificate, which is how the
server authenticates the proxy. A connection carries one request at a time.
The pool opens at most ``max_connections`` of them, keeps idle ones for
reuse, and drops an idle connection that the server closed. A failed send
or receive closes the connection, because the stream may be half-written.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from hyok.common.errors import ConfigError, DependencyTimeoutError
from hyok.common.secrets import Secret
from hyok.kmi.kmip import _protocol

__all__ = ["ConnectionBrokenError", "ConnectionPool", "ServerAddress", "tls_context"]

logger = logging.getLogger(__name__)

_MIN_IO_SECONDS: Final = 0.05


class ConnectionBrokenError(Exception):
    """Connecting, sending or receiving failed; another connection may succeed."""


@dataclass(frozen=True, slots=True)
class ServerAddress:
    host: str
    port: int
    #: The name the server certificate must carry; the host when None.
    server_name: str | None = None

    def describe(self) -> str:
        return f"{self.host}:{self.port}"


def tls_context(
    ca_file: Path, cert_file: Path, key_file: Path, key_password: Secret | None
) -> ssl.SSLContext:
    """Build a client context: TLS 1.2 or later, the server checked against ``ca_file``.

    Raises ConfigError naming the file that cannot be used. The message never
    contains the key password.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    for path, label in (
        (ca_file, "CA file"),
        (cert_file, "client certificate file"),
        (key_file, "client key file"),
    ):
        if not path.is_file():
            raise ConfigError(f"the KMIP {label} {path} does not exist")
    try:
        context.load_verify_locations(cafile=ca_file)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"the KMIP CA file {ca_file} contains no valid PEM certificate: {exc.reason}"
        ) from None
    password = key_password.reveal_bytes() if key_password is not None else None
    try:
        context.load_cert_chain(cert_file, key_file, password=lambda: password or b"")
    except ssl.SSLError as exc:
        hint = "the key password is wrong, or " if password is not None else ""
        raise ConfigError(
            f"the KMIP client certificate {cert_file} and key {key_file} cannot be used "
            f"({exc.reason}): {hint}the key does not match the certificate or is not PEM"
        ) from None
    return context


class _Connection:
    __slots__ = ("sock",)

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock

    def exchange(self, request: bytes, operation: Any, deadline: float) -> Any:
        self._set_timeout(deadline)
        try:
            self.sock.sendall(request)
            header = self._receive(_protocol.HEADER_BYTES, deadline)
            length = _protocol.message_length(header)
            if length > _protocol.MAX_MESSAGE_BYTES:
                raise ConnectionBrokenError(
                    f"the KMIP server sent a {length}-byte message, more than the maximum "
                    f"{_protocol.MAX_MESSAGE_BYTES}"
                )
            body = self._receive(length, deadline)
        except (OSError, EOFError) as exc:
            raise ConnectionBrokenError(_describe_io(exc)) from None
        try:
            return _protocol.decode_response(operation, header + body)
        except ValueError as exc:
            raise ConnectionBrokenError(str(exc)) from None

    def _receive(self, count: int, deadline: float) -> bytes:
        parts = []
        remaining = count
        while remaining:
            self._set_timeout(deadline)
            chunk = self.sock.recv(min(remaining, 65_536))
            if not chunk:
                raise EOFError("the KMIP server closed the connection")
            parts.append(chunk)
            remaining -= len(chunk)
        return b"".join(parts)

    def _set_timeout(self, deadline: float) -> None:
        self.sock.settimeout(max(_MIN_IO_SECONDS, deadline - time.monotonic()))

    def closed_by_peer(self) -> bool:
        """True when the server closed the idle connection or sent data nobody asked for.

        A readable idle socket may also hold a TLS 1.3 session ticket, which is
        not application data: a non-blocking read consumes it and finds nothing.
        """
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        if not readable:
            return False
        try:
            self.sock.setblocking(False)
            # End of stream or unrequested data: either way the connection is unusable.
            self.sock.recv(1)
        except ssl.SSLWantReadError:
            return False
        except OSError:
            pass
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class ConnectionPool:
    """At most ``max_connections`` TLS connections to one KMIP server."""

    def __init__(
        self,
        address: ServerAddress,
        context: ssl.SSLContext,
        *,
        max_connections: int,
        connect_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._address = address
        self._context = context
        self._max = max_connections
        self._connect_timeout = connect_timeout
        self._clock = clock
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._leases = threading.BoundedSemaphore(max_connections)
        self._generation = 0

    def __repr__(self) -> str:
        return f"ConnectionPool(server={self._address.describe()!r}, max={self._max})"

    def call(self, operation: Any, payload: Any, deadline: float) -> Any:
        """Send one request on a pooled connection and return the response payload.

        Raises KmipResultError for a failure result, ConnectionBrokenError when
        the connection failed, and DependencyTimeoutError when no connection
        became free before ``deadline``.
        """
        request = _protocol.encode_request(operation, payload)
        with self._lease(deadline) as connection:
            return connection.exchange(request, operation, deadline)

    def drop_idle(self) -> None:
        """Close the idle connections, after a failure that likely broke them all."""
        with self._lock:
            self._generation += 1
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    close = drop_idle

    @contextlib.contextmanager
    def _lease(self, deadline: float) -> Iterator[_Connection]:
        if not self._leases.acquire(timeout=max(0.0, deadline - self._clock())):
            raise DependencyTimeoutError(
                f"all {self._max} connections to KMIP server {self._address.describe()} stayed "
                "busy until the deadline; raise max_connections or lower the load"
            )
        try:
            connection, generation = self._take(deadline)
            try:
                yield connection
            except _protocol.KmipResultError:
                # A failure result leaves the stream in a clean state.
                self._give_back(connection, generation)
                raise
            except BaseException:
                connection.close()
                raise
            self._give_back(connection, generation)
        finally:
            self._leases.release()

    def _take(self, deadline: float) -> tuple[_Connection, int]:
        with self._lock:
            generation = self._generation
            while self._idle:
                candidate = self._idle.pop()
                if not candidate.closed_by_peer():
                    return candidate, generation
                candidate.close()
        return self._open(deadline), generation

    def _give_back(self, connection: _Connection, generation: int) -> None:
        with self._lock:
            if generation == self._generation:
                self._idle.append(connection)
                return
        connection.close()

    def _open(self, deadline: float) -> _Connection:
        address = self._address
        timeout = max(_MIN_IO_SECONDS, min(self._connect_timeout, deadline - self._clock()))
        try:
            raw = socket.create_connection((address.host, address.port), timeout=timeout)
        except OSError as exc:
            raise ConnectionBrokenError(
                f"cannot connect to KMIP server {address.describe()}: {_describe_io(exc)}"
            ) from None
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = self._context.wrap_socket(
                raw, server_hostname=address.server_name or address.host
            )
        except ssl.SSLCertVerificationError as exc:
            raw.close()
            raise ConnectionBrokenError(
                f"the certificate of KMIP server {address.describe()} failed verification: "
                f"{exc.verify_message}"
            ) from None
        except OSError as exc:
            raw.close()
            raise ConnectionBrokenError(
                f"the TLS handshake with KMIP server {address.describe()} failed: "
                f"{_describe_io(exc)}"
            ) from None
        return _Connection(sock)


def _describe_io(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error {exc.reason or exc.__class__.__name__}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
