"""End-to-end load test of the KMS: Encrypt and Decrypt through the KMS and its XKI proxy.

The harness builds the whole chain in a temporary directory with the real
command line, each part in its own process on 127.0.0.1:

- the XKI proxy as ``xki_load.py`` runs it (``hyok xki serve`` on a data
  directory of ``hyok.xki.bootstrap.initialise``, rate limit off, audit log
  in the directory) with the file key manager;
- the KMS: ``hyok kms init`` (trusting the proxy's CA), ``hyok kms account
  create`` and ``hyok kms access-key create``, then ``hyok kms serve``;
- through the KMS API, signed by the official Alibaba Cloud SDK: an external
  key management instance bound to the proxy (CreateKmsInstance,
  UpdateXkiProxyConfiguration, ConnectKmsInstance) and a key on the proxy's
  key (CreateKey with the ``ExternalKeyId`` extension).

Each round measures, with wrk over keep-alive TLS connections, the proxy alone
(XKS encrypt and decrypt, as ``xki_load.py`` does) and then KMS Encrypt and
Decrypt, with the same connections, threads and duration. Every KMS request
carries its own ``x-acs-signature-nonce``, so the harness signs a fresh set
before each run with the SDK's own ACS3 helpers and wrk sends each request
once (``wrk/kms.lua``). Everything stays on loopback and every run ends after
``--duration`` seconds.

Example::

    .venv/bin/python benchmarks/kms_load.py --duration 15 --rounds 3

Figures per target and operation: throughput, p50 and p99 latency, errors,
and CPU cores used by the KMS, the proxy and wrk. Each also has the peak RSS
of the KMS's and the proxy's process trees during the run, and each KMS line
the ratio of its throughput to the proxy's. Plaintexts, AccessKey secrets
and the proxy's SigV4 secret never appear in the output. The request files
that wrk reads contain Base64 plaintexts of random test data, and each is
deleted when its run ends.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import http.client
import json
import math
import os
import re
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from alibabacloud_credentials import models as credential_models  # type: ignore[import-untyped]
from alibabacloud_credentials.client import (  # type: ignore[import-untyped]
    Client as CredentialClient,
)
from alibabacloud_kms20160120 import models as kms_models  # type: ignore[import-untyped]
from alibabacloud_kms20160120.client import Client  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.exceptions import (  # type: ignore[import-untyped]
    AlibabaCloudException,
)
from alibabacloud_tea_openapi.utils import Utils  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.utils_models import (  # type: ignore[import-untyped]
    Config,
    OpenApiRequest,
)
from darabonba.core import DaraCore  # type: ignore[import-untyped]
from darabonba.request import DaraRequest  # type: ignore[import-untyped]
from darabonba.runtime import RuntimeOptions  # type: ignore[import-untyped]

import xki_load as proxy_load
from hyok.kms import API_VERSION
from hyok.kms.sdk_call import rpc_params

BENCHMARKS_DIR: Final = Path(__file__).resolve().parent
KMS_WRK_SCRIPT: Final = BENCHMARKS_DIR / "wrk" / "kms.lua"
HOST: Final = proxy_load.HOST
REGION: Final = proxy_load.REGION
SIGNATURE_ALGORITHM: Final = "ACS3-HMAC-SHA256"
TARGETS: Final = ("proxy", "kms")
OPERATIONS: Final = ("encrypt", "decrypt")
TARGET_RATIO: Final = 0.5
# The KMS accepts an x-acs-date within 15 minutes of its clock, and the
# requests of a run are signed right before it, so a run must end well
# within that.
MAX_DURATION: Final = 300
# Each KMS request makes exactly one proxy request, so the chain cannot serve
# more requests per second than the proxy alone. The request files are sized
# for this multiple of the best proxy-alone throughput of the invocation.
RATE_BOUND_FACTOR: Final = 1.5
MIN_RATE_BOUND: Final = 1_000
CONNECT_SECONDS: Final = 30.0


# Requests ---------------------------------------------------------------------


class AcsRequestSigner:
    """Build KMS API requests byte for byte as the official Python SDK sends them.

    The headers are those that ``alibabacloud_tea_openapi.client.Client.do_request``
    (0.4.6) sets for an RPC action with an AccessKey, and the date, the nonce,
    the payload hash and the Authorization header come from the SDK's own
    helpers (``alibabacloud_tea_openapi.utils.Utils``), not from hyok. The URL
    is built by ``darabonba.core.DaraCore.compose_url``, and the framing
    (``Accept-Encoding: identity`` first, ``Content-Length: 0`` last) is what
    requests and urllib3 add on the wire.
    """

    def __init__(self, port: int, access_key_id: str, access_key_secret: str) -> None:
        config = credential_models.Config(
            type="access_key", access_key_id=access_key_id, access_key_secret=access_key_secret
        )
        credential = CredentialClient(config).get_credential()
        self._access_key_id: str = credential.access_key_id
        self._access_key_secret: str = credential.access_key_secret
        self._provider: str = credential.provider_name
        self._endpoint = f"{HOST}:{port}"
        self._user_agent: str = Utils.get_user_agent(os.environ.get("ALIBABA_CLOUD_USER_AGENT"))
        self._payload_hash: str = Utils.hash(b"", SIGNATURE_ALGORITHM).hex()

    def __repr__(self) -> str:
        return f"AcsRequestSigner(endpoint={self._endpoint!r})"

    def render(self, action: str, query: dict[str, str]) -> bytes:
        """Sign one POST request of ``action`` with ``query`` and return it as HTTP/1.1 bytes."""
        request = DaraRequest()
        request.protocol = "HTTPS"
        request.method = "POST"
        request.pathname = "/"
        request.query = dict(query)
        request.headers = {
            "host": self._endpoint,
            "x-acs-version": API_VERSION,
            "x-acs-action": action,
            "user-agent": self._user_agent,
            "x-acs-date": Utils.get_timestamp(),
            "x-acs-signature-nonce": Utils.get_nonce(),
            "accept": "application/json",
        }

        request.headers["x-acs-content-sha256"] = self._payload_hash
        request.headers["x-acs-credentials-provider"] = self._provider
        request.headers["Authorization"] = Utils.get_authorization(
            request,
            SIGNATURE_ALGORITHM,
            self._payload_hash,
            self._access_key_id,
            self._access_key_secret,
        )

        url: str = DaraCore.compose_url(request)
        target = url[url.index("/", len("https://")) :]
        lines = [f"POST {target} HTTP/1.1", "Accept-Encoding: identity"]
        lines += [f"{name}: {value}" for name, value in request.headers.items()]
        lines.append("Content-Length: 0")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class KmsRequest:
    """One signed KMS request and the plaintext its response must contain or lead back to."""

    raw: bytes
    plaintext: bytes


class KmsRequestFactory:
    """Build signed Encrypt and Decrypt requests of one KMS key."""

    def __init__(self, signer: AcsRequestSigner, key_id: str, plaintext_bytes: int) -> None:
        self.signer = signer
        self.key_id = key_id
        self.plaintext_bytes = plaintext_bytes

    def encrypt(self) -> KmsRequest:
        plaintext = os.urandom(self.plaintext_bytes)
        query = {"KeyId": self.key_id, "Plaintext": _b64(plaintext)}
        return KmsRequest(self.signer.render("Encrypt", query), plaintext)

    def decrypt(self, blob: str, plaintext: bytes) -> KmsRequest:
        return KmsRequest(self.signer.render("Decrypt", {"CiphertextBlob": blob}), plaintext)


def _json_field(body: bytes, name: str) -> str | None:
    try:
        value = json.loads(body).get(name)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def _problem(status: int, body: bytes) -> str:
    """Describe a failed response by status and error code, never by its other fields."""
    return f"status {status} with code {_json_field(body, 'Code') or '(none)'}"


# wrk --------------------------------------------------------------------------


def write_request_files(
    prefix: Path, make: Callable[[], KmsRequest], *, threads: int, count: int
) -> list[Path]:
    """Write ``count`` requests from ``make()`` into one file per wrk thread."""
    paths = []
    for number in range(threads):
        path = prefix.with_name(f"{prefix.name}.{number}")
        with path.open("wb") as stream:
            for _ in range(count):
                raw: bytes = make().raw
                stream.write(b"%d\n" % len(raw) + raw)
        paths.append(path)
    return paths


LoadResult = tuple[proxy_load.ClientRun, dict[str, int]]
"""wrk's figures of one load, and its errors by kind (empty for proxy-alone loads)."""


