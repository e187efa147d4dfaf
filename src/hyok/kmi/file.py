"""The file backend: AES-256 keys in one passphrase-sealed keystore file.

The keystore is a blob of :mod:`hyok.common.sealed` with purpose "keystore".
Its plaintext is a JSON document::

    {
      "format": 1,
      "keys": {
        "<key ID>": {
          "material": "<base64 of 32 random bytes>",
          "usages": ["DECRYPT", "ENCRYPT"],
          "state": "ENABLED",
          "created_at": "2024-05-01T12:00:00Z"
        }
      },
      "canary": {"material": "<base64>", "created_at": "<ISO-8601 UTC>"}
    }

The canary is the key that :meth:`FileKeyManager.health` tests. It is kept
apart from ``keys``, so no key ID reaches it.

Several processes may share one keystore, for example the proxy workers and an
admin command. Every change runs under a lock file beside the keystore
(``<name>.lock``): the writer rereads the file, applies the change and replaces
the file atomically with a rename. Readers serve from memory and compare the
file's device, inode, size and modification time on each operation, so a
change made by one process is seen by the next operation in every other.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

import filelock
from cryptography.exceptions import InvalidTag

from hyok.common.errors import (
    ConfigError,
    HyokError,
    InternalError,
    InvalidCiphertextError,
    InvalidKeyUsageError,
    InvalidStateError,
    KeyAlreadyExistsError,
    KeyNotFoundError,
    KeystoreCorruptError,
    ValidationError,
)
from hyok.common.fileio import atomic_write
from hyok.common.ids import generate_key_id, validate_key_id
from hyok.common.sealed import DEFAULT_KDF_COST, Sealer
from hyok.common.secrets import Secret, read_secret
from hyok.kmi._keystore_document import (
    CANARY_ID,
    KEY_USAGES,
    KEYSTORE_FORMAT,
    StoredKey,
    decode_document,
    encode_document,
    new_key,
)
from hyok.kmi.base import (
    Capabilities,
    EncryptResult,
    FleetMember,
    HealthStatus,
    KeyInfo,
    KeyManager,
    KeyState,
    KeyUsage,
)

if TYPE_CHECKING:
    from hyok.xki.settings import FileBackendSettings

__all__ = ["KEYSTORE_FORMAT", "KEYSTORE_PURPOSE", "FileKeyManager"]

logger = logging.getLogger(__name__)

KEYSTORE_PURPOSE: Final = "keystore"

_IV_BYTES: Final = 12
_TAG_BYTES: Final = 16
_DECRYPT_IV_LENGTHS: Final = frozenset({12, 16})
_MODEL: Final = f"hyok file keystore (format {KEYSTORE_FORMAT})"
# Maximum time in seconds that a writer waits for a lock held by another process.
_LOCK_TIMEOUT_SECONDS: Final = 30.0
# A key takes about 150 bytes (measured with 300 keys), so this allows roughly
# 400,000 keys.
_MAX_KEYSTORE_BYTES: Final = 64 << 20
_HEALTH_AAD: Final = b"hyok file keystore health check"
_DECRYPT_FAILED: Final = "decryption failed: the ciphertext, tag, IV or AAD does not match this key"

_T = TypeVar("_T")
# st_dev, st_ino, st_size and st_mtime_ns of the keystore file.
_Signature = tuple[int, int, int, int]


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The keystore as read from one version of the file. Instances are never changed."""

    signature: _Signature
    keys: Mapping[str, StoredKey]
    canary: StoredKey


# Built once: the proxy reads the capabilities on every request.
_CAPABILITIES: Final = Capabilities(
    usages=KEY_USAGES,
    decrypt_iv_lengths=_DECRYPT_IV_LENGTHS,
    can_disable=True,
    can_delete=True,
    blocking=False,
    extra={"keystore_format": str(KEYSTORE_FORMAT)},
)


