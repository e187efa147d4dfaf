"""``hyok up``: a key manager, an XKI proxy and a KMS on one machine, ready for the Alibaba SDK.

The first run creates, in one data directory (``.hyok`` by default):

- the proxy as ``hyok xki init`` writes it (``xki.toml``, a local CA, a file
  keystore with one key and a SigV4 credential), so ``hyok kmi --data-dir``
  and ``hyok xki --data-dir`` work on it. With ``kmi="pkcs11"`` the key is on
  a PKCS#11 token instead: the one that ``UpOptions.pkcs11`` names, or a
  SoftHSMv2 token that the first run initialises in ``softhsm/``, with
  random PINs in ``secrets/`` (mode 0600). With ``kmi="kmip"`` it is on a
  KMIP server: the one that ``UpOptions.kmip`` names, or a PyKMIP server
  that every run starts from ``kmip-server/`` before the proxy;
- the KMS as ``hyok kms init`` writes it, in ``kms/`` (``kms.toml``, its own
  CA and certificate, a root key file of mode 0600 and a SQLite database),
  trusting the proxy's CA for proxy certificates;
- an account with one AccessKey, written to the database directly, and a
  random console password for the account root (scrypt hash in the
  database, the password itself in ``hyok-up.json``).

Then both servers run as child processes on loopback over TLS. This process
binds an external key management instance to the proxy through the KMS API
itself, with requests signed by the official Alibaba Cloud SDK. It calls
CreateKmsInstance, then UpdateXkiProxyConfiguration (public endpoint
``https://localhost:<port>`` and the proxy's newest credential), then
ConnectKmsInstance. The result goes to ``hyok-up.json`` (mode 0600), which
contains the AccessKey secret and the console password. The console password
is never printed.

A later run reuses everything in the directory: the same account,
AccessKey and instance, whose proxy configuration it updates and which it
connects again. SIGINT or SIGTERM stops both servers. A server that exits on
its own stops the other one, and ``hyok up`` exits with status 1.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import IO, Any, Final

import filelock
import httpx

from hyok.common.errors import HyokError
from hyok.common.fileio import atomic_write
from hyok.common.secrets import Secret
from hyok.kms import settings as kms_settings
from hyok.kms.bootstrap import (
    KmsInitOptions,
    create_access_key,
    create_account,
    initialise_kms,
    open_store,
)
from hyok.kms.domain import AccessKeyStatus, Account
from hyok.kms.domain.passwords import generate_password
from hyok.kms.ram import ConsoleSignInError, LoginProfileService, RamError
from hyok.kms.sdk_call import rpc_params
from hyok.kms.store import KmsStore
from hyok.xki import settings as xki_settings
from hyok.xki.backend_init import OWN_KMIP_DIRECTORY, KmipInit, Pkcs11Init

__all__ = [
    "DEFAULT_KMS_PORT",
    "DEFAULT_XKI_ADMIN_PORT",
    "DEFAULT_XKI_PORT",
    "KMS_DIRECTORY",
    "STATE_NAME",
    "UpError",
    "UpOptions",
    "run_up",
]

DEFAULT_XKI_PORT: Final = 8443
DEFAULT_XKI_ADMIN_PORT: Final = 8444
DEFAULT_KMS_PORT: Final = kms_settings.DEFAULT_PORT
STATE_NAME: Final = "hyok-up.json"
KMS_DIRECTORY: Final = "kms"
INSTANCE_NAME: Final = "hyok-up"

# How long each server gets to respond after its process starts, and how long
# each gets to stop after SIGTERM before it is killed.
_START_TIMEOUT: Final = 60.0
_STOP_TIMEOUT: Final = 15.0
_CONNECT_TIMEOUT: Final = 15.0
_POLL_SECONDS: Final = 0.2
_LOG_TAIL_LINES: Final = 20
_PR_SET_PDEATHSIG: Final = 1


class UpError(HyokError):
    """A step of ``hyok up`` that failed; the message names the cause and the fix."""

    code = "UpFailed"


class _StopRequested(BaseException):
    """SIGINT or SIGTERM arrived.

    A BaseException, like KeyboardInterrupt, so that the ``except Exception``
    blocks of libraries (the SDK's among them) do not turn it into an error.
    """


@dataclass(frozen=True)
class UpOptions:
    """The options of ``hyok up``.

    A port left None keeps the configured port, or takes the default on a
    first run. ``region`` applies to a first run only, because later runs
    keep the configured region.
    """

    data_dir: Path
    kms_port: int | None = None
    xki_port: int | None = None
    xki_admin_port: int | None = None
    region: str | None = None
    log_level: str = "info"
    #: The key manager, "file" or "pkcs11". None keeps the configured one, or
    #: takes "file" on a first run.
    kmi: str | None = None
    #: The PKCS#11 token of a first run with ``kmi="pkcs11"``.
    pkcs11: Pkcs11Init | None = None
    #: The KMIP server of a first run with ``kmi="kmip"``; an ``own_server`` one
    #: is a PyKMIP server that ``hyok up`` runs from ``kmip-server/``.
    kmip: KmipInit | None = None


@dataclass
class _State:
    """The contents of ``hyok-up.json``."""

    region: str
    kms_endpoint: str
    ca_cert: str
    account_id: str
    access_key_id: str
    access_key_secret: str = field(repr=False)
    instance_id: str | None
    xki_endpoint: str
    external_key_id: str | None
    #: The account root's console password, or None when it was changed
    #: outside ``hyok up`` (on the console or with ``hyok kms account set-console-password``).
    console_password: str | None = field(default=None, repr=False)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2) + "\n"


@dataclass(frozen=True)
class _Layout:
    """The paths and ports of one stack."""

    data_dir: Path
    xki_config: Path
    kms_config: Path
    xki: xki_settings.ProxySettings
    kms: kms_settings.KmsSettings

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_NAME

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def keystore(self) -> xki_settings.KeyStoreSettings:
        return self.xki.keystores[0]

    @property
    def kms_endpoint(self) -> str:
        return f"127.0.0.1:{self.kms.server.port}"

    @property
    def kms_ca_file(self) -> Path:
        return self.kms_config.parent / "tls" / "ca.pem"

    @property
    def xki_endpoint(self) -> str:
        return f"https://localhost:{self.xki.server.port}"

    @property
    def xki_ca_file(self) -> Path:
        return self.data_dir / "tls" / "ca.pem"


# Preparing the data directory.


def _set_port(path: Path, table: str, port: int) -> None:
    """Replace the ``port`` line of one table in a configuration file that hyok wrote."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    in_table = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("["):
            in_table = stripped == f"[{table}]"
        elif in_table and re.match(r"port\s*=", stripped):
            lines[index] = f"port = {port}\n"
            text = "".join(lines).encode("utf-8")
            atomic_write(path, text, preserve_mode=True)
            return
    raise UpError(f"{path} has no port line in its [{table}] table: add 'port = {port}' there")


def _prepare_proxy(options: UpOptions) -> tuple[xki_settings.ProxySettings, str | None]:
    """Create the proxy's files on a first run, or apply changed ports; return its settings.

    The second value is the first key's ID when this call created the keystore.
    """
    from hyok.xki.bootstrap import InitOptions, initialise

    config = options.data_dir / "xki.toml"
    if not config.exists():
        pkcs11 = options.pkcs11
        if options.kmi == "pkcs11" and pkcs11 is None:
            pkcs11 = Pkcs11Init(own_softhsm_token=True)
        elif options.kmi not in (None, "pkcs11") and pkcs11 is not None:
            raise UpError(f"a PKCS#11 token was given with --kmi {options.kmi}: pass --kmi pkcs11")
        kmip = options.kmip if options.kmi == "kmip" else None
        result = initialise(
            InitOptions(
                directory=options.data_dir,
                port=options.xki_port or DEFAULT_XKI_PORT,
                admin_port=options.xki_admin_port or DEFAULT_XKI_ADMIN_PORT,
                region=options.region or kms_settings.DEFAULT_REGION,
                pkcs11=pkcs11,
                kmip=kmip,
            )
        )
        return xki_settings.load_settings(config), result.key_id

    settings = xki_settings.load_settings(config)
    _check_same_key_manager(options, settings)
    if options.xki_port is not None and options.xki_port != settings.server.port:
        _set_port(config, "server", options.xki_port)
    admin = settings.admin
    if options.xki_admin_port is not None and (
        admin is None or options.xki_admin_port != admin.port
    ):
        _set_port(config, "admin", options.xki_admin_port)
    return xki_settings.load_settings(config), None


def _check_same_key_manager(options: UpOptions, settings: xki_settings.ProxySettings) -> None:
    """Reject a --kmi or a PKCS#11 token that differs from the existing stack's key manager."""
    backend = settings.backends[settings.keystores[0].backend]
    if options.kmi is not None and options.kmi != backend.type:
        raise UpError(
            f"--kmi {options.kmi} differs from the {backend.type} key manager of the existing "
            f"stack in {options.data_dir}: the key manager is set on the first run, so leave "
            "out --kmi or use another --data-dir"
        )
    if options.kmip is not None and not options.kmip.own_server:
        raise UpError(
            f"the --kmip-* options apply to the first run only, and {options.data_dir} "
            f"holds a stack already: change its KMIP server in {settings.source}"
        )
    if options.pkcs11 is not None and not options.pkcs11.own_softhsm_token:
        raise UpError(
            f"the --pkcs11-* options apply to the first run only, and {options.data_dir} "
            f"holds a stack already: change its PKCS#11 token in {settings.source}"
        )


def _prepare_kms(options: UpOptions, region: str) -> kms_settings.KmsSettings:
    directory = options.data_dir / KMS_DIRECTORY
    config = directory / kms_settings.CONFIG_NAME
    if not config.exists():
        initialise_kms(
            KmsInitOptions(
                directory=directory,
                port=options.kms_port or DEFAULT_KMS_PORT,
                region=region,
                proxy_ca_file=Path("..") / "tls" / "ca.pem",
            )
        )
    settings = kms_settings.load_settings(config)
    if options.kms_port is not None and options.kms_port != settings.server.port:
        _set_port(config, "server", options.kms_port)
        settings = kms_settings.load_settings(config)
    return settings


def _prepare(options: UpOptions) -> tuple[_Layout, str | None]:
    options.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    xki, created_key_id = _prepare_proxy(options)
    keystore_region = xki.keystores[0].region
    if options.region is not None and options.region != keystore_region:
        raise UpError(
            f"--region {options.region} differs from region {keystore_region} of the existing "
            f"stack in {options.data_dir}: the region is set on the first run, so leave out "
            "--region or use another --data-dir"
        )
    kms = _prepare_kms(options, keystore_region)
    if kms.region != keystore_region:
        raise UpError(
            f"the KMS region {kms.region} ({kms.source}) differs from the region "
            f"{keystore_region} of the proxy key store ({xki.source}), so the proxy would "
            "reject the KMS's signatures: set both to the same region"
        )
    if xki.admin is None or not xki.admin.enabled:
        raise UpError(
            f"the admin API is off in {xki.source}, and hyok up needs it to find the key "
            "manager's keys: set enabled = true in its [admin] table"
        )
    layout = _Layout(
        data_dir=options.data_dir,
        xki_config=options.data_dir / "xki.toml",
        kms_config=options.data_dir / KMS_DIRECTORY / kms_settings.CONFIG_NAME,
        xki=xki,
        kms=kms,
    )
    layout.log_dir.mkdir(mode=0o700, exist_ok=True)
    return layout, created_key_id


def _load_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UpError(
            f"cannot read {path} ({exc}): remove it to create a new account and instance"
        ) from None
    if not isinstance(data, dict):
        raise UpError(f"{path} is not a JSON object: remove it to create a new account")
    return data


def _account_and_access_key(store: KmsStore, saved: dict[str, Any]) -> tuple[str, str, str, bool]:
    """Reuse the saved account and AccessKey, or create what is missing.

    Returns the account ID, AccessKey ID and secret, and whether the
    AccessKey is new.
    """
    account_id = saved.get("account_id")
    with store.session(read_only=True) as session:
        account: Account | None = None
        if isinstance(account_id, str):
            account = session.accounts.get(account_id)
        access_key = None
        saved_key_id = saved.get("access_key_id")
        if account is not None and isinstance(saved_key_id, str):
            access_key = session.access_keys.get(saved_key_id)
    if account is None:
        account = create_account(store, account_id if isinstance(account_id, str) else None)
    usable = (
        access_key is not None
        and access_key.account_id == account.account_id
        and access_key.status is AccessKeyStatus.ACTIVE
    )
    if access_key is None or not usable:
        access_key = create_access_key(store, account.account_id)
        return account.account_id, access_key.access_key_id, access_key.secret.reveal(), True
    return account.account_id, access_key.access_key_id, access_key.secret.reveal(), False


def _console_password(store: KmsStore, saved: dict[str, Any], account_id: str) -> str | None:
    """Reuse the saved console password of the account root, or set a new one.

    The saved password is kept while the database accepts it. When the
    database has no password for the root (a new account, or a database
    from before console passwords), the saved one is set again, or a new
    random one when none is saved. When the database has another password,
    someone changed it on purpose, so it stays and None is returned.
    """
    service = LoginProfileService(store)
    value = saved.get("console_password") if saved.get("account_id") == account_id else None
    saved_password = Secret(value) if isinstance(value, str) and value else None
    if saved_password is not None:
        try:
            service.verify_console_password(account_id, None, saved_password)
        except ConsoleSignInError:
            pass
        else:
            return saved_password.reveal()
    with store.session(read_only=True) as session:
        changed = session.console_passwords.get_hash(account_id) is not None
    if changed:
        return None
    password = saved_password or generate_password()
    try:
        service.set_root_console_password(account_id, password)
    except RamError:
        # The saved password breaks the policy: someone edited the file.
        password = generate_password()
        service.set_root_console_password(account_id, password)
    return password.reveal()


def _saved_instance(saved: dict[str, Any], account_id: str) -> str | None:
    """Return the saved instance ID, unless it belongs to another account than ``account_id``."""
    instance_id = saved.get("instance_id")
    if saved.get("account_id") != account_id or not isinstance(instance_id, str):
        return None
    return instance_id


def _write_state(path: Path, state: _State) -> None:
    atomic_write(path, state.to_json().encode("utf-8"), mode=0o600)


# Ports and child processes.


def _check_port_free(port: int, option: str, server_name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # uvicorn sets SO_REUSEADDR too, so a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            raise UpError(
                f"port {port} on 127.0.0.1, which the {server_name} needs, is not available "
                f"({exc.strerror}): stop the program that uses it, or pass {option} with a "
                "free port"
            ) from None


def _check_ports(layout: _Layout) -> None:
    admin_port = layout.xki.admin.port if layout.xki.admin is not None else None
    ports = [
        (layout.xki.server.port, "--xki-port", "XKI proxy"),
        (admin_port, "--xki-admin-port", "proxy's admin API"),
        (layout.kms.server.port, "--kms-port", "KMS"),
    ]
    seen: dict[int, str] = {}
    for port, option, server_name in ports:
        if port is None:
            continue
        if port in seen:
            raise UpError(
                f"the {server_name} and the {seen[port]} are both set to port {port}: pass "
                f"{option} with another port"
            )
        seen[port] = server_name
        _check_port_free(port, option, server_name)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Ask Linux to send SIGTERM to the child when this process dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class _Child:
    """One server's child process and the log file that receives its output."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        try:
            lines = self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-_LOG_TAIL_LINES:])

    def exited_message(self) -> str:
        code = self.process.returncode
        ending = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        text = f"the {self.name} (pid {self.process.pid}) {ending}; its log is {self.log}"
        tail = self.tail()
        return f"{text}. Last lines:\n{tail}" if tail else text


def _start_child(name: str, arguments: list[str], log: Path) -> _Child:
    command = [sys.executable, "-m", "hyok.cli", *arguments]
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(descriptor, "ab") as output:
        output.write(f"--- hyok up starts: {' '.join(arguments)}\n".encode())
        output.flush()
        # A session of its own keeps the terminal's Ctrl-C from reaching the
        # child directly, so the servers stop in order, one SIGTERM each.
        process = subprocess.Popen(  # noqa: S603 - fixed arguments, no shell
            command,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - called before any thread starts
        )
    return _Child(name, process, log)


def _stop_children(children: list[_Child], *, force: Callable[[], bool]) -> None:
    """Stop the children newest first, so the KMS closes its proxy connections before the proxy.

    Each gets SIGTERM and _STOP_TIMEOUT seconds, or less after a second
    signal, and is killed when it is still running then.
    """
    for child in reversed(children):
        if child.process.poll() is None:
            with suppress(ProcessLookupError):
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT
        while child.process.poll() is None and time.monotonic() < deadline and not force():
            time.sleep(0.05)
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()


def _wait_until_serving(
    child: _Child, url: str, ca_file: Path, accept: Callable[[httpx.Response], bool]
) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + _START_TIMEOUT
    with httpx.Client(verify=context, trust_env=False, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if child.process.poll() is not None:
                raise UpError(child.exited_message())
            try:
                if accept(client.get(url)):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(_POLL_SECONDS)
    raise UpError(
        f"the {child.name} did not respond on {url} within {_START_TIMEOUT:.0f} seconds; "
        f"its log is {child.log}"
    )


# The KMS API, through the official SDK.


class _Kms:
    """Calls to the KMS API with the generic ``call_api`` of the Alibaba Cloud SDK."""

    def __init__(self, layout: _Layout, access_key_id: str, secret: str) -> None:
        try:
            from alibabacloud_tea_openapi.client import Client  # type: ignore[import-untyped]
            from alibabacloud_tea_openapi.utils_models import Config  # type: ignore[import-untyped]
        except ImportError:
            raise UpError(
                "hyok up calls the KMS through the Alibaba Cloud SDK, which is not installed: "
                "run pip install alibabacloud-kms20160120"
            ) from None
        config = Config(
            access_key_id=access_key_id,
            access_key_secret=secret,
            endpoint=layout.kms_endpoint,
            protocol="https",
            region_id=layout.kms.region,
            ca=str(layout.kms_ca_file),
        )
        self._client = Client(config)
        self._host = layout.kms_endpoint

    def close(self) -> None:
        """Close the SDK's keep-alive connections, which would delay the KMS's shutdown.

        darabonba keeps one ``requests`` session per host in a class
        attribute, and a connection that carried an error response is only
        closed by the garbage collector (darabonba-core 1.0.9).
        """
        from darabonba.core import DaraCore  # type: ignore[import-untyped]

        gc.collect()
        for key in [key for key in DaraCore._sessions if self._host in key]:
            DaraCore._sessions.pop(key).close()

    def call(self, action: str, query: dict[str, str]) -> dict[str, Any]:
        """Send one action and return the response body; raise UpError with the KMS's message."""
        from alibabacloud_tea_openapi.exceptions import AlibabaCloudException  # type: ignore[import-untyped]
        from alibabacloud_tea_openapi.utils_models import OpenApiRequest
        from darabonba.runtime import RuntimeOptions  # type: ignore[import-untyped]

        params = rpc_params(action)
        runtime = RuntimeOptions(
            no_proxy="127.0.0.1,localhost", connect_timeout=5_000, read_timeout=30_000
        )
        failure: tuple[str, str] | None = None
        try:
            result = self._client.call_api(params, OpenApiRequest(query=query), runtime)
        except AlibabaCloudException as exc:
            failure = (str(exc.code), _message(exc))
        # Raised outside the except block, so that no traceback keeps the SDK's
        # connection alive past close().
        if failure is not None:
            raise _ApiError(action, *failure)
        body: dict[str, Any] = result.get("body") or {}
        return body


class _ApiError(UpError):
    def __init__(self, action: str, code: str, message: str) -> None:
        if code == "InvalidAction.NotFound":
            text = (
                f"the KMS has no {action} action, which hyok up needs to bind the instance "
                "to the proxy: update hyok"
            )
        else:
            text = f"{action} failed with {code}: {message}"
        super().__init__(text)
        self.api_code = code


def _message(exc: Any) -> str:
    data = getattr(exc, "data", None)
    if isinstance(data, dict) and isinstance(data.get("Message"), str):
        return str(data["Message"])
    return str(getattr(exc, "message", "") or exc)


def _proxy_credential(layout: _Layout) -> tuple[str, str]:
    """Return the newest SigV4 credential of the proxy's first key store."""
    from hyok.common.sealed import Sealer
    from hyok.common.secrets import read_secret
    from hyok.xki.credentials import CredentialFile

    secrets_source = layout.xki.secrets
    passphrase = read_secret(
        env=secrets_source.env, file=secrets_source.file, what="secrets passphrase"
    )
    stored = CredentialFile(layout.keystore.credentials_file, Sealer(passphrase)).load()
    if not stored:
        raise UpError(
            f"key store {layout.keystore.name} has no credential: add one with "
            f"'hyok xki credentials add --data-dir {layout.data_dir}'"
        )
    newest = max(stored, key=lambda item: item.created_at)
    return newest.credential.access_key_id, newest.credential.secret.reveal()


def _find_external_key(layout: _Layout) -> str:
    """Return an enabled encrypt-and-decrypt key of the proxy's backend, creating one if none."""
    from hyok.cli._common import AdminClient

    backend = layout.keystore.backend
    path = f"/v1/backends/{backend}/keys"
    with AdminClient(layout.xki) as client:
        listed = client.request("GET", path)
        for key in listed.get("keys", []):
            usages = set(key.get("keyUsage") or [])
            if key.get("keyStatus") == "ENABLED" and {"ENCRYPT", "DECRYPT"} <= usages:
                return str(key["keyId"])
        created = client.request("POST", path, {})
    return str(created["keyId"])


def _ensure_instance(kms: _Kms, instance_id: str | None) -> str:
    """Return the saved instance's ID when it still exists, or create an instance."""
    if instance_id is not None:
        try:
            kms.call("GetKmsInstance", {"KmsInstanceId": instance_id})
        except _ApiError as exc:
            if exc.api_code != "Forbidden.DKMSInstanceNotFound":
                raise
            instance_id = None
    if instance_id is None:
        created = kms.call("CreateKmsInstance", {"InstanceName": INSTANCE_NAME})
        instance_id = str(created.get("KmsInstanceId") or created.get("InstanceId") or "")
        if not instance_id:
            raise UpError("CreateKmsInstance returned no KmsInstanceId")
    return instance_id


def _configure_and_connect(
    kms: _Kms, layout: _Layout, instance_id: str, access_key_id: str, secret: str
) -> str:
    """Point the instance at the proxy, connect it, and return its status once settled.

    The status is Connected or Error, or whatever it is after _CONNECT_TIMEOUT.
    """
    kms.call(
        "UpdateXkiProxyConfiguration",
        {
            "KmsInstanceId": instance_id,
            "Connectivity": "PUBLIC_ENDPOINT",
            "XkiProxyUriEndpoint": layout.xki_endpoint,
            "XkiProxyUriPath": layout.keystore.uri_path,
            "XkiProxyAccessKeyId": access_key_id,
            "XkiProxySecretAccessKey": secret,
        },
    )
    kms.call("ConnectKmsInstance", {"KmsInstanceId": instance_id})
    deadline = time.monotonic() + _CONNECT_TIMEOUT
    status = ""
    while True:
        body = kms.call("GetKmsInstance", {"KmsInstanceId": instance_id})
        instance = body.get("KmsInstance") or {}
        status = str(instance.get("Status", ""))
        if status in ("Connected", "Error") or time.monotonic() >= deadline:
            return status
        time.sleep(_POLL_SECONDS)


# Output.


def _snippet(state_path: Path) -> str:
    return f"""\
import base64, json
from alibabacloud_kms20160120 import models
from alibabacloud_kms20160120.client import Client
from alibabacloud_tea_openapi.utils_models import Config
from darabonba.runtime import ExtendsParameters, RuntimeOptions

up = json.load(open({json.dumps(str(state_path))}))
kms = Client(Config(access_key_id=up["access_key_id"], access_key_secret=up["access_key_secret"],
                    endpoint=up["kms_endpoint"], region_id=up["region"], ca=up["ca_cert"]))
# ExternalKeyId is a hyok extension of CreateKey: the key in your key manager.
extension = ExtendsParameters(queries={{"ExternalKeyId": up["external_key_id"]}})
key = kms.create_key_with_options(models.CreateKeyRequest(dkmsinstance_id=up["instance_id"]),
                                  RuntimeOptions(extends_parameters=extension)).body.key_metadata
blob = kms.encrypt(models.EncryptRequest(
    key_id=key.key_id, plaintext=base64.b64encode(b"hello").decode())).body.ciphertext_blob
plaintext = kms.decrypt(models.DecryptRequest(ciphertext_blob=blob)).body.plaintext
print(key.key_id, base64.b64decode(plaintext))
"""


def _summary(layout: _Layout, state: _State, status: str, new_access_key: bool) -> str:
    lines = [
        "hyok is up.",
        f"  KMS API:        https://{state.kms_endpoint}  (CA certificate: {state.ca_cert})",
        f"  XKI proxy:      {state.xki_endpoint}  (admin API on port "
        f"{layout.xki.admin.port if layout.xki.admin else '-'})",
        f"  Region:         {state.region}",
        f"  Account:        {state.account_id}",
        f"  AccessKey ID:   {state.access_key_id}"
        + ("  (new; its secret is in the file below)" if new_access_key else ""),
        f"  Console:        https://{state.kms_endpoint}/console/  (sign in as {state.account_id}"
        + (
            ", with console_password from the file below)"
            if state.console_password is not None
            else ", with the password you set on the console's password page or with "
            "'hyok kms account set-console-password')"
        ),
        f"  Instance:       {state.instance_id}  ({status or 'status unknown'})",
        f"  External key:   {state.external_key_id}",
        "  Connection details, with the AccessKey secret"
        + (" and console password" if state.console_password is not None else "")
        + f": {layout.state_path} (mode 0600)",
        f"  Logs:           {layout.log_dir}",
    ]
    if status != "Connected":
        lines.append(
            f"warning: instance {state.instance_id} is {status or 'in an unknown state'}, "
            "not Connected: cryptographic calls fail until the KMS reaches the proxy; see "
            f"{layout.log_dir / 'kms.log'}"
        )
    lines += [
        "",
        "Create a key and encrypt with the Python SDK (pip install alibabacloud-kms20160120):",
        "",
        _snippet(layout.state_path),
        f"Manage keys in the key manager with: hyok kmi list-keys --data-dir {layout.data_dir}",
        "Press Ctrl-C to stop.",
    ]
    return "\n".join(lines)


# The whole run.


class _Signals:
    """SIGINT and SIGTERM handling of one run.

    While the stack starts or runs, the first signal raises _StopRequested
    in the main thread. Once stopping has begun, by a signal or because a
    server died, a signal only sets :attr:`forced`, which shortens the wait
    for the servers to exit.
    """

    def __init__(self) -> None:
        self.forced = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._request_stop)
        return self

    def __exit__(self, *_exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def stopping(self) -> None:
        """Make later signals force the stop instead of raising."""
        for signum in self._previous:
            signal.signal(signum, self._force)

    def _request_stop(self, _signum: int, _frame: FrameType | None) -> None:
        self.stopping()
        raise _StopRequested

    def _force(self, _signum: int, _frame: FrameType | None) -> None:
        self.forced = True


def _supervise(children: list[_Child]) -> _Child:
    """Wait until a child exits and return it."""
    while True:
        for child in children:
            if child.process.poll() is not None:
                return child
        time.sleep(_POLL_SECONDS)


def run_up(options: UpOptions, echo: Callable[[str], None], err: IO[str] | None = None) -> int:
    """Set up or reuse the stack in ``options.data_dir``, run it, and return the exit status.

    Returns 0 after SIGINT or SIGTERM, and 1 when a server exited on its own.
    Raises UpError (and ConfigError for a broken configuration) when a
    step fails; the servers started so far are stopped first.
    """
    children: list[_Child] = []
    options.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    lock = filelock.FileLock(options.data_dir / "hyok-up.lock")
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        raise UpError(
            f"another hyok up is running on {options.data_dir}: stop it first, or pass "
            "another --data-dir"
        ) from None
    try:
        return _run_locked(options, echo, err, children)
    finally:
        lock.release()


def _run_locked(
    options: UpOptions,
    echo: Callable[[str], None],
    err: IO[str] | None,
    children: list[_Child],
) -> int:
    with _Signals() as signals:
        try:
            return _run(options, echo, err or sys.stderr, children)
        except _StopRequested:
            echo("Stopping hyok.")
            return 0
        finally:
            signals.stopping()
            _stop_children(children, force=lambda: signals.forced)


def _start_own_kmip_server(options: UpOptions, children: list[_Child]) -> UpOptions:
    """Start the PyKMIP server of a stack whose key manager is a KMIP server of its own.

    A first run with ``kmi="kmip"`` and no server named writes the server's
    certificates and configuration in ``kmip-server/`` first, on port 5696
    when it is free and on a free port otherwise. The server runs as the
    first child, so it stops last, after the proxy closed its connections.
    Returns the options with the server's port.
    """
    from hyok.kmi.kmip.pykmip_server import ServerFiles, prepare_server, start_server

    directory = options.data_dir / OWN_KMIP_DIRECTORY
    first_run = not (options.data_dir / "xki.toml").exists()
    if first_run:
        wanted = options.kmi == "kmip" and (options.kmip is None or options.kmip.own_server)
        if not wanted:
            return options
        if directory.exists():
            files = ServerFiles.existing(directory)
        else:
            files = prepare_server(directory, _kmip_port())
    elif directory.is_dir():
        files = ServerFiles.existing(directory)
    else:
        return options
    log = options.data_dir / "logs" / "pykmip.log"
    log.parent.mkdir(mode=0o700, exist_ok=True)
    try:
        server = start_server(files, log)
    except HyokError as exc:
        raise UpError(exc.message) from None
    children.append(_Child("PyKMIP server", server.process, log))
    if not first_run:
        return options
    return replace(options, kmi="kmip", kmip=KmipInit(own_server=True, port=files.port))


def _kmip_port() -> int:
    """Return 5696, the IANA port of KMIP, when it is free on 127.0.0.1, else a free port."""
    from hyok.kmi.kmip.pykmip_server import DEFAULT_PORT

    for port in (DEFAULT_PORT, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise UpError("no free TCP port on 127.0.0.1 for the PyKMIP server")


def _run(
    options: UpOptions, echo: Callable[[str], None], err: IO[str], children: list[_Child]
) -> int:
    options = _start_own_kmip_server(options, children)
    layout, created_key_id = _prepare(options)
    saved = _load_state(layout.state_path)
    store = open_store(layout.kms)
    try:
        account_id, access_key_id, secret, new_access_key = _account_and_access_key(store, saved)
        console_password = _console_password(store, saved, account_id)
    finally:
        store.database.dispose()
    external_key_id = created_key_id or saved.get("external_key_id")
    state = _State(
        region=layout.kms.region,
        kms_endpoint=layout.kms_endpoint,
        ca_cert=str(layout.kms_ca_file.resolve()),
        account_id=account_id,
        access_key_id=access_key_id,
        access_key_secret=secret,
        instance_id=_saved_instance(saved, account_id),
        xki_endpoint=layout.xki_endpoint,
        external_key_id=external_key_id if isinstance(external_key_id, str) else None,
        console_password=console_password,
    )
    _write_state(layout.state_path, state)
    _check_ports(layout)

    level = options.log_level
    proxy = _start_child(
        "XKI proxy",
        ["xki", "serve", "--config", str(layout.xki_config), "--log-level", level],
        layout.log_dir / "xki.log",
    )
    children.append(proxy)
    _wait_until_serving(
        proxy,
        f"https://127.0.0.1:{layout.xki.server.port}/healthz",
        layout.xki_ca_file,
        lambda response: response.status_code == 200,
    )
    kms_child = _start_child(
        "KMS",
        ["kms", "serve", "--config", str(layout.kms_config), "--log-level", level],
        layout.log_dir / "kms.log",
    )
    children.append(kms_child)
    # Any HTTP response means the KMS is serving; an unsigned GET gets a 400.
    _wait_until_serving(
        kms_child,
        f"https://{layout.kms_endpoint}/healthz",
        layout.kms_ca_file,
        lambda response: response.status_code == 200,
    )

    if state.external_key_id is None:
        state.external_key_id = _find_external_key(layout)
        _write_state(layout.state_path, state)
    kms = _Kms(layout, access_key_id, secret)
    try:
        instance_id = _ensure_instance(kms, state.instance_id)
        if instance_id != state.instance_id:
            state.instance_id = instance_id
            _write_state(layout.state_path, state)
        proxy_key_id, proxy_secret = _proxy_credential(layout)
        status = _configure_and_connect(kms, layout, instance_id, proxy_key_id, proxy_secret)
    finally:
        kms.close()

    echo(_summary(layout, state, status, new_access_key))
    exited = _supervise(children)
    print(f"error: {exited.exited_message()}\nStopping hyok.", file=err, flush=True)
    return 1
