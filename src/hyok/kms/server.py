"""Run the KMS API: the store, the XKI proxy clients, the health monitor and uvicorn over TLS.

uvicorn serves the app with :class:`hyok.kms.http11.KmsHttpProtocol` and
the access log off, for the reasons in :mod:`hyok.kms.api.app`. With
``workers = 1`` everything runs in this process. With more, uvicorn spawns
worker processes that each build their own app from the file named in
``HYOK_KMS_CONFIG``, after this process has migrated the database once.
The SSL context factory is a module function, because the worker
configuration is pickled.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final

import uvicorn
from sqlalchemy import make_url
from uvicorn.supervisors import Multiprocess

from hyok.common.acs_signature import InMemoryNonceCache, NonceCache
from hyok.common.errors import HyokError
from hyok.common.tls import client_ssl_context, server_ssl_context
from hyok.console import build_console
from hyok.kms.api.actions import Services, build_handlers
from hyok.kms.api.app import KmsApp
from hyok.kms.audit import KmsAuditTrail
from hyok.kms.bootstrap import open_store
from hyok.kms.health import InstanceHealthMonitor
from hyok.kms.http11 import KmsHttpProtocol
from hyok.kms.proxies import ProxyNetwork, ProxyPool
from hyok.kms.ram import LoginProfileService
from hyok.kms.settings import KmsSettings, load_settings
from hyok.kms.store import DatabaseNonceCache
from hyok.kms.sweeper import KeyDeletionSweeper
from hyok.kms.usage import KeyUsageFlusher

__all__ = ["CONFIG_ENV", "StartupError", "build_app", "create_app_from_env", "serve"]

logger = logging.getLogger("hyok.kms")

CONFIG_ENV: Final = "HYOK_KMS_CONFIG"


class StartupError(HyokError):
    """The KMS stopped before it served requests; the log written before it contains the cause."""

    code = "StartupFailed"


@functools.cache
def _settings_from_env() -> KmsSettings:
    return load_settings(Path(os.environ[CONFIG_ENV]))


def create_app_from_env() -> KmsApp:
    """Build the app of a worker process from the configuration named in ``HYOK_KMS_CONFIG``."""
    return build_app(_settings_from_env(), migrate=False)


def _ssl_context_from_env(
    _config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    server = _settings_from_env().server
    assert server.cert_file is not None
    assert server.key_file is not None
    return server_ssl_context(server.cert_file, server.key_file, min_version=server.min_tls_version)


def build_app(settings: KmsSettings, *, migrate: bool = True) -> KmsApp:
    """Build the KMS app of one process with every action, ready for an ASGI server.

    Opens the database (and with ``migrate`` brings its schema up to date),
    and checks the proxy CA file, so that configuration faults raise
    ConfigError before anything listens. The app's lifespan starts the
    health monitor, and on shutdown stops it, closes the proxy clients and
    the database pool.
    """
    proxy = settings.proxy
    if proxy.ca_file is not None:
        client_ssl_context(proxy.ca_file)

    store = open_store(settings, migrate=migrate)
    executor = ThreadPoolExecutor(settings.server.threads, thread_name_prefix="hyok-kms")
    pool = ProxyPool(
        ProxyNetwork(
            vpc_endpoints=dict(proxy.vpc_endpoints),
            ca_file=proxy.ca_file,
            timeout=proxy.timeout_ms / 1000,
            max_connections=proxy.max_connections,
        )
    )
    services = Services(store=store, proxies=pool, region=settings.region, executor=executor)
    monitor = InstanceHealthMonitor(services, settings.health.interval_seconds)
    try:
        audit = KmsAuditTrail(settings.audit.path)
    except OSError as exc:
        raise StartupError(
            f"the audit trail {settings.audit.path} cannot be opened for appending "
            f"({exc.strerror}): fix its directory's permissions or set [audit] path"
        ) from exc
    sweeper = KeyDeletionSweeper(services)
    usage = KeyUsageFlusher(services)

    async def close_audit() -> None:
        audit.close()

    async def close_store() -> None:
        executor.shutdown(wait=True)
        store.database.dispose()

    nonce_cache: NonceCache = (
        DatabaseNonceCache(store.database)
        if settings.server.nonce_cache == "database"
        else InMemoryNonceCache(max_entries=settings.server.nonce_cache_entries)
    )
    app = KmsApp(
        store,
        region=settings.region,
        handlers=build_handlers(services),
        nonce_cache=nonce_cache,
        max_body_bytes=settings.server.max_body_bytes,
        executor=executor,
        on_startup=[monitor.start, sweeper.start, usage.start],
        on_shutdown=[
            monitor.stop,
            sweeper.stop,
            usage.stop,
            pool.aclose,
            close_store,
            close_audit,
        ],
        on_identity_change=services.access.forget,
        audit=audit.record,
    )
    if settings.console.enabled:
        console = settings.console
        passwords = LoginProfileService(store)
        app.console = build_console(
            app,
            store.database,
            passwords.sign_in,
            idle_timeout_seconds=console.idle_timeout_seconds,
            session_lifetime_seconds=console.session_lifetime_seconds,
            max_failed_sign_ins=console.max_failed_sign_ins,
            failed_sign_in_window_seconds=console.failed_sign_in_window_seconds,
            executor=executor,
            audit_path=settings.audit.path,
            passwords=passwords,
        )
    return app


def uvicorn_config(settings: KmsSettings, app: Any, **extra: Any) -> uvicorn.Config:
    """Build the uvicorn configuration of the KMS listener for ``settings``.

    Call it after :func:`serve` has set ``HYOK_KMS_CONFIG``, which the SSL
    context factory reads.
    """
    server = settings.server
    tls: dict[str, Any] = {}
    if server.cert_file is not None and server.key_file is not None:
        # Checked here, in the parent, so that a bad file fails before workers start.
        server_ssl_context(server.cert_file, server.key_file, min_version=server.min_tls_version)
        tls = {
            "ssl_certfile": str(server.cert_file),
            "ssl_keyfile": str(server.key_file),
            "ssl_context_factory": _ssl_context_from_env,
        }
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        http=KmsHttpProtocol,
        # uvicorn's access log writes the request target, with every parameter value.
        access_log=False,
        # X-Forwarded-For must not change the source IP that handlers see.
        proxy_headers=False,
        server_header=False,
        log_config=None,
        timeout_keep_alive=75,
        # A client that keeps an idle connection open must not hold up a stop for long.
        timeout_graceful_shutdown=10,
        lifespan="on",
        **tls,
        **extra,
    )


def _listen_url(settings: KmsSettings) -> str:
    server = settings.server
    host = f"[{server.host}]" if ":" in server.host else server.host
    scheme = "https" if server.tls else "http"
    return f"{scheme}://{host}:{server.port}"


def serve(config_path: Path) -> None:
    """Serve until interrupted. Configuration errors raise ConfigError before anything listens.

    Raises StartupError when the app's startup fails; the log contains the cause.
    """
    os.environ[CONFIG_ENV] = str(config_path.resolve())
    _settings_from_env.cache_clear()
    settings = _settings_from_env()
    workers = settings.server.workers
    if not settings.server.tls:
        logger.warning(
            "serving plain HTTP (server.insecure_plain_http = true): every parameter, "
            "plaintext included, crosses the network unencrypted"
        )

    if workers == 1:
        config = uvicorn_config(settings, build_app(settings))
        logger.info(
            "starting the KMS API on %s (region %s, database %s)",
            _listen_url(settings),
            settings.region,
            _shown_database(settings),
        )
        server = uvicorn.Server(config)
        with contextlib.suppress(KeyboardInterrupt):
            # uvicorn (0.55) raises the SIGINT it handled again once it has
            # shut down, which would turn a clean stop into exit status 1.
            server.run()
        if not server.started:
            raise StartupError("the KMS stopped before it served requests: see the log above")
        return

    # Migrate once here, so that the workers only check the schema.
    open_store(settings).database.dispose()
    config = uvicorn_config(
        settings, "hyok.kms.server:create_app_from_env", factory=True, workers=workers
    )
    logger.info(
        "starting the KMS API on %s with %d workers (region %s, database %s)",
        _listen_url(settings),
        workers,
        settings.region,
        _shown_database(settings),
    )
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def _shown_database(settings: KmsSettings) -> str:
    return make_url(settings.database.resolved_url).render_as_string(hide_password=True)