class FileKeyManager(KeyManager):
    """A key manager that keeps its keys in one encrypted file.

    Encrypt, decrypt, describe and list run in memory after one ``os.stat``
    of the file, so :attr:`capabilities` reports ``blocking=False``. The first
    operation after another process changed the file rereads it, which costs
    one scrypt run when that process sealed it with a new salt. Create, enable,
    disable and delete write and fsync the file, so callers on an event loop
    run them in a thread. One instance is safe to share between threads.

    Example::

        manager = FileKeyManager.create_keystore(Path("keys.hyok"), Secret("passphrase"))
        key = manager.create_key("payments")
        result = manager.encrypt("payments", b"plaintext", aad=b"context")
    """

    vendor = "hyok"

    def __init__(self, path: Path, passphrase: Secret, *, kdf_cost: int = DEFAULT_KDF_COST) -> None:
        """Open an existing keystore.

        Raises ConfigError when the file is missing or unreadable, and the
        matching KeystoreError subclass when the passphrase is wrong or the
        file is damaged or too new. Nothing on disk is changed.
        """
        self._setup(Path(path), Sealer(passphrase, kdf_cost=kdf_cost))

    def _setup(self, path: Path, sealer: Sealer) -> None:
        self._path = path
        # Resolved once, so that processes naming the keystore through
        # different symbolic links share one lock file and a write replaces
        # the target file, not the link.
        self._file = Path(os.path.realpath(path))
        self._sealer = sealer
        self._lock = threading.RLock()
        self._file_lock = _file_lock(self._file)
        # The signature of a file version that failed to load, so that each
        # later request fails fast instead of rereading it.
        self._failed: tuple[_Signature, HyokError] | None = None
        # The last load failure written to the log, so that a broken file
        # produces one log line and not one per request.
        self._logged_failure: str | None = None
        self._snapshot: _Snapshot | None = None
        self._snapshot = self._read_file()

    @classmethod
    def create_keystore(
        cls, path: Path, passphrase: Secret, *, kdf_cost: int = DEFAULT_KDF_COST
    ) -> FileKeyManager:
        """Create a new keystore file with no customer keys, and open it.

        The file gets mode 0600 and a health canary key. Raises ConfigError
        when the file already exists or its directory does not.
        """
        path = Path(path)
        sealer = Sealer(passphrase, kdf_cost=kdf_cost)
        target = Path(os.path.realpath(path))
        if not target.parent.is_dir():
            raise ConfigError(
                f"cannot create keystore file {path}: the directory {target.parent} does not "
                "exist; create it first"
            )
        canary = new_key(CANARY_ID, KEY_USAGES)
        blob = sealer.seal(encode_document({}, canary), purpose=KEYSTORE_PURPOSE)

        with _acquire(_file_lock(target)):
            if os.path.lexists(target):
                raise ConfigError(
                    f"keystore file {path} already exists; open it instead, or choose another path"
                )
            _write_atomically(target, blob, min_mtime_ns=0)

        manager = cls.__new__(cls)
        manager._setup(path, sealer)
        return manager

    @classmethod
    def from_settings(cls, settings: FileBackendSettings) -> FileKeyManager:
        """Open the keystore that a ``[backends.NAME]`` section of type "file" configures."""
        passphrase = read_secret(
            env=settings.passphrase.env,
            file=settings.passphrase.file,
            what="keystore passphrase",
        )
        return cls(settings.path, passphrase, kdf_cost=settings.kdf_cost)

    @property
    def path(self) -> Path:
        """The keystore file, as given to the constructor."""
        return self._path

    def __repr__(self) -> str:
        return f"FileKeyManager(path={str(self._path)!r})"

    def __reduce__(self) -> str:
        raise TypeError("FileKeyManager cannot be pickled; open the keystore in each process")

    # -- KeyManager ---------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return _CAPABILITIES

    def create_key(
        self, key_id: str | None = None, usages: Iterable[KeyUsage] | None = None
    ) -> KeyInfo:
        key_id = generate_key_id() if key_id is None else validate_key_id(key_id)
        usage_set = _check_usages(usages)

        def add(keys: dict[str, StoredKey]) -> tuple[KeyInfo, bool]:
            if key_id in keys:
                raise KeyAlreadyExistsError(
                    f"key {key_id!r} already exists in the file keystore; choose another key ID"
                )
            key = new_key(key_id, usage_set)
            keys[key_id] = key
            return key.info, True

        info = self._change(add)
        logger.info("created key %s in keystore %s", key_id, self._path)
        return info

    def describe_key(self, key_id: str) -> KeyInfo:
        return _find(self._current().keys, key_id).info

    def list_keys(self) -> list[KeyInfo]:
        keys = self._current().keys
        return [keys[key_id].info for key_id in sorted(keys)]

    def enable_key(self, key_id: str) -> KeyInfo:
        return self._set_state(key_id, KeyState.ENABLED)

    def disable_key(self, key_id: str) -> KeyInfo:
        return self._set_state(key_id, KeyState.DISABLED)

    def delete_key(self, key_id: str) -> None:
        def remove(keys: dict[str, StoredKey]) -> tuple[None, bool]:
            _find(keys, key_id)
            del keys[key_id]
            return None, True

        self._change(remove)
        logger.info("deleted key %s from keystore %s", key_id, self._path)

    def encrypt(self, key_id: str, plaintext: bytes, aad: bytes) -> EncryptResult:
        key = self._usable_key(key_id, KeyUsage.ENCRYPT)
        iv = os.urandom(_IV_BYTES)
        sealed = key.cipher.encrypt(iv, plaintext, aad)
        return EncryptResult(iv=iv, ciphertext=sealed[:-_TAG_BYTES], tag=sealed[-_TAG_BYTES:])

    def decrypt(self, key_id: str, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes:
        key = self._usable_key(key_id, KeyUsage.DECRYPT)
        if len(iv) not in _DECRYPT_IV_LENGTHS or len(tag) != _TAG_BYTES:
            raise InvalidCiphertextError(_DECRYPT_FAILED)
        try:
            return key.cipher.decrypt(iv, b"".join((ciphertext, tag)), aad)
        except InvalidTag:
            raise InvalidCiphertextError(_DECRYPT_FAILED) from None

    def health(self) -> list[FleetMember]:
        """Round-trip a random block through the canary key and reread the file.

        Returns one ACTIVE member, or one UNAVAILABLE member whose ``detail``
        names the error class or system error.
        """
        member_id = f"file:{self._path.name}"
        try:
            canary = self._current().canary
            self._check_file_readable()
            block = os.urandom(32)
            iv = os.urandom(_IV_BYTES)
            sealed = canary.cipher.encrypt(iv, block, _HEALTH_AAD)
            if canary.cipher.decrypt(iv, sealed, _HEALTH_AAD) != block:
                raise InternalError("the canary round trip returned different data")
        except (HyokError, OSError, InvalidTag) as exc:
            detail = _short_reason(exc)
            logger.warning("health check of keystore %s failed: %s", self._path, detail)
            return [FleetMember(member_id, _MODEL, HealthStatus.UNAVAILABLE, detail=detail)]
        return [FleetMember(member_id, _MODEL, HealthStatus.ACTIVE)]

    def close(self) -> None:
        """Drop the cached keys. A later operation reads the file again."""
        with self._lock:
            self._snapshot = None

    # -- reading --------------------------------------------------------------

    def _current(self) -> _Snapshot:
        """Return the keystore as it is on disk, reloading it only when the file changed."""
        snapshot = self._snapshot
        if snapshot is not None:
            try:
                signature = _signature(os.stat(self._file))
            except OSError:
                signature = None
            if snapshot.signature == signature:
                return snapshot
        with self._lock:
            return self._reload_locked()

    def _reload_locked(self) -> _Snapshot:
        try:
            signature = _signature(os.stat(self._file))
        except OSError as exc:
            missing = ConfigError(self._unreadable(exc))
            raise self._read_failed(None, missing) from missing
        snapshot = self._snapshot
        if snapshot is not None and snapshot.signature == signature:
            return snapshot
        if self._failed is not None and self._failed[0] == signature:
            earlier = self._failed[1]
            raise self._read_failed(signature, earlier) from earlier
        try:
            snapshot = self._read_file()
        except ConfigError as exc:
            raise self._read_failed(signature, exc) from exc
        self._snapshot = snapshot
        self._failed = None
        if self._logged_failure is not None:
            logger.info("keystore %s is readable again", self._path)
            self._logged_failure = None
        return snapshot

    def _read_failed(self, signature: _Signature | None, error: HyokError) -> InternalError:
        # The log gets the cause. The caller gets a message without paths,
        # because it may end up in an API response.
        if error.message != self._logged_failure:
            logger.error("cannot load keystore %s: %s", self._path, error.message)
            self._logged_failure = error.message
        if signature is not None:
            self._failed = (signature, error)
        return InternalError(
            f"the file keystore cannot be read ({error.code}); the key manager's log names "
            "the file and the fix"
        )

    def _read_file(self) -> _Snapshot:
        where = f"keystore file {self._path}"
        try:
            with open(self._file, "rb") as stream:
                status = os.fstat(stream.fileno())
                if status.st_size > _MAX_KEYSTORE_BYTES:
                    raise KeystoreCorruptError(
                        f"{where} has {status.st_size} bytes, more than the maximum "
                        f"{_MAX_KEYSTORE_BYTES}; check that the path names a keystore"
                    )
                blob = stream.read(_MAX_KEYSTORE_BYTES + 1)
        except OSError as exc:
            raise ConfigError(self._unreadable(exc)) from None
        data = self._sealer.unseal(blob, purpose=KEYSTORE_PURPOSE, source=where)
        keys, canary = decode_document(data, where)
        return _Snapshot(signature=_signature(status), keys=keys, canary=canary)

    def _check_file_readable(self) -> None:
        where = f"keystore file {self._path}"
        try:
            blob = self._file.read_bytes()
        except OSError as exc:
            raise ConfigError(self._unreadable(exc)) from None
        self._sealer.unseal(blob, purpose=KEYSTORE_PURPOSE, source=where)

    def _unreadable(self, exc: OSError) -> str:
        if isinstance(exc, FileNotFoundError):
            return (
                f"keystore file {self._path} does not exist; check the backend path in the "
                "proxy configuration, or create a keystore with 'hyok xki init'"
            )
        return f"cannot read keystore file {self._path}: {exc.strerror}"

    def _usable_key(self, key_id: str, usage: KeyUsage) -> StoredKey:
        key = _find(self._current().keys, key_id)
        if key.info.state is not KeyState.ENABLED:
            raise InvalidStateError(
                f"key {key_id!r} is disabled; enable it with 'hyok kmi enable-key {key_id}'"
            )
        if usage not in key.info.usages:
            allowed = ", ".join(sorted(key.info.usages))
            raise InvalidKeyUsageError(
                f"key {key_id!r} does not allow {usage}; its usages are {allowed}. "
                f"Use a key created with the {usage} usage"
            )
        return key

    # -- writing --------------------------------------------------------------

    def _set_state(self, key_id: str, state: KeyState) -> KeyInfo:
        def update(keys: dict[str, StoredKey]) -> tuple[KeyInfo, bool]:
            key = _find(keys, key_id)
            if key.info.state is state:
                return key.info, False
            info = KeyInfo(
                key_id=key.info.key_id,
                spec=key.info.spec,
                usages=key.info.usages,
                state=state,
                created_at=key.info.created_at,
            )
            keys[key_id] = StoredKey(info=info, material=key.material, cipher=key.cipher)
            return info, True

        info = self._change(update)
        logger.info("set key %s in keystore %s to %s", key_id, self._path, state)
        return info

    def _change(self, apply: Callable[[dict[str, StoredKey]], tuple[_T, bool]]) -> _T:
        """Apply one change to the newest keystore on disk and write it back.

        ``apply`` edits the dictionary of keys in place and returns its result
        and whether it changed anything. If it raises, nothing is written.
        """
        # The file lock comes first, so that a writer waiting for another
        # process does not hold the thread lock that readers need to reload.
        with _acquire(self._file_lock), self._lock:
            current = self._reload_locked()
            keys = dict(current.keys)
            result, changed = apply(keys)
            if not changed:
                return result

            blob = self._sealer.seal(
                encode_document(keys, current.canary), purpose=KEYSTORE_PURPOSE
            )
            signature = _write_atomically(
                self._file,
                blob,
                # Readers detect a change by comparing stat signatures. A new
                # file could reuse the inode and size of an older version, so
                # the modification time must grow with every write.
                # NOTE: on a file system with coarse timestamps (FAT: 2 s) the
                # increment is rounded away, and only the inode and size
                # distinguish versions there.
                min_mtime_ns=current.signature[3] + 1,
            )
            self._snapshot = _Snapshot(signature=signature, keys=keys, canary=current.canary)
            return result


# -- helpers ---------------------------------------------------------------------


def _file_lock(keystore: Path) -> filelock.FileLock:
    return filelock.FileLock(
        str(keystore.with_name(keystore.name + ".lock")),
        timeout=_LOCK_TIMEOUT_SECONDS,
        mode=0o600,
    )


@contextlib.contextmanager
def _acquire(lock: filelock.FileLock) -> Iterator[None]:
    try:
        lock.acquire()
    except filelock.Timeout:
        raise InternalError(
            f"timed out after {_LOCK_TIMEOUT_SECONDS:.0f} s waiting for the keystore lock "
            f"file {lock.lock_file}; another process holds it"
        ) from None
    except OSError as exc:
        raise InternalError(
            f"cannot create the keystore lock file {lock.lock_file}: {exc.strerror}"
        ) from exc
    try:
        yield
    finally:
        lock.release()


def _write_atomically(path: Path, blob: bytes, *, min_mtime_ns: int) -> _Signature:
    """Replace ``path`` with ``blob`` so that readers see the old or the new file, never a mix.

    A new file gets mode 0600 and a replacement keeps the permissions of the
    file it replaces. On failure the temporary file is removed and ``path``
    is unchanged. Returns the signature of the new file.
    """
    try:
        status = atomic_write(path, blob, mode=0o600, preserve_mode=True, min_mtime_ns=min_mtime_ns)
    except OSError as exc:
        # atomic_write names ``path`` as the filename only when its os.stat failed.
        if exc.filename is not None and os.fspath(exc.filename) == os.fspath(path):
            raise InternalError(f"cannot read keystore file {path}: {exc.strerror}") from exc
        raise InternalError(f"cannot write keystore file {path}: {exc.strerror}") from exc
    return _signature(status)


def _signature(status: os.stat_result) -> _Signature:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns)


