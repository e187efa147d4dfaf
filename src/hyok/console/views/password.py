"""The password page: a signed-in account root or RAM user changes its own console password.

A RAM user whose login profile has PasswordResetRequired reaches only this
page and sign-out until it has chosen a new password (see ``page`` in
:mod:`hyok.console.web`). The current password is verified as at sign-in,
and wrong ones count against the same failed sign-in limit. A change ends
the session and starts a new one, so that the old session token stops
working.
"""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Final

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hyok.common.errors import RequestError
from hyok.common.secrets import Secret
from hyok.console.web import N_, PASSWORD_PATH, SESSION_COOKIE, View, page
from hyok.kms.domain.passwords import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH
from hyok.kms.domain.policy_principals import CallerKind
from hyok.kms.ram.errors import ConsoleSignInError

__all__ = ["routes"]

logger = logging.getLogger("hyok.console")

_INVALID_CHARS: Final = N_("Use printable ASCII characters only, space included.")
_WEAK: Final = N_("Use at least one letter and one digit.")
_UNCHANGED: Final = N_("Choose a password other than the current one.")


async def _form(view: View, *, status: int = 200, error: str | None = None) -> Response:
    session = view.session
    assert session is not None
    required = False
    passwords = view.console.passwords
    if passwords is not None and session.principal.kind is CallerKind.USER:
        required = await view.run(passwords.password_reset_required, session.principal)
    rules = view.gettext(
        "%(min)s to %(max)s printable ASCII characters (space included), with at least one "
        "letter and one digit. It must differ from the current password.",
        min=MIN_PASSWORD_LENGTH,
        max=MAX_PASSWORD_LENGTH,
    )
    return view.render(
        "password.html",
        status=status,
        error=error,
        required=required,
        rules=rules,
        # Links elsewhere would only lead back here until the password is changed.
        hide_navigation=required,
    )


@page(before_password_change=True)
async def password_form(view: View) -> Response:
    if view.console.passwords is None or _is_role(view):
        return view.page_not_found()
    return await _form(view)


@page(before_password_change=True)
async def change_password(view: View) -> Response:
    console = view.console
    session = view.session
    assert session is not None
    if console.passwords is None or _is_role(view):
        return view.page_not_found()
    current = await view.form_text("current_password", strip=False)
    new = await view.form_text("new_password", strip=False)
    repeated = await view.form_text("repeat_password", strip=False)
    # The keys of sign-in: wrong current passwords count against the same limit.
    keys = [f"ip:{view.source_ip}", f"name:{view.principal_name.lower()}"]

    async def failed(message: str, status: int) -> Response:
        return await _form(view, status=status, error=message)

    wait = console.limiter.retry_after(keys)
    if wait is not None:
        retry_at = datetime.now(UTC) + timedelta(seconds=wait)
        response = await failed(
            view.gettext(
                "Too many failed attempts. Try again after %(time)s.",
                time=view.format_time(retry_at),
            ),
            429,
        )
        response.headers["retry-after"] = str(math.ceil(wait))
        return response
    problem = _input_problem(view, current, new, repeated)
    if problem is not None:
        return await failed(problem, 400)
    try:
        await view.run(
            console.passwords.change_password, session.principal, Secret(current), Secret(new)
        )
    except ConsoleSignInError:
        console.limiter.record_failure(keys)
        logger.warning(
            "console password change rejected: wrong current password, principal=%s source_ip=%s",
            session.principal.arn,
            view.source_ip,
        )
        return await failed(view.gettext("The current password is incorrect."), 401)
    except RequestError as exc:
        # The password policy's message names the rule and never the password.
        return await failed(_policy_message(view, exc.code) or exc.message, 400)

    console.limiter.reset(keys[1])
    await view.run(console.sessions.end, session.token)
    renewed = await view.run(console.sessions.start, session.principal)
    view.session = renewed
    view.set_cookie(SESSION_COOKIE, renewed.token, max_age=None, http_only=True)
    logger.info(
        "console password changed: principal=%s source_ip=%s",
        session.principal.arn,
        view.source_ip,
    )
    return view.render(
        "message.html",
        title=view.gettext("Password changed"),
        message=view.gettext("Your new password is in effect. Use it at your next sign-in."),
    )


def _policy_message(view: View, code: str) -> str | None:
    """Return the broken password rule of ``code`` in the page's language, None if unknown."""
    rule = code.removeprefix("InvalidParameter.Password.")
    if rule == "Length":
        return view.gettext(
            "Use %(min)s to %(max)s characters.", min=MIN_PASSWORD_LENGTH, max=MAX_PASSWORD_LENGTH
        )
    messages = {
        "InvalidChars": _INVALID_CHARS,
        "Weak": _WEAK,
        "Unchanged": _UNCHANGED,
    }
    message = messages.get(rule)
    return view.gettext(message) if message is not None else None


def _input_problem(view: View, current: str, new: str, repeated: str) -> str | None:
    if not current or not new or not repeated:
        return view.gettext("Enter your current password, then the new password twice.")
    if new != repeated:
        return view.gettext("The two new passwords differ. Type the same new password twice.")
    return None


def _is_role(view: View) -> bool:
    return view.session is not None and view.session.principal.kind is CallerKind.ROLE


def routes() -> list[BaseRoute]:
    return [
        Route(PASSWORD_PATH, password_form, methods=["GET"]),
        Route(PASSWORD_PATH, change_password, methods=["POST"]),
    ]
