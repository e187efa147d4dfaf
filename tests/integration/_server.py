"""Run an ASGI app in a real uvicorn server over TLS on loopback, in a background thread.

Example::

    with serve_tls(app, ssl_context=server_context) as base_url:
        with httpx.Client(verify=client_context, trust_env=False) as client:
            client.get(f"{base_url}/health")
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import uvicorn

__all__ = ["serve_tls"]

StrPath = str | os.PathLike[str]


@contextmanager
def serve_tls(
    app: Any,
    *,
    ssl_context: ssl.SSLContext | None = None,
    cert_file: StrPath | None = None,
    key_file: StrPath | None = None,
    http: type[asyncio.Protocol] | Literal["auto", "httptools", "h11"] = "httptools",
    loop: Literal["auto", "asyncio", "uvloop"] = "auto",
    host: str = "127.0.0.1",
    lifespan: Literal["auto", "on", "off"] = "off",
    startup_timeout: float = 10.0,
    shutdown_timeout: float = 10.0,
    **config_options: Any,
) -> Iterator[str]:
    """Serve ``app`` over HTTPS on an ephemeral port of ``host`` and yield the base URL.

    Give either ``ssl_context`` (used as it is) or ``cert_file`` with an
    optional ``key_file`` (uvicorn's own context). ``http`` is a uvicorn
    protocol class, such as a class from ``hyok.xki.tls_guard``, or a uvicorn
    implementation name. ``config_options`` are passed on to ``uvicorn.Config``.
    The yielded URL has no trailing slash, for example
    ``https://127.0.0.1:53412``. The server stops when the block exits, and a
    server that does not start or stop in time raises RuntimeError.
    """
    if (ssl_context is None) == (cert_file is None):
        raise ValueError("pass exactly one of ssl_context and cert_file (with key_file)")
    tls_options: dict[str, Any]
    if ssl_context is not None:
        context = ssl_context
        tls_options = {"ssl_context_factory": lambda _config, _default: context}
    else:
        tls_options = {"ssl_certfile": cert_file, "ssl_keyfile": key_file}

    options: dict[str, Any] = {
        "host": host,
        "port": 0,
        "http": http,
        "loop": loop,
        "lifespan": lifespan,
        # None keeps uvicorn from replacing the test process's logging setup.
        "log_config": None,
        "timeout_graceful_shutdown": 5,
        **tls_options,
        **config_options,
    }
    server = uvicorn.Server(uvicorn.Config(app, **options))
    # Signal handlers can only be installed in the main thread, and uvicorn
    # skips them in other threads.
    thread = threading.Thread(target=server.run, name="uvicorn-test-server", daemon=True)
    thread.start()
    try:
        port = _wait_for_port(server, thread, startup_timeout)
        url_host = f"[{host}]" if ":" in host else host
        yield f"https://{url_host}:{port}"
    finally:
        _stop(server, thread, shutdown_timeout)


def _wait_for_port(server: uvicorn.Server, thread: threading.Thread, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("uvicorn exited during startup; see its log output above")
        if time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start within {timeout} seconds")
        time.sleep(0.01)
    sockets = server.servers[0].sockets
    port: int = sockets[0].getsockname()[1]
    return port


def _stop(server: uvicorn.Server, thread: threading.Thread, timeout: float) -> None:
    server.should_exit = True
    thread.join(timeout)
    if thread.is_alive():
        # force_exit stops waiting for open connections and background tasks.
        server.force_exit = True
        thread.join(5)
    if thread.is_alive():
        raise RuntimeError(f"uvicorn did not stop within {timeout + 5} seconds")