class RequestsExhaustedError(RuntimeError):
    """A wrk thread sent every request of its file before the run's duration ended."""


def run_wrk_once_each(
    port: int,
    prefix: Path,
    paths: Sequence[Path],
    *,
    seconds: int,
    connections: int,
    threads: int,
) -> LoadResult:
    """Run wrk with ``wrk/kms.lua`` on the request files; return its figures and errors by kind.

    Raises RequestsExhaustedError when a thread ran out of requests, because
    its figures would then cover only part of the run.
    """
    command = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(KMS_WRK_SCRIPT),
        f"https://{HOST}:{port}/",
        "--",
        str(prefix),
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, check=False, timeout=seconds + 60
        )
    finally:
        for path in paths:
            path.unlink(missing_ok=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next(
        (text for text in completed.stdout.splitlines() if text.startswith("kms-load-result ")),
        None,
    )
    if completed.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed with exit code {completed.returncode}: {completed.stderr.strip()[-500:]}"
        )
    values = {
        name: float(value) for name, value in (pair.split("=", 1) for pair in line.split()[1:])
    }
    if values["exhausted_threads"]:
        raise RequestsExhaustedError(
            f"{values['exhausted_threads']:.0f} of {threads} wrk thread(s) sent all "
            f"{values['requests_read']:.0f} pre-signed requests before the {seconds} s run "
            "ended, so the run stopped early and its figures are not valid: raise --rate-bound"
        )
    kinds = {
        name: int(values[name])
        for name in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    }
    run = proxy_load.ClientRun(
        requests=int(values["requests"]),
        errors=sum(kinds.values()),
        seconds=values["duration_us"] / 1e6 or elapsed,
    )
    run.client_cpu_seconds = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    run.p50_ms = values["p50_us"] / 1000
    run.p99_ms = values["p99_us"] / 1000
    return run, {name: count for name, count in kinds.items() if count}


