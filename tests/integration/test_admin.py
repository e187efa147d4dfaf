"""The admin API served by uvicorn over TLS on 127.0.0.1, called with httpx."""

from __future__ import annotations

import base64
import logging
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import uvicorn
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from starlette.applications import Starlette

from hyok.common.errors import (
    InternalError,
    InvalidCiphertextError,
    InvalidKeyUsageError,
    InvalidStateError,
    KeyAlreadyExistsError,
    KeyNotFoundError,
)
from hyok.common.ids import generate_key_id, validate_key_id
from hyok.common.secrets import Secret
from hyok.kmi.base import (
    Capabilities,
    EncryptResult,
    FleetMember,
    HealthStatus,
    KeyInfo,
    KeyManager,
    KeySpec,
    KeyState,
    KeyUsage,
)
from hyok.xki.admin import MAX_BODY_BYTES, create_admin_app
from tests.conftest import register_sensitive

pytestmark = pytest.mark.integration

TOKEN = "admin-token-7c1d9e2b4a6f8035"
AUDIT_FIELDS = {"event", "action", "backend", "keyId", "outcome", "status", "latencyMs", "source"}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


# An in-memory backend with real AES-GCM, so the tests need no keystore file.


class MemoryKeyManager(KeyManager):
    vendor = "hyok-test"

    def __init__(self, capabilities: Capabilities | None = None) -> None:
        self._capabilities = capabilities or Capabilities(blocking=False)
        self._keys: dict[str, tuple[KeyInfo, bytes]] = {}
        self._lock = threading.Lock()
        self.call_threads: list[str] = []

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def _enter(self) -> None:
        self.call_threads.append(threading.current_thread().name)

    def _get(self, key_id: str) -> tuple[KeyInfo, bytes]:
        try:
            return self._keys[key_id]
        except KeyError:
            raise KeyNotFoundError(f"no key with ID {key_id!r} in the memory backend") from None

    def material(self, key_id: str) -> bytes:
        return self._keys[key_id][1]

    def create_key(
        self, key_id: str | None = None, usages: Iterable[KeyUsage] | None = None
    ) -> KeyInfo:
        self._enter()
        key_id = generate_key_id() if key_id is None else validate_key_id(key_id)
        chosen = frozenset(usages) if usages is not None else self._capabilities.usages
        with self._lock:
            if key_id in self._keys:
                raise KeyAlreadyExistsError(f"a key with ID {key_id!r} already exists")
            info = KeyInfo(key_id, KeySpec.AES_256, chosen, KeyState.ENABLED, datetime.now(UTC))
            material = AESGCM.generate_key(bit_length=256)
            register_sensitive(material)
            self._keys[key_id] = (info, material)
        return info

    def describe_key(self, key_id: str) -> KeyInfo:
        self._enter()
        return self._get(key_id)[0]

    def list_keys(self) -> list[KeyInfo]:
        self._enter()
        return [info for _, (info, _material) in sorted(self._keys.items())]

    def _set_state(self, key_id: str, state: KeyState) -> KeyInfo:
        with self._lock:
            info, material = self._get(key_id)
            changed = KeyInfo(info.key_id, info.spec, info.usages, state, info.created_at)
            self._keys[key_id] = (changed, material)
        return changed

    def enable_key(self, key_id: str) -> KeyInfo:
        self._enter()
        return self._set_state(key_id, KeyState.ENABLED)

    def disable_key(self, key_id: str) -> KeyInfo:
        self._enter()
        return self._set_state(key_id, KeyState.DISABLED)

    def delete_key(self, key_id: str) -> None:
        self._enter()
        with self._lock:
            self._get(key_id)
            del self._keys[key_id]

    def _usable(self, key_id: str, usage: KeyUsage) -> bytes:
        info, material = self._get(key_id)
        if info.state is not KeyState.ENABLED:
            raise InvalidStateError(f"key {key_id!r} is DISABLED; enable it first")
        if usage not in info.usages:
            raise InvalidKeyUsageError(f"key {key_id!r} lacks the {usage} usage")
        return material

    def encrypt(self, key_id: str, plaintext: bytes, aad: bytes) -> EncryptResult:
        material = self._usable(key_id, KeyUsage.ENCRYPT)
        iv = AESGCM.generate_key(bit_length=128)[:12]
        sealed = AESGCM(material).encrypt(iv, plaintext, aad)
        return EncryptResult(iv=iv, ciphertext=sealed[:-16], tag=sealed[-16:])

    def decrypt(self, key_id: str, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes:
        material = self._usable(key_id, KeyUsage.DECRYPT)
        try:
            return AESGCM(material).decrypt(iv, ciphertext + tag, aad)
        except InvalidTag:
            raise InvalidCiphertextError("the ciphertext cannot be decrypted") from None

    def health(self) -> list[FleetMember]:
        return [FleetMember("memory-0", "in-memory", HealthStatus.ACTIVE)]


class ExplodingKeyManager(MemoryKeyManager):
    """Fails every list with an exception that is not a HyokError."""

    def list_keys(self) -> list[KeyInfo]:
        raise RuntimeError("device path /dev/hsm0 reset by peer")


class BrokenDeviceKeyManager(MemoryKeyManager):
    """Fails every list the way a backend reports a device fault."""

    def list_keys(self) -> list[KeyInfo]:
        raise InternalError("the key manager device did not respond; check its cabling")


class BlockingKeyManager(MemoryKeyManager):
    """Holds create_key until the test sets ``release``."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def create_key(
        self, key_id: str | None = None, usages: Iterable[KeyUsage] | None = None
    ) -> KeyInfo:
        self.entered.set()
        self.release.wait(timeout=10)
        return super().create_key(key_id, usages)


# A live server per test, with certificates from one test CA.


@dataclass(frozen=True)
class Certificates:
    ca: trustme.CA
    cert_file: Path
    key_file: Path
    ca_file: Path

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@dataclass
class LiveAdmin:
    url: str
    backends: dict[str, MemoryKeyManager]
    audit_events: list[Mapping[str, object]]
    client: httpx.Client
    responses: list[httpx.Response] = field(default_factory=list)

    def call(
        self,
        method: str,
        path: str,
        *,
        token: str | None = TOKEN,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if token is not None:
            sent.setdefault("Authorization", f"Bearer {token}")
        response = self.client.request(method, path, headers=sent, **kwargs)
        self.responses.append(response)
        return response


class ServerThread:
    """uvicorn serving an ASGI app over TLS on an ephemeral loopback port."""

    def __init__(self, app: Starlette, certificates: Certificates, host: str = "127.0.0.1") -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.bind((host, 0))
        self.port: int = self.socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            ssl_certfile=str(certificates.cert_file),
            ssl_keyfile=str(certificates.key_file),
            log_config=None,
            access_log=False,
            lifespan="off",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self.socket]},
            name="admin-server",
            daemon=True,
        )

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the admin test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.socket.close()


def issue_certificates(directory: Path) -> Certificates:
    """Write a server certificate for 127.0.0.1, ::1 and localhost, and its test CA."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "::1", "localhost")
    paths = Certificates(
        ca=ca,
        cert_file=directory / "server.pem",
        key_file=directory / "server-key.pem",
        ca_file=directory / "ca.pem",
    )
    paths.cert_file.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(paths.key_file))
    ca.cert_pem.write_to_path(str(paths.ca_file))
    return paths


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return issue_certificates(tmp_path_factory.mktemp("admin-tls"))


