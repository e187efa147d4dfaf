"""One PKCS#11 token of a fleet: its session pool, key cache, key state and recovery.

Sessions are opened without a PIN. The first session in which the normal
user is not logged in logs in with ``C_Login``; a login holds for every
session of the process on the token, so usually only the first one does.
Each pooled session caches the key objects it has found, because
python-pkcs11 binds an object to the session that found it.

Key state lives in marker objects, described in :mod:`._objects`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import pkcs11.exceptions as p11
from pkcs11 import Attribute, KeyType, ObjectClass

from hyok.common.errors import (
    ConfigError,
    DependencyTimeoutError,
    HyokError,
    InternalError,
    InvalidKeyUsageError,
    InvalidStateError,
    KeyAlreadyExistsError,
    KeyNotFoundError,
)
from hyok.kmi.base import EncryptResult, KeyInfo, KeyState, KeyUsage
from hyok.kmi.pkcs11._cryptoki import CryptokiError, GcmParameters
from hyok.kmi.pkcs11._errors import (
    Fault,
    MemberUnavailableError,
    Operation,
    decrypt_failed,
    describe,
    fault_of,
    request_error,
)
from hyok.kmi.pkcs11._module import LoadedModule
from hyok.kmi.pkcs11._objects import (
    DISABLED_VALUE,
    IV_BYTES,
    KEY_BYTES,
    TAG_BYTES,
    external_id,
    key_info,
    key_template,
    marker_template,
    new_key_template,
    session_key_template,
    usages_of,
)
from hyok.kmi.pkcs11._options import MemberOptions, TokenSelector
from hyok.kmi.pkcs11._probe import check_gcm, check_mechanisms, check_rng, find_token

__all__ = ["TokenMember"]

logger = logging.getLogger(__name__)

# Retries of one call on one member after a recovery; the request's deadline
# may end them earlier.
_MAX_RETRIES: Final = 2
# Key objects each pooled session keeps; the cache starts over when it is full.
_MAX_CACHED_KEYS: Final = 4096
# IVs that one C_GenerateRandom call draws. Under callgrind, SoftHSMv2 2.6 and
# python-pkcs11 0.10 spend about 13,000 instructions on a 12-byte draw and
# 15,000 on a 384-byte one, against 80,000 for an AES-GCM encryption.
_IVS_PER_DRAW: Final = 32
_HEALTH_LABEL: Final = "hyok health check"

# Forks of this process, counted in its one item, so that a forked child,
# which inherits the parent's memory and so its unused IVs, draws new ones.
_forks = [0]


def _count_fork() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_count_fork)
_CKR_PIN_INCORRECT: Final = 0xA0

_T = TypeVar("_T")


class _LoginLostError(Exception):
    """A search found nothing and the session is no longer logged in."""


@dataclass(slots=True)
class _CachedKey:
    key: Any
    usages: frozenset[KeyUsage]


class _PooledSession:
    __slots__ = (
        "iv_forks",
        "iv_offset",
        "ivs",
        "key_epoch",
        "keys",
        "module_generation",
        "pool_generation",
        "session",
    )

    def __init__(self, session: Any, pool_generation: int, module_generation: int) -> None:
        self.session = session
        self.pool_generation = pool_generation
        self.module_generation = module_generation
        self.key_epoch = 0
        self.keys: dict[str, _CachedKey] = {}
        # IVs drawn from the token's RNG and not used yet, and the fork count
        # when they were drawn. They are dropped with the session.
        self.ivs = b""
        self.iv_offset = 0
        self.iv_forks = 0

    def next_iv(self) -> bytes:
        """Return an unused 12-byte IV, drawing a new batch from the token's RNG when needed."""
        offset = self.iv_offset
        if offset >= len(self.ivs) or self.iv_forks != _forks[0]:
            self.ivs = self.session.generate_random(IV_BYTES * 8 * _IVS_PER_DRAW)
            self.iv_forks = _forks[0]
            offset = 0
        self.iv_offset = offset + IV_BYTES
        return self.ivs[offset : offset + IV_BYTES]


