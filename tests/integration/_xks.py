"""Helpers for integration tests of the XKS proxy on loopback over TLS.

The pieces, in the order a test module uses them:

- ``init_data_dir`` runs ``initialise`` and returns a :class:`DataDir`, which
  can add key stores, credentials and keystore files and write ``xki.toml``.
- ``run_proxy`` builds ``Proxy`` and ``XksApp`` from the written settings and
  serves them with uvicorn over TLS on 127.0.0.1 (``serve_tls``), lifespan on.
- :class:`XksClient` sends XKS requests signed by botocore's SigV4 signer (the
  AWS SDK for Python), so the proxy is checked against an independent signer
  and not against hyok's own ``sign()``. Options sign with a wrong secret, another
  region or a shifted clock, leave headers out of the signature, or change
  the body after signing. ``raw`` sends unsigned requests.
- ``assert_xks_error``, ``expect_ok`` and ``assert_same_bytes`` check
  responses without echoing a plaintext into an assertion message.
- :class:`AuditTrail` reads the audit log, and ``scrape_metrics`` reads
  ``/metrics``.
- Key manager wrappers inject delays, failures and fleet states at the KMI
  interface through ``Proxy(settings, backends=...)``.

``xks_data_dir`` is a module-scoped fixture. Import it into a test module to
use it.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import json
import os
import re
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import botocore.auth
import httpx
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from prometheus_client.parser import text_string_to_metric_families

from hyok.common.sealed import Sealer
from hyok.common.secrets import Secret
from hyok.common.sigv4 import Credential
from hyok.common.tls import client_ssl_context, server_ssl_context
from hyok.kmi.base import Capabilities, EncryptResult, FleetMember, KeyInfo, KeyManager, KeyUsage
from hyok.kmi.file import KEYSTORE_PURPOSE, FileKeyManager
from hyok.xki.app import XksApp
from hyok.xki.bootstrap import InitOptions, initialise
from hyok.xki.credentials import CredentialFile, StoredCredential, generate_credential
from hyok.xki.runtime import Proxy
from hyok.xki.settings import KeyStoreSettings, ProxySettings, load_settings
from tests.conftest import register_sensitive
from tests.integration._server import serve_tls

SERVICE = "kms-xks-proxy"
REGION = "cn-hangzhou"
# scrypt cost exponent of every sealed file the tests write. The product default, 17,
# costs 128 times as much.
KDF_COST = 10
DEFAULT_KEY_ID = "app-1"
PRINCIPAL = "arn:aws:iam::111122223333:role/app"
KMS_KEY_ARN = "arn:aws:kms:cn-hangzhou:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
# Base64 of b"hyok/1", the ciphertext metadata the proxy returns.
CIPHERTEXT_METADATA = "aHlvay8x"

_PRINTABLE_ASCII = re.compile(r"[ -~]*")
# botocore reads the clock through this module attribute. Patching it is not
# thread-safe, so clock-shifted signing holds this lock.
_CLOCK_PATCH_LOCK = threading.Lock()


# ---------------------------------------------------------------------------
# Request bodies


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def request_metadata(kms_operation: str = "Encrypt", **fields: str | None) -> dict[str, str]:
    """Build a ``requestMetadata`` object with a new kmsRequestId.

    A field passed as None is left out.
    """
    document: dict[str, str | None] = {
        "awsPrincipalArn": PRINCIPAL,
        "kmsKeyArn": KMS_KEY_ARN,
        "kmsOperation": kms_operation,
        "kmsRequestId": str(uuid.uuid4()),
    }
    document.update(fields)
    return {name: value for name, value in document.items() if value is not None}


def encrypt_body(
    plaintext: bytes,
    *,
    aad: bytes | None = None,
    cdiv: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "requestMetadata": dict(metadata) if metadata is not None else request_metadata(),
        "plaintext": b64(plaintext),
        "encryptionAlgorithm": "AES_GCM",
    }
    if aad is not None:
        document["additionalAuthenticatedData"] = b64(aad)
    if cdiv:
        document["ciphertextDataIntegrityValueAlgorithm"] = "SHA_256"
    return document


def decrypt_body(
    encrypted: Mapping[str, str],
    *,
    aad: bytes | None = None,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Build a Decrypt body from the fields of an Encrypt response (or a forged equivalent)."""
    document: dict[str, Any] = {
        "requestMetadata": (
            dict(metadata) if metadata is not None else request_metadata("Decrypt")
        ),
        "encryptionAlgorithm": "AES_GCM",
    }
    for name in ("ciphertext", "ciphertextMetadata", "initializationVector", "authenticationTag"):
        if name in encrypted:
            document[name] = encrypted[name]
    if aad is not None:
        document["additionalAuthenticatedData"] = b64(aad)
    return document