ServeAdmin = Callable[..., LiveAdmin]


@pytest.fixture
def serve_admin(certificates: Certificates) -> Iterator[ServeAdmin]:
    """Start admin servers for one test; each call may pass its own backends and executor."""
    register_sensitive(TOKEN)
    stack: list[tuple[ServerThread, httpx.Client]] = []

    def start(
        backends: dict[str, MemoryKeyManager] | None = None,
        *,
        executor: Executor | None = None,
        audit: Callable[[Mapping[str, object]], None] | None = None,
    ) -> LiveAdmin:
        if backends is None:
            backends = {"local": MemoryKeyManager(), "hsm": MemoryKeyManager()}
        events: list[Mapping[str, object]] = []
        sink = audit if audit is not None else events.append
        app = create_admin_app(backends, token=Secret(TOKEN), audit=sink, executor=executor)
        server = ServerThread(app, certificates).__enter__()
        url = f"https://127.0.0.1:{server.port}"
        client = httpx.Client(
            base_url=url, verify=certificates.client_context(), trust_env=False, timeout=10
        )
        stack.append((server, client))
        return LiveAdmin(url=url, backends=backends, audit_events=events, client=client)

    yield start
    for server, client in reversed(stack):
        client.close()
        server.__exit__(None, None, None)


@pytest.fixture
def admin(serve_admin: ServeAdmin) -> LiveAdmin:
    return serve_admin()


