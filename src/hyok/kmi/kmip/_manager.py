"""The KMIP backend: AES-256 keys on a KMIP server behind the KeyManager interface."""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from hyok.common.errors import (
    ConfigError,
    HyokError,
    InternalError,
    InvalidKeyUsageError,
    InvalidStateError,
    KeyAlreadyExistsError,
    KeyNotFoundError,
)
from hyok.common.ids import generate_key_id, is_valid_key_id
from hyok.common.secrets import Secret, read_secret
from hyok.kmi._inputs import CRYPTO_USAGES, check_data, checked_key_id, checked_usages
from hyok.kmi.base import (
    Capabilities,
    EncryptResult,
    FleetMember,
    HealthStatus,
    KeyInfo,
    KeyManager,
    KeyUsage,
)
from hyok.kmi.kmip import _protocol as kmip
from hyok.kmi.kmip._connection import (
    ConnectionBrokenError,
    ConnectionPool,
    ServerAddress,
    tls_context,
)
from hyok.kmi.kmip._errors import Operation, decrypt_failed, request_error
from hyok.kmi.kmip._objects import (
    DISABLED_VALUE,
    FINAL_STATES,
    HEALTH_KEY_NAME,
    MARKER_PREFIX,
    is_aes_256,
    key_info,
    marker_name,
    usages_of,
)
from hyok.kmi.kmip._protocol import KmipResultError, ObjectAttributes

if TYPE_CHECKING:
    from hyok.xki.settings import KmipBackendSettings

__all__ = ["KmipKeyManager"]

logger = logging.getLogger(__name__)

_IV_BYTES: Final = 12
_TAG_BYTES: Final = 16
_DECRYPT_IV_LENGTHS: Final = frozenset({12, 16})
# Retries of one request after a broken connection; the deadline may end them earlier.
_MAX_RETRIES: Final = 2
# Bound of the objects one Locate returns, for list_keys and duplicate checks.
_MAX_LISTED: Final = 10_000
_MAX_CACHED_KEYS: Final = 4096
_HEALTH_DEADLINE_SECONDS: Final = 5.0
_NEEDED_OPERATIONS: Final = frozenset(
    {
        "CREATE",
        "ACTIVATE",
        "LOCATE",
        "GET_ATTRIBUTES",
        "REGISTER",
        "REVOKE",
        "DESTROY",
        "ENCRYPT",
        "DECRYPT",
    }
)
_DESTROYED: Final = frozenset({"DESTROYED", "DESTROYED_COMPROMISED"})


@dataclass(frozen=True, slots=True)
class _Key:
    """A key's Unique Identifier and the attributes read when it was found."""

    uid: str
    attributes: ObjectAttributes


