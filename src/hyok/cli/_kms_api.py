"""Shared parts of the ``hyok kms`` API commands: connection, SDK client and output.

The commands call the KMS through the official Alibaba Cloud SDK
(``alibabacloud_kms20160120``), exactly as an application would. Where they
connect, and as whom, comes from ``hyok-up.json`` (written by ``hyok up``),
from ``--endpoint``, ``--region`` and ``--ca-cert``, and from the SDK's
standard environment variables ``ALIBABA_CLOUD_ACCESS_KEY_ID`` and
``ALIBABA_CLOUD_ACCESS_KEY_SECRET``. Options and environment variables
override the file.
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import logging
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import click

from hyok.cli._common import (
    DATA_DIR_ENV,
    DEFAULT_DATA_DIR,
    CliError,
    output_option,
    print_record,
)
from hyok.common.secrets import Secret
from hyok.kms.sdk_call import rpc_params

__all__ = [
    "ACCESS_KEY_ID_ENV",
    "ACCESS_KEY_SECRET_ENV",
    "ALL_PAGE_SIZE",
    "CONNECT_TIMEOUT_MS",
    "DEFAULT_REGION",
    "READ_TIMEOUT_MS",
    "SECURITY_TOKEN_ENV",
    "UP_FILE_NAME",
    "ConnectionFailure",
    "ConnectionOptions",
    "KmsClient",
    "KmsTarget",
    "Paging",
    "api_error_message",
    "api_failure_text",
    "api_options",
    "connection_failure",
    "connection_options",
    "default_up_file",
    "fetch_all_pages",
    "flatten",
    "is_loopback",
    "page_title",
    "paging_options",
    "print_fields",
    "private_file_warning",
    "resolve_target",
    "split_endpoint",
]

#: File that ``hyok up`` writes into its data directory.
UP_FILE_NAME: Final = "hyok-up.json"
#: The SDK's standard environment variables for an AccessKey.
ACCESS_KEY_ID_ENV: Final = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ACCESS_KEY_SECRET_ENV: Final = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 - a variable name
SECURITY_TOKEN_ENV: Final = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105 - a variable name
"""The STS security token that goes with AccessKey variables of STS credentials."""
#: Region when neither ``--region`` nor the file sets one. With an explicit
#: endpoint, the SDK sends the region in no request these commands make.
DEFAULT_REGION: Final = "cn-hangzhou"
#: Page size of ``--all`` listings: the maximum that ListKeys and ListKmsInstances accept.
ALL_PAGE_SIZE: Final = 100

# Timeouts of one KMS call in milliseconds, as the SDK takes them. A call may
# wait for the XKI proxy and the key manager behind it, hence the long read.
CONNECT_TIMEOUT_MS: Final = 5_000
READ_TIMEOUT_MS: Final = 30_000
_UP_FILE_FIELDS: Final = (
    "region",
    "kms_endpoint",
    "ca_cert",
    "account_id",
    "access_key_id",
    "access_key_secret",
    "instance_id",
    "xki_endpoint",
    "external_key_id",
)
_HOST_PORT: Final = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:(?P<port>\d{1,5}))?")

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class ConnectionOptions:
    """The connection options of one command, as given on the command line."""

    up_file: Path | None
    endpoint: str | None
    region: str | None
    ca_cert: Path | None


@dataclass(frozen=True)
class KmsTarget:
    """The KMS to call and the AccessKey to sign with, from the file, options and environment."""

    endpoint: str
    region: str
    ca_cert: Path | None
    access_key_id: str
    access_key_secret: Secret = field(repr=False)
    #: The ``instance_id`` of ``hyok-up.json``: the default instance of create-key.
    instance_id: str | None
    #: The ``hyok-up.json`` in use, if any; error messages name it.
    up_file: Path | None
    #: True when ``endpoint`` came from --endpoint, not from the file.
    endpoint_given: bool = False
    #: The STS security token of temporary credentials, from the environment.
    security_token: Secret | None = field(default=None, repr=False)


# Options.


def default_up_file() -> Path:
    """Return ``hyok-up.json`` in ``$HYOK_DATA_DIR``, else in ``./.hyok``."""
    from_env = os.environ.get(DATA_DIR_ENV)
    return (Path(from_env) if from_env else DEFAULT_DATA_DIR) / UP_FILE_NAME


def connection_options(function: _F) -> _F:
    """Add ``--up-file``, ``--endpoint``, ``--region`` and ``--ca-cert``.

    The command receives them as one ``connection`` argument, a ConnectionOptions.
    """

    @functools.wraps(function)
    def wrapper(
        *args: Any,
        up_file: Path | None,
        endpoint: str | None,
        region: str | None,
        ca_cert: Path | None,
        **kwargs: Any,
    ) -> Any:
        connection = ConnectionOptions(up_file, endpoint, region, ca_cert)
        return function(*args, connection=connection, **kwargs)

    options = [
        click.option(
            "--up-file",
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            help=(
                f"Connection file written by 'hyok up'. Default: {UP_FILE_NAME} in "
                f"${DATA_DIR_ENV}, else in {DEFAULT_DATA_DIR}, when that file exists."
            ),
        ),
        click.option(
            "--endpoint",
            default=None,
            metavar="HOST:PORT",
            help="KMS API endpoint, such as 127.0.0.1:18443. Overrides the file.",
        ),
        click.option(
            "--region",
            default=None,
            help=f"Region ID of the KMS. Overrides the file. Default: {DEFAULT_REGION}.",
        ),
        click.option(
            "--ca-cert",
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            help=(
                "PEM file of the CA that signed the KMS certificate. Overrides the file. "
                "Default: the system's CAs."
            ),
        ),
    ]
    decorated: Any = wrapper
    for option in reversed(options):
        decorated = option(decorated)
    return decorated  # type: ignore[no-any-return]


# Resolving the target.


def private_file_warning(path: Path, contents: str) -> str | None:
    """Return a warning when ``path`` is readable by its group or others, else None."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    if mode & (stat.S_IRGRP | stat.S_IROTH) == 0:
        return None
    return (
        f"{path} contains {contents} and is readable by group or others (mode {mode:04o}); "
        f"restrict it with: chmod 600 {path}"
    )


