"""The request side of every console page: :class:`View` and the :func:`page` decorator.

A page function takes a :class:`View` and returns a response. The decorator
has by then chosen the language, resumed the session (or redirected to the
sign-in page), and checked the CSRF token of a POST. Through the view a page
calls KMS actions as the signed-in principal (:meth:`View.call`), reads its
form (:meth:`View.form`), translates text (:meth:`View.gettext`) and renders
a template (:meth:`View.render`).
"""

from __future__ import annotations

import asyncio
import contextvars
import gettext as gettext_module
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from hyok.common.errors import RequestError
from hyok.console.csrf import CSRF_FIELD, CSRF_HEADER, new_presession_token, tokens_match
from hyok.console.csrf import valid_token_shape as valid_cookie_token
from hyok.console.i18n import (
    LOCALES,
    format_time,
    language_tag,
    locale_from_header,
    translations,
)
from hyok.console.security import RequestBodyTooLargeError
from hyok.console.sessions import ActiveSession, SessionState, sign_in_name
from hyok.kms.api.errors import KmsError
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
from hyok.kms.store import StoreUnavailableError

if TYPE_CHECKING:
    from hyok.console.app import Console

__all__ = [
    "BASE_PATH",
    "LANGUAGE_COOKIE",
    "N_",
    "PASSWORD_PATH",
    "PRESESSION_COOKIE",
    "SESSION_COOKIE",
    "ActionError",
    "View",
    "page",
    "safe_return_path",
    "template_gettext",
    "template_ngettext",
]

logger = logging.getLogger("hyok.console")

BASE_PATH: Final = "/console"
PASSWORD_PATH: Final = f"{BASE_PATH}/password"
"""The page where a signed-in principal changes its console password."""
SESSION_COOKIE: Final = "__Host-hyok_console"
PRESESSION_COOKIE: Final = "__Host-hyok_console_csrf"
LANGUAGE_COOKIE: Final = "__Host-hyok_console_lang"
_LANGUAGE_MAX_AGE: Final = 365 * 24 * 3600
# Uploads (a proxy configuration file) and key policies (32 KB) fit well within this.
MAX_FORM_FIELDS: Final = 64
MAX_FORM_PART_BYTES: Final = 128 * 1024

_T = TypeVar("_T")
_active: contextvars.ContextVar[gettext_module.NullTranslations] = contextvars.ContextVar(
    "hyok_console_translations"
)
_NO_TRANSLATION: Final = gettext_module.NullTranslations()


def N_(message: str) -> str:
    """Mark a message for extraction; :meth:`View.gettext` translates it where it is shown."""
    return message


def template_gettext(message: str) -> str:
    """Translate a template message into the page's language.

    Jinja2's i18n extension (newstyle) wraps this function, then fills
    ``%(name)s`` values and escapes them.
    """
    return _active.get(_NO_TRANSLATION).gettext(message)


def template_ngettext(singular: str, plural: str, number: int) -> str:
    """Translate a template message with a plural form; Jinja2's i18n extension wraps it."""
    return _active.get(_NO_TRANSLATION).ngettext(singular, plural, number)


def safe_return_path(value: str | None, default: str = BASE_PATH) -> str:
    """Return ``value`` when it is a console path of this origin, else ``default``."""
    if not value or len(value) > 512:
        return default
    if not (value == BASE_PATH or value.startswith(BASE_PATH + "/")):
        return default
    if "//" in value or "\\" in value or any(ord(c) < 0x20 for c in value):
        return default
    return value


@dataclass(frozen=True)
class ActionError:
    """A failed KMS action as a page shows it: the code, the message, the request ID.

    ``fields`` maps form fields to the message that concerns them.
    """

    code: str
    message: str
    request_id: str
    http_status: int
    fields: Mapping[str, str]


class SignInRequiredError(Exception):
    """The page needs a session and the request has none; ``reason`` is idle, ended or None."""

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason or "no session")
        self.reason = reason