def assert_error(response: httpx.Response, status: int, code: str, *fragments: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == code
    for fragment in fragments:
        assert fragment in body["message"]
    message: str = body["message"]
    return message


# Routes.


def test_list_backends(admin: LiveAdmin) -> None:
    response = admin.call("GET", "/v1/backends")

    assert response.status_code == 200
    backends = response.json()["backends"]
    assert [entry["name"] for entry in backends] == ["hsm", "local"]
    local = backends[1]
    assert local["vendor"] == "hyok-test"
    assert local["capabilities"] == {
        "usages": ["ENCRYPT", "DECRYPT"],
        "decryptIvLengths": [12, 16],
        "canDisable": True,
        "canDelete": True,
        "blocking": False,
        "extra": {},
    }


def test_create_key_generated_id(admin: LiveAdmin) -> None:
    response = admin.call("POST", "/v1/backends/local/keys")

    assert response.status_code == 201
    key = response.json()
    assert set(key) == {"keyId", "keySpec", "keyUsage", "keyStatus", "createdAt"}
    assert uuid.UUID(key["keyId"])
    assert key["keySpec"] == "AES_256"
    assert key["keyUsage"] == ["ENCRYPT", "DECRYPT"]
    assert key["keyStatus"] == "ENABLED"
    assert ISO_UTC.fullmatch(key["createdAt"])
    assert response.headers["location"] == f"/v1/backends/local/keys/{key['keyId']}"
    assert admin.backends["local"].describe_key(key["keyId"]).state is KeyState.ENABLED


def test_create_key_with_id_and_usages(admin: LiveAdmin) -> None:
    response = admin.call(
        "POST",
        "/v1/backends/local/keys",
        json={"keyId": "orders-2024", "usages": ["DECRYPT", "ENCRYPT", "DECRYPT"]},
    )

    assert response.status_code == 201
    assert response.json()["keyId"] == "orders-2024"
    assert response.json()["keyUsage"] == ["ENCRYPT", "DECRYPT"]
    assert admin.backends["local"].describe_key("orders-2024").usages == {
        KeyUsage.ENCRYPT,
        KeyUsage.DECRYPT,
    }
    assert "orders-2024" not in {info.key_id for info in admin.backends["hsm"].list_keys()}


def test_create_key_null_fields_mean_defaults(admin: LiveAdmin) -> None:
    response = admin.call("POST", "/v1/backends/local/keys", json={"keyId": None, "usages": None})

    assert response.status_code == 201
    assert uuid.UUID(response.json()["keyId"])
    assert response.json()["keyUsage"] == ["ENCRYPT", "DECRYPT"]


def test_list_keys_ordered(admin: LiveAdmin) -> None:
    for key_id in ("b-key", "a-key", "c-key"):
        admin.call("POST", "/v1/backends/local/keys", json={"keyId": key_id})

    response = admin.call("GET", "/v1/backends/local/keys")

    assert response.status_code == 200
    body = response.json()
    assert body["backend"] == "local"
    assert [key["keyId"] for key in body["keys"]] == ["a-key", "b-key", "c-key"]
    assert admin.call("GET", "/v1/backends/hsm/keys").json() == {"backend": "hsm", "keys": []}


def test_describe_key(admin: LiveAdmin) -> None:
    created = admin.call("POST", "/v1/backends/local/keys", json={"keyId": "k1"}).json()

    response = admin.call("GET", "/v1/backends/local/keys/k1")

    assert response.status_code == 200
    assert response.json() == created


def test_disable_then_enable_key(admin: LiveAdmin) -> None:
    admin.call("POST", "/v1/backends/local/keys", json={"keyId": "k1"})
    backend = admin.backends["local"]

    disabled = admin.call("POST", "/v1/backends/local/keys/k1/disable")
    assert disabled.status_code == 200
    assert disabled.json()["keyStatus"] == "DISABLED"
    with pytest.raises(InvalidStateError):
        backend.encrypt("k1", b"data", b"")

    enabled = admin.call("POST", "/v1/backends/local/keys/k1/enable", json={})
    assert enabled.status_code == 200
    assert enabled.json()["keyStatus"] == "ENABLED"
    result = backend.encrypt("k1", b"data", b"aad")
    assert backend.decrypt("k1", result.iv, result.ciphertext, result.tag, b"aad") == b"data"


def test_delete_key(admin: LiveAdmin) -> None:
    admin.call("POST", "/v1/backends/local/keys", json={"keyId": "k1"})

    response = admin.call("DELETE", "/v1/backends/local/keys/k1")

    assert response.status_code == 204
    assert response.content == b""
    assert admin.backends["local"].list_keys() == []
    assert_error(admin.call("GET", "/v1/backends/local/keys/k1"), 404, "KeyNotFoundException", "k1")


def test_dot_key_ids_reach_the_backend(admin: LiveAdmin) -> None:
    # "." and ".." are valid key IDs; percent-encoding keeps URL parsers from removing them.
    for key_id, segment in ((".", "%2E"), ("..", "%2E%2E")):
        admin.call("POST", "/v1/backends/local/keys", json={"keyId": key_id})
        response = admin.call("GET", f"/v1/backends/local/keys/{segment}")
        assert response.status_code == 200, response.text
        assert response.json()["keyId"] == key_id


def test_responses_forbid_caching(admin: LiveAdmin) -> None:
    assert admin.call("GET", "/v1/backends").headers["cache-control"] == "no-store"
    assert admin.call("GET", "/v1/backends", token=None).headers["cache-control"] == "no-store"


def test_responses_never_contain_key_material(admin: LiveAdmin) -> None:
    created = admin.call("POST", "/v1/backends/local/keys").json()
    admin.call("GET", "/v1/backends/local/keys")
    admin.call("GET", f"/v1/backends/local/keys/{created['keyId']}")
    admin.call("POST", f"/v1/backends/local/keys/{created['keyId']}/disable")
    material = admin.backends["local"].material(created["keyId"])

    encodings = [
        material.hex(),
        base64.b64encode(material).decode(),
        base64.urlsafe_b64encode(material).decode(),
    ]
    for response in admin.responses:
        for encoded in encodings:
            assert encoded not in response.text
    for event in admin.audit_events:
        for encoded in encodings:
            assert encoded not in repr(event)


# Authentication.


@pytest.mark.parametrize(
    ("header", "challenge"),
    [
        (None, 'Bearer realm="hyok-admin"'),
        (f"Bearer {TOKEN}x", 'Bearer realm="hyok-admin", error="invalid_token"'),
        (f"Bearer {TOKEN[:-1]}", 'Bearer realm="hyok-admin", error="invalid_token"'),
        ("Bearer", 'Bearer realm="hyok-admin"'),
        (
            f"Basic {base64.b64encode(f'admin:{TOKEN}'.encode()).decode()}",
            'Bearer realm="hyok-admin"',
        ),
        (f"Token {TOKEN}", 'Bearer realm="hyok-admin"'),
        (TOKEN, 'Bearer realm="hyok-admin"'),
    ],
    ids=[
        "missing",
        "wrong-token",
        "truncated-token",
        "scheme-only",
        "basic-scheme",
        "token-scheme",
        "no-scheme",
    ],
)
def test_authentication_failures(admin: LiveAdmin, header: str | None, challenge: str) -> None:
    headers = {} if header is None else {"Authorization": header}

    response = admin.call("POST", "/v1/backends/local/keys", token=None, headers=headers)

    message = assert_error(response, 401, "AuthenticationFailedException")
    assert "bearer" in message.lower()
    assert response.headers["www-authenticate"] == challenge
    assert TOKEN not in response.text
    assert admin.backends["local"].call_threads == []
    assert admin.backends["local"].list_keys() == []
    [event] = admin.audit_events
    assert event["outcome"] == "AuthenticationFailedException"
    assert event["status"] == 401
    assert event["action"] == "CreateKey"
    assert TOKEN not in repr(event)
    assert TOKEN[:-1] not in repr(event)


def test_bearer_scheme_is_case_insensitive(admin: LiveAdmin) -> None:
    response = admin.call(
        "GET", "/v1/backends", token=None, headers={"Authorization": f"bearer {TOKEN}"}
    )

    assert response.status_code == 200


def test_authentication_precedes_routing(admin: LiveAdmin) -> None:
    unknown_path = admin.call("GET", "/v2/anything", token=None)
    wrong_method = admin.call("PUT", "/v1/backends", token="wrong")
    unknown_backend = admin.call("GET", "/v1/backends/nope/keys", token=None)

    assert_error(unknown_path, 401, "AuthenticationFailedException")
    assert_error(wrong_method, 401, "AuthenticationFailedException")
    assert_error(unknown_backend, 401, "AuthenticationFailedException")
    assert "nope" not in unknown_backend.text
    assert len(admin.audit_events) == 3


def test_failed_authentication_is_logged_without_token(
    admin: LiveAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    admin.call("GET", "/v1/backends", token="guess-" + TOKEN)
    admin.call("GET", "/v1/backends")

    assert TOKEN not in caplog.text
    assert "-> 401" in caplog.text
    assert "-> 200" in caplog.text


# Errors.


def test_unknown_backend_names_configured_ones(admin: LiveAdmin) -> None:
    response = admin.call("GET", "/v1/backends/nope/keys")

    assert_error(response, 404, "InvalidUriPathException", "'nope'", "hsm, local")


def test_unknown_backend_on_every_key_route(admin: LiveAdmin) -> None:
    for method, path in [
        ("POST", "/v1/backends/nope/keys"),
        ("GET", "/v1/backends/nope/keys/k1"),
        ("POST", "/v1/backends/nope/keys/k1/enable"),
        ("POST", "/v1/backends/nope/keys/k1/disable"),
        ("DELETE", "/v1/backends/nope/keys/k1"),
    ]:
        assert_error(admin.call(method, path), 404, "InvalidUriPathException", "hsm, local")


def test_unknown_key_on_every_key_route(admin: LiveAdmin) -> None:
    for method, path in [
        ("GET", "/v1/backends/local/keys/missing"),
        ("POST", "/v1/backends/local/keys/missing/enable"),
        ("POST", "/v1/backends/local/keys/missing/disable"),
        ("DELETE", "/v1/backends/local/keys/missing"),
    ]:
        assert_error(admin.call(method, path), 404, "KeyNotFoundException", "missing")


def test_duplicate_key_id_conflicts(admin: LiveAdmin) -> None:
    admin.call("POST", "/v1/backends/local/keys", json={"keyId": "k1"})

    response = admin.call("POST", "/v1/backends/local/keys", json={"keyId": "k1"})

    assert_error(response, 409, "KeyAlreadyExists", "k1")


def test_invalid_key_id_in_path(admin: LiveAdmin) -> None:
    response = admin.call("GET", "/v1/backends/local/keys/bad%20key%21")

    assert_error(response, 400, "ValidationException", "invalid key ID", "'bad key!'")
    assert admin.backends["local"].call_threads == []


def test_overlong_key_id_is_cut_in_messages(admin: LiveAdmin) -> None:
    long_id = "k" * 129

    response = admin.call("GET", f"/v1/backends/local/keys/{long_id}")

    assert_error(response, 400, "ValidationException", "1 to 128 characters")
    assert long_id not in response.text
    assert admin.audit_events[-1]["keyId"] == "k" * 128 + "..."


def test_unknown_path(admin: LiveAdmin) -> None:
    for path in ("/", "/v1", "/v1/backends/", "/v1/backends/local/keys/k1/rotate"):
        response = admin.call("GET", path)
        assert_error(response, 404, "InvalidUriPathException", "/v1/backends")
    assert [event["action"] for event in admin.audit_events] == ["Unknown"] * 4


def test_method_not_allowed(admin: LiveAdmin) -> None:
    response = admin.call("PUT", "/v1/backends/local/keys/k1")

    assert_error(response, 405, "MethodNotAllowed", "PUT", "DELETE, GET, HEAD")
    assert response.headers["allow"] == "DELETE, GET, HEAD"
    assert admin.audit_events[-1]["outcome"] == "MethodNotAllowed"


def test_get_on_enable_is_not_allowed(admin: LiveAdmin) -> None:
    admin.call("POST", "/v1/backends/local/keys", json={"keyId": "k1"})
    admin.call("POST", "/v1/backends/local/keys/k1/disable")

    response = admin.call("GET", "/v1/backends/local/keys/k1/enable")

    assert_error(response, 405, "MethodNotAllowed", "POST")
    assert admin.backends["local"].describe_key("k1").state is KeyState.DISABLED


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (b"{", ["not valid JSON", "line 1 column 2"]),
        (b"{'keyId': 'k1'}", ["not valid JSON"]),
        (b'["k1"]', ["JSON array", "JSON object"]),
        (b'"k1"', ["JSON string", "JSON object"]),
        (b"null", ["JSON null", "JSON object"]),
        (b'{"keyID": "k1"}', ["unknown field 'keyID'", "allowed fields: keyId, usages"]),
        (b'{"keyId": "k1", "material": "AAAA"}', ["unknown field 'material'"]),
        (b'{"keyId": 7}', ["keyId must be a string", "JSON number"]),
        (b'{"keyId": true}', ["keyId must be a string", "JSON boolean"]),
        (b'{"keyId": "bad key"}', ["invalid key ID 'bad key'"]),
        (b'{"keyId": ""}', ["invalid key ID ''"]),
        (b'{"usages": "ENCRYPT"}', ["usages must be a list", "JSON string"]),
        (b'{"usages": []}', ["usages must not be empty"]),
        (b'{"usages": ["ENCRYPT", "encrypt"]}', ["usages[1] is 'encrypt'", "ENCRYPT, DECRYPT"]),
        (b'{"usages": ["ENCRYPT", 3]}', ["usages[1] is a JSON number"]),
        (b'{"usages": ["SIGN"]}', ["does not support key usage SIGN", "ENCRYPT, DECRYPT"]),
        (b'{"keyId": "\xff"}', ["not valid UTF-8"]),
        (b"[" * 4000 + b"]" * 4000, ["nests too deeply"]),
    ],
    ids=[
        "truncated-json",
        "single-quotes",
        "array",
        "string",
        "null",
        "misspelled-field",
        "extra-field",
        "key-id-number",
        "key-id-boolean",
        "key-id-invalid",
        "key-id-empty",
        "usages-string",
        "usages-empty",
        "usages-lowercase",
        "usages-number",
        "usages-unsupported",
        "invalid-utf8",
        "deep-nesting",
    ],
)
def test_create_key_rejects_bad_body(
    admin: LiveAdmin, content: bytes, fragments: list[str]
) -> None:
    response = admin.call(
        "POST",
        "/v1/backends/local/keys",
        content=content,
        headers={"Content-Type": "application/json"},
    )

    assert_error(response, 400, "ValidationException", *fragments)
    assert admin.backends["local"].list_keys() == []
    assert admin.audit_events[-1]["outcome"] == "ValidationException"