class KmipKeyManager(KeyManager):
    """A key manager whose AES-256 keys live on a KMIP server, found by their Name attribute.

    The server performs every AES-GCM operation; key material never leaves
    it. The backend keeps a bounded pool of TLS connections authenticated by
    a client certificate, caches each key's Unique Identifier, and reads the
    key state (see :mod:`._objects`) at most every ``state_cache_seconds``.

    Example::

        context = tls_context(Path("ca.pem"), Path("client.pem"), Path("key.pem"), None)
        manager = KmipKeyManager(ServerAddress("kmip.example.internal", 5696), context)
        manager.create_key("payments")
    """

    def __init__(
        self,
        address: ServerAddress,
        context: ssl.SSLContext,
        *,
        max_connections: int = 8,
        connect_timeout_seconds: float = 2.0,
        retry_deadline_seconds: float = 0.18,
        manage_deadline_seconds: float = 10.0,
        state_cache_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Connect and probe the server; raise ConfigError naming what is wrong."""
        self._address = address
        self._clock = clock
        self._retry_deadline = retry_deadline_seconds
        self._manage_deadline = manage_deadline_seconds
        self._state_cache = state_cache_seconds

        self._pool = ConnectionPool(
            address,
            context,
            max_connections=max_connections,
            connect_timeout=connect_timeout_seconds,
            clock=clock,
        )

        self._keys: dict[str, _Key] = {}
        self._marked: dict[str, tuple[bool, float]] = {}
        self._health_key: str | None = None

        self.member_id = f"kmip:{address.describe()}"
        #: Connection recoveries since the last health check, and the last failure.
        self._recoveries = 0
        self._last_failure = ""
        self.model = "KMIP server"

        self._probe()
        self._capabilities = Capabilities(
            usages=CRYPTO_USAGES,
            decrypt_iv_lengths=_DECRYPT_IV_LENGTHS,
            can_disable=True,
            can_delete=True,
            blocking=True,
            extra={"server": address.describe(), "model": self.model, "iv_source": "proxy RNG"},
        )

    @classmethod
    def from_settings(cls, settings: KmipBackendSettings, name: str) -> KmipKeyManager:
        """Open the server that a ``[backends.NAME]`` section of type "kmip" configures."""
        password: Secret | None = None
        if settings.key_password is not None:
            source = settings.key_password
            password = read_secret(
                env=source.env, file=source.file, what=f"client key password of backend {name!r}"
            )
        context = tls_context(settings.ca_file, settings.cert_file, settings.key_file, password)
        return cls(
            ServerAddress(settings.host, settings.port, settings.server_name),
            context,
            max_connections=settings.max_connections,
            connect_timeout_seconds=settings.connect_timeout_ms / 1000.0,
            retry_deadline_seconds=settings.retry_deadline_ms / 1000.0,
            manage_deadline_seconds=settings.manage_deadline_ms / 1000.0,
            state_cache_seconds=settings.state_cache_seconds,
        )

    def __repr__(self) -> str:
        return f"KmipKeyManager(server={self._address.describe()!r})"

    def __reduce__(self) -> str:
        raise TypeError("KmipKeyManager cannot be pickled; connect in each process")

    # -- start-up -----------------------------------------------------------------

    def _probe(self) -> None:
        """Check the server's operations and run an AES-GCM round trip with AAD, or raise."""
        where = f"KMIP server {self._address.describe()}"
        deadline = self._clock() + self._manage_deadline
        try:
            operations, vendor = kmip.server_information(self._send(kmip.query_server(), deadline))
        except (KmipResultError, ConnectionBrokenError) as exc:
            raise ConfigError(
                f"cannot use {where}: {request_error(exc, Operation.MANAGE, where).message}"
            ) from None
        missing = sorted(_NEEDED_OPERATIONS - operations) if operations else []
        if missing:
            raise ConfigError(
                f"{where} does not offer the KMIP operations {', '.join(missing)}; the KMIP "
                "backend needs them"
            )
        if vendor:
            self.vendor = vendor.split()[0][:64]
            self.model = vendor[:128]
        else:
            self.vendor = "KMIP"
        try:
            self._round_trip(deadline, check_aad=True)
        except HyokError as exc:
            raise ConfigError(f"the start-up test of {where} failed: {exc.message}") from None
        logger.info("KMIP server %s is ready: %s", self._address.describe(), self.model)

    # -- KeyManager ---------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def create_key(
        self, key_id: str | None = None, usages: Iterable[KeyUsage] | None = None
    ) -> KeyInfo:
        key_id = generate_key_id() if key_id is None else checked_key_id(key_id)
        usage_set = checked_usages(usages, "KMIP keys")
        deadline = self._deadline(manage=True)
        try:
            if self._locate(key_id, kmip.symmetric_key_type(), deadline):
                raise KeyAlreadyExistsError(
                    f"key {key_id!r} already exists on KMIP server {self._address.describe()}; "
                    "choose another key ID"
                )
            # A marker left by an earlier key with this ID must not disable the new one.
            self._remove_markers(key_id, deadline)
            uid = self._create_active_key(key_id, usage_set, deadline)
            attributes = self._attributes(uid, deadline)
        except (KmipResultError, ConnectionBrokenError) as exc:
            raise self._error(exc, Operation.MANAGE) from None
        self._remember(key_id, _Key(uid, attributes))
        self._marked[key_id] = (False, self._clock())
        logger.info("created key %s on KMIP server %s", key_id, self._address.describe())
        return key_info(key_id, attributes, marked=False)

    def describe_key(self, key_id: str) -> KeyInfo:
        key_id = checked_key_id(key_id)
        deadline = self._deadline(manage=True)
        try:
            key = self._refresh(key_id, deadline)
            marked = self._read_marker(key_id, deadline)
        except (KmipResultError, ConnectionBrokenError) as exc:
            raise self._error(exc, Operation.MANAGE) from None
        return key_info(key_id, key.attributes, marked)

    def list_keys(self) -> list[KeyInfo]:
        # NOTE: KMIP 1.x has no call that returns names with a Locate result, so
        # listing costs one Get Attributes per key and per marker.
        deadline = self._deadline(manage=True)
        try:
            disabled = set()
            for uid in self._locate(None, kmip.secret_data_type(), deadline):
                for name in self._attributes(uid, deadline, ["Name"]).names:
                    if name.startswith(MARKER_PREFIX):
                        disabled.add(name.removeprefix(MARKER_PREFIX))
            infos: dict[str, KeyInfo] = {}
            for uid in self._locate(None, kmip.symmetric_key_type(), deadline):
                attributes = self._attributes(uid, deadline)
                if not is_aes_256(attributes) or attributes.state in _DESTROYED:
                    continue
                for name in attributes.names:
                    if is_valid_key_id(name):
                        infos[name] = key_info(name, attributes, name in disabled)
        except (KmipResultError, ConnectionBrokenError) as exc:
            raise self._error(exc, Operation.MANAGE) from None
        return [infos[key_id] for key_id in sorted(infos)]

    def enable_key(self, key_id: str) -> KeyInfo:
        key_id = checked_key_id(key_id)
        deadline = self._deadline(manage=True)
        self._forget(key_id)
        try:
            key = self._find(key_id, deadline)
            state = key.attributes.state
            if state in FINAL_STATES:
                raise InvalidStateError(
                    f"key {key_id!r} is {state.title()} on the KMIP server, and KMIP cannot "
                    "make it Active again; create a new key"
                )
            if state == "PRE_ACTIVE":
                self._send(kmip.activate(key.uid), deadline)
                key = _Key(key.uid, self._attributes(key.uid, deadline))
            self._remove_markers(key_id, deadline)
        except (KmipResultError, ConnectionBrokenError) as exc:
            raise self._error(exc, Operation.MANAGE) from None
        self._remember(key_id, key)
        self._marked[key_id] = (False, self._clock())
        logger.info("enabled key %s on KMIP server %s", key_id, self._address.describe())
        return key_info(key_id, key.attributes, marked=False)

    def disable_key(self, key_id: str) -> KeyInfo:
        key_id = checked_key_id(key_id)
        deadline = self._deadline(manage=True)
        self._forget(key_id)
        try:
            key = self._find(key_id, deadline)
            if not self._locate(marker_name(key_id), kmip.secret_data_type(), deadline):
                self._send(kmip.register_secret(marker_name(key_id), DISABLED_VALUE), deadline)
        except (KmipResultError, ConnectionBrokenError) as exc:
            raise self._error(exc, Operation.MANAGE) from None
        self._remember(key_id, key)
        self._marked[key_id] = (True, self._clock())
        logger.info("disabled key %s on KMIP server %s", key_id, self._address.describe())
        return key_info(key_id, key.attributes, marked=True)

    def delete_key(self, key_id: str) -> None:
        key_id = checked_key_id(key_id)
        deadline = self._deadline(manage=True)
        self._forget(key_id)
        try:
            key = self._find(key_id, deadline)
            # KMIP forbids destroying an Active object: revoke it first.
            if key.attributes.state == "ACTIVE":
                self._send(kmip.revoke(key.uid), deadline)
            self._send(kmip.destroy(key.uid), deadline)
            self._remove_markers(key_id, deadline)
        except (KmipResultError, ConnectionBrokenError) as exc:
            raise self._error(exc, Operation.MANAGE) from None
        self._marked.pop(key_id, None)
        logger.info("deleted key %s from KMIP server %s", key_id, self._address.describe())

    def encrypt(self, key_id: str, plaintext: bytes, aad: bytes) -> EncryptResult:
        key_id = checked_key_id(key_id)
        check_data("plaintext", plaintext)
        check_data("AAD", aad)

        def encrypt_with(key: _Key, deadline: float) -> EncryptResult:
            # NOTE: the proxy draws the IV from the operating system's RNG, so that
            # every server gets a 12-byte IV; PyKMIP 0.11 would generate 16 bytes.
            iv = os.urandom(_IV_BYTES)
            payload = self._send(kmip.encrypt(key.uid, plaintext, iv, aad), deadline)
            ciphertext, tag = bytes(payload.data or b""), bytes(payload.auth_tag or b"")
            if len(tag) != _TAG_BYTES or len(ciphertext) != len(plaintext):
                raise InternalError(
                    f"KMIP server {self._address.describe()} returned an AES-GCM result of bad "
                    "length; it may not support the KMIP 1.4 Authenticated Encryption Tag"
                )
            return EncryptResult(iv=iv, ciphertext=ciphertext, tag=tag)

        result: EncryptResult = self._with_key(
            key_id, KeyUsage.ENCRYPT, Operation.ENCRYPT, encrypt_with
        )
        return result

    def decrypt(self, key_id: str, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes:
        key_id = checked_key_id(key_id)
        check_data("ciphertext", ciphertext)
        check_data("AAD", aad)
        if len(iv) not in _DECRYPT_IV_LENGTHS or len(tag) != _TAG_BYTES:
            raise decrypt_failed()

        def decrypt_with(key: _Key, deadline: float) -> bytes:
            payload = self._send(kmip.decrypt(key.uid, iv, ciphertext, tag, aad), deadline)
            return bytes(payload.data or b"")

        plaintext: bytes = self._with_key(key_id, KeyUsage.DECRYPT, Operation.DECRYPT, decrypt_with)
        return plaintext

    def health(self) -> list[FleetMember]:
        """Round-trip random data with AAD through AES-GCM on the server's health key.

        ACTIVE when the round trip succeeds, DEGRADED when it succeeds but a
        connection had to be reopened since the last check, UNAVAILABLE when
        it fails. ``detail`` names the failure.
        """
        try:
            self._round_trip(self._clock() + _HEALTH_DEADLINE_SECONDS, check_aad=False)
        except HyokError as exc:
            logger.error("KMIP server %s failed its health check: %s", self.member_id, exc.message)
            return [FleetMember(self.member_id, self.model, HealthStatus.UNAVAILABLE, exc.message)]
        recovered = self._recoveries > 0
        detail = f"recovered from {self._last_failure}" if recovered else ""
        self._recoveries = 0
        status = HealthStatus.DEGRADED if recovered else HealthStatus.ACTIVE
        return [FleetMember(self.member_id, self.model, status, detail)]

    def close(self) -> None:
        """Close the idle connections; connections in use close when they come back."""
        self._pool.close()

    # -- requests -----------------------------------------------------------------

    def _deadline(self, *, manage: bool = False) -> float:
        return self._clock() + (self._manage_deadline if manage else self._retry_deadline)

    def _send(self, request: tuple[Any, Any], deadline: float, *, retry: bool = True) -> Any:
        """Send a request, reopening a broken connection and retrying until ``deadline``."""
        operation, payload = request
        attempt = 0
        while True:
            try:
                return self._pool.call(operation, payload, deadline)
            except ConnectionBrokenError as exc:
                self._last_failure = str(exc)
                if not retry or attempt >= _MAX_RETRIES or self._clock() >= deadline:
                    raise
                attempt += 1
                self._recoveries += 1
                # A server restart breaks every pooled connection at once.
                self._pool.drop_idle()
                logger.warning(
                    "KMIP server %s: %s failed (%s); reconnecting, attempt %d",
                    self._address.describe(),
                    operation.name,
                    exc,
                    attempt + 1,
                )

    def _error(self, exc: BaseException, operation: Operation) -> HyokError:
        error = request_error(exc, operation, self._address.describe())
        if isinstance(exc, KmipResultError):
            # A failed decrypt is the caller's input, not a server fault.
            level = logging.WARNING if isinstance(error, InternalError) else logging.DEBUG
            logger.log(
                level,
                "KMIP server %s answered %s with %s: %s",
                self._address.describe(),
                exc.operation,
                exc.reason,
                exc.server_message,
            )
        return error

    def _with_key(
        self,
        key_id: str,
        usage: KeyUsage,
        operation: Operation,
        work: Callable[[_Key, float], Any],
    ) -> Any:
        """Run ``work`` with a usable key; re-find the key once when the server lost track of it."""
        deadline = self._deadline()
        for attempt in range(2):
            try:
                key = self._usable(key_id, usage, deadline)
                return work(key, deadline)
            except KmipResultError as exc:
                if exc.reason in ("ITEM_NOT_FOUND", "PERMISSION_DENIED") and attempt == 0:
                    # The key was deleted, revoked or recreated elsewhere since it was cached.
                    self._forget(key_id)
                    continue
                raise self._error(exc, operation) from None
            except ConnectionBrokenError as exc:
                raise self._error(exc, operation) from None
        raise InternalError(
            f"KMIP server {self._address.describe()} denied {operation.value} with key "
            f"{key_id!r} although the key is usable; check the client's permissions"
        )

    # -- keys and state -------------------------------------------------------------

    def _usable(self, key_id: str, usage: KeyUsage, deadline: float) -> _Key:
        key = self._keys.get(key_id) or self._find(key_id, deadline)
        self._remember(key_id, key)
        state = key.attributes.state
        if state != "ACTIVE" or self._is_marked(key_id, deadline):
            if state != "ACTIVE":
                # A key in another KMIP state is read again on the next request.
                self._keys.pop(key_id, None)
            raise InvalidStateError(
                f"key {key_id!r} is disabled; enable it with 'hyok kmi enable-key {key_id}'"
                if state in {"ACTIVE", "PRE_ACTIVE"}
                else f"key {key_id!r} is {state.title()} on the KMIP server and cannot be used"
            )
        usages = usages_of(key.attributes)
        if usage not in usages:
            allowed = ", ".join(sorted(usages)) or "none"
            raise InvalidKeyUsageError(
                f"key {key_id!r} does not allow {usage}; its usages are {allowed}. "
                f"Use a key created with the {usage} usage"
            )
        return key

    def _refresh(self, key_id: str, deadline: float) -> _Key:
        """Read the attributes of a key again, by its cached Unique Identifier when known.

        Reading by identifier avoids a Locate, which some servers (PyKMIP
        among them) run by scanning every object.
        """
        cached = self._keys.get(key_id)
        if cached is not None:
            try:
                attributes = self._attributes(cached.uid, deadline)
            except KmipResultError as exc:
                if exc.reason != "ITEM_NOT_FOUND":
                    raise
            else:
                if attributes.state not in _DESTROYED and key_id in attributes.names:
                    key = _Key(cached.uid, attributes)
                    self._remember(key_id, key)
                    return key
        self._keys.pop(key_id, None)
        key = self._find(key_id, deadline)
        self._remember(key_id, key)
        return key

    def _find(self, key_id: str, deadline: float) -> _Key:
        uids = self._locate(key_id, kmip.symmetric_key_type(), deadline)
        if not uids:
            raise KeyNotFoundError(
                f"key {key_id!r} not found on KMIP server {self._address.describe()}; check the "
                f"key ID, or create the key with 'hyok kmi create-key --key-id {key_id}'"
            )
        if len(uids) > 1:
            raise InternalError(
                f"key ID {key_id!r} names {len(uids)} symmetric keys on KMIP server "
                f"{self._address.describe()}; rename or destroy the duplicates"
            )
        attributes = self._attributes(uids[0], deadline)
        if attributes.state in _DESTROYED:
            raise KeyNotFoundError(
                f"key {key_id!r} was destroyed on KMIP server {self._address.describe()}"
            )
        if not is_aes_256(attributes):
            raise InvalidKeyUsageError(
                f"key {key_id!r} on KMIP server {self._address.describe()} is not an AES-256 "
                f"key ({attributes.algorithm} {attributes.length}); use an AES-256 key"
            )
        return _Key(uids[0], attributes)

    def _locate(self, name: str | None, object_type: Any, deadline: float) -> list[str]:
        return kmip.located_uids(self._send(kmip.locate(name, object_type, _MAX_LISTED), deadline))

    def _attributes(
        self, uid: str, deadline: float, names: list[str] | None = None
    ) -> ObjectAttributes:
        request = kmip.get_attributes(uid) if names is None else kmip.get_attributes(uid, names)
        return kmip.parse_attributes(self._send(request, deadline))

    def _is_marked(self, key_id: str, deadline: float) -> bool:
        cached = self._marked.get(key_id)
        if cached is not None and self._clock() - cached[1] < self._state_cache:
            return cached[0]
        return self._read_marker(key_id, deadline)

    def _read_marker(self, key_id: str, deadline: float) -> bool:
        marked = bool(self._locate(marker_name(key_id), kmip.secret_data_type(), deadline))
        if len(self._marked) >= _MAX_CACHED_KEYS:
            self._marked.clear()
        self._marked[key_id] = (marked, self._clock())
        return marked

    def _remove_markers(self, key_id: str, deadline: float) -> None:
        for uid in self._locate(marker_name(key_id), kmip.secret_data_type(), deadline):
            self._send(kmip.destroy(uid), deadline)

    def _create_active_key(self, name: str, usages: frozenset[KeyUsage], deadline: float) -> str:
        """Create and activate a key; destroy it again when activation fails."""
        mask = kmip.usage_mask_items(sorted(usages))
        try:
            created = self._send(kmip.create_aes_key(name, mask), deadline, retry=False)
            uid = str(created.unique_identifier)
        except ConnectionBrokenError:
            # The server may have created the key before the connection broke.
            uids = self._locate(name, kmip.symmetric_key_type(), deadline)
            if len(uids) != 1:
                created = self._send(kmip.create_aes_key(name, mask), deadline, retry=False)
                uids = [str(created.unique_identifier)]
            uid = uids[0]
        try:
            self._send(kmip.activate(uid), deadline)
        except (KmipResultError, ConnectionBrokenError):
            try:
                self._send(kmip.destroy(uid), deadline)
            except (KmipResultError, ConnectionBrokenError):
                logger.error(
                    "KMIP server %s: key %s (Unique Identifier %s) was created but neither "
                    "activated nor destroyed; destroy it on the server",
                    self._address.describe(),
                    name,
                    uid,
                )
            raise
        return uid

    def _remember(self, key_id: str, key: _Key) -> None:
        if len(self._keys) >= _MAX_CACHED_KEYS:
            self._keys.clear()
        self._keys[key_id] = key

    def _forget(self, key_id: str) -> None:
        self._keys.pop(key_id, None)
        self._marked.pop(key_id, None)

    # -- health -----------------------------------------------------------------------

    def _round_trip(self, deadline: float, *, check_aad: bool) -> None:
        """Encrypt and decrypt random data with AAD under the health key, creating it if needed."""
        try:
            uid = self._health_uid(deadline)
            block, aad = os.urandom(32), os.urandom(16)
            iv = os.urandom(_IV_BYTES)
            try:
                sealed = self._send(kmip.encrypt(uid, block, iv, aad), deadline)
            except KmipResultError as exc:
                if exc.reason != "ITEM_NOT_FOUND":
                    raise
                # The health key was destroyed on the server: make a new one.
                self._health_key = None
                uid = self._health_uid(deadline)
                sealed = self._send(kmip.encrypt(uid, block, iv, aad), deadline)
            ciphertext, tag = bytes(sealed.data or b""), bytes(sealed.auth_tag or b"")
            if len(tag) != _TAG_BYTES:
                raise InternalError(
                    f"KMIP server {self._address.describe()} returned no 16-byte "
                    "Authenticated Encryption Tag"
                )
            opened = self._send(kmip.decrypt(uid, iv, ciphertext, tag, aad), deadline)
            if bytes(opened.data or b"") != block:
                raise InternalError(
                    f"KMIP server {self._address.describe()} returned other data after an "
                    "AES-GCM round trip"
                )
            if check_aad:
                self._check_aad_bound(uid, iv, ciphertext, tag, deadline)
        except (KmipResultError, ConnectionBrokenError) as exc:
            raise self._error(exc, Operation.MANAGE) from None

    def _check_aad_bound(
        self, uid: str, iv: bytes, ciphertext: bytes, tag: bytes, deadline: float
    ) -> None:
        """Raise unless the server rejects a decrypt with other AAD: it must authenticate AAD."""
        try:
            self._send(kmip.decrypt(uid, iv, ciphertext, tag, b"other AAD"), deadline)
        except KmipResultError:
            return
        raise InternalError(
            f"KMIP server {self._address.describe()} ignores the Authenticated Encryption "
            "Additional Data of AES-GCM; the KMIP backend needs a server that authenticates it"
        )

    def _health_uid(self, deadline: float) -> str:
        if self._health_key is not None:
            return self._health_key
        uids = self._locate(HEALTH_KEY_NAME, kmip.symmetric_key_type(), deadline)
        for uid in uids:
            if self._attributes(uid, deadline).state == "ACTIVE":
                self._health_key = uid
                return uid
        uid = self._create_active_key(HEALTH_KEY_NAME, CRYPTO_USAGES, deadline)
        self._health_key = uid
        return uid
