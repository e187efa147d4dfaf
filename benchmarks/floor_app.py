"""The throughput floor of the XKI proxy: a trivial ASGI app on the proxy's own server stack.

``xki_load.py`` measures each XKS operation against this app. The app reads
the request body and responds to every request with the same small JSON body,
so whatever separates its figures from the proxy's is the work of hyok itself.

The listener is built by ``hyok.xki.server.uvicorn_config`` from the proxy's
own ``xki.toml``, so the TLS certificate, the SSL context (protocol versions,
cipher suites, ALPN), httptools, uvloop, the keep-alive timeout, the backlog
and the worker count are those of the proxy. Only the port differs.

Run it by hand with::

    python benchmarks/floor_app.py --config DIR/xki.toml --port 9443
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Final

import uvicorn
from uvicorn.supervisors import Multiprocess

from hyok.xki.server import CONFIG_ENV, uvicorn_config
from hyok.xki.settings import load_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]

FLOOR_BODY: Final = b'{"status":"ok"}'
# The proxy's XKS responses name only the content type, so uvicorn frames both
# with chunked transfer encoding and the comparison stays fair.
_HEADERS: Final = [(b"content-type", b"application/json")]


async def app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    """Read the whole request body, then send ``FLOOR_BODY`` with status 200."""
    if scope["type"] != "http":
        return
    more_body = True
    while more_body:
        message = await receive()
        more_body = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": FLOOR_BODY})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--config", type=Path, required=True,
                        help="xki.toml of the proxy whose TLS files and settings to copy")
    parser.add_argument("--port", type=int, required=True, help="TCP port on the proxy's host")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # Worker processes build their SSL context from the file this variable names.
    os.environ[CONFIG_ENV] = str(options.config.resolve())
    settings = load_settings(options.config)
    workers = settings.server.workers
    if workers == 1:
        config = uvicorn_config(settings, app, lifespan="off")
        config.port = options.port
        uvicorn.Server(config).run()
        return
    # Workers import the app by name: this file's folder is on their sys.path.
    config = uvicorn_config(settings, "floor_app:app", workers=workers, lifespan="off")
    config.port = options.port
    Multiprocess(config, sockets=[config.bind_socket()]).run()


if __name__ == "__main__":
    main()