def test_state_change_rejects_fields(admin: LiveAdmin) -> None:
    admin.call("POST", "/v1/backends/local/keys", json={"keyId": "k1"})

    response = admin.call("POST", "/v1/backends/local/keys/k1/disable", json={"force": True})

    assert_error(response, 400, "ValidationException", "unknown field 'force'", "send no body")
    assert admin.backends["local"].describe_key("k1").state is KeyState.ENABLED


def test_body_at_limit_is_accepted(admin: LiveAdmin) -> None:
    body = b'{"keyId": "k1"}'
    padded = body + b" " * (MAX_BODY_BYTES - len(body))

    response = admin.call("POST", "/v1/backends/local/keys", content=padded)

    assert response.status_code == 201


def test_body_over_limit_with_content_length(admin: LiveAdmin) -> None:
    body = b'{"keyId": "k1"}'
    padded = body + b" " * (MAX_BODY_BYTES + 1 - len(body))

    response = admin.call("POST", "/v1/backends/local/keys", content=padded)

    assert_error(response, 413, "PayloadTooLarge", f"{MAX_BODY_BYTES + 1} bytes", "8192 bytes")
    assert admin.backends["local"].list_keys() == []


def test_body_over_limit_chunked(admin: LiveAdmin) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"keyId": "k1", "pad": "'
        for _ in range(20):
            yield b"x" * 1024
        yield b'"}'

    response = admin.call("POST", "/v1/backends/local/keys", content=chunks())

    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_error(response, 413, "PayloadTooLarge", "8192 bytes")
    assert admin.backends["local"].list_keys() == []