# Processes --------------------------------------------------------------------


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM of ``pid`` and its descendants to their current RSS (Linux clear_refs 5).

    Returns False when the kernel rejected the reset for any of them, whose
    peak then covers their whole life.
    """
    reset = True
    for member in proxy_load.process_tree(pid):
        try:
            Path(f"/proc/{member}/clear_refs").write_text("5")
        except OSError:
            reset = False
    return reset


def _hyok_command() -> list[str]:
    hyok = Path(sys.executable).with_name("hyok")
    return [str(hyok)] if hyok.exists() else [sys.executable, "-m", "hyok.cli"]


def _clean_environment() -> dict[str, str]:
    # The data directories' files provide every secret, not the caller's environment.
    return {key: value for key, value in os.environ.items() if not key.startswith("HYOK_")}


def run_cli(*args: str) -> dict[str, Any]:
    """Run ``hyok ARGS --output json`` and return its JSON output."""
    completed = subprocess.run(
        [*_hyok_command(), *args, "--output", "json"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env=_clean_environment(),
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"'hyok {' '.join(args[:3])}' failed with exit code {completed.returncode}: "
            f"{completed.stderr.strip()[-1000:]}"
        )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def wait_serving(server: proxy_load.Server, context: ssl.SSLContext) -> None:
    """Wait until ``server`` responds to an HTTPS request with any HTTP status."""
    deadline = time.monotonic() + proxy_load.STARTUP_SECONDS
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with code {server.process.returncode} during startup; "
                f"its output:\n{server.output_tail()}"
            )
        connection = http.client.HTTPSConnection(HOST, server.port, context=context, timeout=2)
        try:
            connection.request("GET", "/")
            connection.getresponse().read()
            return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{server.name} did not respond on port {server.port} within "
                f"{proxy_load.STARTUP_SECONDS:.0f} s; its output:\n{server.output_tail()}"
            )
        time.sleep(0.1)


class ProxyBench(proxy_load.Bench):
    """The XKI proxy of ``xki_load.py``, started without the floor app."""

    def start(self) -> None:
        command = [
            *_hyok_command(),
            "xki",
            "serve",
            "--config",
            str(self.config),
            "--log-level",
            "warning",
        ]
        self.proxy = proxy_load.Server(
            "proxy", command, self.proxy_requests.port, self.directory / "proxy.log", self.directory
        )
        self.servers.append(self.proxy)
        self.proxy.wait_healthy(self.context)


# The KMS API through the SDK --------------------------------------------------


class KmsApi:
    """The official SDK client of the KMS under test, for setup calls and checks."""

    def __init__(self, port: int, ca_file: Path, access_key_id: str, secret: str) -> None:
        self.client = Client(
            Config(
                access_key_id=access_key_id,
                access_key_secret=secret,
                endpoint=f"{HOST}:{port}",
                protocol="https",
                region_id=REGION,
                ca=str(ca_file),
            )
        )
        self.runtime = RuntimeOptions(no_proxy=HOST, connect_timeout=5_000, read_timeout=30_000)

    def call(self, action: str, query: dict[str, str]) -> dict[str, Any]:
        """Call ``action`` with the SDK's generic ``call_api`` and return the response body."""
        params = rpc_params(action)
        try:
            result = self.client.call_api(params, OpenApiRequest(query=query), self.runtime)
        except AlibabaCloudException as exc:
            if exc.code == "InvalidAction.NotFound":
                raise RuntimeError(
                    f"the KMS has no {action} action, which this benchmark needs to bind an "
                    "instance to the proxy: run it on a hyok version with the instance actions"
                ) from None
            data = exc.data if isinstance(exc.data, dict) else {}
            raise RuntimeError(
                f"{action} failed with {exc.code}: {data.get('Message', '(no message)')}"
            ) from None
        body: dict[str, Any] = result.get("body") or {}
        return body

    def connect_instance(
        self, endpoint: str, uri_path: str, access_key_id: str, secret: str
    ) -> str:
        """Create an instance bound to the proxy, connect it and return its ID once Connected."""
        created = self.call("CreateKmsInstance", {"InstanceName": "kms-load"})
        instance_id = str(created.get("KmsInstanceId") or "")
        if not instance_id:
            raise RuntimeError("CreateKmsInstance returned no KmsInstanceId")
        self.call(
            "UpdateXkiProxyConfiguration",
            {
                "KmsInstanceId": instance_id,
                "Connectivity": "PUBLIC_ENDPOINT",
                "XkiProxyUriEndpoint": endpoint,
                "XkiProxyUriPath": uri_path,
                "XkiProxyAccessKeyId": access_key_id,
                "XkiProxySecretAccessKey": secret,
            },
        )
        self.call("ConnectKmsInstance", {"KmsInstanceId": instance_id})
        deadline = time.monotonic() + CONNECT_SECONDS
        while True:
            instance = self.call("GetKmsInstance", {"KmsInstanceId": instance_id})
            status = str((instance.get("KmsInstance") or {}).get("Status", ""))
            if status == "Connected":
                return instance_id
            if status == "Error" or time.monotonic() > deadline:
                raise RuntimeError(
                    f"instance {instance_id} is {status or 'in no state'} after "
                    "ConnectKmsInstance, not Connected: see kms.log and proxy.log in --work-dir"
                )
            time.sleep(0.2)

    def create_key(self, instance_id: str, external_key_id: str) -> str:
        created = self.call(
            "CreateKey",
            {
                "DKMSInstanceId": instance_id,
                "ExternalKeyId": external_key_id,
                "Description": "kms_load.py benchmark key",
            },
        )
        key_id = str((created.get("KeyMetadata") or {}).get("KeyId", ""))
        if not key_id:
            raise RuntimeError("CreateKey returned no KeyMetadata.KeyId")
        return key_id

    def seal(self, key_id: str, plaintext: bytes) -> str:
        """Encrypt ``plaintext`` through the typed SDK call and return the blob.

        Raises RuntimeError when Decrypt of the blob does not return the plaintext.
        """
        encrypted = self.client.encrypt_with_options(
            kms_models.EncryptRequest(key_id=key_id, plaintext=_b64(plaintext)), self.runtime
        )
        blob: str = encrypted.body.ciphertext_blob
        decrypted = self.client.decrypt_with_options(
            kms_models.DecryptRequest(ciphertext_blob=blob), self.runtime
        )
        if base64.b64decode(decrypted.body.plaintext) != plaintext:
            raise RuntimeError("Decrypt through the SDK did not return the plaintext it encrypted")
        return blob


# The load test ----------------------------------------------------------------