def _load_up_file(path: Path) -> dict[str, str]:
    """Read ``hyok-up.json`` and return its non-empty string fields."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(
            f"the connection file {path} does not exist; start a local stack with 'hyok up', "
            "or pass the path of its hyok-up.json with --up-file"
        ) from None
    except OSError as exc:
        raise CliError(f"cannot read the connection file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"the connection file {path} is not UTF-8 text") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        # The position only: the text may contain the AccessKey secret.
        raise CliError(
            f"the connection file {path} is not valid JSON (line {getattr(exc, 'lineno', '?')}); "
            "run 'hyok up' to write it again"
        ) from None
    if not isinstance(document, dict):
        raise CliError(f"the connection file {path} must contain a JSON object")

    values: dict[str, str] = {}
    for name in _UP_FILE_FIELDS:
        value = document.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise CliError(
                f"the field {name} of the connection file {path} must be a string, "
                f"not {type(value).__name__}"
            )
        values[name] = value

    if "access_key_secret" in values:
        warning = private_file_warning(path, "an AccessKey secret")
        if warning is not None:
            click.echo(f"warning: {warning}", err=True)
    return values


def _normalise_endpoint(value: str, source: str) -> str:
    """Return ``value`` as the SDK's ``host[:port]``; an ``https://`` prefix is removed."""
    endpoint = value.strip().removeprefix("https://").rstrip("/")
    match = _HOST_PORT.fullmatch(endpoint)
    port = match.group("port") if match else None
    if match is None or (port is not None and not 0 < int(port) < 65536):
        raise CliError(
            f"the KMS endpoint {value!r} from {source} is invalid: give HOST:PORT, such as "
            "127.0.0.1:18443, without a scheme or path (the KMS API is HTTPS only)"
        )
    return endpoint