def test_unsupported_state_change_and_delete(serve_admin: ServeAdmin) -> None:
    fixed = MemoryKeyManager(Capabilities(can_disable=False, can_delete=False, blocking=False))
    admin = serve_admin({"fixed": fixed})
    fixed.create_key("k1")

    for method, path in [
        ("POST", "/v1/backends/fixed/keys/k1/enable"),
        ("POST", "/v1/backends/fixed/keys/k1/disable"),
        ("DELETE", "/v1/backends/fixed/keys/k1"),
    ]:
        response = admin.call(method, path)
        assert_error(response, 501, "UnsupportedOperationException", "'fixed' cannot")
    assert fixed.describe_key("k1").state is KeyState.ENABLED


def test_unexpected_exception_is_generic(
    serve_admin: ServeAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    admin = serve_admin({"bad": ExplodingKeyManager()})
    caplog.set_level(logging.INFO, logger="hyok.xki.admin")

    response = admin.call("GET", "/v1/backends/bad/keys")

    message = assert_error(response, 500, "InternalException", "proxy log")
    assert "/dev/hsm0" not in message
    assert "/dev/hsm0" in caplog.text
    assert "ListKeys" in caplog.text
    assert admin.audit_events[-1]["outcome"] == "InternalException"
    assert "/dev/hsm0" not in repr(admin.audit_events)


def test_backend_error_keeps_its_message(serve_admin: ServeAdmin) -> None:
    admin = serve_admin({"broken": BrokenDeviceKeyManager()})

    response = admin.call("GET", "/v1/backends/broken/keys")

    assert_error(response, 500, "InternalException", "device did not respond")


# Threads and the event loop.


def test_backend_calls_run_in_given_executor(serve_admin: ServeAdmin) -> None:
    backend = MemoryKeyManager()
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="admin-pool") as pool:
        admin = serve_admin({"local": backend}, executor=pool)
        admin.call("POST", "/v1/backends/local/keys", json={"keyId": "k1"})
        admin.call("GET", "/v1/backends/local/keys")
        admin.call("GET", "/v1/backends/local/keys/k1")
        admin.call("POST", "/v1/backends/local/keys/k1/disable")
        admin.call("DELETE", "/v1/backends/local/keys/k1")

    assert len(backend.call_threads) == 5
    assert all(name.startswith("admin-pool") for name in backend.call_threads)


