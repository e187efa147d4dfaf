"""Run the proxy: the XKS listener and the admin listener, both over TLS.

With ``workers = 1`` everything runs in this process. With more, uvicorn
spawns worker processes that each build their own Proxy from the file named in
``HYOK_XKI_CONFIG``. The SSL context and protocol factories below are module
functions, because the worker configuration is pickled.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import ssl
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from hyok.common.secrets import read_secret
from hyok.common.tls import SubjectAllowList, server_ssl_context
from hyok.xki.admin import create_admin_app
from hyok.xki.app import XksApp
from hyok.xki.runtime import Proxy
from hyok.xki.settings import ProxySettings, load_settings
from hyok.xki.tls_guard import base_protocol_class, mtls_protocol_class

__all__ = ["create_app_from_env", "serve", "uvicorn_config"]

logger = logging.getLogger("hyok.xki")

CONFIG_ENV = "HYOK_XKI_CONFIG"


def create_app_from_env() -> XksApp:
    """App factory of worker processes."""
    return XksApp(Proxy(_settings_from_env()))


@functools.cache
def _settings_from_env() -> ProxySettings:
    return load_settings(Path(os.environ[CONFIG_ENV]))


def _ssl_context_from_env(
    config: uvicorn.Config, default: Callable[[], ssl.SSLContext]
) -> ssl.SSLContext:
    server = _settings_from_env().server
    return server_ssl_context(server.cert_file, server.key_file,
                              min_version=server.min_tls_version,
                              client_ca_file=server.client_ca_file)


def _log_rejected_subject(subject: str) -> None:
    logger.warning("mTLS: closed a connection whose client certificate subject %r "
                   "is not in client_subjects", subject)


@functools.cache
def _guard_class(subjects: tuple[str, ...]) -> type[asyncio.Protocol]:
    return mtls_protocol_class(base_protocol_class("httptools"), SubjectAllowList(subjects),
                               _log_rejected_subject)


def _mtls_protocol_from_env(**kwargs: Any) -> asyncio.Protocol:
    """Build the mTLS-guarded protocol in a worker, where the runtime-made class cannot travel."""
    subjects = tuple(_settings_from_env().server.client_subjects)
    return _guard_class(subjects)(**kwargs)


def uvicorn_config(settings: ProxySettings, app: Any, **extra: Any) -> uvicorn.Config:
    """Build the uvicorn configuration of the XKS listener for ``settings``."""
    server = settings.server
    # Checked here, in the parent, so that a bad file fails before workers start.
    server_ssl_context(server.cert_file, server.key_file, min_version=server.min_tls_version,
                       client_ca_file=server.client_ca_file)
    http: Any = "httptools"
    if server.client_ca_file is not None:
        SubjectAllowList(server.client_subjects)
        http = _mtls_protocol_from_env
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        http=http,
        loop="uvloop",
        ssl_certfile=str(server.cert_file),
        ssl_keyfile=str(server.key_file),
        ssl_context_factory=_ssl_context_from_env,
        access_log=False,
        # Neither listener sits behind a trusted reverse proxy: X-Forwarded-For
        # must not change the client address that the audit log records.
        proxy_headers=False,
        server_header=False,
        date_header=False,
        log_config=None,
        timeout_keep_alive=75,
        backlog=4096,
        **extra,
    )


def _start_admin(settings: ProxySettings, proxy: Proxy) -> threading.Thread | None:
    admin = settings.admin
    if admin is None or not admin.enabled:
        return None
    token = read_secret(env=admin.token.env, file=admin.token.file, what="admin token")
    app = create_admin_app(proxy.backends, token=token, audit=proxy.audit,
                           executor=proxy.executor)
    config = uvicorn_config(settings, app, lifespan="off")
    config.host, config.port, config.http = admin.host, admin.port, "httptools"
    server = uvicorn.Server(config)
    # uvicorn leaves signal handling to the main thread's server.
    thread = threading.Thread(target=server.run, name="hyok-admin", daemon=True)
    thread.start()
    logger.info("starting the admin API on https://%s:%d", admin.host, admin.port)
    return thread


def serve(config_path: Path) -> None:
    """Serve until interrupted. Configuration errors raise before anything listens."""
    os.environ[CONFIG_ENV] = str(config_path.resolve())
    _settings_from_env.cache_clear()
    settings = _settings_from_env()
    workers = settings.server.workers
    stores = ", ".join(f"{s.name} at {s.uri_path}" for s in settings.keystores)
    if workers == 1:
        proxy = Proxy(settings)
        _start_admin(settings, proxy)
        config = uvicorn_config(settings, XksApp(proxy), lifespan="on")
        logger.info("starting the XKS proxy on https://%s:%d (key stores: %s)",
                    settings.server.host, settings.server.port, stores)
        try:
            uvicorn.Server(config).run()
        finally:
            proxy.close()
        return

    # Metrics of all workers are merged through a shared directory.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="hyok-metrics-")
    admin_proxy = Proxy(settings)
    _start_admin(settings, admin_proxy)
    config = uvicorn_config(settings, "hyok.xki.server:create_app_from_env", factory=True,
                            workers=workers, lifespan="on")
    logger.info("starting the XKS proxy on https://%s:%d with %d workers (key stores: %s)",
                settings.server.host, settings.server.port, workers, stores)
    try:
        Multiprocess(config, sockets=[config.bind_socket()]).run()
    finally:
        admin_proxy.close()
