"""Sign-in, sign-out, the idle timeout, the failed sign-in limit, CSRF and the language switch."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from tests.browser.conftest import (
    ROOT_PASSWORD,
    USER_NAME,
    USER_PASSWORD,
    ConsoleStack,
    screenshot,
    sign_in,
)
from tests.conftest import register_sensitive
from tests.integration._kms import ACCOUNT_ID

pytestmark = pytest.mark.integration

SIGN_IN_FAILED = "The sign-in name or the password is incorrect."


def test_sign_in_root(page: Any, console_stack: ConsoleStack) -> None:
    page.goto(console_stack.console_url)
    assert page.url.endswith("/console/sign-in")
    screenshot(page, "sign-in-en")

    sign_in(page, console_stack)

    assert page.url.endswith("/console/instances")
    assert page.get_by_role("heading", level=1).inner_text() == "Instances"
    assert ACCOUNT_ID in page.locator(".principal").inner_text()
    assert page.locator("html").get_attribute("lang") == "en"
    screenshot(page, "instances-en")


def test_sign_in_cookie_attributes(page: Any, console_stack: ConsoleStack) -> None:
    sign_in(page, console_stack)

    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    session = cookies["__Host-hyok_console"]
    assert session["secure"]
    assert session["httpOnly"]
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/"
    register_sensitive(session["value"])


def test_sign_in_ram_user_runs_as_user(page: Any, console_stack: ConsoleStack) -> None:
    sign_in(page, console_stack, f"{USER_NAME}@{ACCOUNT_ID}", USER_PASSWORD)

    assert f"{USER_NAME}@{ACCOUNT_ID}" in page.locator(".principal").inner_text()
    # alice has no identity policy, so the KMS denies ListKmsInstances, as it would her AccessKey.
    assert "Forbidden.NoPermission" in page.locator(".alert-error").inner_text()
    assert "You are not allowed" not in page.locator(".alert-error").inner_text()

    # In Chinese, the box first states what the code means, then gives the API's own message.
    page.get_by_label("Language").select_option("zh_CN")
    page.get_by_role("button", name="Switch language").click()
    page.wait_for_load_state()
    error = page.locator(".alert-error").inner_text()
    assert "您无权执行此操作" in error
    assert "Forbidden.NoPermission" in error


def test_sign_in_wrong_password(page: Any, console_stack: ConsoleStack) -> None:
    page.goto(f"{console_stack.console_url}/sign-in")
    page.get_by_label("Sign-in name").fill(ACCOUNT_ID)
    page.get_by_label("Password").fill("Wrong-passw0rd-123")
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.get_by_role("button", name="Sign in").click()

    assert posted.value.status == 401
    assert SIGN_IN_FAILED in page.get_by_role("alert").inner_text()
    # The same message for an unknown account and for a malformed name.
    for name in ("999999999999", "not a name"):
        page.get_by_label("Sign-in name").fill(name)
        page.get_by_label("Password").fill(ROOT_PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        assert SIGN_IN_FAILED in page.get_by_role("alert").inner_text()
    screenshot(page, "sign-in-failed-en")


def test_sign_in_rate_limited(page: Any, console_stack: ConsoleStack) -> None:
    page.goto(f"{console_stack.console_url}/sign-in")
    for _ in range(5):
        page.get_by_label("Sign-in name").fill(ACCOUNT_ID)
        page.get_by_label("Password").fill("Wrong-passw0rd-123")
        page.get_by_role("button", name="Sign in").click()
        assert SIGN_IN_FAILED in page.get_by_role("alert").inner_text()

    # Even the right password is refused now, without being checked.
    page.get_by_label("Sign-in name").fill(ACCOUNT_ID)
    page.get_by_label("Password").fill(ROOT_PASSWORD)
    with page.expect_response(lambda response: response.request.method == "POST") as posted:
        page.get_by_role("button", name="Sign in").click()

    assert posted.value.status == 429
    retry_after = int(posted.value.headers["retry-after"])
    assert 0 < retry_after <= 300
    message = page.get_by_role("alert").inner_text()
    assert "Too many failed sign-ins. Try again after" in message
    assert "UTC" in message
    assert page.url.endswith("/console/sign-in")
    screenshot(page, "sign-in-rate-limited-en")


def test_sign_out(page: Any, console_stack: ConsoleStack) -> None:
    sign_in(page, console_stack)
    token = {c["name"]: c["value"] for c in page.context.cookies()}["__Host-hyok_console"]

    page.get_by_role("button", name="Sign out").click()

    assert "/console/sign-in" in page.url
    assert "You have signed out." in page.get_by_role("status").inner_text()
    page.goto(f"{console_stack.console_url}/instances")
    assert "/console/sign-in" in page.url
    # The old cookie is dead on the server too, not only removed from the browser.
    page.context.add_cookies(
        [{"name": "__Host-hyok_console", "value": token, "url": console_stack.url + "/"}]
    )
    page.goto(f"{console_stack.console_url}/instances")
    assert "/console/sign-in" in page.url


def test_idle_timeout(
    page: Any, console_stack: ConsoleStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = console_stack.console.sessions
    monkeypatch.setattr(sessions, "idle_timeout", timedelta(seconds=2))
    monkeypatch.setattr(sessions, "touch_interval", timedelta(seconds=0.2))
    sign_in(page, console_stack)
    for _ in range(3):
        time.sleep(1)
        page.goto(f"{console_stack.console_url}/instances")
        assert page.url.endswith("/console/instances"), "active use keeps the session"

    time.sleep(2.5)
    page.goto(f"{console_stack.console_url}/instances")

    assert "/console/sign-in" in page.url
    assert "reason=idle" in page.url
    assert "not used for too long" in page.get_by_role("status").inner_text()
    screenshot(page, "sign-in-idle-en")


def test_post_without_csrf_token_rejected(page: Any, console_stack: ConsoleStack) -> None:
    sign_in(page, console_stack)
    base = console_stack.console_url

    without = page.request.post(f"{base}/sign-out", form={"other": "x"})
    wrong = page.request.post(f"{base}/sign-out", form={"csrf_token": "A" * 43})
    disconnect = page.request.post(
        f"{base}/instances/{console_stack.instance_id}/disconnect", form={"confirmed": "yes"}
    )

    assert without.status == 403
    assert wrong.status == 403
    assert disconnect.status == 403
    assert "Request rejected" in without.text()
    page.goto(f"{base}/instances")
    assert page.url.endswith("/console/instances"), "the session survived the rejected posts"


def test_security_headers(page: Any, console_stack: ConsoleStack) -> None:
    response = page.goto(f"{console_stack.console_url}/sign-in")
    headers = response.headers

    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "same-origin"


def test_language_switch_remembered(page: Any, console_stack: ConsoleStack) -> None:
    sign_in(page, console_stack)

    page.get_by_label("Language").select_option("zh_CN")
    page.get_by_role("button", name="Switch language").click()

    assert page.url.endswith("/console/instances")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.get_by_role("heading", level=1).inner_text() == "实例"
    screenshot(page, "instances-zh_CN")
    page.get_by_role("link", name="密钥").click()
    assert page.get_by_role("heading", level=1).inner_text() == "密钥"
    # A new tab of the same browser, and the sign-in page after sign-out, keep the language.
    other = page.context.new_page()
    other.goto(f"{console_stack.console_url}/instances")
    assert other.get_by_role("heading", level=1).inner_text() == "实例"
    page.get_by_role("button", name="退出登录").click()
    assert page.get_by_role("heading", level=1).inner_text() == "登录 hyok KMS"
    screenshot(page, "sign-in-zh_CN")

    page.get_by_label("语言").select_option("en")
    page.get_by_role("button", name="切换语言").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Sign in to hyok KMS"


def test_language_from_accept_language(browser: Any, console_stack: ConsoleStack) -> None:
    context = browser.new_context(ignore_https_errors=True, locale="zh-CN")
    try:
        opened = context.new_page()
        opened.goto(f"{console_stack.console_url}/sign-in")
        assert opened.locator("html").get_attribute("lang") == "zh-CN"
        assert opened.get_by_role("heading", level=1).inner_text() == "登录 hyok KMS"
    finally:
        context.close()


def test_logs_hold_no_password_or_session_token(
    page: Any, console_stack: ConsoleStack, suite_log: Any
) -> None:
    sign_in(page, console_stack)
    token = {c["name"]: c["value"] for c in page.context.cookies()}["__Host-hyok_console"]
    register_sensitive(token)
    page.goto(f"{console_stack.console_url}/instances/{console_stack.instance_id}")
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, console_stack, ACCOUNT_ID, "Wrong-passw0rd-123")

    for path in (suite_log, console_stack.audit_path):
        text = path.read_text(encoding="utf-8")
        assert ROOT_PASSWORD not in text, path
        assert USER_PASSWORD not in text, path
        assert "Wrong-passw0rd-123" not in text, path
        assert token not in text, path
    assert "console sign-in: principal=acs:ram::" in suite_log.read_text(encoding="utf-8")
