"""The password page: PasswordResetRequired enforced at sign-in, and changing one's own password."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from hyok.common.secrets import Secret
from hyok.kms.ram import LoginProfileService, RamService
from tests.browser.conftest import ROOT_PASSWORD, ConsoleStack, screenshot, sign_in
from tests.conftest import register_sensitive
from tests.integration._kms import ACCOUNT_ID

pytestmark = pytest.mark.integration

FIRST_PASSWORD = "first-Pass-2026"
NEW_PASSWORD = "second-Pass-2027"


def new_user(stack: ConsoleStack, *, reset_required: bool) -> str:
    """Create a RAM user with a console password; return its sign-in name."""
    name = f"carol-{uuid.uuid4().hex[:8]}"
    RamService(stack.store).create_user(ACCOUNT_ID, name)
    LoginProfileService(stack.store).create_login_profile(
        ACCOUNT_ID, name, Secret(FIRST_PASSWORD), password_reset_required=reset_required
    )
    return f"{name}@{ACCOUNT_ID}"


def change(page: Any, current: str, new: str, repeated: str | None = None) -> None:
    page.get_by_label("Current password").fill(current)
    page.get_by_label("New password", exact=True).fill(new)
    page.get_by_label("Repeat the new password").fill(new if repeated is None else repeated)
    page.get_by_role("button", name="Change password").click()
    page.wait_for_load_state()


def error_text(page: Any) -> str:
    return str(page.locator(".alert-error").inner_text())


def test_reset_required_before_any_page(page: Any, console_stack: ConsoleStack) -> None:
    register_sensitive(FIRST_PASSWORD)
    register_sensitive(NEW_PASSWORD)
    name = new_user(console_stack, reset_required=True)
    sign_in(page, console_stack, name, FIRST_PASSWORD)
    assert page.url.endswith("/console/password")
    assert "requires a new password" in page.locator(".alert-warning").inner_text()
    screenshot(page, "password-required-en")
    # Links elsewhere would only lead back here, so the page has none.
    assert page.locator(".side-nav").count() == 0
    # Every other page leads back here until the password is changed.
    page.goto(f"{console_stack.console_url}/keys")
    assert page.url.endswith("/console/password")

    change(page, "wrong-Pass-0000", NEW_PASSWORD)
    assert error_text(page) == "The current password is incorrect."
    change(page, FIRST_PASSWORD, NEW_PASSWORD, "other-Pass-1111")
    assert "The two new passwords differ" in error_text(page)
    change(page, FIRST_PASSWORD, FIRST_PASSWORD)
    assert error_text(page) == "Choose a password other than the current one."
    change(page, FIRST_PASSWORD, "short1")
    assert error_text(page) == "Use 8 to 128 characters."
    change(page, FIRST_PASSWORD, "onlyletters")
    assert error_text(page) == "Use at least one letter and one digit."

    change(page, FIRST_PASSWORD, NEW_PASSWORD)
    assert page.get_by_role("heading", level=1).inner_text() == "Password changed"
    page.goto(f"{console_stack.console_url}/keys")
    assert page.url.endswith("/console/keys")

    # The old password no longer signs in, and the new one does.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, console_stack, name, FIRST_PASSWORD)
    assert page.url.endswith("/console/sign-in")
    sign_in(page, console_stack, name, NEW_PASSWORD)
    assert page.url.endswith("/console/instances")


def test_root_changes_its_password(page: Any, console_stack: ConsoleStack) -> None:
    register_sensitive(NEW_PASSWORD)
    sign_in(page, console_stack)
    page.get_by_role("link", name="Change password").click()
    assert page.url.endswith("/console/password")
    assert page.locator(".alert-warning").count() == 0
    try:
        change(page, ROOT_PASSWORD, NEW_PASSWORD)
        assert page.get_by_role("heading", level=1).inner_text() == "Password changed"
        # The session was renewed, so the console still works after the change.
        page.goto(f"{console_stack.console_url}/instances")
        assert page.url.endswith("/console/instances")
    finally:
        LoginProfileService(console_stack.store).set_root_console_password(
            ACCOUNT_ID, Secret(ROOT_PASSWORD)
        )


def test_password_page_in_chinese(page: Any, console_stack: ConsoleStack) -> None:
    name = new_user(console_stack, reset_required=True)
    sign_in(page, console_stack, name, FIRST_PASSWORD)
    page.get_by_label("Language").select_option("zh_CN")
    page.get_by_role("button", name="Switch language").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", level=1).inner_text() == "修改密码"
    assert "管理员要求您设置新密码" in page.locator(".alert-warning").inner_text()
    page.get_by_label("当前密码").fill(FIRST_PASSWORD)
    page.get_by_label("新密码", exact=True).fill("onlyletters")
    page.get_by_label("再次输入新密码").fill("onlyletters")
    page.get_by_role("button", name="修改密码").click()
    page.wait_for_load_state()
    assert error_text(page) == "至少包含一个字母和一个数字。"
    screenshot(page, "password-required-zh_CN")


def test_wrong_current_passwords_are_limited(page: Any, console_stack: ConsoleStack) -> None:
    name = new_user(console_stack, reset_required=False)
    sign_in(page, console_stack, name, FIRST_PASSWORD)
    page.goto(f"{console_stack.console_url}/password")
    for _ in range(5):
        change(page, "wrong-Pass-0000", NEW_PASSWORD)
        assert error_text(page) == "The current password is incorrect."
    change(page, FIRST_PASSWORD, NEW_PASSWORD)
    assert error_text(page).startswith("Too many failed attempts. Try again after ")
    # The same limit applies to the user's sign-in name.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, console_stack, name, FIRST_PASSWORD)
    assert "Too many failed sign-ins" in error_text(page)