def backend_aad(aad: bytes, ciphertext_metadata: bytes) -> bytes:
    """Build the AAD that docs/xki-proxy.md documents for the key manager, without product code."""
    return (
        len(aad).to_bytes(2, "big")
        + aad
        + len(ciphertext_metadata).to_bytes(1, "big")
        + ciphertext_metadata
    )


def secret_bytes(size: int) -> bytes:
    """Random bytes for a plaintext or AAD, registered with the log hygiene check."""
    value = os.urandom(size)
    register_sensitive(value)
    return value


# ---------------------------------------------------------------------------
# Data directories and configuration


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + " }"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def file_backend(path: str = "keystore.hyok") -> dict[str, object]:
    """A ``[backends.NAME]`` table of type "file" that uses the data directory's passphrase."""
    return {
        "type": "file",
        "path": path,
        "passphrase": {"file": "secrets/passphrase"},
        "kdf_cost": KDF_COST,
    }


def keystore_entry(
    name: str,
    *,
    path_prefix: str = "",
    backend: str = "local",
    keys: Sequence[str] = ("*",),
    region: str = REGION,
    rate_limit: float = 10_000,
    rate_burst: int = 0,
    cedar_policy_file: str | None = None,
) -> dict[str, object]:
    """A ``[[keystores]]`` entry whose credentials are in ``credentials/<name>.sealed``."""
    entry: dict[str, object] = {
        "name": name,
        "path_prefix": path_prefix,
        "region": region,
        "backend": backend,
        "keys": list(keys),
        "credentials_file": f"credentials/{name}.sealed",
        "rate_limit": rate_limit,
        "rate_burst": rate_burst,
    }
    if cedar_policy_file is not None:
        entry["cedar_policy_file"] = cedar_policy_file
    return entry


