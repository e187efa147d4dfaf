"""The console's pure parts: CSRF tokens, the failed sign-in limit, languages, the ASGI guard."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from hyok.console.catalog import check
from hyok.console.csrf import new_presession_token, session_csrf_token, tokens_match
from hyok.console.i18n import format_time, locale_from_header, translations
from hyok.console.ratelimit import FailedSignInLimiter
from hyok.console.security import ConsoleGuard
from hyok.console.web import safe_return_path


def test_csrf_token_bound_to_session() -> None:
    first, second = new_presession_token(), new_presession_token()

    assert session_csrf_token(first) == session_csrf_token(first)
    assert session_csrf_token(first) != session_csrf_token(second)
    assert session_csrf_token(first) != first
    assert tokens_match(session_csrf_token(first), session_csrf_token(first))


@pytest.mark.parametrize("submitted", [None, "", "x", "A" * 43, "é" * 43, "A" * 500])
def test_csrf_token_mismatch(submitted: str | None) -> None:
    assert not tokens_match(session_csrf_token(new_presession_token()), submitted)


def test_rate_limit_blocks_after_max_failures() -> None:
    now = [1000.0]
    limiter = FailedSignInLimiter(5, 300, clock=lambda: now[0])
    keys = ["ip:127.0.0.1", "name:123456789012"]

    for _ in range(4):
        limiter.record_failure(keys)
        now[0] += 10
    assert limiter.retry_after(keys) is None
    limiter.record_failure(keys)

    assert limiter.retry_after(keys) == pytest.approx(260)
    assert limiter.retry_after(["ip:127.0.0.1"]) == pytest.approx(260)
    assert limiter.retry_after(["ip:10.0.0.1"]) is None
    now[0] += 261
    assert limiter.retry_after(keys) is None, "the oldest failure left the window"


def test_rate_limit_reset_and_bound() -> None:
    now = [0.0]
    limiter = FailedSignInLimiter(2, 60, clock=lambda: now[0], max_keys=3)
    limiter.record_failure(["name:a", "name:a"])
    assert limiter.retry_after(["name:a"]) is not None

    limiter.reset("name:a")
    assert limiter.retry_after(["name:a"]) is None
    for name in "bcdef":
        limiter.record_failure([f"name:{name}"])
    assert "keys=3" in repr(limiter)


def test_locale_from_accept_language() -> None:
    assert locale_from_header(None) == "en"
    assert locale_from_header("zh-CN,zh;q=0.9,en;q=0.8") == "zh_CN"
    assert locale_from_header("zh-TW") == "zh_CN"
    assert locale_from_header("fr-FR,en;q=0.5,zh;q=0.4") == "en"
    assert locale_from_header("en;q=0.2, zh;q=0.9") == "zh_CN"
    assert locale_from_header("de, fr") == "en"
    assert locale_from_header("zh;q=0, en") == "en"
    assert locale_from_header("zh;q=bad") == "en"


def test_format_time_in_locale() -> None:
    moment = datetime(2027, 1, 10, 8, 5, 9, tzinfo=UTC)

    assert format_time(moment, "en") == "Jan 10, 2027, 8:05:09\u202fAM UTC"
    assert format_time(moment, "zh_CN") == "2027年1月10日 08:05:09 UTC"
    with pytest.raises(ValueError, match="timezone-aware"):
        format_time(datetime(2027, 1, 10), "en")


def test_catalogue_complete() -> None:
    assert check() == []
    assert translations("zh_CN").gettext("Sign in") == "登录"
    assert translations("en").gettext("Sign in") == "Sign in"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/console/instances?page=2", "/console/instances?page=2"),
        ("/console", "/console"),
        ("https://evil.example/console/", "/console"),
        ("//evil.example/console", "/console"),
        ("/console//evil.example", "/console"),
        ("/consolex", "/console"),
        ("/console/\\evil", "/console"),
        ("/console/a\nb", "/console"),
        (None, "/console"),
    ],
)
def test_safe_return_path(value: str | None, expected: str) -> None:
    assert safe_return_path(value) == expected


def _run_guard(headers: list[tuple[bytes, bytes]], body: bytes, path: str = "/console/x") -> Any:
    sent: list[dict[str, Any]] = []
    received: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        message = await receive()
        received.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "path": path, "headers": headers}
    asyncio.run(ConsoleGuard(app, max_body_bytes=16)(scope, receive, send))
    return sent, received


def test_guard_adds_security_headers() -> None:
    sent, _ = _run_guard([], b"")
    headers = dict(sent[0]["headers"])

    assert headers[b"x-frame-options"] == b"DENY"
    assert headers[b"cache-control"] == b"no-store"
    assert b"script-src 'self'" in headers[b"content-security-policy"]
    static, _ = _run_guard([], b"", path="/console/static/console.css")
    assert dict(static[0]["headers"])[b"cache-control"] == b"no-cache"


def test_guard_rejects_large_body() -> None:
    sent, received = _run_guard([(b"content-length", b"17")], b"x" * 17)

    assert sent[0]["status"] == 413
    assert received == [], "the app never ran"
    bad, _ = _run_guard([(b"content-length", b"-1")], b"")
    assert bad[0]["status"] == 413
