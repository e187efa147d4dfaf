"""The proxy's live state: backends, key stores, credentials, policies and limits.

Key-store state that may change while the proxy runs (credentials, allowed
keys, policies, rate limits) lives in immutable snapshots that a reload
replaces in one assignment, so requests in flight finish with the snapshot
they started with.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from hyok import __version__
from hyok.common.errors import ConfigError, HyokError
from hyok.common.sealed import Sealer
from hyok.common.secrets import read_secret
from hyok.common.sigv4 import Credential, SigV4Verifier
from hyok.common.tls import certificate_days_left
from hyok.kmi.base import FleetMember, KeyManager
from hyok.kmi.registry import open_backend
from hyok.xki.audit import AuditLog
from hyok.xki.authz import CedarAuthorizer
from hyok.xki.credentials import CredentialFile, StoredCredential
from hyok.xki.health import HealthCache
from hyok.xki.metrics import ProxyMetrics
from hyok.xki.ratelimit import TokenBucket
from hyok.xki.settings import (
    FileBackendSettings,
    KeyStoreSettings,
    KmipBackendSettings,
    Pkcs11BackendSettings,
    ProxySettings,
    load_settings,
)

__all__ = ["KeyStore", "KeyStoreState", "Proxy", "backend_thread_count"]

logger = logging.getLogger("hyok.xki")

T = TypeVar("T")

PROXY_MODEL = f"hyok XKI proxy {__version__}"


def _key_matcher(patterns: Iterable[str]) -> Callable[[str], bool]:
    compiled = [re.compile(fnmatch.translate(pattern)) for pattern in patterns]

    def matches(key_id: str) -> bool:
        return any(pattern.match(key_id) for pattern in compiled)

    return matches


@dataclass(frozen=True, slots=True)
class KeyStoreState:
    """Key-store state that a reload may change, replaced as a whole."""

    settings: KeyStoreSettings
    credentials: Mapping[str, StoredCredential]
    allows_key: Callable[[str], bool]
    authorizer: CedarAuthorizer | None
    bucket: TokenBucket | None
    credentials_stamp: tuple[int, int, int]


def _stamp(path: Path) -> tuple[int, int, int]:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return (0, 0, 0)
    return (info.st_ino, info.st_size, info.st_mtime_ns)


class KeyStore:
    """One logical key store: a URI path prefix bound to a backend."""

    def __init__(self, settings: KeyStoreSettings, backend: KeyManager, sealer: Sealer,
                 workers: int) -> None:
        self.name = settings.name
        self.prefix = settings.path_prefix
        self.backend_name = settings.backend
        self.backend = backend
        self._sealer = sealer
        self._workers = workers
        self._failed_stamp: tuple[int, int, int] | None = None
        self.state = self._build(settings)
        self.verifier = SigV4Verifier(self._lookup, region=settings.region)

    def _lookup(self, access_key_id: str) -> Credential | None:
        stored = self.state.credentials.get(access_key_id)
        return stored.credential if stored is not None else None

    def _build(self, settings: KeyStoreSettings) -> KeyStoreState:
        credential_file = CredentialFile(settings.credentials_file, self._sealer)
        stamp = _stamp(settings.credentials_file)
        stored = credential_file.load()
        if not stored:
            raise ConfigError(
                f"key store {settings.name!r} has no credentials in {settings.credentials_file}; "
                "add one with 'hyok xki credentials add'"
            )
        authorizer = None
        if settings.cedar_policy_file is not None:
            authorizer = CedarAuthorizer.from_file(settings.cedar_policy_file)
        bucket = None
        if settings.rate_limit > 0:
            per_worker = settings.rate_limit / self._workers
            burst = settings.rate_burst or max(1, int(per_worker))
            previous = getattr(self, "state", None)
            if (previous is not None and previous.bucket is not None
                    and previous.bucket.rate == per_worker
                    and previous.bucket.capacity == float(burst)):
                # Keep the tokens already spent, so that a reload never refills the bucket.
                bucket = previous.bucket
            else:
                bucket = TokenBucket(per_worker, burst)
        return KeyStoreState(
            settings=settings,
            credentials={item.access_key_id: item for item in stored},
            allows_key=_key_matcher(settings.keys),
            authorizer=authorizer,
            bucket=bucket,
            credentials_stamp=stamp,
        )

    def reload(self, settings: KeyStoreSettings) -> None:
        """Replace the state from new settings; keep the old state when they are invalid."""
        if settings.region != self.state.settings.region:
            self.verifier = SigV4Verifier(self._lookup, region=settings.region)
        self.state = self._build(settings)
        # Derived signing keys of removed credentials must not outlive them.
        self.verifier.clear_key_cache()
        logger.info(
            "key store %s reloaded: %d credentials (%s)",
            self.name,
            len(self.state.credentials),
            ", ".join(self.state.credentials),
        )

    def reload_credentials_if_changed(self) -> bool:
        """Reread the credential file when it changed on disk; return True when reloaded.

        A file that fails to load is not retried until it changes again.
        """
        stamp = _stamp(self.state.settings.credentials_file)
        if stamp in (self.state.credentials_stamp, self._failed_stamp):
            return False
        try:
            self.reload(self.state.settings)
        except HyokError:
            self._failed_stamp = stamp
            raise
        self._failed_stamp = None
        return True


def backend_thread_count(settings: ProxySettings) -> int:
    """Return ``backend_threads``, or when it is unset, the threads the backends can keep busy.

    A PKCS#11 backend whose calls hold the module's lock gets 2 threads,
    because more only queue for that lock and for the GIL. On SoftHSMv2, 16
    threads served no more requests per second than 2 in three runs, and 35
    to 60 % fewer in the quietest one (docs/benchmarks.md). A backend
    that calls the module in parallel gets a thread per session, and one that
    calls it on the event loop gets one for its health checks, like the file
    backend. A KMIP backend gets one per connection, since each connection
    carries one request at a time. Other backends get 16.
    """
    if settings.server.backend_threads is not None:
        return settings.server.backend_threads
    threads = 0
    for backend in settings.backends.values():
        if isinstance(backend, FileBackendSettings):
            threads += 1
        elif isinstance(backend, Pkcs11BackendSettings):
            if backend.event_loop_calls:
                threads += 1
            elif backend.parallel_calls:
                threads += backend.max_sessions * len(backend.tokens)
            else:
                threads += 2
        elif isinstance(backend, KmipBackendSettings):
            threads += backend.max_connections
        else:
            threads += 16
    return max(2, min(256, threads))


class Proxy:
    """Everything the XKS app needs, built from settings and reloadable in place."""

    def __init__(
        self,
        settings: ProxySettings,
        *,
        backends: Mapping[str, KeyManager] | None = None,
        audit: Callable[[Mapping[str, object]], None] | None = None,
    ) -> None:
        self.settings = settings
        passphrase = read_secret(
            env=settings.secrets.env, file=settings.secrets.file, what="secrets passphrase"
        )
        self.sealer = Sealer(passphrase)
        self.backends: dict[str, KeyManager] = dict(backends or {})
        for name, backend_settings in settings.backends.items():
            if name not in self.backends:
                self.backends[name] = open_backend(name, backend_settings)
        workers = settings.server.workers
        self.keystores = {
            store.path_prefix: KeyStore(store, self.backends[store.backend], self.sealer, workers)
            for store in settings.keystores
        }
        self.executor = ThreadPoolExecutor(
            max_workers=backend_thread_count(settings), thread_name_prefix="hyok-kmi"
        )
        self._audit_log: AuditLog | None = None
        if audit is None:
            self._audit_log = AuditLog(settings.audit.file)
            audit = self._audit_log
        self.audit = audit
        self.metrics = ProxyMetrics()
        self.metrics.set_gauges(self._credential_ages, self._certificate_days)
        self.health = {
            name: HealthCache(name, backend, self.run_blocking_with_timeout,
                              ttl=settings.server.health_cache_seconds)
            for name, backend in self.backends.items()
        }
        self.deadline = settings.server.request_deadline_ms / 1000.0

    # Blocking calls ---------------------------------------------------------

    async def run_blocking_with_timeout(self, function: Callable[[], T], timeout: float) -> T:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, function)
        return await asyncio.wait_for(future, timeout)

    # Reload -----------------------------------------------------------------

    def reload(self) -> None:
        """Reread the configuration file and apply what can change without a restart."""
        if self.settings.source is None:
            return
        try:
            fresh = load_settings(self.settings.source)
            for store in fresh.keystores:
                current = self.keystores.get(store.path_prefix)
                if current is None or current.name != store.name or \
                        current.backend_name != store.backend:
                    logger.warning(
                        "key store %s at prefix %r is new or changed its backend; "
                        "restart the proxy to apply it", store.name, store.path_prefix)
                    continue
                current.reload(store)
            if self._audit_log is not None:
                self._audit_log.reopen()
        except HyokError as exc:
            logger.error("reload failed, keeping the running configuration: %s", exc.message)

    def reload_changed_credentials(self) -> None:
        for store in self.keystores.values():
            try:
                store.reload_credentials_if_changed()
            except HyokError as exc:
                logger.error(
                    "credentials of key store %s not reloaded, keeping the old ones: %s",
                    store.name, exc.message)

    # Metrics gauges ---------------------------------------------------------

    def _credential_ages(self) -> Iterable[tuple[str, str, float]]:
        now = datetime.now(UTC)
        for store in self.keystores.values():
            for item in store.state.credentials.values():
                yield store.name, item.access_key_id, (now - item.created_at).total_seconds()

    def _certificate_days(self) -> float | None:
        try:
            return certificate_days_left(self.settings.server.cert_file)
        except (OSError, ValueError, HyokError):
            return None

    # Health -----------------------------------------------------------------

    async def fleet(self, backend: str) -> list[FleetMember]:
        return await self.health[backend].get()

    def describe(self) -> dict[str, Any]:
        return {"model": PROXY_MODEL, "keystores": [s.name for s in self.keystores.values()]}

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)
        for backend in self.backends.values():
            backend.close()
        if self._audit_log is not None:
            self._audit_log.close()