def test_backend_calls_leave_event_loop_by_default(admin: LiveAdmin) -> None:
    admin.call("POST", "/v1/backends/local/keys", json={"keyId": "k1"})
    admin.call("GET", "/v1/backends/local/keys")

    threads = admin.backends["local"].call_threads
    assert len(threads) == 2
    assert "admin-server" not in threads


def test_slow_backend_does_not_block_other_requests(serve_admin: ServeAdmin) -> None:
    slow = BlockingKeyManager()
    admin = serve_admin({"slow": slow, "local": MemoryKeyManager()})
    outcome: list[httpx.Response] = []
    creator = threading.Thread(
        target=lambda: outcome.append(admin.call("POST", "/v1/backends/slow/keys")),
    )
    creator.start()
    try:
        assert slow.entered.wait(timeout=10)
        started = time.monotonic()
        listed = admin.call("GET", "/v1/backends/local/keys")
        elapsed = time.monotonic() - started
        assert listed.status_code == 200
        assert elapsed < 5
        assert not outcome
    finally:
        slow.release.set()
        creator.join(timeout=10)
    assert outcome[0].status_code == 201


# Audit.


def test_audit_events_for_each_call(admin: LiveAdmin) -> None:
    created = admin.call("POST", "/v1/backends/local/keys").json()
    generated = created["keyId"]
    admin.call("GET", "/v1/backends")
    admin.call("GET", "/v1/backends/local/keys")
    admin.call("GET", f"/v1/backends/local/keys/{generated}")
    admin.call("POST", f"/v1/backends/local/keys/{generated}/disable")
    admin.call("POST", f"/v1/backends/local/keys/{generated}/enable")
    admin.call("DELETE", f"/v1/backends/local/keys/{generated}")
    admin.call("GET", f"/v1/backends/local/keys/{generated}")
    admin.call("POST", "/v1/backends/hsm/keys", json={"keyId": "named"}, token="wrong")

    events = admin.audit_events
    summary = [(e["action"], e["backend"], e["keyId"], e["outcome"], e["status"]) for e in events]
    assert summary == [
        ("CreateKey", "local", generated, "ok", 201),
        ("ListBackends", None, None, "ok", 200),
        ("ListKeys", "local", None, "ok", 200),
        ("DescribeKey", "local", generated, "ok", 200),
        ("DisableKey", "local", generated, "ok", 200),
        ("EnableKey", "local", generated, "ok", 200),
        ("DeleteKey", "local", generated, "ok", 204),
        ("DescribeKey", "local", generated, "KeyNotFoundException", 404),
        ("CreateKey", "hsm", None, "AuthenticationFailedException", 401),
    ]
    for event in events:
        assert set(event) == AUDIT_FIELDS
        assert event["event"] == "admin"
        assert event["source"] == "127.0.0.1"
        latency = event["latencyMs"]
        assert isinstance(latency, float)
        assert latency >= 0
        assert TOKEN not in repr(event)