@dataclass
class Options:
    duration: int
    warmup: int
    connections: int
    client_threads: int
    rounds: int
    kms_workers: int
    proxy_workers: int
    nonce_cache: str
    rate_bound: int | None
    pool: int
    plaintext_bytes: int
    verify: int
    profile: bool
    work_dir: Path | None
    json: str | None


@dataclass
class Figures:
    """The figures of one measured run of one target and operation."""

    target: str
    operation: str
    round: int
    requests: int
    errors: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    kms_cores: float
    proxy_cores: float
    client_cores: float
    other_cores: float
    steal_cores: float
    kms_cpu_us_per_request: float
    proxy_cpu_us_per_request: float
    kms_peak_rss_bytes: int
    proxy_peak_rss_bytes: int
    peak_rss_since_run_start: bool
    # wrk's errors by kind (status_errors: responses of status 400 or above); KMS runs only.
    error_kinds: dict[str, int] = field(default_factory=dict)
    ratio_to_proxy: float | None = None


class Chain:
    """The proxy and the KMS of one invocation, with the key and the requests of both."""

    def __init__(self, options: Options, root: Path) -> None:
        self.options = options
        self.root = root
        self.servers: list[proxy_load.Server] = []
        self.figures: list[Figures] = []
        self.verification: dict[str, dict[str, Any]] = {}
        self.profiles: dict[str, Any] = {}
        self.settings: dict[str, Any] = {}

    # Setup ---------------------------------------------------------------

    def start(self) -> None:
        """Start the proxy and the KMS, and create an instance bound to the proxy and a key."""
        options = self.options
        proxy_options = proxy_load.Options(
            duration=options.duration,
            warmup=options.warmup,
            connections=options.connections,
            workers=[options.proxy_workers],
            client="wrk",
            client_threads=options.client_threads,
            signing="presigned",
            operations=list(OPERATIONS),
            requests=10**9,
            rounds=options.rounds,
            pool=options.pool,
            plaintext_bytes=options.plaintext_bytes,
            aad_bytes=32,
            verify=options.verify,
            check_every=20,
            profile=False,
            perf=False,
            in_process=0,
            work_dir=None,
            json=None,
        )
        self.proxy = ProxyBench(proxy_options, options.proxy_workers, self.root)
        try:
            self.proxy.start()
        finally:
            self.servers.extend(self.proxy.servers)
        self.proxy.seal_pool()
        self._start_kms()
        self._bind_key()

    def _start_kms(self) -> None:
        directory = self.root / "kms"
        port = proxy_load.free_port()
        initialised = run_cli(
            "kms",
            "init",
            "--dir",
            str(directory),
            "--port",
            str(port),
            "--proxy-ca-file",
            str(self.proxy.directory / "tls" / "ca.pem"),
        )
        config = Path(initialised["config"])
        self._adjust_kms_config(config)

        account = run_cli("kms", "account", "create", "--config", str(config))
        access_key = run_cli(
            "kms",
            "access-key",
            "create",
            "--config",
            str(config),
            "--account-id",
            account["accountId"],
        )

        ca_file = Path(initialised["caFile"])
        self.kms_context = ssl.create_default_context(cafile=str(ca_file))
        command = [
            *_hyok_command(),
            "kms",
            "serve",
            "--config",
            str(config),
            # The default level: the KMS writes its line per request, as the
            # proxy writes its audit record.
            "--log-level",
            "info",
        ]
        self.kms = proxy_load.Server("KMS", command, port, directory / "kms.log", directory)
        self.servers.append(self.kms)
        wait_serving(self.kms, self.kms_context)

        self.api = KmsApi(port, ca_file, access_key["accessKeyId"], access_key["accessKeySecret"])
        self.signer = AcsRequestSigner(
            port, access_key["accessKeyId"], access_key["accessKeySecret"]
        )

    def _adjust_kms_config(self, config: Path) -> None:
        text = config.read_text()
        replacements = (
            (r"(?m)^workers = 1$", f"workers = {self.options.kms_workers}"),
            (
                r'(?m)^nonce_cache = "(?:database|memory)"$',
                f'nonce_cache = "{self.options.nonce_cache}"',
            ),
        )
        for pattern, replacement in replacements:
            text, count = re.subn(pattern, replacement, text)
            if count != 1:
                raise RuntimeError(
                    f"the kms.toml written by 'hyok kms init' has no line matching {pattern!r}; "
                    "update kms_load.py"
                )
        config.write_text(text)

    def _bind_key(self) -> None:
        document = json.loads((self.proxy.directory / "xks-proxy-configuration.json").read_text())
        credential = document["XksProxyAuthenticationCredential"]
        instance_id = self.api.connect_instance(
            f"https://localhost:{self.proxy.proxy.port}",
            document["XksProxyUriPath"],
            credential["AccessKeyId"],
            credential["RawSecretAccessKey"],
        )
        external_key_id = self.proxy.proxy_requests.key_id
        self.key_id = self.api.create_key(instance_id, external_key_id)
        self.requests = KmsRequestFactory(self.signer, self.key_id, self.options.plaintext_bytes)
        self.sealed_plaintext = os.urandom(self.options.plaintext_bytes)
        self.sealed_blob = self.api.seal(self.key_id, self.sealed_plaintext)
        self.settings = {
            "instance_id": instance_id,
            "key_id": self.key_id,
            "external_key_id": external_key_id,
        }

    def stop(self) -> None:
        """Stop the KMS, then the proxy."""
        for server in reversed(self.servers):
            server.stop()

    # Checks --------------------------------------------------------------

    def verify(self, stage: str) -> None:
        """Check a sample of pre-signed requests through the KMS, and that a replay is rejected.

        Encrypt responses must name the key and carry a blob, which a Decrypt
        request must turn back into its plaintext. Decrypt requests of the
        load's blob must return its plaintext. Sending an Encrypt request a
        second time must fail with SignatureNonceUsed.
        """
        count = self.options.verify
        failures: Counter[str] = Counter()
        encrypts = [self.requests.encrypt() for _ in range(count)]
        responses = proxy_load.exchange(self.kms.port, self.kms_context, [i.raw for i in encrypts])
        decrypts = []
        for item, (status, body) in zip(encrypts, responses, strict=True):
            blob = _json_field(body, "CiphertextBlob")
            if status != 200 or blob is None:
                failures[f"Encrypt: {_problem(status, body)}"] += 1
            elif _json_field(body, "KeyId") != self.key_id:
                failures["Encrypt: response names another KeyId"] += 1
            else:
                decrypts.append(self.requests.decrypt(blob, item.plaintext))
        round_trips = len(decrypts)
        decrypts += [
            self.requests.decrypt(self.sealed_blob, self.sealed_plaintext) for _ in range(count)
        ]
        responses = proxy_load.exchange(self.kms.port, self.kms_context, [i.raw for i in decrypts])
        for item, (status, body) in zip(decrypts, responses, strict=True):
            plaintext = _json_field(body, "Plaintext")
            if status != 200 or plaintext is None:
                failures[f"Decrypt: {_problem(status, body)}"] += 1
            elif _unb64(plaintext) != item.plaintext:
                failures["Decrypt: response has the wrong plaintext"] += 1

        [(status, body)] = proxy_load.exchange(self.kms.port, self.kms_context, [encrypts[0].raw])
        replay = _json_field(body, "Code")
        if status != 400 or replay != "SignatureNonceUsed":
            failures[f"replayed Encrypt: {_problem(status, body)}, not SignatureNonceUsed"] += 1
        self.verification[stage] = {
            "encrypt_checked": len(encrypts),
            "decrypt_checked": len(decrypts),
            "encrypt_round_trips": round_trips,
            "replay_rejected": replay == "SignatureNonceUsed",
            "failures": sum(failures.values()),
        }
        if failures:
            self.verification[stage]["messages"] = dict(failures)

    # Load runs -----------------------------------------------------------

    def rate_bound(self) -> int:
        """Requests per second that the KMS request files are sized for."""
        if self.options.rate_bound is not None:
            return self.options.rate_bound
        best = max(
            (item.requests_per_second for item in self.figures if item.target == "proxy"),
            default=0.0,
        )
        return max(MIN_RATE_BOUND, math.ceil(best * RATE_BOUND_FACTOR))

    def _prepare(self, target: str, operation: str, seconds: int) -> Callable[[], LoadResult]:
        """Sign the requests of one load of ``seconds`` and return the function that runs it.

        The function returns wrk's figures and, for the KMS, its errors by kind.
        """
        options = self.options
        if target == "proxy":
            factory = self.proxy.proxy_requests
            sealed = _cycle(self.proxy.sealed)
            pool = [
                factory.encrypt().raw
                if operation == "encrypt"
                else factory.decrypt(next(sealed)).raw
                for _ in range(options.pool)
            ]

            def run_proxy() -> LoadResult:
                run = proxy_load.run_wrk(
                    self.proxy.proxy.port,
                    pool,
                    self.proxy.directory / f"{operation}.requests",
                    seconds=seconds,
                    connections=options.connections,
                    threads=options.client_threads,
                )
                return run, {}

            return run_proxy

        def make() -> KmsRequest:
            if operation == "encrypt":
                return self.requests.encrypt()
            return self.requests.decrypt(self.sealed_blob, self.sealed_plaintext)

        # Thread 0 also gives wrk one request to check the format, which it never sends.
        count = math.ceil(self.rate_bound() * seconds) + 1
        prefix = self.root / "kms" / f"{operation}.requests"
        paths = write_request_files(prefix, make, threads=options.client_threads, count=count)

        def run_kms() -> LoadResult:
            return run_wrk_once_each(
                self.kms.port,
                prefix,
                paths,
                seconds=seconds,
                connections=options.connections,
                threads=options.client_threads,
            )

        return run_kms

    def measure(self, target: str, operation: str, round_number: int) -> Figures:
        options = self.options
        if options.warmup:
            self._prepare(target, operation, options.warmup)()
        # Signing takes seconds of CPU, so it happens before the CPU readings.
        start_load = self._prepare(target, operation, options.duration)
        kms_pid, proxy_pid = self.kms.process.pid, self.proxy.proxy.process.pid
        reset = reset_peak_rss(kms_pid) & reset_peak_rss(proxy_pid)
        kms_before = proxy_load.tree_cpu_seconds(kms_pid)
        proxy_before = proxy_load.tree_cpu_seconds(proxy_pid)
        busy_before, steal_before = proxy_load.system_cpu_seconds()
        run, error_kinds = start_load()
        kms_cpu = proxy_load.tree_cpu_seconds(kms_pid) - kms_before
        proxy_cpu = proxy_load.tree_cpu_seconds(proxy_pid) - proxy_before
        busy_after, steal_after = proxy_load.system_cpu_seconds()
        seconds = run.seconds or 1e-9
        requests = max(run.requests, 1)
        other = (busy_after - busy_before) - kms_cpu - proxy_cpu - run.client_cpu_seconds
        figures = Figures(
            target=target,
            operation=operation,
            round=round_number,
            requests=run.requests,
            errors=run.errors,
            seconds=round(seconds, 3),
            requests_per_second=round(run.requests / seconds, 1),
            p50_ms=round(run.p50_ms, 3),
            p99_ms=round(run.p99_ms, 3),
            kms_cores=round(kms_cpu / seconds, 2),
            proxy_cores=round(proxy_cpu / seconds, 2),
            client_cores=round(run.client_cpu_seconds / seconds, 2),
            other_cores=round(max(other, 0.0) / seconds, 2),
            steal_cores=round((steal_after - steal_before) / seconds, 2),
            kms_cpu_us_per_request=round(kms_cpu / requests * 1e6, 1),
            proxy_cpu_us_per_request=round(proxy_cpu / requests * 1e6, 1),
            kms_peak_rss_bytes=proxy_load.tree_peak_rss(kms_pid),
            proxy_peak_rss_bytes=proxy_load.tree_peak_rss(proxy_pid),
            peak_rss_since_run_start=reset,
            error_kinds=error_kinds,
        )
        self.figures.append(figures)
        return figures

    def profile(self, operation: str) -> None:
        """Run KMS ``operation`` once more under py-spy and summarise where the KMS spends CPU."""
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(py_spy).exists():
            raise RuntimeError(
                "py-spy is not installed; install it with '.venv/bin/pip install py-spy' or run "
                "without --profile"
            )
        output = self.root / "kms" / f"py-spy-{operation}.txt"
        command = [
            py_spy,
            "record",
            "--pid",
            str(self.kms.process.pid),
            "--subprocesses",
            "--function",
            "--rate",
            "250",
            "--format",
            "raw",
            "--output",
            str(output),
            "--duration",
            str(self.options.duration + 1),
            "--nonblocking",
        ]
        log_path = output.with_suffix(".log")
        start_load = self._prepare("kms", operation, self.options.duration)
        with log_path.open("wb") as log:
            profiler = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            try:
                time.sleep(1.0)  # py-spy attaches to every process before the load starts
                cpu_before = proxy_load.tree_cpu_seconds(self.kms.process.pid)
                run, _ = start_load()
                cpu = proxy_load.tree_cpu_seconds(self.kms.process.pid) - cpu_before
                profiler.wait(timeout=self.options.duration + 60)
            finally:
                if profiler.poll() is None:
                    profiler.terminate()
                    profiler.wait(10)
        if profiler.returncode != 0 or not output.exists():
            raise RuntimeError(
                f"py-spy failed with exit code {profiler.returncode}; see {log_path}"
            )
        summary = summarise_kms_profile(output, cpu / max(run.requests, 1))
        summary["requests_per_second"] = round(run.requests / (run.seconds or 1e-9), 1)
        self.profiles[f"KMS {operation}"] = summary


