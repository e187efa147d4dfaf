"""The Keys pages: the key list, Create Key with its checks, the details page and its actions.

Each test signs in as the account root of the seeded account, whose
instance is bound to the real XKI proxy of ``console_stack``. The proxy's
external key is ``stack.data.key_id``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from hyok.kms.domain import InstanceStatus
from tests.browser.conftest import ROLE_NAME, USER_NAME, ConsoleStack, screenshot, sign_in
from tests.integration._kms import ACCOUNT_ID, OTHER_ACCOUNT_ID
from tests.integration._sdk import call, client_error

pytestmark = pytest.mark.integration

ALICE_ARN = f"acs:ram::{ACCOUNT_ID}:user/{USER_NAME}"
OPS_ROLE_ARN = f"acs:ram::{ACCOUNT_ID}:role/{ROLE_NAME}"
FOREIGN_ARN = f"acs:ram::{OTHER_ACCOUNT_ID}:user/bob"
# An account that no key or share of the instance grants yet, so it needs a unit of quota.
UNCOUNTED_ACCOUNT_ID = "210987654321"
CHECKED = "The XKI proxy has this key"


@pytest.fixture
def stack(console_stack: ConsoleStack) -> Iterator[ConsoleStack]:
    console_stack.set_instance_status(InstanceStatus.CONNECTED)
    yield console_stack


def _sdk_key(stack: ConsoleStack, **extra: str) -> str:
    query = {"DKMSInstanceId": stack.instance_id, "ExternalKeyId": stack.data.key_id, **extra}
    return str(call(stack.sdk(), "CreateKey", query)["KeyMetadata"]["KeyId"])


def _encrypt(stack: ConsoleStack, key_id: str) -> dict[str, Any]:
    plaintext = base64.b64encode(b"console test").decode("ascii")
    return call(stack.sdk(), "Encrypt", {"KeyId": key_id, "Plaintext": plaintext})


def _open_create(page: Any, stack: ConsoleStack) -> None:
    sign_in(page, stack)
    page.goto(f"{stack.console_url}/keys")
    page.get_by_role("link", name="Create Key").click()
    page.wait_for_load_state()


def _fill_external_key(page: Any, value: str) -> None:
    field = page.get_by_label("External key ID")
    field.fill(value)
    field.press("Tab")  # the change event runs the dry run


def _error(page: Any, name: str) -> str:
    locator = page.locator(f"#f-{name}-error")
    return "" if locator.is_hidden() else str(locator.inner_text())


def _create_button(page: Any) -> Any:
    return page.locator("div.actions").get_by_role("button", name="Create Key")


# --- Creating a key -----------------------------------------------------------------


def test_create_key_with_tags_and_custom_policy(page: Any, stack: ConsoleStack) -> None:
    _open_create(page, stack)
    _fill_external_key(page, stack.data.key_id)
    page.wait_for_selector(f"#f-external_key_id-status:has-text('{CHECKED}')")
    page.get_by_label("Key alias (optional)").fill("console/payments")
    page.get_by_label("Tag key 1").fill("team")
    page.get_by_label("Tag value 1").fill("payments")
    page.get_by_role("button", name="Add tag").click()
    page.get_by_label("Tag key 2").fill("env")
    page.get_by_label("Tag value 2").fill("test:1")
    page.get_by_label("Description (optional)").fill("made in the console")
    page.get_by_text("Advanced settings").click()
    page.get_by_label("Custom policy: administrators, users and cross-account users").check()
    # The root may list the account's users and roles, so the pickers need no hint.
    assert page.get_by_text("No RAM users or roles are listed").count() == 0
    page.locator("#roles-administrators").get_by_role("checkbox", name=USER_NAME).check()
    page.locator("#roles-users").get_by_role("checkbox", name=USER_NAME).check()
    page.locator("#roles-users").get_by_role("checkbox", name=ROLE_NAME).check()
    page.get_by_label("Cross-account user ARNs").fill(FOREIGN_ARN)
    assert "foreign accounts left" in page.locator("#quota-left").inner_text()
    screenshot(page, "keys-create-en")
    _create_button(page).click()
    page.wait_for_load_state()

    assert "The key was created." in page.get_by_role("status").first.inner_text()
    key_id = page.url.rsplit("/", 1)[1].split("?")[0]
    main = page.locator("main").inner_text()
    assert "alias/console/payments" in main
    assert "made in the console" in main
    assert "payments" in page.locator("#tag-table").inner_text()
    assert "test:1" in page.locator("#tag-table").inner_text()
    assert (
        page.locator("#roles-administrators").get_by_role("checkbox", name=USER_NAME).is_checked()
    )
    assert page.locator("#roles-users").get_by_role("checkbox", name=USER_NAME).is_checked()
    assert page.locator("#roles-users").get_by_role("checkbox", name=ROLE_NAME).is_checked()
    assert FOREIGN_ARN in page.get_by_label("Cross-account user ARNs").input_value()
    assert page.locator("#key-state").inner_text() == "Enabled"
    assert page.locator("#external-key-state").inner_text() == "Enabled"
    screenshot(page, "keys-detail-en")

    policy = json.loads(call(stack.sdk(), "GetKeyPolicy", {"KeyId": key_id})["Policy"])
    principals = {p for s in policy["Statement"] for p in s["Principal"]["RAM"]}
    assert principals == {ALICE_ARN, OPS_ROLE_ARN, FOREIGN_ARN}
    assert _encrypt(stack, key_id)["KeyId"] == key_id

    page.get_by_role("link", name="Keys").first.click()
    page.wait_for_load_state()
    table = page.locator("#keys-table").inner_text()
    assert key_id in table
    assert "alias/console/payments" in table
    assert stack.data.key_id in table
    page.get_by_label("Key ID or alias").fill("console/payments")
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()
    rows = page.locator("#keys-table tbody tr")
    assert rows.count() == 1
    assert key_id in rows.inner_text()
    screenshot(page, "keys-list-en")


def test_create_key_unknown_external_key(page: Any, stack: ConsoleStack) -> None:
    _open_create(page, stack)
    _fill_external_key(page, "no-such-key")
    page.wait_for_selector("#f-external_key_id-error:has-text('not found by the XKI proxy')")
    assert page.get_by_label("External key ID").get_attribute("aria-invalid") == "true"

    # The server checks again on submit and shows its error by the same field.
    _create_button(page).click()
    page.wait_for_load_state()
    assert "not found by the XKI proxy" in _error(page, "external_key_id")
    assert page.get_by_label("External key ID").input_value() == "no-such-key"
    screenshot(page, "keys-create-errors-en")


def test_create_form_live_checks(page: Any, stack: ConsoleStack) -> None:
    _open_create(page, stack)
    page.get_by_label("Tag key 1").fill("aliyun-owner")
    assert "must not start with aliyun or acs:" in page.locator("#f-tag-1-error").inner_text()
    page.get_by_label("Tag key 1").fill("owner")
    assert page.locator("#f-tag-1-error").is_hidden()
    page.get_by_label("Tag value 1").fill("a*b")
    assert "Use only letters" in page.locator("#f-tag-1-error").inner_text()
    page.get_by_label("Tag value 1").fill("ok")

    for _ in range(19):
        page.get_by_role("button", name="Add tag").click()
    assert page.locator(".tag-row").count() == 20
    page.get_by_role("button", name="Add tag").click()
    assert page.locator(".tag-row").count() == 20
    assert "at most 20 tags" in _error(page, "tags")
    page.get_by_role("button", name="Remove tag 20").click()
    assert page.locator(".tag-row").count() == 19

    page.get_by_label("Key alias (optional)").fill("bad alias!")
    assert "after alias/" in _error(page, "alias")
    page.get_by_label("Key alias (optional)").fill("acs-mine")
    assert "reserved" in _error(page, "alias")

    page.get_by_text("Advanced settings").click()
    page.get_by_label("Custom policy: administrators, users and cross-account users").check()
    page.get_by_label("Cross-account user ARNs").fill("acs:ram::12:user/bob")
    assert "Not a RAM user or role ARN" in _error(page, "cross_account_users")
    page.get_by_label("Cross-account user ARNs").fill(f"acs:ram::{ACCOUNT_ID}:user/bob")
    assert "belongs to this account" in _error(page, "cross_account_users")

    # The form is not sent while a field is invalid.
    before = page.url
    _create_button(page).click()
    assert page.url == before


def test_server_errors_without_javascript(browser: Any, stack: ConsoleStack) -> None:
    context = browser.new_context(
        ignore_https_errors=True, locale="en-US", java_script_enabled=False
    )
    page = context.new_page()
    try:
        _open_create(page, stack)
        page.get_by_label("External key ID").fill("no-such-external-key")
        page.get_by_label("Tag key 1").fill("acs:owner")
        page.get_by_label("Key alias (optional)").fill("bad alias!")
        page.get_by_text("Advanced settings").click()
        page.get_by_label("Custom policy: administrators, users and cross-account users").check()
        page.get_by_label("Cross-account user ARNs").fill("acs:ram::123:bogus")
        _create_button(page).click()
        page.wait_for_load_state()
        # Every field error shows in one round, before any key is created.
        alias = _error(page, "alias")
        assert alias.startswith("Use letters, digits")
        assert "at most 255 characters" in alias
        assert _error(page, "tag-1") == "Tag keys must not start with aliyun or acs:."
        arn = _error(page, "cross_account_users")
        assert arn.startswith("Not a RAM user or role ARN: acs:ram::123:bogus.")
        assert "12 to 16 digits" in arn
        assert "cross_account_users" not in page.locator("main").inner_text()
        assert "not found by the XKI proxy" in _error(page, "external_key_id")
        assert "Correct the fields marked below." in page.get_by_role("alert").first.inner_text()
        screenshot(page, "keys-create-errors-no-js-en")

        page.get_by_label("External key ID").fill(stack.data.key_id)
        page.get_by_label("Tag key 1").fill("owner")
        page.get_by_label("Key alias (optional)").fill("")
        page.get_by_label("Cross-account user ARNs").fill("")
        # Without the script, Add tag gets one more row from the server.
        page.get_by_role("button", name="Add tag").click()
        page.wait_for_load_state()
        assert page.locator(".tag-row").count() == 2
    finally:
        context.close()


def test_create_key_quota_exhausted(page: Any, stack: ConsoleStack) -> None:
    client = stack.sdk()
    call(
        client,
        "UpdateKmsInstanceShareQuota",
        {"KmsInstanceId": stack.instance_id, "ShareQuota": "0"},
    )
    try:
        _open_create(page, stack)
        _fill_external_key(page, stack.data.key_id)
        page.wait_for_selector(f"#f-external_key_id-status:has-text('{CHECKED}')")
        page.get_by_text("Advanced settings").click()
        page.get_by_label("Custom policy: administrators, users and cross-account users").check()
        page.get_by_label("Cross-account user ARNs").fill(
            f"acs:ram::{UNCOUNTED_ACCOUNT_ID}:role/ops"
        )
        _create_button(page).click()
        page.wait_for_load_state()
        assert "access management quota" in _error(page, "cross_account_users")
        assert "Rejected.ShareQuotaExceedLimit" in page.get_by_role("alert").first.inner_text()
    finally:
        call(
            client,
            "UpdateKmsInstanceShareQuota",
            {"KmsInstanceId": stack.instance_id, "ShareQuota": "10"},
        )


def test_keyboard_only_creation(page: Any, stack: ConsoleStack) -> None:
    _open_create(page, stack)

    def tab_to(element_id: str) -> None:
        for _ in range(60):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.id") == element_id:
                return
        raise AssertionError(f"Tab never reached #{element_id}")

    tab_to("f-external_key_id")
    page.keyboard.type(stack.data.key_id)
    tab_to("f-alias")
    page.keyboard.type("keyboard")
    tab_to("f-tag_key-1")
    page.keyboard.type("made-by")
    page.keyboard.press("Tab")
    page.keyboard.type("keyboard")
    tab_to("add-tag")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "f-tag_key-2"
    page.keyboard.type("second")
    tab_to("f-alias")
    page.keyboard.press("Enter")
    page.wait_for_url("**/console/keys/key-*")
    main = page.locator("main").inner_text()
    assert "alias/keyboard" in main
    assert "made-by" in page.locator("#tag-table").inner_text()
    assert "second" in page.locator("#tag-table").inner_text()


# --- The key's state ----------------------------------------------------------------


def test_disable_and_enable(page: Any, stack: ConsoleStack) -> None:
    key_id = _sdk_key(stack)
    _encrypt(stack, key_id)
    sign_in(page, stack)
    page.goto(f"{stack.console_url}/keys/{key_id}")

    page.get_by_role("button", name="Disable", exact=True).click()
    page.wait_for_load_state()
    # The confirmation names who used the key in the last 30 days.
    assert "This key is in use." in page.get_by_role("alert").inner_text()
    assert f"acs:ram::{ACCOUNT_ID}:root" in page.locator("#usage-principals").inner_text()
    screenshot(page, "keys-disable-confirm-en")
    page.get_by_role("button", name="Disable key").click()
    page.wait_for_load_state()
    assert page.locator("#key-state").inner_text() == "Disabled"

    error = client_error(lambda: _encrypt(stack, key_id))
    assert error.code == "Rejected.Disabled"

    page.get_by_role("button", name="Enable", exact=True).click()
    page.wait_for_load_state()
    assert page.locator("#key-state").inner_text() == "Enabled"
    assert _encrypt(stack, key_id)["KeyId"] == key_id
    audit = page.locator("#audit-table").inner_text()
    assert "DisableKey" in audit
    assert "EnableKey" in audit
    assert "Encrypt" in audit


def test_schedule_and_cancel_deletion(page: Any, stack: ConsoleStack) -> None:
    key_id = _sdk_key(stack)
    sign_in(page, stack)
    page.goto(f"{stack.console_url}/keys/{key_id}")

    page.get_by_role("button", name="Turn on deletion protection").click()
    page.wait_for_load_state()
    assert "Deletion protection is on." in page.get_by_role("status").inner_text()
    page.get_by_label("Pending window (days)").fill("7")
    page.get_by_role("button", name="Schedule deletion").click()
    page.wait_for_load_state()
    assert "no recorded use" in page.locator("main").inner_text()
    page.get_by_role("button", name="Schedule deletion").click()
    page.wait_for_load_state()
    alert = page.get_by_role("alert").first.inner_text()
    assert "has deletion protection" in alert
    assert "Lift it first" in alert
    assert page.locator("#key-state").inner_text() == "Enabled"

    page.get_by_role("button", name="Turn off deletion protection").click()
    page.wait_for_load_state()
    page.get_by_label("Pending window (days)").fill("6")
    page.get_by_role("button", name="Schedule deletion").click()
    page.get_by_role("button", name="Schedule deletion").click()
    page.wait_for_load_state()
    assert "PendingWindowInDays" in _error(page, "pending_days")

    page.get_by_label("Pending window (days)").fill("7")
    page.get_by_role("button", name="Schedule deletion").click()
    page.get_by_role("button", name="Schedule deletion").click()
    page.wait_for_load_state()
    assert page.locator("#key-state").inner_text() == "Pending deletion"
    assert "Deleted on" in page.locator("main").inner_text()

    page.get_by_role("button", name="Cancel deletion").click()
    page.wait_for_load_state()
    assert page.locator("#key-state").inner_text() == "Enabled"


# --- The policy ---------------------------------------------------------------------


def test_edit_policy_with_roles_and_json(page: Any, stack: ConsoleStack) -> None:
    key_id = _sdk_key(stack)
    sign_in(page, stack)
    page.goto(f"{stack.console_url}/keys/{key_id}")

    page.locator("#roles-users").get_by_role("checkbox", name=USER_NAME).check()
    page.get_by_role("button", name="Save roles").click()
    page.wait_for_load_state()
    assert "The key policy was saved." in page.get_by_role("status").inner_text()
    policy = json.loads(call(stack.sdk(), "GetKeyPolicy", {"KeyId": key_id})["Policy"])
    assert [s["Principal"]["RAM"] for s in policy["Statement"]] == [[ALICE_ARN]]
    assert page.locator("#roles-users").get_by_role("checkbox", name=USER_NAME).is_checked()

    document = page.get_by_label("Policy document", exact=True)
    document.fill('{"Version": "1", "Statement": [')
    page.get_by_role("button", name="Save policy document").click()
    page.wait_for_load_state()
    assert "not valid JSON" in _error(page, "policy_json")
    # The top banner says so too, and the invalid field has the focus.
    assert "Correct the fields marked below." in page.locator("#field-errors-alert").inner_text()
    assert page.evaluate("document.activeElement.id") == "f-policy_json"
    screenshot(page, "keys-policy-json-error-en")

    document.fill(json.dumps({"Version": "1", "Statement": [{"Effect": "Allow"}]}))
    page.get_by_role("button", name="Save policy document").click()
    page.wait_for_load_state()
    assert "not a valid key policy" in _error(page, "policy_json")

    administrators = {
        "Version": "1",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"RAM": [ALICE_ARN]},
                "Action": ["kms:Describe*", "kms:List*"],
                "Resource": ["*"],
            }
        ],
    }
    document.fill(json.dumps(administrators))
    page.get_by_role("button", name="Save policy document").click()
    page.wait_for_load_state()
    assert "The key policy was saved." in page.get_by_role("status").inner_text()
    saved = json.loads(call(stack.sdk(), "GetKeyPolicy", {"KeyId": key_id})["Policy"])
    assert saved["Statement"][0]["Action"] == ["kms:Describe*", "kms:List*"]
    assert "beyond the three roles" in page.locator("main").inner_text()


# --- Languages ----------------------------------------------------------------------


def test_keys_pages_in_chinese(page: Any, stack: ConsoleStack) -> None:
    key_id = _sdk_key(stack, Description="中文")
    sign_in(page, stack)
    page.goto(f"{stack.console_url}/keys")
    page.get_by_label("Language").select_option("zh_CN")
    page.get_by_role("button", name="Switch language").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert "用户主密钥" in page.locator("main").inner_text()
    assert "创建密钥" in page.locator("main").inner_text()
    screenshot(page, "keys-list-zh_CN")

    page.goto(f"{stack.console_url}/keys/{key_id}")
    main = page.locator("main").inner_text()
    assert "外部密钥状态" in main
    assert "删除保护" in main
    outcome = page.locator("#audit-table .outcome").first
    assert outcome.inner_text() == "成功"
    assert outcome.get_attribute("title") == "success"
    screenshot(page, "keys-detail-zh_CN")

    _encrypt(stack, key_id)
    page.reload()
    page.get_by_role("button", name="禁用", exact=True).click()
    page.wait_for_load_state()
    warning = page.get_by_role("alert").inner_text()
    assert "此密钥正在使用中。最近" in warning
    assert "。 " not in warning
    page.get_by_role("link", name="取消").click()

    page.goto(f"{stack.console_url}/keys/new")
    page.get_by_label("标签键 1").fill("aliyun-x")
    assert "aliyun" in page.locator("#f-tag-1-error").inner_text()
    assert "标签键" in page.locator("#f-tag-1-error").inner_text()
    screenshot(page, "keys-create-zh_CN")


# --- Audit events, layout, icon -----------------------------------------------------


def test_audit_events_survive_page_views(page: Any, stack: ConsoleStack) -> None:
    key_id = _sdk_key(stack)
    encrypted = _encrypt(stack, key_id)
    call(stack.sdk(), "Decrypt", {"CiphertextBlob": encrypted["CiphertextBlob"]})
    sign_in(page, stack)
    page.goto(f"{stack.console_url}/keys/{key_id}")
    page.get_by_role("button", name="Disable", exact=True).click()
    page.get_by_role("button", name="Disable key").click()
    page.wait_for_load_state()
    page.get_by_role("button", name="Enable", exact=True).click()
    page.wait_for_load_state()
    page.locator("#roles-users").get_by_role("checkbox", name=USER_NAME).check()
    page.get_by_role("button", name="Save roles").click()
    page.wait_for_load_state()
    # Each view writes five read events; twelve views write more than the 50 the page lists.
    for _ in range(12):
        page.reload()
    actions = page.locator("#audit-table tbody td:nth-child(2)").all_inner_texts()
    for action in ("CreateKey", "Encrypt", "Decrypt", "DisableKey", "EnableKey", "SetKeyPolicy"):
        assert action in actions
    assert "DescribeKey" not in actions
    # The wide table scrolls inside the page; the page itself does not scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1280
    screenshot(page, "keys-audit-en")

    page.get_by_role("link", name="Show reads").click()
    page.wait_for_load_state()
    assert "reads=1" in page.url
    with_reads = page.locator("#audit-table tbody td:nth-child(2)").all_inner_texts()
    assert "DescribeKey" in with_reads
    assert len(with_reads) == 50
    page.get_by_role("link", name="Hide reads").click()
    page.wait_for_load_state()
    assert "DescribeKey" not in page.locator("#audit-table").inner_text()
    # The reads stay in the trail.
    trail = stack.audit_path.read_text(encoding="utf-8")
    assert trail.count('"action":"DescribeKey"') + trail.count('"action": "DescribeKey"') >= 12


def test_layout_of_lists_and_sign_in(page: Any, stack: ConsoleStack) -> None:
    page.goto(f"{stack.console_url}/sign-in")
    card = page.locator("section.sign-in").bounding_box()
    centre = card["x"] + card["width"] / 2
    assert abs(centre - 1280 / 2) < 2

    _sdk_key(stack)
    sign_in(page, stack)
    page.goto(f"{stack.console_url}/keys")
    search = page.get_by_label("Key ID or alias").bounding_box()
    state = page.get_by_label("Key state").bounding_box()
    assert abs(search["height"] - state["height"]) < 1
    assert abs(search["y"] - state["y"]) < 1
    for selector in ("#keys-table th .id", "#keys-table .state"):
        white_space = page.locator(selector).first.evaluate(
            "element => getComputedStyle(element).whiteSpace"
        )
        assert white_space == "nowrap"
    page.set_viewport_size({"width": 700, "height": 900})
    key_link = page.locator("#keys-table th .id").first
    line_height = key_link.evaluate("e => parseFloat(getComputedStyle(e).lineHeight)")
    assert key_link.bounding_box()["height"] < line_height * 1.5


def test_favicon_is_our_own(page: Any, stack: ConsoleStack) -> None:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text))
    page.on("response", lambda r: errors.append(r.url) if r.status >= 400 else None)
    sign_in(page, stack)
    page.goto(f"{stack.console_url}/keys")
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert icon == "/console/static/favicon.svg"
    response = page.request.get(f"{stack.console_url}/favicon.ico")
    assert response.status == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    # At the site root too, where browsers look without a link.
    response = page.request.get(f"{stack.url}/favicon.ico")
    assert response.status == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    # Opening the endpoint itself leads to the console; a query still reaches the API.
    page.goto(f"{stack.url}/")
    assert page.url.startswith(f"{stack.console_url}/")
    response = page.request.get(f"{stack.url}/?Action=DescribeRegions")
    assert response.status == 400
    assert response.json()["Code"] == "MissingParameter"
    assert errors == []
