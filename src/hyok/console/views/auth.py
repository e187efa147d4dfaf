"""Sign-in, sign-out, the language switch, the region selector and the pages around them."""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime, timedelta
from typing import Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from hyok.common.secrets import Secret
from hyok.console.i18n import LOCALES
from hyok.console.web import BASE_PATH, N_, SESSION_COOKIE, View, page, safe_return_path
from hyok.kms.ram.errors import ConsoleSignInError

__all__ = ["not_found", "routes"]

logger = logging.getLogger("hyok.console")

SIGN_IN_PATH: Final = f"{BASE_PATH}/sign-in"
HOME_PATH: Final = f"{BASE_PATH}/instances"
_MAX_SIGN_IN_NAME: Final = 128
# Sign-in names that are safe to write to the log: an account ID, or user@account ID.
_LOGGED_NAME: Final = re.compile(r"([A-Za-z0-9._-]{1,64}@)?[0-9]{12,16}")

_NOTICES: Final = {
    "idle": N_("Your session ended because it was not used for too long. Sign in again."),
    "ended": N_("Your session has ended. Sign in again."),
    "signed-out": N_("You have signed out."),
}
_SIGN_IN_FAILED: Final = N_(
    "The sign-in name or the password is incorrect. Check both; if you have no console "
    "password, ask the administrator of your account to set one."
)


@page(signed_in=False)
async def home(view: View) -> Response:
    """Send a signed-in user to the instances, and anyone else to the sign-in page."""
    return view.redirect(HOME_PATH if view.session is not None else SIGN_IN_PATH)


@page(signed_in=False)
async def sign_in_form(view: View) -> Response:
    query = view.request.query_params
    next_path = safe_return_path(query.get("next"), HOME_PATH)
    if view.session is not None:
        return view.redirect(next_path)
    notice = _NOTICES.get(query.get("reason", ""))
    return view.render(
        "sign_in.html",
        notice=view.gettext(notice) if notice else None,
        next_path=next_path,
        sign_in_name="",
        error=None,
    )


@page(signed_in=False)
async def sign_in(view: View) -> Response:
    console = view.console
    name = (await view.form_text("sign_in_name"))[:_MAX_SIGN_IN_NAME]
    password = await view.form_text("password", strip=False)
    next_path = safe_return_path(await view.form_text("next"), HOME_PATH)
    keys = [f"ip:{view.source_ip}", f"name:{name.lower()}"]

    def failed(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
        response = view.render(
            "sign_in.html",
            status=status,
            notice=None,
            next_path=next_path,
            sign_in_name=name,
            error=message,
        )
        response.headers.update(headers or {})
        return response

    wait = console.limiter.retry_after(keys)
    if wait is not None:
        retry_at = datetime.now(UTC) + timedelta(seconds=wait)
        logger.warning(
            "console sign-in rejected: too many failures, source_ip=%s sign_in_name=%s",
            view.source_ip,
            _logged_name(name),
        )
        return failed(
            view.gettext(
                "Too many failed sign-ins. Try again after %(time)s.",
                time=view.format_time(retry_at),
            ),
            429,
            {"retry-after": str(math.ceil(wait))},
        )
    if not name or not password:
        return failed(view.gettext("Enter your sign-in name and your password."), 400)

    try:
        principal = await view.run(console.sign_in, name, Secret(password))
    except ConsoleSignInError:
        console.limiter.record_failure(keys)
        logger.warning(
            "console sign-in failed: source_ip=%s sign_in_name=%s",
            view.source_ip,
            _logged_name(name),
        )
        return failed(view.gettext(_SIGN_IN_FAILED), 401)

    session = await view.run(console.sessions.start, principal)
    console.limiter.reset(keys[1])
    view.session = session
    view.set_cookie(SESSION_COOKIE, session.token, max_age=None, http_only=True)
    logger.info("console sign-in: principal=%s source_ip=%s", principal.arn, view.source_ip)
    return view.redirect(next_path)


@page(before_password_change=True)
async def sign_out(view: View) -> Response:
    session = view.session
    assert session is not None
    await view.run(view.console.sessions.end, session.token)
    view.delete_cookie(SESSION_COOKIE)
    logger.info(
        "console sign-out: principal=%s source_ip=%s", session.principal.arn, view.source_ip
    )
    view.session = None
    return view.redirect(SIGN_IN_PATH, reason="signed-out")


@page(signed_in=False)
async def choose_language(view: View) -> Response:
    locale = await view.form_text("language")
    if locale in LOCALES:
        view.set_language(locale)
    return view.redirect(safe_return_path(await view.form_text("return_to"), HOME_PATH))


@page()
async def choose_region(view: View) -> Response:
    query = view.request.query_params
    region = query.get("region", "")
    return_to = safe_return_path(query.get("return_to"), HOME_PATH)
    if region == view.console.kms.region:
        return view.redirect(return_to)
    return view.render(
        "message.html",
        status=400,
        title=view.gettext("Region not served here"),
        message=view.gettext(
            "This KMS serves the region %(region)s only. To manage another region, open the "
            "console of the KMS that serves it.",
            region=view.console.kms.region,
        ),
    )


@page(signed_in=False)
async def _not_found(view: View) -> Response:
    return view.page_not_found()


async def not_found(request: Request) -> Response:
    """Return the console's 404 page for a console path that no route serves."""
    return await _not_found(request)


def _logged_name(name: str) -> str:
    return name if _LOGGED_NAME.fullmatch(name) else "(malformed)"


def routes() -> list[BaseRoute]:
    return [
        Route(BASE_PATH, home, methods=["GET"]),
        Route(BASE_PATH + "/", home, methods=["GET"]),
        Route(SIGN_IN_PATH, sign_in_form, methods=["GET"]),
        Route(SIGN_IN_PATH, sign_in, methods=["POST"]),
        Route(f"{BASE_PATH}/sign-out", sign_out, methods=["POST"]),
        Route(f"{BASE_PATH}/language", choose_language, methods=["POST"]),
        Route(f"{BASE_PATH}/region", choose_region, methods=["GET"]),
    ]
