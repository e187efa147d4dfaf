"""The web console: a Starlette app that the KMS app serves under ``/console``.

Every console action runs a KMS action as the signed-in principal through
:meth:`hyok.kms.api.app.KmsApp.call_as`, with the authorisation, parameter
checks and audit record of a signed API request. The console contains no
business rule of its own.

How the code is laid out, and how to add a page:

- ``views/<section>.py``: the page functions of one navigation section. A
  page is ``@page()`` on ``async def name(view: View) -> Response``
  (:mod:`hyok.console.web`), which resumes the session and checks the CSRF
  token of a POST. Each module has a ``routes()`` list; add it to
  :func:`_routes` below.
- ``templates/<section>/<page>.html``: extends ``base.html`` and fills
  ``{% block content %}``; set ``section`` to the navigation entry to mark.
  ``_forms.html`` has macros for labelled fields with their errors, and for
  the CSRF field. Every text goes through ``_()`` or ``{% trans %}``.
- ``static/``: CSS and script of hyok's own, served at ``/console/static``.
  The Content-Security-Policy allows scripts and styles from there only, so
  a template has no inline script or style.
- ``locale/``: the message catalogues. After changing text, run
  ``python -m hyok.console.catalog update``, translate the new entries of
  ``locale/zh_CN/LC_MESSAGES/messages.po``, then
  ``python -m hyok.console.catalog check``.

A page calls an action with ``await view.call("GetKmsInstance", KmsInstanceId=...)``,
which returns the action's result or raises ActionFailedError whose
``error`` (:class:`~hyok.console.web.ActionError`) the template shows, with
``fields`` naming the form fields that the failed parameter concerns.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from hyok.common.secrets import Secret
from hyok.console.errors import ERROR_SUMMARIES
from hyok.console.ratelimit import FailedSignInLimiter
from hyok.console.security import ConsoleGuard
from hyok.console.sessions import SessionManager
from hyok.console.web import BASE_PATH, template_gettext, template_ngettext
from hyok.kms.api.app import KmsApp, Receive, Scope, Send
from hyok.kms.domain.policy_principals import RamIdentity
from hyok.kms.store.console_sessions import ConsoleSessionStore
from hyok.kms.store.db import Database

__all__ = ["Console", "SignIn", "build_console"]

logger = logging.getLogger("hyok.console")

SignIn = Callable[[str, Secret], RamIdentity]
"""Verify a sign-in name and password and return the principal (blocking).

Raises :class:`hyok.kms.ram.errors.ConsoleSignInError` for every failure.
"""


class PasswordChanges(Protocol):
    """A principal's own console password, as LoginProfileService keeps it (blocking)."""

    def password_reset_required(self, identity: RamIdentity) -> bool: ...

    def change_password(self, identity: RamIdentity, current: Secret, new: Secret) -> None: ...


class Console:
    """The console's dependencies and its ASGI app.

    ``kms`` runs the actions, ``sign_in`` verifies passwords, ``sessions``
    keeps sessions, ``limiter`` counts failed sign-ins, and ``executor``
    runs blocking work (None: the loop's default executor). ``audit_path``
    is the KMS audit trail, whose events of a key its details page shows
    (None: the page shows none). ``passwords`` lets a principal change its
    password and makes a RAM user whose login profile has
    PasswordResetRequired change it first (None: no password page).
    """

    def __init__(
        self,
        kms: KmsApp,
        *,
        sign_in: SignIn,
        sessions: SessionManager,
        limiter: FailedSignInLimiter,
        executor: Executor | None = None,
        audit_path: Path | None = None,
        passwords: PasswordChanges | None = None,
    ) -> None:
        self.kms = kms
        self.audit_path = audit_path
        self.passwords = passwords
        self.sign_in = sign_in
        self.sessions = sessions
        self.limiter = limiter
        self.executor = executor
        self.regions: list[str] = []
        """The regions of DescribeRegions, read at the first signed-in page."""
        self.templates = Environment(
            loader=PackageLoader("hyok.console", "templates"),
            autoescape=True,
            undefined=StrictUndefined,
            extensions=["jinja2.ext.i18n"],
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.install_gettext_callables(  # type: ignore[attr-defined]
            template_gettext, template_ngettext, newstyle=True
        )
        self.templates.globals["error_summaries"] = ERROR_SUMMARIES
        app = Starlette(routes=_routes())
        app.state.console = self
        self._app = ConsoleGuard(app)

    def __repr__(self) -> str:
        return f"Console(kms={self.kms!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def _routes() -> Sequence[BaseRoute]:
    from hyok.console.views import auth, instances, keys, password

    static = StaticFiles(packages=[("hyok.console", "static")])
    return [
        Mount(f"{BASE_PATH}/static", app=static, name="static"),
        Route(f"{BASE_PATH}/favicon.ico", _favicon, methods=["GET"]),
        *auth.routes(),
        *password.routes(),
        *keys.routes(),
        *instances.routes(),
        Route(BASE_PATH + "/{path:path}", auth.not_found, methods=["GET", "POST"]),
    ]


async def _favicon(request: Request) -> Response:
    """Send browsers that ask for favicon.ico by habit to the console's own SVG icon."""
    return RedirectResponse(f"{BASE_PATH}/static/favicon.svg", status_code=301)


def build_console(
    kms: KmsApp,
    database: Database,
    sign_in: SignIn,
    *,
    idle_timeout_seconds: float,
    session_lifetime_seconds: float,
    max_failed_sign_ins: int,
    failed_sign_in_window_seconds: float,
    executor: Executor | None = None,
    **options: Any,
) -> Console:
    """Build the console of ``kms`` with sessions in ``database``; ``options`` go to Console."""
    sessions = SessionManager(
        ConsoleSessionStore(database),
        idle_timeout=timedelta(seconds=idle_timeout_seconds),
        lifetime=timedelta(seconds=session_lifetime_seconds),
    )
    limiter = FailedSignInLimiter(max_failed_sign_ins, failed_sign_in_window_seconds)
    return Console(
        kms, sign_in=sign_in, sessions=sessions, limiter=limiter, executor=executor, **options
    )