class View:
    """One request to a console page, with its language, session and CSRF token."""

    def __init__(
        self,
        console: Console,
        request: Request,
        *,
        locale: str,
        session: ActiveSession | None,
        presession_token: str,
    ) -> None:
        self.console = console
        self.request = request
        self.locale = locale
        self.session = session
        self.presession_token = presession_token
        self.translations = translations(locale)
        self._form: FormData | None = None
        self._cookies: list[Callable[[Response], None]] = []

    def __repr__(self) -> str:
        return f"View({self.request.method} {self.request.url.path}, locale={self.locale})"

    # --- Who and where ----------------------------------------------------------------

    @property
    def principal(self) -> RamIdentity:
        """The signed-in principal; only pages that require a session may ask."""
        if self.session is None:
            raise RuntimeError("this page has no session")
        return self.session.principal

    @property
    def principal_name(self) -> str:
        """The sign-in name of the principal, for the top bar."""
        return sign_in_name(self.principal)

    @property
    def can_change_password(self) -> bool:
        """Whether the principal has a console password of its own to change (a role has none)."""
        return (
            self.console.passwords is not None
            and self.session is not None
            and self.session.principal.kind is not CallerKind.ROLE
        )

    @property
    def csrf_token(self) -> str:
        """The token that this page's forms carry in the ``csrf_token`` field."""
        if self.session is not None:
            return self.session.csrf_token
        return self.presession_token

    @property
    def source_ip(self) -> str:
        client = self.request.client
        return client.host if client else ""

    @property
    def path(self) -> str:
        """The request path with its query, to come back to after a language switch."""
        query = self.request.url.query
        return self.request.url.path + (f"?{query}" if query else "")

    # --- Text -------------------------------------------------------------------------

    def gettext(self, message: str, **values: Any) -> str:
        """Translate ``message`` into the page's language and fill its ``%(name)s`` values."""
        text = self.translations.gettext(message)
        return text % values if values else text

    def format_time(self, value: datetime | str | None) -> str:
        """Format a time (or an API time string such as ``2026-05-20T06:34:21Z``) for the page."""
        if value is None or value == "":
            return ""
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return format_time(value, self.locale)

    # --- Input ------------------------------------------------------------------------

    async def form(self) -> FormData:
        """Return the request's form, read once, within the console's limits."""
        if self._form is None:
            self._form = await self.request.form(
                max_files=2, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FORM_PART_BYTES
            )
        return self._form

    async def form_text(self, name: str, *, strip: bool = True) -> str:
        """Return a text field of the form, or an empty string when it is absent or a file."""
        value = (await self.form()).get(name)
        if not isinstance(value, str):
            return ""
        return value.strip() if strip else value

    # --- KMS actions ------------------------------------------------------------------

    async def call(self, action: str, **parameters: str | int | None) -> dict[str, Any]:
        """Run a KMS action as the signed-in principal, as the SDK would call it.

        None values are left out. Raises ActionFailedError with an
        :class:`ActionError` for every failure, so a page can show it.
        """
        return await self.call_with(action, parameters)

    async def call_with(
        self,
        action: str,
        parameters: Mapping[str, str | int | None],
        *,
        fields: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Like :meth:`call`, with ``fields`` mapping API parameter names to form fields."""
        sent = {name: str(value) for name, value in parameters.items() if value is not None}
        request_id = str(uuid.uuid4()).upper()
        try:
            return await self.console.kms.call_as(
                self.principal,
                action,
                sent,
                request_id=request_id,
                source_ip=self.source_ip,
                secure_transport=self.request.url.scheme == "https",
            )
        except RequestError as exc:
            raise ActionFailedError(_action_error(exc, request_id, fields or {})) from None

    async def run(self, function: Callable[..., _T], *args: Any) -> _T:
        """Run blocking work, such as a store call, in the console's worker threads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.console.executor, partial(function, *args))

    # --- Output -----------------------------------------------------------------------

    def render(self, template: str, *, status: int = 200, **context: Any) -> Response:
        """Render a template of ``templates/`` in the page's language."""
        token = _active.set(self.translations)
        try:
            html = self.console.templates.get_template(template).render(
                view=self,
                locales=LOCALES,
                lang=language_tag(self.locale),
                regions=self.console.regions,
                region=self.console.kms.region,
                base=BASE_PATH,
                csrf_field=CSRF_FIELD,
                **context,
            )
        finally:
            _active.reset(token)
        return self.finish(HTMLResponse(html, status_code=status))

    def page_not_found(self) -> Response:
        """Render the console's 404 page."""
        return self.render(
            "message.html",
            status=404,
            title=self.gettext("Page not found"),
            message=self.gettext("The console has no page at this address."),
        )

    def redirect(self, path: str, **query: str) -> Response:
        """Redirect (303) to a console path after a POST, with a notice key in the query."""
        target = safe_return_path(path)
        if query:
            target += "?" + "&".join(f"{name}={value}" for name, value in query.items())
        return self.finish(RedirectResponse(target, status_code=303))

    def set_cookie(self, name: str, value: str, *, max_age: int | None, http_only: bool) -> None:
        """Set a ``__Host-`` cookie (Secure, Path=/, SameSite=Strict) on the response."""
        self._cookies.append(
            lambda response: response.set_cookie(
                name,
                value,
                max_age=max_age,
                path="/",
                secure=True,
                httponly=http_only,
                samesite="strict",
            )
        )

    def delete_cookie(self, name: str) -> None:
        self._cookies.append(
            lambda response: response.delete_cookie(
                name, path="/", secure=True, httponly=True, samesite="strict"
            )
        )

    def set_language(self, locale: str) -> None:
        """Remember a language in its cookie, and use it for this response."""
        self.locale = locale
        self.translations = translations(locale)
        self.set_cookie(LANGUAGE_COOKIE, locale, max_age=_LANGUAGE_MAX_AGE, http_only=True)

    async def close(self) -> None:
        """Close the uploaded files of the form, if the page read one."""
        if self._form is not None:
            await self._form.close()

    def finish(self, response: Response) -> Response:
        """Apply the cookies that the page set, once."""
        for apply in self._cookies:
            apply(response)
        self._cookies.clear()
        return response


class ActionFailedError(Exception):
    """A KMS action that a page ran failed; ``error`` describes the failure for the page."""

    def __init__(self, error: ActionError) -> None:
        super().__init__(error.code)
        self.error = error


def _action_error(exc: RequestError, request_id: str, fields: Mapping[str, str]) -> ActionError:
    parameter = getattr(exc, "parameter", None) if isinstance(exc, KmsError) else None
    field_errors: dict[str, str] = {}
    if isinstance(parameter, str) and parameter in fields:
        field_errors[fields[parameter]] = exc.message
    return ActionError(
        code=exc.code,
        message=exc.message,
        request_id=request_id,
        http_status=exc.http_status,
        fields=field_errors,
    )


# --- The decorator ----------------------------------------------------------------------

PageFunction = Callable[[View], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


async def _must_change_password(view: View) -> bool:
    # One read of the login profile per page of a RAM user, so that a reset that
    # an administrator requires applies at the user's next page.
    passwords = view.console.passwords
    session = view.session
    if passwords is None or session is None or session.principal.kind is not CallerKind.USER:
        return False
    return bool(await view.run(passwords.password_reset_required, session.principal))


def page(
    *, signed_in: bool = True, before_password_change: bool = False
) -> Callable[[PageFunction], Endpoint]:
    """Make a page function a Starlette endpoint.

    With ``signed_in``, a request without a valid session is redirected to
    the sign-in page, which names the reason (idle timeout, ended), and a
    RAM user that must change its password is redirected to the password
    page, unless ``before_password_change`` allows the page. Every POST
    must carry the CSRF token, else it gets 403 and the page function does
    not run.
    """

    def decorate(function: PageFunction) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            console: Console = request.app.state.console
            view = await _open_view(console, request)
            try:
                if signed_in and view.session is None:
                    raise SignInRequiredError(request.state.session_state)
                if signed_in and not before_password_change and await _must_change_password(view):
                    return view.redirect(PASSWORD_PATH)
                if view.session is not None and not console.regions:
                    await _load_regions(view)
                if request.method == "POST" and not await _csrf_valid(view):
                    logger.warning(
                        "console request rejected: missing or wrong CSRF token, path=%s "
                        "source_ip=%s",
                        request.url.path,
                        view.source_ip,
                    )
                    return view.render(
                        "message.html",
                        status=403,
                        title=view.gettext("Request rejected"),
                        message=view.gettext(
                            "The form is out of date or was not sent from this console. "
                            "Reload the page and try again."
                        ),
                    )
                return await function(view)
            except SignInRequiredError as exc:
                if exc.reason is not None:
                    view.delete_cookie(SESSION_COOKIE)
                query = {"reason": exc.reason} if exc.reason else {}
                if request.method == "GET":
                    query["next"] = safe_return_path(view.path)
                return view.redirect(f"{BASE_PATH}/sign-in", **_quoted(query))
            except RequestBodyTooLargeError:
                return view.render(
                    "message.html",
                    status=413,
                    title=view.gettext("Request too large"),
                    message=view.gettext(
                        "The form is larger than the console accepts. Shorten it and try again."
                    ),
                )
            except StoreUnavailableError:
                logger.warning("console: the KMS database is unavailable", exc_info=True)
                return view.render(
                    "message.html",
                    status=503,
                    title=view.gettext("Service unavailable"),
                    message=view.gettext("The KMS database is unavailable. Try again later."),
                )
            finally:
                await view.close()

        endpoint.__name__ = function.__name__
        endpoint.__doc__ = function.__doc__
        return endpoint

    return decorate


def _quoted(query: Mapping[str, str]) -> dict[str, str]:
    return {name: quote(value, safe="/") for name, value in query.items()}


async def _open_view(console: Console, request: Request) -> View:
    cookies = request.cookies
    chosen = cookies.get(LANGUAGE_COOKIE)
    locale = (
        chosen if chosen in LOCALES else locale_from_header(request.headers.get("accept-language"))
    )

    session: ActiveSession | None = None
    state: str | None = None
    token = cookies.get(SESSION_COOKIE)
    if token:
        loop = asyncio.get_running_loop()
        outcome, session = await loop.run_in_executor(
            console.executor, console.sessions.resume, token
        )
        if outcome is SessionState.IDLE:
            state = "idle"
        elif outcome is SessionState.ENDED:
            state = "ended"
    request.state.session_state = state

    presession = cookies.get(PRESESSION_COOKIE, "")
    new_presession = not valid_cookie_token(presession)
    if new_presession:
        presession = new_presession_token()
    view = View(console, request, locale=locale, session=session, presession_token=presession)
    if new_presession:
        view.set_cookie(PRESESSION_COOKIE, presession, max_age=None, http_only=True)
    return view


async def _load_regions(view: View) -> None:
    try:
        described = await view.call("DescribeRegions")
    except ActionFailedError:
        # The region selector shows the KMS's own region; the next page tries again.
        return
    view.console.regions = [item["RegionId"] for item in described["Regions"]["Region"]]


async def _csrf_valid(view: View) -> bool:
    submitted = view.request.headers.get(CSRF_HEADER)
    if submitted is None:
        content_type = view.request.headers.get("content-type", "")
        if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
            submitted = await view.form_text(CSRF_FIELD)
    return tokens_match(view.csrf_token, submitted)