@dataclass
class DataDir:
    """A data directory written by ``initialise``, and the credential of each key store."""

    root: Path
    passphrase: Secret
    ca_file: Path
    key_id: str
    region: str
    credentials: dict[str, StoredCredential] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        return self.root / "xki.toml"

    @property
    def audit_file(self) -> Path:
        return self.root / "logs" / "audit.log"

    def sealer(self) -> Sealer:
        return Sealer(self.passphrase, kdf_cost=KDF_COST)

    def open_keystore(self, name: str = "keystore.hyok") -> FileKeyManager:
        """Open a keystore file of this directory, as an admin tool beside the proxy would."""
        return FileKeyManager(self.root / name, self.passphrase, kdf_cost=KDF_COST)

    def create_keystore(self, name: str, key_ids: Iterable[str] = ()) -> None:
        manager = FileKeyManager.create_keystore(
            self.root / name, self.passphrase, kdf_cost=KDF_COST
        )
        try:
            for key_id in key_ids:
                manager.create_key(key_id)
        finally:
            manager.close()

    def create_keys(
        self, key_ids: Iterable[str], *, usages: Iterable[KeyUsage] | None = None,
        keystore: str = "keystore.hyok",
    ) -> None:
        manager = self.open_keystore(keystore)
        try:
            for key_id in key_ids:
                manager.create_key(key_id, usages)
        finally:
            manager.close()

    def credential_file(self, store: str) -> CredentialFile:
        return CredentialFile(self.root / "credentials" / f"{store}.sealed", self.sealer())

    def add_store_credentials(self, store: str) -> StoredCredential:
        """Create ``credentials/<store>.sealed`` with one new credential and return it."""
        credential = new_credential()
        self.credential_file(store).create([credential])
        self.credentials[store] = credential
        return credential

    def key_material(self, key_id: str, keystore: str = "keystore.hyok") -> bytes:
        """Read a key's AES key from the keystore file in the format that kmi/file.py documents."""
        blob = (self.root / keystore).read_bytes()
        document = json.loads(self.sealer().unseal(blob, purpose=KEYSTORE_PURPOSE))
        material = base64.b64decode(document["keys"][key_id]["material"])
        register_sensitive(material)
        return material

    def write_config(
        self,
        *,
        keystores: Sequence[Mapping[str, object]],
        backends: Mapping[str, Mapping[str, object]] | None = None,
        server: Mapping[str, object] | None = None,
    ) -> ProxySettings:
        """Replace ``xki.toml`` with these sections, then load it as the proxy does."""
        server_table: dict[str, object] = {
            "host": "127.0.0.1",
            "port": 0,
            "cert_file": "tls/server.pem",
            "key_file": "tls/server-key.pem",
        }
        server_table.update(server or {})
        lines = ['secrets = { file = "secrets/passphrase" }', "", "[server]"]
        lines += [f"{name} = {_toml(value)}" for name, value in server_table.items()]
        lines += ["", "[audit]", 'file = "logs/audit.log"']
        for name, table in (backends or {"local": file_backend()}).items():
            lines += ["", f"[backends.{name}]"]
            lines += [f"{key} = {_toml(value)}" for key, value in table.items()]
        for entry in keystores:
            lines += ["", "[[keystores]]"]
            lines += [f"{key} = {_toml(value)}" for key, value in entry.items()]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return load_settings(self.config_path)


def new_credential() -> StoredCredential:
    credential = generate_credential()
    register_sensitive(credential.credential.secret.reveal())
    return credential


def init_data_dir(directory: Path, *, key_id: str = DEFAULT_KEY_ID) -> DataDir:
    """Run ``initialise`` in ``directory`` and register the secrets it wrote."""
    result = initialise(InitOptions(directory=directory, key_id=key_id, kdf_cost=KDF_COST))
    passphrase = (directory / "secrets" / "passphrase").read_text(encoding="utf-8").strip()
    register_sensitive(passphrase)
    register_sensitive((directory / "secrets" / "admin-token").read_text(encoding="utf-8").strip())
    register_sensitive(result.credential.credential.secret.reveal())
    return DataDir(
        root=directory,
        passphrase=Secret(passphrase),
        ca_file=result.ca_file,
        key_id=result.key_id,
        region=REGION,
        credentials={"default": result.credential},
    )