def _unb64(text: str) -> bytes:
    try:
        return binascii.a2b_base64(text, strict_mode=True)
    except binascii.Error:
        return b""


def _cycle(items: Sequence[Any]) -> Iterator[Any]:
    while True:
        yield from items


# Profiles ---------------------------------------------------------------------

# Cost categories of a KMS request. A stack belongs to the first category of
# _CALLERS that any of its frames matches. So a database statement of the
# nonce cache counts as the nonce cache, and an h11 frame under httpcore as the
# proxy client. Stacks that match none of them are placed by _CATEGORIES, from
# the innermost frame outwards.
_CALLERS: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("nonce cache writes (hyok.kms.store.nonces)", ("hyok/kms/store/nonces.py",)),
    ("store reads (hyok.kms.store, SQLAlchemy, sqlite3)", ("hyok/kms/store/", "sqlalchemy/")),
    ("ACS3 signature verification (hyok.common.acs_signature)", ("hyok/common/acs_signature",)),
    ("JSON (json)", ("json/",)),
    (
        "XKI proxy client: httpx, httpcore, SigV4 (hyok.kms.xki_client)",
        (
            "hyok/kms/xki_client/",
            "hyok/kms/proxies.py",
            "httpx/",
            "httpcore/",
            "anyio/",
            "hyok/common/sigv4.py",
        ),
    ),
)
_CATEGORIES: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    (
        "actions, parameters, ciphertext blob (hyok.kms.api.actions)",
        (
            "hyok/kms/api/actions/",
            "hyok/kms/api/params.py",
            "hyok/kms/ciphertext.py",
            "hyok/kms/domain/",
        ),
    ),
    ("KMS app: dispatch, responses (hyok.kms.api.app)", ("hyok/kms/api/",)),
    ("logging", ("logging/",)),
    (
        "thread pool hand-offs (concurrent.futures, threading)",
        ("concurrent/futures/", "threading.py", "queue.py", "run_in_executor"),
    ),
    ("TLS (ssl, asyncio sslproto)", ("ssl.py", "sslproto.py")),
    ("uvicorn and ASGI", ("uvicorn/", "h11/", "hyok/kms/http11")),
)


