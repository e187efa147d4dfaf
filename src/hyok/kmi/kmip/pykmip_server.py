"""A PyKMIP server of its own, for ``hyok up --kmi kmip``, the tests and the benchmarks.

:func:`prepare_server` writes, in a directory of the caller, a local CA, a
server certificate for ``127.0.0.1`` and ``localhost``, a client certificate
whose common name is the KMIP user, an empty policy directory and a server
configuration with its SQLite database. :func:`start_server` runs the server
as a child process (``python -m hyok.kmi.kmip.pykmip_server CONFIG``) bound
to 127.0.0.1, and waits until it completes a TLS handshake.

The child runs the unmodified PyKMIP server. Its engine performs AES-GCM with
the KMIP 1.4 Encrypt and Decrypt fields Authenticated Encryption Additional
Data and Authenticated Encryption Tag, so nothing needs to be patched.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from hyok.common.errors import ConfigError
from hyok.common.fileio import atomic_write
from hyok.common.tls import create_ca, issue_client_certificate, issue_server_certificate

__all__ = [
    "CLIENT_COMMON_NAME",
    "DEFAULT_PORT",
    "PykmipServer",
    "ServerFiles",
    "prepare_server",
    "start_server",
]

#: The IANA port of KMIP over TLS.
DEFAULT_PORT: Final = 5696
#: The common name of the client certificate, which PyKMIP uses as the KMIP user.
CLIENT_COMMON_NAME: Final = "hyok-xki-proxy"
_HOST: Final = "127.0.0.1"
_CA_DAYS: Final = 3650
_CERTIFICATE_DAYS: Final = 3640
_START_TIMEOUT_SECONDS: Final = 60.0
_STOP_TIMEOUT_SECONDS: Final = 15.0
_PR_SET_PDEATHSIG: Final = 1


@dataclass(frozen=True)
class ServerFiles:
    """The files of a server that :func:`prepare_server` wrote."""

    directory: Path
    port: int

    @property
    def config(self) -> Path:
        return self.directory / "server.conf"

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def client_cert_file(self) -> Path:
        return self.directory / "client.pem"

    @property
    def client_key_file(self) -> Path:
        return self.directory / "client-key.pem"

    @property
    def log_file(self) -> Path:
        return self.directory / "server.log"

    @property
    def database(self) -> Path:
        return self.directory / "pykmip.db"

    @classmethod
    def existing(cls, directory: Path) -> ServerFiles:
        """Read the port back from the configuration that :func:`prepare_server` wrote."""
        config = directory / "server.conf"
        try:
            lines = config.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"cannot read the PyKMIP configuration {config}: {exc}") from None
        for line in lines:
            name, _, value = line.partition("=")
            if name.strip() == "port" and value.strip().isdigit():
                return cls(directory, int(value.strip()))
        raise ConfigError(f"the PyKMIP configuration {config} has no 'port = N' line")


def prepare_server(directory: Path, port: int = DEFAULT_PORT) -> ServerFiles:
    """Write certificates and a configuration for a server on 127.0.0.1:``port``.

    ``directory`` must not exist; it is created with mode 0700, and private
    keys get mode 0600. Raises ConfigError when the directory exists.
    """
    if directory.exists():
        raise ConfigError(
            f"{directory} already exists; remove it to prepare a new PyKMIP server there"
        )
    directory.mkdir(mode=0o700, parents=True)
    os.chmod(directory, 0o700)
    files = ServerFiles(directory.resolve(), port)

    ca = create_ca("hyok PyKMIP CA", days=_CA_DAYS)
    ca.write(files.ca_file, directory / "ca-key.pem")
    server = issue_server_certificate(ca, hostnames=["localhost", _HOST], days=_CERTIFICATE_DAYS)
    server.write(directory / "server.pem", directory / "server-key.pem")
    client = issue_client_certificate(
        ca, subject=f"CN={CLIENT_COMMON_NAME}", days=_CERTIFICATE_DAYS
    )
    client.write(files.client_cert_file, files.client_key_file)
    (directory / "policies").mkdir(mode=0o700)

    config = (
        "[server]\n"
        f"hostname = {_HOST}\n"
        f"port = {port}\n"
        f"certificate_path = {files.directory / 'server.pem'}\n"
        f"key_path = {files.directory / 'server-key.pem'}\n"
        f"ca_path = {files.ca_file}\n"
        "auth_suite = TLS1.2\n"
        f"policy_path = {files.directory / 'policies'}\n"
        "enable_tls_client_auth = True\n"
        "logging_level = INFO\n"
        f"database_path = {files.database}\n"
    )
    atomic_write(files.config, config.encode("utf-8"), mode=0o600)
    return files


class PykmipServer:
    """A running PyKMIP server process; :meth:`stop` ends it."""

    def __init__(self, files: ServerFiles, process: subprocess.Popen[bytes]) -> None:
        self.files = files
        self.process = process

    def __repr__(self) -> str:
        return f"PykmipServer(port={self.files.port}, pid={self.process.pid})"

    def stop(self) -> None:
        """Send SIGTERM, wait, then kill the process group if it is still running."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=_STOP_TIMEOUT_SECONDS)
        # PyKMIP starts helper processes (a multiprocessing manager and a
        # policy monitor) in the child's process group.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to send SIGTERM to the child when its parent dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_server(files: ServerFiles, log: Path | None = None) -> PykmipServer:
    """Start the server in a child process and wait until it accepts a TLS connection.

    Raises ConfigError naming the log when the server exits or does not
    respond within 60 seconds. The child gets SIGTERM when this process dies.
    """
    log = log or files.log_file
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "ab") as output:
        process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            [sys.executable, "-m", "hyok.kmi.kmip.pykmip_server", str(files.config), str(log)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads of ours run then
        )
    server = PykmipServer(files, process)
    try:
        _wait_for_handshake(server, log)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_handshake(server: PykmipServer, log: Path) -> None:
    files = server.files
    context = ssl.create_default_context(cafile=str(files.ca_file))
    context.load_cert_chain(files.client_cert_file, files.client_key_file)
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ConfigError(
                f"the PyKMIP server exited with status {server.process.returncode} at start; "
                f"see its log {log}"
            )
        try:
            with (
                socket.create_connection((_HOST, files.port), timeout=2.0) as raw,
                context.wrap_socket(raw, server_hostname=_HOST),
            ):
                return
        except OSError:
            time.sleep(0.1)
    raise ConfigError(
        f"the PyKMIP server did not accept connections on {_HOST}:{files.port} within "
        f"{_START_TIMEOUT_SECONDS:.0f} seconds; see its log {log}"
    )


def _serve(config: Path, log: Path) -> None:  # pragma: no cover - runs in the child
    """Run the stock PyKMIP server until SIGTERM or SIGINT."""
    # PyKMIP 0.11 uses APIs that SQLAlchemy 2 and Python 3.10+ deprecate; the
    # warnings mean nothing to an operator.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kmip.services.server import server as pykmip  # type: ignore[import-untyped]

    instance = pykmip.KmipServer(config_path=str(config), log_path=str(log), live_policies=True)
    with instance:
        # PyKMIP's SIGTERM handler only ends the accept loop, which otherwise
        # waits out the 10-second socket timeout before it checks for the signal.
        instance._socket.settimeout(0.5)
        instance.serve()


if __name__ == "__main__":  # pragma: no cover - the child process
    _serve(Path(sys.argv[1]), Path(sys.argv[2]))
