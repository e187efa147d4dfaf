"""The PKCS#11 backend: a fleet of tokens behind the KeyManager interface."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeVar

from hyok.common.errors import (
    ConfigError,
    HyokError,
    KeyNotFoundError,
)
from hyok.common.ids import generate_key_id
from hyok.common.secrets import read_secret
from hyok.kmi._inputs import CRYPTO_USAGES, check_data, checked_key_id, checked_usages
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
from hyok.kmi.pkcs11._errors import MemberUnavailableError, decrypt_failed
from hyok.kmi.pkcs11._module import load_module
from hyok.kmi.pkcs11._options import MemberOptions, TokenSelector
from hyok.kmi.pkcs11._token import TokenMember

if TYPE_CHECKING:
    from hyok.xki.settings import Pkcs11BackendSettings, SecretSource

__all__ = ["Pkcs11KeyManager"]

logger = logging.getLogger(__name__)

_DECRYPT_IV_LENGTHS: Final = frozenset({12, 16})
_TAG_BYTES: Final = 16
# XKS health reports one to ten members.
_MAX_MEMBERS: Final = 10
# Time one member's health check may take, recoveries included.
_HEALTH_DEADLINE_SECONDS: Final = 2.0

_T = TypeVar("_T")


class Pkcs11KeyManager(KeyManager):
    """A key manager whose AES-256 keys live on PKCS#11 tokens, used through python-pkcs11.

    Every token of ``tokens`` is a fleet member, and the members are meant to
    be replicas that hold the same keys, such as the slots of an HSM cluster.
    Encrypt, decrypt, describe and list use the first member that is not
    marked failed, in configured order, and move on to the next member when
    one fails. Creation happens on the first working member, and the HSM
    replicates the key. Enable, disable and delete apply to every member
    that stores the key. Key material is never copied between members.

    Example::

        manager = Pkcs11KeyManager(
            Path("/usr/lib/softhsm/libsofthsm2.so"),
            [TokenSelector("hyok", None, Secret("1234"), "test PIN")],
        )
        manager.create_key("payments")
    """

    def __init__(
        self,
        module_path: Path,
        tokens: Sequence[TokenSelector],
        *,
        options: MemberOptions | None = None,
        retry_deadline_seconds: float = 0.18,
        member_retry_seconds: float = 5.0,
        event_loop_calls: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Load the module, find and probe every token; raise ConfigError naming what is wrong.

        ``event_loop_calls`` reports the backend as not blocking, so that the
        proxy calls it on its event loop instead of in its thread pool.
        """
        if not 1 <= len(tokens) <= _MAX_MEMBERS:
            raise ConfigError(
                f"a PKCS#11 backend needs 1 to {_MAX_MEMBERS} tokens; {len(tokens)} are configured"
            )
        self._module = load_module(Path(module_path))

        self._clock = clock
        self._retry_deadline = retry_deadline_seconds
        self._member_retry = member_retry_seconds

        options = options or MemberOptions()
        self._members = [
            TokenMember(self._module, selector, options, clock=clock) for selector in tokens
        ]
        ids = [member.id for member in self._members]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"the PKCS#11 backend names one token twice: {', '.join(ids)}")

        self.vendor = self._module.lib.manufacturer_id.strip() or "PKCS#11"
        self._capabilities = Capabilities(
            usages=CRYPTO_USAGES,
            decrypt_iv_lengths=_DECRYPT_IV_LENGTHS,
            can_disable=True,
            can_delete=True,
            blocking=not event_loop_calls,
            extra={
                "module": self._module.description,
                "members": ", ".join(ids),
                "iv_source": ", ".join(
                    f"{m.id}: {'token' if m.iv_from_token else 'token RNG'}" for m in self._members
                ),
            },
        )

    @classmethod
    def from_settings(cls, settings: Pkcs11BackendSettings, name: str) -> Pkcs11KeyManager:
        """Open the tokens that a ``[backends.NAME]`` section of type "pkcs11" configures."""
        default_pin = settings.pin
        selectors = []
        for token in settings.tokens:
            source = token.pin or default_pin
            pin = read_secret(env=source.env, file=source.file, what=f"PIN of backend {name!r}")
            selectors.append(TokenSelector(token.label, token.slot, pin, _describe_source(source)))
        options = MemberOptions(
            key_attribute=settings.key_attribute,
            max_sessions=settings.max_sessions,
            state_cache_seconds=settings.state_cache_seconds,
            parallel_calls=settings.parallel_calls,
        )
        return cls(
            settings.module,
            selectors,
            options=options,
            retry_deadline_seconds=settings.retry_deadline_ms / 1000.0,
            member_retry_seconds=settings.member_retry_seconds,
            event_loop_calls=settings.event_loop_calls,
        )

    def __repr__(self) -> str:
        members = [member.id for member in self._members]
        return f"Pkcs11KeyManager(module={self._module.path!r}, members={members!r})"

    def __reduce__(self) -> str:
        raise TypeError("Pkcs11KeyManager cannot be pickled; open the tokens in each process")

    # -- KeyManager ---------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def create_key(
        self, key_id: str | None = None, usages: Iterable[KeyUsage] | None = None
    ) -> KeyInfo:
        key_id = generate_key_id() if key_id is None else checked_key_id(key_id)
        usage_set = checked_usages(usages, "PKCS#11 keys")
        info = self._on_first_member(lambda m, d: m.create_key(key_id, usage_set, d))
        logger.info("created key %s on PKCS#11 backend %s", key_id, self._module.path)
        return info

    def describe_key(self, key_id: str) -> KeyInfo:
        key_id = checked_key_id(key_id)
        return self._on_first_member(lambda m, d: m.describe_key(key_id, d))

    def list_keys(self) -> list[KeyInfo]:
        return self._on_first_member(lambda m, d: m.list_keys(d))

    def enable_key(self, key_id: str) -> KeyInfo:
        return self._set_state(checked_key_id(key_id), KeyState.ENABLED)

    def disable_key(self, key_id: str) -> KeyInfo:
        return self._set_state(checked_key_id(key_id), KeyState.DISABLED)

    def delete_key(self, key_id: str) -> None:
        key_id = checked_key_id(key_id)
        self._on_every_member(key_id, lambda m, d: m.delete_key(key_id, d))
        logger.info("deleted key %s from PKCS#11 backend %s", key_id, self._module.path)

    def encrypt(self, key_id: str, plaintext: bytes, aad: bytes) -> EncryptResult:
        key_id = checked_key_id(key_id)
        check_data("plaintext", plaintext)
        check_data("AAD", aad)
        return self._on_first_member(lambda m, d: m.encrypt(key_id, plaintext, aad, d))

    def decrypt(self, key_id: str, iv: bytes, ciphertext: bytes, tag: bytes, aad: bytes) -> bytes:
        key_id = checked_key_id(key_id)
        check_data("ciphertext", ciphertext)
        check_data("AAD", aad)
        if len(iv) not in _DECRYPT_IV_LENGTHS or len(tag) != _TAG_BYTES:
            raise decrypt_failed()
        return self._on_first_member(lambda m, d: m.decrypt(key_id, iv, ciphertext, tag, aad, d))

    def health(self) -> list[FleetMember]:
        """Round-trip random data through AES-GCM on each member, under a session key of its own.

        A member is ACTIVE when the round trip succeeds, DEGRADED when it
        succeeds but the member failed or needed a recovery since the last
        check, and UNAVAILABLE when it fails. ``detail`` names the return code.
        """
        report = []
        for member in self._members:
            try:
                member.check(self._clock() + _HEALTH_DEADLINE_SECONDS)
            except HyokError as exc:
                self._mark_failed(member, exc)
                detail = member.last_failure or exc.code
                report.append(
                    FleetMember(member.id, member.model, HealthStatus.UNAVAILABLE, detail)
                )
                continue
            recovered = member.failed_until > 0 or member.recoveries > 0
            detail = f"recovered from {member.last_failure}" if recovered else ""
            if member.failed_until > 0:
                logger.info("PKCS#11 %s works again; requests use it again", member.id)
            member.failed_until = 0.0
            member.recoveries = 0
            status = HealthStatus.DEGRADED if recovered else HealthStatus.ACTIVE
            report.append(FleetMember(member.id, member.model, status, detail))
        return report

    def close(self) -> None:
        """Close the pooled sessions. The module stays loaded for other backends of the process."""
        for member in self._members:
            member.close()

    # -- fleet ------------------------------------------------------------------------

    def _ordered_members(self) -> list[TokenMember]:
        """Members not marked failed first, in configured order, then the failed ones."""
        if len(self._members) == 1:
            return self._members
        now = self._clock()
        working = [m for m in self._members if m.failed_until <= now]
        failed = [m for m in self._members if m.failed_until > now]
        return working + failed

    def _mark_failed(self, member: TokenMember, exc: HyokError) -> None:
        if member.failed_until <= self._clock():
            logger.error(
                "PKCS#11 %s failed (%s); requests avoid it for %.1f s",
                member.id,
                exc.message,
                self._member_retry,
            )
        member.failed_until = self._clock() + self._member_retry

    def _on_first_member(self, call: Callable[[TokenMember, float], _T]) -> _T:
        """Run ``call`` on the first member that responds within the retry deadline."""
        deadline = self._clock() + self._retry_deadline
        not_found: KeyNotFoundError | None = None
        failure: MemberUnavailableError | None = None
        for member in self._ordered_members():
            if failure is not None and self._clock() >= deadline:
                break
            try:
                return call(member, deadline)
            except KeyNotFoundError as exc:
                # A replica may not have the key yet; ask the next member.
                not_found = exc
            except MemberUnavailableError as exc:
                self._mark_failed(member, exc)
                failure = exc
        if failure is not None:
            raise failure
        assert not_found is not None
        raise not_found

    def _on_every_member(self, key_id: str, call: Callable[[TokenMember, float], _T]) -> _T:
        """Run ``call`` on every member that stores the key; return the first member's result."""
        results: list[_T] = []
        failures: list[MemberUnavailableError] = []
        for member in self._ordered_members():
            try:
                results.append(call(member, self._clock() + self._retry_deadline))
            except KeyNotFoundError:
                continue
            except MemberUnavailableError as exc:
                self._mark_failed(member, exc)
                failures.append(exc)
        if failures and results:
            logger.warning(
                "key %s was changed on %d of %d PKCS#11 members; the others were unavailable",
                key_id,
                len(results),
                len(results) + len(failures),
            )
        if results:
            return results[0]
        if failures:
            raise failures[0]
        raise KeyNotFoundError(
            f"key {key_id!r} not found on any PKCS#11 token of this backend; check the key ID"
        )

    def _set_state(self, key_id: str, state: KeyState) -> KeyInfo:
        info = self._on_every_member(key_id, lambda m, d: m.set_state(key_id, state, d))
        logger.info("set key %s on PKCS#11 backend %s to %s", key_id, self._module.path, state)
        return info



def _describe_source(source: SecretSource) -> str:
    if source.env and source.file is not None:
        return f"environment variable {source.env} or file {source.file}"
    if source.env:
        return f"environment variable {source.env}"
    return f"file {source.file}"