def resolve_target(options: ConnectionOptions) -> KmsTarget:
    """Merge ``hyok-up.json``, the options and the environment into one KmsTarget.

    An explicit ``--up-file`` must exist. The default file is read only when
    it exists, so that ``--endpoint`` with environment credentials works
    without one.
    """
    up_file = options.up_file
    if up_file is None and options.endpoint is None:
        candidate = default_up_file()
        if candidate.is_file():
            up_file = candidate
    values = _load_up_file(up_file) if up_file is not None else {}
    file_source = f"kms_endpoint in {up_file}"

    if options.endpoint is not None:
        endpoint = _normalise_endpoint(options.endpoint, "--endpoint")
    elif "kms_endpoint" in values:
        endpoint = _normalise_endpoint(values["kms_endpoint"], file_source)
    elif up_file is not None:
        raise CliError(
            f"the connection file {up_file} has no kms_endpoint; run 'hyok up' to write it "
            "again, or pass --endpoint HOST:PORT"
        )
    else:
        raise CliError(
            f"no KMS to call: there is no {default_up_file()} and no --endpoint was given. "
            "Start a local stack with 'hyok up', pass its file with --up-file, or pass "
            f"--endpoint HOST:PORT and set {ACCESS_KEY_ID_ENV} and {ACCESS_KEY_SECRET_ENV}"
        )

    ca_cert: Path | None = options.ca_cert
    if ca_cert is None and "ca_cert" in values and up_file is not None:
        # A relative path in the file is relative to the file's directory.
        ca_cert = up_file.parent / values["ca_cert"]
    if ca_cert is not None:
        origin = "--ca-cert" if options.ca_cert is not None else f"ca_cert in {up_file}"
        _check_ca_file(ca_cert, origin)

    skipped = options.endpoint is not None and up_file is None and default_up_file().is_file()
    access_key_id, secret = _credentials(values, up_file, default_skipped=skipped)
    return KmsTarget(
        endpoint=endpoint,
        region=options.region or values.get("region") or DEFAULT_REGION,
        ca_cert=ca_cert,
        access_key_id=access_key_id,
        access_key_secret=secret,
        instance_id=values.get("instance_id"),
        up_file=up_file,
        endpoint_given=options.endpoint is not None,
        security_token=_security_token(),
    )


def _check_ca_file(path: Path, origin: str) -> None:
    """Reject a CA file that does not exist or contains no PEM certificate, before any call."""
    import ssl

    fix = "pass the PEM file of the CA that signed the KMS certificate with --ca-cert"
    if not path.is_file():
        raise CliError(f"the CA certificate {path} named by {origin} does not exist; {fix}")
    try:
        ssl.create_default_context(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError):
        raise CliError(
            f"the file {path} named by {origin} contains no valid PEM certificate; {fix}"
        ) from None


def _security_token() -> Secret | None:
    token = os.environ.get(SECURITY_TOKEN_ENV) or None
    if token is None:
        return None
    if not os.environ.get(ACCESS_KEY_ID_ENV):
        raise CliError(
            f"{SECURITY_TOKEN_ENV} is set without {ACCESS_KEY_ID_ENV}: set the AccessKey ID and "
            "secret of the STS credentials too, or unset it"
        )
    return Secret(token)


def _credentials(
    values: Mapping[str, str], up_file: Path | None, *, default_skipped: bool = False
) -> tuple[str, Secret]:
    """Return the AccessKey: both environment variables, else both fields of the file.

    ``default_skipped`` is True when --endpoint left the default hyok-up.json unread.
    """
    env_id = os.environ.get(ACCESS_KEY_ID_ENV) or None
    env_secret = os.environ.get(ACCESS_KEY_SECRET_ENV) or None
    if env_id is not None and env_secret is not None:
        return env_id, Secret(env_secret)
    if env_id is not None or env_secret is not None:
        missing = ACCESS_KEY_SECRET_ENV if env_secret is None else ACCESS_KEY_ID_ENV
        present = ACCESS_KEY_ID_ENV if env_secret is None else ACCESS_KEY_SECRET_ENV
        raise CliError(
            f"{present} is set but {missing} is not; set both, or unset both to use the "
            "AccessKey of the connection file"
        )
    if "access_key_id" in values and "access_key_secret" in values:
        return values["access_key_id"], Secret(values["access_key_secret"])
    where = f"the connection file {up_file} has none" if up_file else "no connection file is used"
    if default_skipped:
        where += (
            f" (with --endpoint, {default_up_file()} is not read: add --up-file "
            f"{default_up_file()} to sign with its AccessKey)"
        )
    raise CliError(
        f"no AccessKey to sign requests with: {where}. Set {ACCESS_KEY_ID_ENV} and "
        f"{ACCESS_KEY_SECRET_ENV}, or use the hyok-up.json of 'hyok up'"
    )


# Calling the KMS.


def api_error_message(exc: Any) -> str:
    """Format an SDK ClientException or ServerException as ``Code: Message (request ID)``."""
    data = exc.data if isinstance(getattr(exc, "data", None), dict) else {}
    code = exc.code or data.get("Code") or f"HTTP {exc.status_code}"
    message = data.get("Message") if isinstance(data.get("Message"), str) else exc.message
    request_id = exc.request_id or data.get("RequestId")
    text = f"{code}: {message}"
    if request_id:
        text += f" (request {request_id})"
    return text