def _kms_category(stack: Sequence[str]) -> str:
    for name, markers in _CALLERS:
        if any(marker in frame for frame in stack for marker in markers):
            return name
    for frame in reversed(stack):
        for name, markers in _CATEGORIES:
            if any(marker in frame for marker in markers):
                return name
    return "event loop, syscalls and other"


def summarise_kms_profile(
    path: Path, cpu_seconds_per_request: float, top: int = 15
) -> dict[str, Any]:
    """Read py-spy's raw (collapsed) output and return shares by KMS cost category and function."""
    categories: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        stack_text = re.sub(r'^process [0-9]+:"(?:[^"\\]|\\.)*"(?:;|$)', "", stack_text)
        # py-spy names each thread in a frame such as 'thread (0x7F...)'.
        stack = [frame for frame in stack_text.split(";") if frame and "thread (0x" not in frame]
        if not stack:
            continue
        count = int(count_text)
        total += count
        categories[_kms_category(stack)] += count
        own[stack[-1]] += count
    per_request_us = cpu_seconds_per_request * 1e6

    def rows(counter: Counter[str], limit: int) -> list[dict[str, Any]]:
        return [
            {"name": name, "share": count / total, "us_per_request": count / total * per_request_us}
            for name, count in counter.most_common(limit)
        ]

    return {
        "samples": total,
        "cpu_us_per_request": per_request_us,
        "categories": rows(categories, len(categories)) if total else [],
        "self": rows(own, top) if total else [],
    }