@pytest.fixture(scope="module")
def xks_data_dir(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    """A data directory from ``initialise`` with the key ``app-1``, one per test module."""
    return init_data_dir(tmp_path_factory.mktemp("xki"))


# ---------------------------------------------------------------------------
# Audit log and metrics


class AuditTrail:
    """Reader of the proxy's audit log file.

    The proxy writes the line after it has sent the response, so the readers
    wait briefly for lines to appear.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        text = self.path.read_text(encoding="ascii")
        return [json.loads(line) for line in text.splitlines() if line]

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = 3.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            matches = [event for event in self.events() if predicate(event)]
            if matches:
                assert len(matches) == 1, f"{len(matches)} audit lines match, expected one"
                return matches[0]
            if time.monotonic() > deadline:
                pytest.fail(f"no matching audit line within {timeout} s")
            time.sleep(0.01)

    def for_request(self, kms_request_id: str) -> dict[str, Any]:
        return self.wait_for(lambda event: event.get("kmsRequestId") == kms_request_id)

    def settled_count(self, *, quiet: float = 0.1, timeout: float = 3.0) -> int:
        """Count the lines once none has been added for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        count = len(self.events())
        while time.monotonic() < deadline:
            time.sleep(quiet)
            latest = len(self.events())
            if latest == count:
                break
            count = latest
        return count

    def wait_for_count(self, count: int, *, timeout: float = 3.0) -> list[dict[str, Any]]:
        """Wait until the log has at least ``count`` lines and return them all."""
        deadline = time.monotonic() + timeout
        while True:
            events = self.events()
            if len(events) >= count or time.monotonic() > deadline:
                return events
            time.sleep(0.01)


@dataclass(frozen=True)
class Metrics:
    """Samples of one ``/metrics`` scrape, by name and label set."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def labelled(self, name: str) -> list[tuple[dict[str, str], float]]:
        return [
            (dict(labels), value)
            for (sample_name, labels), value in self.samples.items()
            if sample_name == name
        ]


def parse_metrics(text: str) -> Metrics:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return Metrics(samples)


# ---------------------------------------------------------------------------
# Response checks


def describe(response: httpx.Response) -> str:
    """Summarise a response for an assertion message. Success bodies are never included."""
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} with a non-JSON body of {len(response.content)} bytes"
    if isinstance(body, dict) and "errorName" in body:
        return f"{response.status_code} {body['errorName']}: {body.get('errorMessage')}"
    shape = sorted(body) if isinstance(body, dict) else type(body).__name__
    return f"{response.status_code} with fields {shape}"


def expect_ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, f"expected 200, got {describe(response)}"
    content_type = response.headers.get("content-type")
    assert content_type == "application/json", f"content type {content_type!r}"
    body: dict[str, Any] = response.json()
    return body


def assert_xks_error(
    response: httpx.Response, status: int, error_name: str, *fragments: str
) -> str:
    """Check an XKS error response and return its message.

    The body must be exactly ``errorName`` and ``errorMessage``, and the
    message printable ASCII below 512 characters that contains each fragment.
    """
    # This module is not rewritten by pytest, so each assert carries its message.
    summary = describe(response)
    assert response.status_code == status, f"expected {status}, got {summary}"
    content_type = response.headers.get("content-type")
    assert content_type == "application/json", f"content type {content_type!r}"
    body = response.json()
    assert set(body) == {"errorName", "errorMessage"}, f"error body fields {sorted(body)}"
    assert body["errorName"] == error_name, f"expected {error_name}, got {summary}"
    message = body["errorMessage"]
    assert isinstance(message, str), f"errorMessage is a {type(message).__name__}"
    assert _PRINTABLE_ASCII.fullmatch(message), f"non-printable characters in {message!r}"
    assert 0 < len(message) < 512, f"errorMessage has {len(message)} characters"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} is not in the message {message!r}"
    return message


def assert_same_bytes(actual: bytes, expected: bytes, what: str = "plaintext") -> None:
    """Compare secret bytes. A failure message names only the lengths, never the values."""
    if not hmac.compare_digest(actual, expected):
        pytest.fail(f"{what} differs: {len(actual)} bytes, expected {len(expected)}")


# ---------------------------------------------------------------------------
# The client


class _Signer(botocore.auth.SigV4Auth):
    """botocore's SigV4 signer, optionally leaving some headers out of SignedHeaders."""

    def __init__(
        self, credentials: Credentials, service: str, region: str, excluded: Sequence[str]
    ) -> None:
        super().__init__(credentials, service, region)
        self._excluded = excluded

    def headers_to_sign(self, request: AWSRequest) -> Any:
        headers = super().headers_to_sign(request)
        for name in self._excluded:
            del headers[name]
        return headers


def _signing_time(clock_skew: float) -> datetime:
    """Now plus ``clock_skew`` seconds, rounded up to a whole second, naive UTC as botocore uses.

    X-Amz-Date has whole seconds. Rounding up keeps a positive skew at least
    as large as requested, and makes a negative one less than 1 s smaller.
    So the time a request spends in flight cannot push a skew of 299 s over
    the 300 s limit, or one of 301 s under it.
    """
    moment = datetime.now(UTC) + timedelta(seconds=clock_skew)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.replace(tzinfo=None)


class XksClient:
    """XKS requests to one key store of a running proxy, signed with botocore's SigV4 signer."""

    def __init__(
        self,
        base_url: str,
        *,
        ssl_context: ssl.SSLContext,
        credential: Credential | None,
        region: str,
        path_prefix: str = "",
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url
        self.path_prefix = path_prefix
        self.region = region
        self.credential = credential
        self.http = httpx.Client(
            base_url=base_url, verify=ssl_context, trust_env=False, timeout=timeout
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> XksClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def path(self, operation: str, key_id: str = DEFAULT_KEY_ID) -> str:
        """The URI path of an operation: "metadata", "encrypt", "decrypt" or "health"."""
        if operation == "health":
            return f"{self.path_prefix}/kms/xks/v1/health"
        return f"{self.path_prefix}/kms/xks/v1/keys/{key_id}/{operation}"

    def send(
        self,
        path: str,
        body: Mapping[str, Any] | bytes | None = None,
        *,
        method: str = "POST",
        content_type: str | None = "application/json",
        headers: Mapping[str, str] | None = None,
        signed: bool = True,
        credential: Credential | None = None,
        secret: str | None = None,
        region: str | None = None,
        service: str = SERVICE,
        clock_skew: float = 0.0,
        unsigned_headers: Sequence[str] = (),
        tampered_body: bytes | None = None,
        extra_headers: Mapping[str, str] | None = None,
        chunk_size: int | None = None,
    ) -> httpx.Response:
        """Send one request to ``path`` (which may carry a query string).

        ``headers`` are sent and signed. ``secret`` replaces the credential's
        secret access key, ``clock_skew`` shifts the signing time in seconds,
        ``unsigned_headers`` names headers to leave out of SignedHeaders, and
        ``tampered_body`` is sent in place of the signed body.
        ``extra_headers`` are added after signing, so they are not signed.
        ``chunk_size`` sends the body in chunks of that size, without a
        Content-Length header.
        """
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        sent: dict[str, str] = {}
        if content_type is not None:
            sent["Content-Type"] = content_type
        sent.update(headers or {})
        if signed:
            sent = self._sign(
                method,
                path,
                data or b"",
                sent,
                credential=credential or self.credential,
                secret=secret,
                region=region or self.region,
                service=service,
                clock_skew=clock_skew,
                unsigned_headers=unsigned_headers,
            )
        sent.update(extra_headers or {})
        content: bytes | Iterator[bytes] | None = (
            tampered_body if tampered_body is not None else data
        )
        if chunk_size is not None and isinstance(content, bytes):
            starts = range(0, len(content), chunk_size)
            content = iter([content[start : start + chunk_size] for start in starts])
        return self.http.request(method, path, content=content, headers=sent)

    def _sign(
        self,
        method: str,
        path: str,
        body: bytes,
        headers: dict[str, str],
        *,
        credential: Credential | None,
        secret: str | None,
        region: str,
        service: str,
        clock_skew: float,
        unsigned_headers: Sequence[str],
    ) -> dict[str, str]:
        assert credential is not None, "this client has no credential; pass signed=False"
        secret_text = secret if secret is not None else credential.secret.reveal()
        request = AWSRequest(method=method, url=self.base_url + path, data=body, headers=headers)
        signer = _Signer(
            Credentials(credential.access_key_id, secret_text), service, region, unsigned_headers
        )
        if clock_skew:
            with _CLOCK_PATCH_LOCK, mock.patch.object(
                botocore.auth, "get_current_datetime", return_value=_signing_time(clock_skew)
            ):
                signer.add_auth(request)
        else:
            signer.add_auth(request)
        return dict(request.headers.items())

    def raw(self, method: str, path: str, **options: Any) -> httpx.Response:
        """Send a request without a signature."""
        return self.http.request(method, path, **options)

    # Operations --------------------------------------------------------------

    def metadata(
        self, key_id: str = DEFAULT_KEY_ID, *, metadata: Mapping[str, str] | None = None,
        **options: Any,
    ) -> httpx.Response:
        body = {"requestMetadata": dict(metadata or request_metadata("DescribeKey"))}
        return self.send(self.path("metadata", key_id), body, **options)

    def health(
        self, *, metadata: Mapping[str, str] | None = None, **options: Any
    ) -> httpx.Response:
        # KMS health checks carry no principal or key ARN.
        document = metadata or {
            "kmsRequestId": str(uuid.uuid4()),
            "kmsOperation": "KmsHealthCheck",
        }
        return self.send(self.path("health"), {"requestMetadata": dict(document)}, **options)

    def encrypt(
        self,
        key_id: str,
        plaintext: bytes,
        *,
        aad: bytes | None = None,
        cdiv: bool = False,
        metadata: Mapping[str, str] | None = None,
        **options: Any,
    ) -> httpx.Response:
        body = encrypt_body(plaintext, aad=aad, cdiv=cdiv, metadata=metadata)
        return self.send(self.path("encrypt", key_id), body, **options)

    def decrypt(
        self,
        key_id: str,
        encrypted: Mapping[str, str],
        *,
        aad: bytes | None = None,
        metadata: Mapping[str, str] | None = None,
        **options: Any,
    ) -> httpx.Response:
        body = decrypt_body(encrypted, aad=aad, metadata=metadata)
        return self.send(self.path("decrypt", key_id), body, **options)

    def encrypt_ok(
        self, key_id: str, plaintext: bytes, *, aad: bytes | None = None, cdiv: bool = False
    ) -> dict[str, str]:
        return expect_ok(self.encrypt(key_id, plaintext, aad=aad, cdiv=cdiv))

    def decrypted(
        self, key_id: str, encrypted: Mapping[str, str], *, aad: bytes | None = None
    ) -> bytes:
        """Decrypt and return the plaintext, failing the test unless the proxy returns 200."""
        body = expect_ok(self.decrypt(key_id, encrypted, aad=aad))
        assert set(body) == {"plaintext"}, f"decrypt response fields {sorted(body)}"
        return unb64(body["plaintext"])

    def scrape_metrics(self) -> Metrics:
        response = self.raw("GET", "/metrics")
        assert response.status_code == 200, f"/metrics returned {response.status_code}"
        return parse_metrics(response.text)


# ---------------------------------------------------------------------------
# A running proxy


@dataclass
class RunningProxy:
    """A proxy served by uvicorn on 127.0.0.1, with the data directory it was built from."""

    url: str
    proxy: Proxy
    settings: ProxySettings
    data: DataDir
    audit: AuditTrail
    _clients: list[XksClient] = field(default_factory=list)

    def store(self, name: str) -> KeyStoreSettings:
        return self.settings.keystore(name)

    def client(
        self,
        store: str = "default",
        *,
        credential: Credential | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> XksClient:
        """A client of key store ``store``, signing with its first credential unless given one.

        The client is closed when the proxy stops.
        """
        settings = self.store(store)
        if credential is None and store in self.data.credentials:
            credential = self.data.credentials[store].credential
        client = XksClient(
            self.url,
            ssl_context=ssl_context or client_ssl_context(self.data.ca_file),
            credential=credential,
            region=settings.region,
            path_prefix=settings.path_prefix,
        )
        self._clients.append(client)
        return client

    def close_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()


@contextmanager
def run_proxy(
    data: DataDir,
    settings: ProxySettings,
    *,
    backends: Mapping[str, KeyManager] | None = None,
    http: Any = "httptools",
) -> Iterator[RunningProxy]:
    """Serve ``settings`` the way ``hyok xki serve`` does with one worker, on an ephemeral port."""
    proxy = Proxy(settings, backends=backends)
    server = settings.server
    context = server_ssl_context(
        server.cert_file,
        server.key_file,
        min_version=server.min_tls_version,
        client_ca_file=server.client_ca_file,
    )
    try:
        with serve_tls(XksApp(proxy), ssl_context=context, http=http, lifespan="on") as url:
            running = RunningProxy(
                url=url, proxy=proxy, settings=settings, data=data,
                audit=AuditTrail(Path(settings.audit.file)),
            )
            try:
                yield running
            finally:
                # Open keep-alive connections would hold up uvicorn's shutdown.
                running.close_clients()
    finally:
        proxy.close()


# ---------------------------------------------------------------------------
# Key manager wrappers that inject faults at the KMI interface


class WrappedKeyManager(KeyManager):
    """Forwards every call to ``inner``. Each subclass changes one behaviour."""

    def __init__(self, inner: KeyManager) -> None:
        self.inner = inner
        self.vendor = inner.vendor

    @property
    def capabilities(self) -> Capabilities:
        return self.inner.capabilities

    def create_key(
        self, key_id: str | None = None, usages: Iterable[KeyUsage] | None = None
    ) -> KeyInfo:
        return self.inner.create_key(key_id, usages)

    def describe_key(self, key_id: str) -> KeyInfo:
        return self.inner.describe_key(key_id)

    def list_keys(self) -> list[KeyInfo]:
        return self.inner.list_keys()

    def enable_key(self, key_id: str) -> KeyInfo:
        return self.inner.enable_key(key_id)

    def disable_key(self, key_id: str) -> KeyInfo:
        return self.inner.disable_key(key_id)

    def delete_key(self, key_id: str) -> None:
        self.inner.delete_key(key_id)

    def encrypt(self, key_id: str, plaintext: bytes, aad: bytes) -> EncryptResult:
        return self.inner.encrypt(key_id, plaintext, aad)

    def decrypt(self, key_id: str, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes:
        return self.inner.decrypt(key_id, iv, ciphertext, tag, aad)

    def health(self) -> list[FleetMember]:
        return self.inner.health()

    def close(self) -> None:
        self.inner.close()


class SlowKeyManager(WrappedKeyManager):
    """Sleeps ``delay`` seconds in each key operation and reports itself as blocking.

    Health checks are not delayed, so the proxy starts at once.
    """

    def __init__(self, inner: KeyManager, delay: float) -> None:
        super().__init__(inner)
        self.delay = delay

    @property
    def capabilities(self) -> Capabilities:
        return dataclasses.replace(self.inner.capabilities, blocking=True)

    def describe_key(self, key_id: str) -> KeyInfo:
        time.sleep(self.delay)
        return super().describe_key(key_id)

    def encrypt(self, key_id: str, plaintext: bytes, aad: bytes) -> EncryptResult:
        time.sleep(self.delay)
        return super().encrypt(key_id, plaintext, aad)

    def decrypt(self, key_id: str, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes:
        time.sleep(self.delay)
        return super().decrypt(key_id, iv, ciphertext, tag, aad)


class FailingKeyManager(WrappedKeyManager):
    """Raises ``make_error()`` from describe_key, encrypt and decrypt."""

    def __init__(self, inner: KeyManager, make_error: Callable[[], Exception]) -> None:
        super().__init__(inner)
        self.make_error = make_error

    def describe_key(self, key_id: str) -> KeyInfo:
        raise self.make_error()

    def encrypt(self, key_id: str, plaintext: bytes, aad: bytes) -> EncryptResult:
        raise self.make_error()

    def decrypt(self, key_id: str, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes:
        raise self.make_error()


class FleetKeyManager(WrappedKeyManager):
    """Reports the fixed fleet ``members`` from health()."""

    def __init__(self, inner: KeyManager, members: Sequence[FleetMember]) -> None:
        super().__init__(inner)
        self.members = list(members)

    def health(self) -> list[FleetMember]:
        return list(self.members)


class HealthCountingKeyManager(WrappedKeyManager):
    """Counts the deep health checks that reach the backend."""

    def __init__(self, inner: KeyManager) -> None:
        super().__init__(inner)
        self._lock = threading.Lock()
        self.health_calls = 0

    def health(self) -> list[FleetMember]:
        with self._lock:
            self.health_calls += 1
        return super().health()
