"""The Keys section. NOTE: a placeholder page until the key pages are written."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hyok.console.web import BASE_PATH, View, page

__all__ = ["routes"]


@page()
async def key_list(view: View) -> Response:
    return view.render("keys/index.html", section="keys")


def routes() -> list[BaseRoute]:
    return [Route(f"{BASE_PATH}/keys", key_list, methods=["GET"])]
