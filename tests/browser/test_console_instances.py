"""The Instances pages: list, details, XKI proxy configuration, connect and disconnect, sharing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hyok.kms.domain import InstanceStatus
from hyok.kms.domain.models import InstanceErrorReason
from tests.browser.conftest import ConsoleStack, screenshot, sign_in
from tests.integration._kms import ACCOUNT_ID, OTHER_ACCOUNT_ID

pytestmark = pytest.mark.integration


def _open_details(page: Any, stack: ConsoleStack) -> None:
    sign_in(page, stack)
    page.get_by_role("link", name="test instance").click()
    assert page.url.endswith(f"/console/instances/{stack.instance_id}")


def _state(page: Any) -> str:
    return str(page.locator("#instance-state").inner_text())


def _credential(stack: ConsoleStack) -> tuple[str, str]:
    credential = stack.data.credentials["default"].credential
    return credential.access_key_id, credential.secret.reveal()


def test_instance_list_and_details(page: Any, console_stack: ConsoleStack) -> None:
    console_stack.set_instance_status(InstanceStatus.DISCONNECTED)
    access_key_id, secret = _credential(console_stack)

    _open_details(page, console_stack)

    facts = page.locator("main").inner_text()
    assert console_stack.instance_id in facts
    assert f"acs:kms:cn-hangzhou:{ACCOUNT_ID}:keystore/{console_stack.instance_id}" in facts
    assert "Public endpoint" in facts
    assert access_key_id in facts
    assert _state(page) == "Disconnected"
    # The secret access key is never sent to the browser.
    assert secret not in page.content()
    assert "0 of 10 foreign accounts used" in facts
    assert "about 5 minutes" in page.locator("#quota-release").inner_text()
    breadcrumb = page.locator(".breadcrumb").inner_text()
    assert breadcrumb.startswith("Instances")
    assert breadcrumb.endswith(console_stack.instance_id)
    screenshot(page, "instance-details-en")


def test_connect_and_disconnect(page: Any, console_stack: ConsoleStack) -> None:
    console_stack.set_instance_status(InstanceStatus.DISCONNECTED)
    _open_details(page, console_stack)
    dialogs: list[str] = []

    def accept(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    # Only the action that applies to the state is offered.
    assert page.get_by_role("button", name="Disconnect", exact=True).count() == 0
    page.get_by_role("button", name="Connect", exact=True).click()
    page.wait_for_load_state()
    assert page.get_by_role("button", name="Connect", exact=True).count() == 0

    assert dialogs and "Connect the instance?" in dialogs[0]
    assert _state(page) == "Connected"
    assert "The instance is connected to its XKI proxy." in page.get_by_role("status").inner_text()
    assert "UTC" in page.locator("main").inner_text()  # the last health check time
    screenshot(page, "instance-connected-en")

    page.get_by_role("button", name="Disconnect", exact=True).click()
    page.wait_for_load_state()

    assert "Disconnect the instance?" in dialogs[1]
    assert _state(page) == "Disconnected"
    notice = page.get_by_role("status")
    assert "operations on its keys fail" in notice.inner_text()
    assert "alert-warning" in (notice.get_attribute("class") or "")
    assert page.get_by_role("button", name="Disconnect", exact=True).count() == 0
    screenshot(page, "instance-disconnected-en")

    # An instance in error may be connected again or disconnected.
    with console_stack.store.session() as session:
        session.instances.update_status(
            console_stack.instance_id,
            InstanceStatus.ERROR,
            error_reason=InstanceErrorReason.PROXY_UNREACHABLE,
            error_detail="test",
        )
    console_stack.services.keys.forget_instance(console_stack.instance_id)
    page.reload()
    assert page.get_by_role("button", name="Connect", exact=True).count() == 1
    assert page.get_by_role("button", name="Disconnect", exact=True).count() == 1
    console_stack.set_instance_status(InstanceStatus.DISCONNECTED)

    events = [
        json.loads(line)
        for line in console_stack.audit_path.read_text(encoding="utf-8").splitlines()
    ]
    connects = [event for event in events if event.get("action") == "ConnectKmsInstance"]
    assert connects, "the console's ConnectKmsInstance is in the audit trail"
    assert connects[-1]["principal"] == f"acs:ram::{ACCOUNT_ID}:root"
    assert connects[-1]["access_key_id"] == "console"


def test_connect_without_javascript_confirms_on_a_page(
    browser: Any, console_stack: ConsoleStack
) -> None:
    console_stack.set_instance_status(InstanceStatus.DISCONNECTED)
    context = browser.new_context(ignore_https_errors=True, java_script_enabled=False)
    try:
        page = context.new_page()
        _open_details(page, console_stack)
        page.get_by_role("button", name="Connect", exact=True).click()

        assert page.get_by_role("heading", level=1).inner_text() == "Connect the instance?"
        screenshot(page, "instance-confirm-en")
        page.get_by_role("button", name="Connect", exact=True).click()

        assert _state(page) == "Connected"
    finally:
        context.close()
        console_stack.set_instance_status(InstanceStatus.DISCONNECTED)


def test_proxy_configuration_errors_and_upload(
    page: Any, console_stack: ConsoleStack, tmp_path: Any
) -> None:
    console_stack.set_instance_status(InstanceStatus.DISCONNECTED)
    access_key_id, _secret = _credential(console_stack)
    endpoint = page_endpoint = ""
    _open_details(page, console_stack)
    endpoint = page.get_by_label("Endpoint", exact=True).input_value()
    page_endpoint = endpoint

    # An IP address is rejected, next to the endpoint field.
    page.get_by_label("Endpoint", exact=True).fill("https://192.0.2.10:8443")
    page.get_by_label("Secret access key").fill("A" * 44)
    page.get_by_role("button", name="Save configuration").click()
    error = page.locator("#f-endpoint-error")
    assert "XkiProxyUriEndpoint" in error.inner_text()
    assert page.get_by_label("Endpoint", exact=True).get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Secret access key").input_value() == ""
    screenshot(page, "instance-proxy-error-en")

    # A wrong secret saves, and Connect then reports the proxy's rejection.
    page.get_by_label("Endpoint", exact=True).fill(page_endpoint)
    page.get_by_label("Secret access key").fill("B" * 44)
    page.get_by_role("button", name="Save configuration").click()
    assert "was saved" in page.get_by_role("status").inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Connect", exact=True).click()
    page.wait_for_load_state()
    assert "Forbidden.DKMSInstanceStateInvalid" in page.locator(".alert-error").inner_text()
    assert _state(page) == "Error"
    assert "CredentialsRejected" in page.locator("#instance-error").inner_text()
    screenshot(page, "instance-connect-failed-en")

    # Uploading the proxy's configuration file restores the credential.
    configuration = console_stack.data.root / "xks-proxy-configuration.json"
    assert access_key_id in configuration.read_text(encoding="utf-8")
    page.get_by_label("Proxy configuration file").set_input_files(str(configuration))
    page.get_by_role("button", name="Save configuration").click()
    assert "was saved" in page.get_by_role("status").inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Connect", exact=True).click()
    page.wait_for_load_state()
    assert _state(page) == "Connected"

    # A file that is not a proxy configuration file gets its error next to the upload field.
    bad = tmp_path / "other.json"
    bad.write_text('{"XksProxyUriPath": "/kms/xks/v1"}', encoding="utf-8")
    page.get_by_label("Proxy configuration file").set_input_files(str(bad))
    page.get_by_role("button", name="Save configuration").click()
    assert (
        "XksProxyAuthenticationCredential"
        in page.locator("#f-configuration_file-error").inner_text()
    )
    console_stack.set_instance_status(InstanceStatus.DISCONNECTED)


def test_sharing_and_quota(page: Any, console_stack: ConsoleStack) -> None:
    _open_details(page, console_stack)

    page.get_by_label("Share with account ID").fill("12345")
    page.get_by_role("button", name="Share", exact=True).click()
    assert "AccountId" in page.locator("#f-account_id-error").inner_text()

    page.get_by_label("Share with account ID").fill(OTHER_ACCOUNT_ID)
    page.get_by_role("button", name="Share", exact=True).click()
    assert "is shared with the account" in page.get_by_role("status").inner_text()
    assert OTHER_ACCOUNT_ID in page.get_by_role("table").inner_text()

    page.get_by_label("Quota (foreign accounts)").fill("5")
    page.get_by_role("button", name="Save quota").click()
    assert "0 of 5 foreign accounts used" in page.locator("main").inner_text()
    screenshot(page, "instance-sharing-en")

    page.get_by_role("button", name=f"Stop sharing with {OTHER_ACCOUNT_ID}").click()
    assert "no longer shared" in page.get_by_role("status").inner_text()
    page.get_by_label("Quota (foreign accounts)").fill("10")
    page.get_by_role("button", name="Save quota").click()


def test_create_instance(page: Any, console_stack: ConsoleStack) -> None:
    sign_in(page, console_stack)
    page.get_by_label("Instance name").fill("x" * 129)
    page.get_by_role("button", name="Create instance").click()
    assert "InstanceName" in page.locator("#f-instance_name-error").inner_text()

    page.get_by_label("Instance name").fill("console instance")
    page.get_by_role("button", name="Create instance").click()

    assert page.get_by_role("heading", level=1).inner_text() == "console instance"
    assert _state(page) == "Uninitialized"
    assert "The XKI proxy is not configured yet." in page.locator("main").inner_text()


def test_instance_pages_in_chinese(page: Any, console_stack: ConsoleStack) -> None:
    console_stack.set_instance_status(InstanceStatus.DISCONNECTED)
    _open_details(page, console_stack)
    page.get_by_label("Language").select_option("zh_CN")
    page.get_by_role("button", name="Switch language").click()

    assert page.url.endswith(f"/console/instances/{console_stack.instance_id}")
    assert _state(page) == "已断开"
    assert "XKI 代理配置" in page.locator("main").inner_text()
    screenshot(page, "instance-details-zh_CN")


def test_unknown_instance(page: Any, console_stack: ConsoleStack) -> None:
    sign_in(page, console_stack)
    response = page.goto(f"{console_stack.console_url}/instances/kst-aaaaaaaaaaaaaaaaaaaaa")
    assert response.status == 403
    assert "Instance not available" in page.get_by_role("heading", level=1).inner_text()