def _find(keys: Mapping[str, StoredKey], key_id: str) -> StoredKey:
    key = keys.get(key_id)
    if key is not None:
        return key
    # Stored IDs are all valid, so validation is needed only on this path.
    if not isinstance(key_id, str):
        raise ValidationError("the key ID must be a string")
    validate_key_id(key_id)
    raise KeyNotFoundError(f"key {key_id!r} not found in the file keystore; check the key ID")


def _check_usages(usages: Iterable[KeyUsage] | None) -> frozenset[KeyUsage]:
    if usages is None:
        return KEY_USAGES
    # A KeyUsage is a str, and iterating it would yield its letters.
    items = [usages] if isinstance(usages, str) else list(usages)
    allowed = " and ".join(sorted(KEY_USAGES))
    result: set[KeyUsage] = set()
    for item in items:
        if item not in KEY_USAGES:
            usage_text = str(item)[:20]
            raise ValidationError(
                f"unsupported key usage {usage_text!r}: the file keystore allows {allowed}"
            )
        result.add(KeyUsage(item))
    if not result:
        raise ValidationError(f"no key usage given: choose one or both of {allowed}")
    return frozenset(result)


def _short_reason(exc: BaseException) -> str:
    """Name a health-check failure in a few words that contain no secret or path."""
    if isinstance(exc, InternalError) and isinstance(exc.__cause__, HyokError):
        return f"keystore file cannot be read ({exc.__cause__.code})"
    if isinstance(exc, HyokError):
        return f"keystore file cannot be read ({exc.code})"
    if isinstance(exc, OSError):
        return f"keystore file cannot be read ({exc.strerror or type(exc).__name__})"
    return "canary encrypt and decrypt round trip failed"