# Report -----------------------------------------------------------------------


def median_figures(figures: Sequence[Figures]) -> list[Figures]:
    """Pick, per target and operation, the round with the median throughput, and add ratios."""
    groups: dict[tuple[str, str], list[Figures]] = {}
    for item in figures:
        groups.setdefault((item.target, item.operation), []).append(item)
    chosen = []
    for target in ("kms", "proxy"):
        for operation in OPERATIONS:
            group = sorted(groups.get((target, operation), []), key=lambda i: i.requests_per_second)
            if group:
                chosen.append(group[(len(group) - 1) // 2])
    proxy = {item.operation: item.requests_per_second for item in chosen if item.target == "proxy"}
    for item in chosen:
        alone = proxy.get(item.operation)
        if item.target == "kms" and alone:
            item.ratio_to_proxy = round(item.requests_per_second / alone, 3)
    return chosen


def _render_header(report: dict[str, Any]) -> list[str]:
    info, settings = report["machine"], report["settings"]
    packages = info["packages"]
    return [
        "KMS end-to-end load test",
        f"machine: {info['cpus']} CPUs ({info['cpu_model']}), Linux {info['kernel']}, "
        f"Python {info['python']}, {info['openssl']}",
        f"stack: uvicorn {packages['uvicorn']} (KMS on hyok.kms.http11, proxy on httptools), "
        f"uvloop {packages['uvloop']}, cryptography {packages['cryptography']}",
        f"KMS: {settings['kms_workers']} worker(s), nonce cache in the {settings['nonce_cache']}"
        f", SQLite; proxy: {settings['proxy_workers']} worker(s), file key manager",
        f"client: wrk ({info['wrk']}, {settings['client_threads']} thread(s)), "
        f"{settings['connections']} keep-alive TLS connections; KMS requests signed by the SDK's "
        f"ACS3 helpers, each sent once, files sized for {report['rate_bound']} req/s; proxy "
        f"requests: {settings['pool']} pre-signed SigV4 requests in turn",
        f"runs: {settings['duration']} s each after {settings['warmup']} s of warm-up, "
        f"{settings['rounds']} round(s), median round shown; client and servers share the CPUs",
    ]


def _render_table(results: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        f"{'target':<6} {'operation':<9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'vs proxy':>8} {'KMS':>5} {'proxy':>5} {'client':>6} {'other':>5} "
        f"{'KMS us/req':>10} {'KMS RSS':>9} {'proxy RSS':>9}",
    ]
    for item in results:
        ratio = f"{item['ratio_to_proxy']:.2f}" if item["ratio_to_proxy"] is not None else "-"
        lines.append(
            f"{item['target']:<6} {item['operation']:<9} {item['requests_per_second']:>8.0f} "
            f"{item['p50_ms']:>7.2f} {item['p99_ms']:>7.2f} {item['errors']:>6} {ratio:>8} "
            f"{item['kms_cores']:>5.2f} {item['proxy_cores']:>5.2f} {item['client_cores']:>6.2f} "
            f"{item['other_cores']:>5.2f} {item['kms_cpu_us_per_request']:>10.0f} "
            f"{item['kms_peak_rss_bytes'] / 2**20:>5.1f} MiB "
            f"{item['proxy_peak_rss_bytes'] / 2**20:>5.1f} MiB"
        )
    lines.append("")
    lines.append(
        "KMS, proxy, client, other: CPU cores used on average by the KMS's processes, the "
        "proxy's, wrk and the rest of the machine"
    )
    lines.append(
        "KMS us/req: KMS CPU time per request; RSS: peak of VmHWM summed over each server's "
        "process tree during the run"
    )
    return lines


def _render_target(report: dict[str, Any]) -> list[str]:
    lines = []
    for operation, item in report["target"].items():
        verdict = "met" if item["met"] else "missed"
        lines.append(
            f"target KMS {operation} >= {TARGET_RATIO:.0%} of proxy-alone: {verdict} "
            f"({item['ratio']:.0%})"
        )
    return lines


def _render_checks(report: dict[str, Any]) -> list[str]:
    lines = []
    for stage, result in report["verification"].items():
        replay = "rejected" if result["replay_rejected"] else "NOT rejected"
        lines.append(
            f"verified ({stage}): {result['encrypt_checked']} Encrypt, "
            f"{result['decrypt_checked']} Decrypt ({result['encrypt_round_trips']} of them round "
            f"trips of those Encrypts), replayed nonce {replay}; {result['failures']} failures"
        )
        for message, count in result.get("messages", {}).items():
            lines.append(f"  {count} x {message}")
    return lines


def _render_profiles(profiles: dict[str, Any]) -> list[str]:
    lines = []
    for key, summary in profiles.items():
        lines.append("")
        lines.append(
            f"{key} under py-spy: {summary['samples']} samples at "
            f"{summary['requests_per_second']:.0f} req/s, "
            f"{summary['cpu_us_per_request']:.0f} us of KMS CPU per request"
        )
        for row in summary["categories"]:
            lines.append(f"  {row['share']:>6.1%} {row['us_per_request']:>6.1f} us  {row['name']}")
        if summary["self"]:
            lines.append("  top functions by own time:")
        for row in summary["self"]:
            lines.append(f"  {row['share']:>6.1%} {row['us_per_request']:>6.1f} us  {row['name']}")
    return lines


def render_text(report: dict[str, Any]) -> str:
    lines = _render_header(report)
    lines.append("")
    lines += _render_table(report["results"])
    lines.append("")
    lines += _render_target(report)
    lines += _render_checks(report)
    lines += _render_profiles(report["profiles"])
    return "\n".join(lines)


# Command line -----------------------------------------------------------------


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        description="Load-test KMS Encrypt and Decrypt end to end, against the XKI proxy alone."
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=10,
        help=f"seconds per measured run, 1 to {MAX_DURATION} (default 10)",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="seconds of unmeasured load before each run (default 1)",
    )
    parser.add_argument(
        "--connections", type=int, default=16, help="keep-alive TLS connections (default 16)"
    )
    parser.add_argument("--client-threads", type=int, default=1, help="wrk threads (default 1)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat every run this many times and report the median (default 1)",
    )

    parser.add_argument(
        "--kms-workers", type=int, default=1, help="KMS worker processes (default 1)"
    )
    parser.add_argument(
        "--proxy-workers", type=int, default=1, help="proxy worker processes (default 1)"
    )

    parser.add_argument(
        "--nonce-cache",
        choices=("database", "memory"),
        default="memory",
        help="where the KMS keeps signature nonces: 'memory', as 'hyok kms init' writes for one "
        "worker, or 'database', which several workers need (default memory)",
    )
    parser.add_argument(
        "--rate-bound",
        type=int,
        help="requests per second that each wrk thread's file of KMS requests is sized for "
        f"(default: {RATE_BOUND_FACTOR} times the best proxy-alone throughput of the run, at "
        f"least {MIN_RATE_BOUND})",
    )
    parser.add_argument(
        "--pool",
        type=int,
        default=256,
        help="distinct pre-signed requests per proxy-alone run, sent in turn (default 256)",
    )
    parser.add_argument(
        "--plaintext-bytes",
        type=int,
        default=32,
        help="plaintext size of encrypt requests, in bytes (default 32)",
    )
    parser.add_argument(
        "--verify",
        type=int,
        default=20,
        help="KMS responses per operation checked before and after the runs (default 20)",
    )

    parser.add_argument(
        "--profile",
        action="store_true",
        help="run each KMS operation once more under py-spy and print where the KMS spends "
        "its CPU, by cost category and function",
    )
    parser.add_argument(
        "--work-dir",
        type=Path,
        help="keep data directories, logs and profiles here (default: a temporary directory, "
        "deleted at the end)",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="also write the figures as JSON to FILE ('-' for standard output, which moves the "
        "text report to standard error)",
    )
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    return Options(**vars(args))


def _check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not 1 <= args.duration <= MAX_DURATION or not 0 <= args.warmup <= 30:
        parser.error(f"--duration must be 1 to {MAX_DURATION} and --warmup 0 to 30 seconds")
    if not 1 <= args.connections <= 1024 or not 1 <= args.client_threads <= args.connections:
        parser.error("--connections must be 1 to 1024, and --client-threads 1 to --connections")
    if not 1 <= args.kms_workers <= 64 or not 1 <= args.proxy_workers <= 64:
        parser.error("--kms-workers and --proxy-workers must be 1 to 64")
    if args.nonce_cache == "memory" and args.kms_workers > 1:
        parser.error("--nonce-cache memory keeps nonces per process: use it with --kms-workers 1")
    if args.rate_bound is not None and not 1 <= args.rate_bound <= 1_000_000:
        parser.error("--rate-bound must be 1 to 1,000,000 requests per second")
    for name in ("rounds", "pool", "plaintext_bytes", "verify"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.plaintext_bytes > 4096:
        parser.error("--plaintext-bytes must be at most 4096, below the KMS limit of 6 KB")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed; install it with 'apt-get install -y wrk'")


def run(options: Options) -> dict[str, Any]:
    """Build the chain, run every round and return the report."""
    report: dict[str, Any] = {
        "machine": proxy_load.machine(),
        "settings": {
            key: (str(value) if isinstance(value, Path) else value)
            for key, value in asdict(options).items()
        },
        "verification": {},
        "profiles": {},
    }
    with contextlib.ExitStack() as stack:
        if options.work_dir is None:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hyok-kms-load-")))
        else:
            root = options.work_dir
            root.mkdir(parents=True, exist_ok=True)
        chain = Chain(options, root)
        stack.callback(chain.stop)
        chain.start()
        chain.verify("before load")
        for number in range(1, options.rounds + 1):
            for target in TARGETS:
                for operation in OPERATIONS:
                    chain.measure(target, operation, number)
        chain.verify("after load")
        for operation in OPERATIONS if options.profile else ():
            chain.profile(operation)
        report["setup"] = chain.settings
        report["rate_bound"] = chain.rate_bound()
        report["verification"] = chain.verification
        report["profiles"] = chain.profiles
        report["audit"] = chain.proxy.audit_outcomes()
    results = median_figures(chain.figures)
    report["results"] = [asdict(item) for item in results]
    report["rounds"] = [asdict(item) for item in chain.figures]
    report["target"] = {
        item.operation: {"ratio": item.ratio_to_proxy, "met": item.ratio_to_proxy >= TARGET_RATIO}
        for item in results
        if item.target == "kms" and item.ratio_to_proxy is not None
    }
    return report


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_options(argv)
    try:
        report = run(options)
    except RequestsExhaustedError as exc:
        print(f"kms_load.py: {exc}", file=sys.stderr)
        return 2
    text = render_text(report)
    if options.json == "-":
        print(text, file=sys.stderr)
        print(json.dumps(report, indent=2))
    else:
        print(text)
        if options.json:
            Path(options.json).write_text(json.dumps(report, indent=2) + "\n")
    failures = sum(stage["failures"] for stage in report["verification"].values())
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