def test_audit_names_requested_key_on_failed_create(admin: LiveAdmin) -> None:
    admin.call("POST", "/v1/backends/local/keys", json={"keyId": "k1"})
    admin.call("POST", "/v1/backends/local/keys", json={"keyId": "k1"})

    event = admin.audit_events[-1]
    assert event["keyId"] == "k1"
    assert event["outcome"] == "KeyAlreadyExists"


def test_audit_failure_keeps_response(
    serve_admin: ServeAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    def failing_audit(event: Mapping[str, object]) -> None:
        raise OSError("audit disk full")

    admin = serve_admin(audit=failing_audit)
    caplog.set_level(logging.INFO, logger="hyok.xki.admin")

    response = admin.call("POST", "/v1/backends/local/keys", json={"keyId": "k1"})

    assert response.status_code == 201
    assert "audit callback failed" in caplog.text
    assert "audit disk full" in caplog.text


def test_one_log_line_per_request(admin: LiveAdmin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hyok.xki.admin")

    admin.call("POST", "/v1/backends/local/keys", json={"keyId": "k1"})

    lines = [r.getMessage() for r in caplog.records if r.name == "hyok.xki.admin"]
    assert len(lines) == 1
    assert "POST /v1/backends/local/keys -> 201 ok" in lines[0]
    assert "action=CreateKey" in lines[0]
    assert "keyId=k1" in lines[0]
    assert TOKEN not in caplog.text


def test_repeated_bad_tokens_are_throttled() -> None:
    import asyncio

    from hyok.common.secrets import Secret as TokenSecret
    from hyok.xki.admin import create_admin_app

    token = "right-token-0123456789"
    app = create_admin_app({}, token=TokenSecret(token), audit=lambda event: None)

    async def run() -> tuple[list[int], httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.9", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="https://admin") as client:
            statuses = [
                (await client.get("/v1/backends",
                                  headers={"Authorization": "Bearer wrong"})).status_code
                for _ in range(11)
            ]
            blocked = await client.get("/v1/backends",
                                       headers={"Authorization": f"Bearer {token}"})
        return statuses, blocked

    statuses, blocked = asyncio.run(run())
    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429
    assert blocked.status_code == 429
    assert blocked.json()["code"] == "ThrottlingException"
    assert blocked.headers["retry-after"] == "60"