def split_endpoint(endpoint: str) -> tuple[str, int | None]:
    """Split a normalised ``host[:port]`` endpoint; an IPv6 host keeps its brackets."""
    match = _HOST_PORT.fullmatch(endpoint)
    if match is None:
        raise ValueError(f"{endpoint!r} is not HOST[:PORT]")
    port = match.group("port")
    return match.group("host"), int(port) if port else None


def is_loopback(host: str) -> bool:
    """Tell whether ``host``, a name or an address in or out of brackets, is on loopback."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@functools.cache
def _recording_client_class() -> type[Any]:
    """Return a subclass of the SDK's Client that keeps the raw body of the last response."""
    from alibabacloud_kms20160120.client import Client  # type: ignore[import-untyped]

    class RecordingClient(Client):  # type: ignore[misc]
        last_body: dict[str, Any] | None = None

        def call_api(self, params: Any, request: Any, runtime: Any) -> Any:
            result = super().call_api(params, request, runtime)
            self.last_body = result.get("body") if isinstance(result, dict) else None
            return result

    return RecordingClient


class KmsClient:
    """The official SDK client of one KMS, whose failures become CliError.

    Call typed SDK methods with :meth:`invoke` and hyok's extension actions with
    :meth:`call`. Both return the response body as a dict that keeps the
    fields the SDK models do not know, such as ``ExternalKeyId``.
    """

    def __init__(self, target: KmsTarget) -> None:
        from alibabacloud_tea_openapi.utils_models import Config  # type: ignore[import-untyped]

        # urllib3 logs each request line at DEBUG, and the KMS API carries every
        # parameter in the query string, Plaintext and proxy secrets included.
        urllib3_logger = logging.getLogger("urllib3")
        if urllib3_logger.getEffectiveLevel() < logging.INFO:
            urllib3_logger.setLevel(logging.INFO)

        self.target = target
        self.url = f"https://{target.endpoint}"
        self._client = _recording_client_class()(
            Config(
                access_key_id=target.access_key_id,
                access_key_secret=target.access_key_secret.reveal(),
                security_token=(
                    target.security_token.reveal() if target.security_token is not None else None
                ),
                endpoint=target.endpoint,
                protocol="https",
                region_id=target.region,
                ca=str(target.ca_cert) if target.ca_cert is not None else None,
            )
        )

    @property
    def sdk(self) -> Any:
        """The ``alibabacloud_kms20160120`` Client, for building typed calls."""
        return self._client

    def invoke(
        self,
        method: Callable[[Any, Any], Any],
        request: Any,
        *,
        extra_query: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Call a typed ``*_with_options`` method of :attr:`sdk` and return the response body.

        ``extra_query`` adds parameters that the SDK model lacks, such as
        hyok's ``ExternalKeyId``; the SDK signs them with the rest.
        """
        self._client.last_body = None
        with self._translate_errors():
            method(request, self._runtime(extra_query))
        # The typed response model drops fields it does not know, such as
        # hyok's ExternalKeyId, so the raw body is returned instead.
        body: dict[str, Any] = self._client.last_body or {}
        return body

    def call(self, action: str, query: Mapping[str, str]) -> dict[str, Any]:
        """Call ``action`` with the SDK's generic ``call_api`` and return the response body."""
        from alibabacloud_tea_openapi.utils_models import (
            OpenApiRequest,
        )

        params = rpc_params(action)
        with self._translate_errors():
            result = self._client.call_api(
                params, OpenApiRequest(query=dict(query)), self._runtime(None)
            )
        body: dict[str, Any] = result.get("body") or {}
        return body

    def _runtime(self, extra_query: Mapping[str, str] | None) -> Any:
        from darabonba.runtime import (  # type: ignore[import-untyped]
            ExtendsParameters,
            RuntimeOptions,
        )

        host, _ = split_endpoint(self.target.endpoint)
        # An HTTPS_PROXY from the environment cannot reach a KMS on loopback.
        no_proxy = host if is_loopback(host) else None
        runtime = RuntimeOptions(
            connect_timeout=CONNECT_TIMEOUT_MS, read_timeout=READ_TIMEOUT_MS, no_proxy=no_proxy
        )
        if extra_query:
            runtime.extends_parameters = ExtendsParameters(queries=dict(extra_query))
        return runtime

    @contextlib.contextmanager
    def _translate_errors(self) -> Iterator[None]:
        from alibabacloud_tea_openapi.exceptions import (  # type: ignore[import-untyped]
            AlibabaCloudException,
        )
        from darabonba.exceptions import (  # type: ignore[import-untyped]
            RetryError,
            UnretryableException,
        )

        try:
            yield
        except AlibabaCloudException as exc:
            raise CliError(self._api_failure(exc)) from None
        except UnretryableException as exc:
            inner = getattr(exc, "inner_exception", None)
            if isinstance(inner, RetryError):
                raise CliError(self._connection_failure(str(inner.message))) from None
            raise CliError(
                f"the response of {self.url} is not a KMS API response "
                f"({type(inner).__name__}); check that the endpoint is the hyok KMS"
            ) from None

    def _api_failure(self, exc: Any) -> str:
        return api_failure_text(self.url, exc.code, api_error_message(exc))

    def _connection_failure(self, detail: str) -> str:
        # ``detail`` contains the request URL and with it every parameter, so
        # only fixed phrases found in it reach the message.
        if "CERTIFICATE_VERIFY_FAILED" in detail:
            reason = re.search(r"certificate verify failed: ([A-Za-z0-9 ,'-]+)", detail)
            return connection_failure(
                self.target, "untrusted", reason.group(1).strip() if reason else None
            )
        if "Read timed out" in detail:
            return connection_failure(self.target, "read-timeout")
        phrases: tuple[tuple[str, ConnectionFailure], ...] = (
            ("SSL", "tls"),
            ("Connection refused", "refused"),
            ("timed out", "connect-timeout"),
            ("NameResolutionError", "unresolved"),
        )
        for phrase, failure in phrases:
            if phrase in detail:
                return connection_failure(self.target, failure)
        return connection_failure(self.target, "other")


#: The kind of failure of a connection to the KMS, for :func:`connection_failure`.
ConnectionFailure = Literal[
    "untrusted", "read-timeout", "tls", "refused", "connect-timeout", "unresolved", "other"
]


def api_failure_text(url: str, code: str | None, text: str) -> str:
    """Return ``text``, the formatted API error, with a hint for an action the KMS lacks."""
    if code == "InvalidAction.NotFound":
        text += f"; the KMS at {url} does not implement this action, so update it"
    return text


def connection_failure(
    target: KmsTarget, failure: ConnectionFailure, reason: str | None = None
) -> str:
    """Return the message for a call to ``target`` that failed before a response arrived.

    ``reason`` is the certificate check's own words for an ``untrusted`` failure.
    """
    url = f"https://{target.endpoint}"
    if failure == "untrusted":
        because = f" ({reason})" if reason else ""
        return (
            f"the TLS certificate of the KMS at {url} is not trusted{because}; pass "
            "the CA that signed it with --ca-cert (hyok up writes its path as ca_cert "
            "in hyok-up.json)"
        )
    if failure == "read-timeout":
        return (
            f"the KMS at {url} did not respond within {READ_TIMEOUT_MS // 1000} "
            "seconds; check the KMS log"
        )
    descriptions: dict[ConnectionFailure, str] = {
        "tls": f"the TLS handshake with the KMS at {url} failed",
        "refused": f"cannot connect to the KMS at {url}: connection refused",
        "connect-timeout": (
            f"cannot connect to the KMS at {url}: no connection within "
            f"{CONNECT_TIMEOUT_MS // 1000} seconds"
        ),
        "unresolved": f"cannot resolve the host of the KMS endpoint {target.endpoint}",
        "other": f"the connection to the KMS at {url} failed",
    }
    return f"{descriptions[failure]}; {_start_hint(target)}"


def _start_hint(target: KmsTarget) -> str:
    if target.endpoint_given and target.up_file is not None:
        return (
            f"check the host and port of --endpoint {target.endpoint}, or leave "
            f"--endpoint out to use the kms_endpoint of {target.up_file}"
        )
    if target.endpoint_given:
        return (
            f"check the host and port of --endpoint {target.endpoint}, or start a "
            "local KMS with 'hyok up'"
        )
    if target.up_file is not None:
        return (
            f"is the stack of {target.up_file} running? Start it with "
            f"'hyok up --data-dir {target.up_file.parent}'"
        )
    return "is the KMS running? Start a local one with 'hyok up', or check --endpoint"


# Output.


def api_options(function: _F) -> _F:
    """Add the connection options and ``--output``."""
    return output_option(connection_options(function))


def flatten(data: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Turn a response object into (name, text) pairs; nested objects get dotted names.

    Lists of plain values are joined with commas, and other lists are shown as JSON.
    """
    fields: list[tuple[str, str]] = []
    for name, value in data.items():
        label = f"{prefix}{name}"
        if isinstance(value, Mapping):
            fields.extend(flatten(value, prefix=f"{label}."))
        elif isinstance(value, list):
            if all(isinstance(item, str | int | float | bool) for item in value):
                fields.append((label, ", ".join(str(item) for item in value)))
            else:
                fields.append((label, json.dumps(value)))
        elif value is None:
            fields.append((label, ""))
        else:
            fields.append((label, str(value)))
    return fields


def print_fields(data: Mapping[str, Any], first: tuple[str, ...] = ()) -> None:
    """Print a response object as a two-column table, the names in ``first`` leading."""
    ordered = {name: data[name] for name in first if name in data}
    ordered.update((name, value) for name, value in data.items() if name not in ordered)
    print_record(flatten(ordered))


def fetch_all_pages(
    fetch: Callable[[int, int], dict[str, Any]], page_size: int, wrapper: str, item: str
) -> tuple[list[dict[str, Any]], int]:
    """Call ``fetch(page_number, page_size)`` until every item of TotalCount has arrived.

    ``wrapper`` and ``item`` name the list in the response, such as Keys and
    Key for ``Keys.Key``. Returns the items and the total.
    """
    items: list[dict[str, Any]] = []
    number = 1
    while True:
        body = fetch(number, page_size)
        page = (body.get(wrapper) or {}).get(item) or []
        items.extend(page)
        total = int(body.get("TotalCount") or 0)
        # An empty page ends the loop even when TotalCount grew meanwhile.
        if not page or len(items) >= total:
            return items, max(total, len(items))
        number += 1


@dataclass(frozen=True, slots=True)
class Paging:
    """The page options of a listing command: one page, or every page with ``every``."""

    number: int | None
    size: int | None
    every: bool

    def fetch(
        self, fetch: Callable[[int | None, int | None], dict[str, Any]], wrapper: str, item: str
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Return the response to print and its items, such as ``Keys.Key``.

        For every page the response is built here: the items under
        ``wrapper.item`` and ``TotalCount``.
        """
        if self.every:
            items, total = fetch_all_pages(fetch, self.size or ALL_PAGE_SIZE, wrapper, item)
            return {wrapper: {item: items}, "TotalCount": total}, items
        body = fetch(self.number, self.size)
        return body, (body.get(wrapper) or {}).get(item) or []


def paging_options(noun: str, default_size: int) -> Callable[[_F], _F]:
    """Add ``--page-number``, ``--page-size`` and ``--all`` for a listing of ``noun``.

    The command receives them as one ``paging`` argument, a Paging.
    ``default_size`` is the server's page size, shown in the help.
    """

    def decorate(function: _F) -> _F:
        @functools.wraps(function)
        def wrapper(
            *args: Any,
            page_number: int | None,
            page_size: int | None,
            all_pages: bool,
            **kwargs: Any,
        ) -> Any:
            if all_pages and page_number is not None:
                raise click.UsageError(
                    "--all fetches every page, so it cannot be combined with --page-number"
                )
            return function(*args, paging=Paging(page_number, page_size, all_pages), **kwargs)

        options = [
            click.option(
                "--page-number",
                type=click.IntRange(min=1),
                default=None,
                help="Page to show. Default: 1.",
            ),
            click.option(
                "--page-size",
                type=click.IntRange(1, ALL_PAGE_SIZE),
                default=None,
                help=(
                    f"{noun.capitalize()} per page, 1 to {ALL_PAGE_SIZE}. "
                    f"Default: {default_size}, or {ALL_PAGE_SIZE} with --all."
                ),
            ),
            click.option("--all", "all_pages", is_flag=True, help="Fetch every page."),
        ]
        decorated: Any = wrapper
        for option in reversed(options):
            decorated = option(decorated)
        return decorated  # type: ignore[no-any-return]

    return decorate


def page_title(subject: str, body: Mapping[str, Any], count: int) -> str:
    """Title of a listing: the page and the total, or only the total for ``--all``."""
    total = body.get("TotalCount", count)
    if "PageNumber" not in body:
        return f"{subject}: {total}"
    return f"{subject}: page {body['PageNumber']}, {count} of {total}"