class TokenMember:
    """One token or slot: finds it, probes it, and runs operations on it with recovery.

    Raises ConfigError from the constructor when the token is missing, lacks
    AES-GCM or a working RNG, or rejects the PIN.
    """

    def __init__(
        self,
        module: LoadedModule,
        selector: TokenSelector,
        options: MemberOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._module = module
        self._selector = selector
        self._options = options
        self._clock = clock
        self._token = find_token(module, selector)
        self.id = f"pkcs11:{self._token.label}"
        self.model = f"{self._token.manufacturer_id.strip()} {self._token.model.strip()}".strip()

        self._idle: list[_PooledSession] = []
        self._pool_lock = threading.Lock()
        # Signalled when a lease ends. A lease is a session taken from the
        # pool or opened for one operation, and at most max_sessions exist.
        self._pool_changed = threading.Condition(self._pool_lock)
        self._leased = 0
        self._pool_generation = 0
        self._key_epoch = 0
        self._states: dict[str, tuple[KeyState, float]] = {}

        #: Monotonic time until which requests avoid this member, 0 when healthy.
        self.failed_until = 0.0
        #: The last failure, named by its return code, for health details.
        self.last_failure = ""
        #: Recoveries since the last health check.
        self.recoveries = 0
        #: True when the token writes a generated IV into the GCM parameters.
        self.iv_from_token = False
        # Set once the token rejects the PIN. Tokens lock a PIN after a few
        # failed logins, so the member makes no further attempt until the
        # backend is opened again with a corrected PIN.
        self._rejected_pin: str | None = None
        self._probe()

    def __repr__(self) -> str:
        return f"TokenMember(id={self.id!r}, module={self._module.path!r})"

    # -- start-up ---------------------------------------------------------------

    def _probe(self) -> None:
        """Check that the token can do everything the backend needs, or raise ConfigError."""
        where = f"PKCS#11 {self._selector.describe()} ({self.model})"

        check_mechanisms(self._token, where)

        # Login, random numbers and an AES-GCM round trip on a session key.
        try:
            # No other lease exists yet, so this opens a session at once.
            pooled = self._take(self._clock() + 60.0)
        except (p11.PKCS11Error, CryptokiError) as exc:
            if fault_of(exc) is Fault.CREDENTIAL:
                raise ConfigError(
                    f"{where} rejected the user PIN from the {self._selector.pin_source}: "
                    f"{describe(exc)}; correct the PIN"
                ) from None
            raise ConfigError(f"cannot open a session on {where}: {describe(exc)}") from None
        try:
            check_rng(pooled.session, where)
            self.iv_from_token = check_gcm(pooled.session, where)
        except p11.PKCS11Error as exc:
            self._give_back(pooled, broken=True)
            raise ConfigError(f"the start-up test of {where} failed: {describe(exc)}") from None
        except ConfigError:
            self._give_back(pooled, broken=True)
            raise
        self._give_back(pooled)
        logger.info(
            "PKCS#11 %s is ready: IVs from %s",
            self.id,
            "the token" if self.iv_from_token else "the token's RNG",
        )

    # -- operations -------------------------------------------------------------

    def encrypt(self, key_id: str, plaintext: bytes, aad: bytes, deadline: float) -> EncryptResult:
        def work(pooled: _PooledSession) -> EncryptResult:
            cached = self._usable_key(pooled, key_id, KeyUsage.ENCRYPT)
            # A token that generates IVs overwrites the zeros.
            iv = bytes(IV_BYTES) if self.iv_from_token else pooled.next_iv()
            params = GcmParameters(iv, aad)
            sealed = params.encrypt(cached.key, plaintext)
            iv = params.iv
            if self.iv_from_token and iv == bytes(IV_BYTES):
                raise InternalError(f"token {self.id} did not generate an IV; retry")
            if len(sealed) != len(plaintext) + TAG_BYTES:
                raise InternalError(f"token {self.id} returned an AES-GCM result of bad length")
            return EncryptResult(iv=iv, ciphertext=sealed[:-TAG_BYTES], tag=sealed[-TAG_BYTES:])

        return self.run(Operation.ENCRYPT, deadline, work)

    def decrypt(
        self, key_id: str, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes, deadline: float
    ) -> bytes:
        def work(pooled: _PooledSession) -> bytes:
            cached = self._usable_key(pooled, key_id, KeyUsage.DECRYPT)
            params = GcmParameters(iv, aad)
            try:
                plaintext = params.decrypt(cached.key, ciphertext + tag)
            except (p11.GeneralError, p11.FunctionFailed):
                # SoftHSMv2 2.6 reports a tag mismatch as CKR_GENERAL_ERROR, the
                # code of a failing device. When C_GetSessionInfo still succeeds,
                # the session is fine and the input was at fault.
                if self._session_answers(pooled):
                    raise decrypt_failed() from None
                raise
            return plaintext

        return self.run(Operation.DECRYPT, deadline, work)

    def describe_key(self, key_id: str, deadline: float) -> KeyInfo:
        def work(pooled: _PooledSession) -> KeyInfo:
            key = self._find_key(pooled.session, key_id)
            state = self._read_state(pooled, key_id)
            return key_info(key_id, key, state)

        return self.run(Operation.MANAGE, deadline, work)

    def list_keys(self, deadline: float) -> list[KeyInfo]:
        def work(pooled: _PooledSession) -> list[KeyInfo]:
            session = pooled.session
            keys = self._search(
                session, {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES}
            )
            disabled = {
                marker[Attribute.LABEL] for marker in self._search(session, marker_template())
            }
            infos: dict[str, KeyInfo] = {}
            for key in keys:
                key_id = external_id(key, self._options.key_attribute)
                if key_id is None or key[Attribute.VALUE_LEN] != KEY_BYTES:
                    continue
                state = KeyState.DISABLED if key_id in disabled else KeyState.ENABLED
                infos[key_id] = key_info(key_id, key, state)
            return [infos[key_id] for key_id in sorted(infos)]

        return self.run(Operation.MANAGE, deadline, work)

    def create_key(self, key_id: str, usages: frozenset[KeyUsage], deadline: float) -> KeyInfo:
        def work(pooled: _PooledSession) -> KeyInfo:
            session = pooled.session
            if self._search(session, key_template(key_id, self._options.key_attribute)):
                raise KeyAlreadyExistsError(
                    f"key {key_id!r} already exists on token {self.id}; choose another key ID"
                )
            # A marker left by an earlier key with this ID must not disable the new one.
            for marker in self._search(session, marker_template(key_id)):
                marker.destroy()
            key = session.generate_key(KeyType.AES, 256, template=new_key_template(key_id, usages))
            if key[Attribute.EXTRACTABLE] or not key[Attribute.SENSITIVE]:
                key.destroy()
                raise InternalError(
                    f"token {self.id} created key {key_id!r} extractable or not sensitive "
                    "although the template forbids it; the key was destroyed"
                )
            self._states[key_id] = (KeyState.ENABLED, self._clock())
            return key_info(key_id, key, KeyState.ENABLED)

        return self.run(Operation.MANAGE, deadline, work)

    def set_state(self, key_id: str, state: KeyState, deadline: float) -> KeyInfo:
        def work(pooled: _PooledSession) -> KeyInfo:
            session = pooled.session
            key = self._find_key(session, key_id)
            markers = self._search(session, marker_template(key_id))
            if state is KeyState.DISABLED and not markers:
                session.create_object({**marker_template(key_id), Attribute.VALUE: DISABLED_VALUE})
            elif state is KeyState.ENABLED:
                for marker in markers:
                    marker.destroy()
            self._states[key_id] = (state, self._clock())
            return key_info(key_id, key, state)

        return self.run(Operation.MANAGE, deadline, work)

    def delete_key(self, key_id: str, deadline: float) -> None:
        def work(pooled: _PooledSession) -> None:
            session = pooled.session
            key = self._find_key(session, key_id)
            key.destroy()
            for marker in self._search(session, marker_template(key_id)):
                marker.destroy()
            self._states.pop(key_id, None)
            # Other sessions still cache the destroyed key's object.
            self._key_epoch += 1

        self.run(Operation.MANAGE, deadline, work)

    def check(self, deadline: float) -> None:
        """Round-trip random data through AES-GCM under a session key of the member's own."""

        def work(pooled: _PooledSession) -> None:
            session = pooled.session
            key = session.generate_key(
                KeyType.AES, 256, label=_HEALTH_LABEL, template=session_key_template()
            )
            try:
                block = session.generate_random(256)
                iv = bytes(IV_BYTES) if self.iv_from_token else session.generate_random(96)
                params = GcmParameters(iv, b"")
                sealed = params.encrypt(key, block)
                opened = GcmParameters(params.iv, b"").decrypt(key, sealed)
            finally:
                key.destroy()
            if opened != block:
                raise MemberUnavailableError(
                    f"token {self.id} returned other data after a round trip"
                )

        self.run(Operation.MANAGE, deadline, work)

    # -- retry and recovery -----------------------------------------------------

    def run(
        self, operation: Operation, deadline: float, work: Callable[[_PooledSession], _T]
    ) -> _T:
        """Run ``work`` on a pooled session, recovering and retrying until ``deadline``.

        Raises the hyok error of the last failure. A failure that another
        member might not have is a MemberUnavailableError.
        """
        attempt = 0
        while True:
            try:
                return self._run_once(deadline, work)
            except (p11.PKCS11Error, CryptokiError, _LoginLostError) as exc:
                fault = Fault.LOGIN if isinstance(exc, _LoginLostError) else fault_of(exc)
                cause = "the login ended" if isinstance(exc, _LoginLostError) else describe(exc)
                self.last_failure = cause
                if fault is None:
                    raise request_error(exc, operation, self.id) from exc
                if fault is Fault.CREDENTIAL:
                    self._rejected_pin = cause
                    logger.error(
                        "PKCS#11 %s rejected the PIN from the %s with %s; no further login "
                        "attempts until the backend is restarted with a corrected PIN",
                        self.id,
                        self._selector.pin_source,
                        cause,
                    )
                if (
                    fault is Fault.CREDENTIAL
                    or attempt >= _MAX_RETRIES
                    or self._clock() >= deadline
                ):
                    if isinstance(exc, _LoginLostError):
                        raise MemberUnavailableError(
                            f"token {self.id} keeps ending the login; check its PIN and sessions"
                        ) from None
                    raise request_error(exc, operation, self.id) from exc
                attempt += 1
                self.recoveries += 1
                logger.warning(
                    "PKCS#11 %s: %s failed with %s; recovering (%s) and retrying, attempt %d",
                    self.id,
                    operation.value,
                    cause,
                    fault.value,
                    attempt + 1,
                )
                self._recover(fault)

    def _recover(self, fault: Fault) -> None:
        if fault is Fault.MODULE:
            self._module.reinitialise(self._module.generation)
        if fault is Fault.LOGIN:
            self._states.clear()
        self._drop_idle_sessions()

    def _run_once(self, deadline: float, work: Callable[[_PooledSession], _T]) -> _T:
        """Run ``work`` once, holding the module's call lock (unless calls run in parallel).

        Every encrypt and decrypt takes this path. It uses no context managers
        and first tries each lock without a timeout, because both would cost
        microseconds per call, a large share of a SoftHSMv2 operation.
        """
        lock = None if self._options.parallel_calls else self._module.call_lock
        if (
            lock is not None
            and not lock.acquire(blocking=False)
            and not lock.acquire(timeout=max(0.0, deadline - self._clock()))
        ):
            raise DependencyTimeoutError(
                f"token {self.id} is busy: no PKCS#11 call slot became free before the deadline"
            )
        try:
            pooled = self._take(deadline)
            try:
                result = work(pooled)
            except BaseException as exc:
                if isinstance(exc, HyokError) or (
                    isinstance(exc, p11.PKCS11Error) and fault_of(exc) is None
                ):
                    # The session is fine: the request or key was at fault.
                    self._give_back(pooled)
                else:
                    self._give_back(pooled, broken=True)
                raise
            self._give_back(pooled)
            return result
        finally:
            if lock is not None:
                lock.release()

    # -- session pool -----------------------------------------------------------

    def _take(self, deadline: float) -> _PooledSession:
        """Lease an idle session, or open one while fewer than max_sessions are leased."""
        stale: list[_PooledSession] = []
        pooled: _PooledSession | None = None
        with self._pool_changed:
            if self._leased >= self._options.max_sessions and not self._pool_changed.wait_for(
                lambda: self._leased < self._options.max_sessions,
                timeout=max(0.0, deadline - self._clock()),
            ):
                raise DependencyTimeoutError(
                    f"all {self._options.max_sessions} sessions of token {self.id} stayed busy "
                    "until the deadline; raise max_sessions or lower the load"
                )
            self._leased += 1
            while self._idle:
                candidate = self._idle.pop()
                if self._is_current(candidate):
                    pooled = candidate
                    break
                stale.append(candidate)
        try:
            for old in stale:
                self._close(old)
            if pooled is None:
                pooled = self._open_session()
        except BaseException:
            self._end_lease()
            raise
        if pooled.key_epoch != self._key_epoch:
            pooled.keys.clear()
            pooled.key_epoch = self._key_epoch
        return pooled

    def _end_lease(self) -> None:
        with self._pool_changed:
            self._leased -= 1
            self._pool_changed.notify()

    def _open_session(self) -> _PooledSession:
        if self._rejected_pin is not None:
            raise MemberUnavailableError(
                f"token {self.id} rejected the PIN earlier ({self._rejected_pin}); correct the "
                "PIN source and restart the proxy"
            )
        generation = self._pool_generation
        module_generation = self._module.generation
        session = self._token.open(rw=True)
        pooled = _PooledSession(session, generation, module_generation)
        pooled.key_epoch = self._key_epoch
        try:
            self._log_in(session)
        except BaseException:
            self._close(pooled)
            raise
        return pooled

    def _log_in(self, session: Any) -> None:
        raw = self._module.raw
        pin = self._selector.pin
        serial = self._token.serial
        if not raw.is_logged_in(session.handle):
            raw.login(session.handle, pin.reveal_bytes())
            self._module.accepted_pins[serial] = pin
            return
        accepted = self._module.accepted_pins.get(serial)
        if accepted is not None and accepted != pin:
            # The token returns CKR_USER_ALREADY_LOGGED_IN without checking
            # this PIN, so report the code a fresh login would return.
            raise CryptokiError("C_Login", _CKR_PIN_INCORRECT)

    def _is_current(self, pooled: _PooledSession) -> bool:
        return (
            pooled.pool_generation == self._pool_generation
            and pooled.module_generation == self._module.generation
        )

    def _give_back(self, pooled: _PooledSession, *, broken: bool = False) -> None:
        """End the lease of ``pooled``, and pool it again unless it is broken or stale."""
        with self._pool_changed:
            self._leased -= 1
            self._pool_changed.notify()
            if not broken and self._is_current(pooled):
                self._idle.append(pooled)
                return
        self._close(pooled)

    def _drop_idle_sessions(self) -> None:
        with self._pool_lock:
            self._pool_generation += 1
            idle, self._idle = self._idle, []
        for pooled in idle:
            self._close(pooled)

    @staticmethod
    def _close(pooled: _PooledSession) -> None:
        # Pooled sessions have no login of their own, so closing one ends
        # no login. A session that is already invalid cannot be closed.
        with contextlib.suppress(p11.PKCS11Error):
            pooled.session.close()

    def close(self) -> None:
        """Close the idle sessions; sessions in use close when they come back."""
        self._drop_idle_sessions()

    def _session_answers(self, pooled: _PooledSession) -> bool:
        try:
            return self._module.raw.is_logged_in(pooled.session.handle)
        except CryptokiError:
            return False

    # -- keys and state ---------------------------------------------------------

    def _usable_key(self, pooled: _PooledSession, key_id: str, usage: KeyUsage) -> _CachedKey:
        cached = pooled.keys.get(key_id)
        if cached is None:
            key = self._find_key(pooled.session, key_id)
            cached = _CachedKey(key=key, usages=usages_of(key))
            if len(pooled.keys) >= _MAX_CACHED_KEYS:
                pooled.keys.clear()
            pooled.keys[key_id] = cached
        if self._state(pooled, key_id) is not KeyState.ENABLED:
            raise InvalidStateError(
                f"key {key_id!r} is disabled; enable it with 'hyok kmi enable-key {key_id}'"
            )
        if usage not in cached.usages:
            allowed = ", ".join(sorted(cached.usages)) or "none"
            raise InvalidKeyUsageError(
                f"key {key_id!r} does not allow {usage}; its usages are {allowed}. "
                f"Use a key created with the {usage} usage"
            )
        return cached

    def _state(self, pooled: _PooledSession, key_id: str) -> KeyState:
        cached = self._states.get(key_id)
        if cached is not None and self._clock() - cached[1] < self._options.state_cache_seconds:
            return cached[0]
        return self._read_state(pooled, key_id)

    def _read_state(self, pooled: _PooledSession, key_id: str) -> KeyState:
        session = pooled.session
        markers = self._search(session, marker_template(key_id))
        state = KeyState.DISABLED if markers else KeyState.ENABLED
        self._states[key_id] = (state, self._clock())
        return state

    def _search(self, session: Any, template: dict[Attribute, Any]) -> list[Any]:
        """Return every object that matches ``template``, after checking the session's login.

        Private objects, keys and state markers included, are invisible
        without a login, so an empty result would wrongly mean "no key" or
        "ENABLED". The check also catches an invalid session before
        C_FindObjectsInit: python-pkcs11 0.10 raises from a destructor when
        that call fails.
        """
        if not self._module.raw.is_logged_in(session.handle):
            raise _LoginLostError
        # Read every result: an unfinished search keeps the session busy.
        return list(session.get_objects(template))

    def _find_key(self, session: Any, key_id: str) -> Any:
        found = self._search(session, key_template(key_id, self._options.key_attribute))
        if not found:
            raise KeyNotFoundError(
                f"key {key_id!r} not found on token {self.id}; check the key ID, or create "
                f"the key with 'hyok kmi create-key {key_id}'"
            )
        if len(found) > 1:
            raise InternalError(
                f"key ID {key_id!r} names {len(found)} AES keys on token {self.id}; remove or "
                "relabel the duplicates"
            )
        return found[0]
