"""RAM login profiles (console passwords of RAM users) on the KMS server, through the official SDK.

The calls go through ``alibabacloud_ram20150501`` to a real KMS over TLS on
loopback, on SQLite and on PostgreSQL. The passwords are registered as
sensitive, so the log check at the end of the suite fails if one reaches a log.
"""

from __future__ import annotations

from typing import Any

import pytest
from alibabacloud_ram20150501 import models as ram_models  # type: ignore[import-untyped]

from hyok.common.secrets import Secret
from hyok.kms.domain.policy_principals import CallerKind, RamIdentity
from hyok.kms.ram import ConsoleSignInError, LoginProfileService
from hyok.kms.ram.errors import RamError
from tests.conftest import register_sensitive
from tests.integration._kms import ACCOUNT_ID, KmsStack, kms_stack, postgres_server
from tests.integration._ram import check_error, create_access_key, create_user, ram, unique
from tests.integration._sdk import client_error, runtime

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration

PASSWORD = "Sdk-login-profile-7"
NEW_PASSWORD = "Sdk-login-changed-8"
WEAK_PASSWORD = "weakpassword-without-digits"

for _value in (PASSWORD, NEW_PASSWORD, WEAK_PASSWORD):
    register_sensitive(_value)


def create_profile(stack: KmsStack, user: str, password: str = PASSWORD, **extra: object) -> Any:
    request = ram_models.CreateLoginProfileRequest(user_name=user, password=password, **extra)
    return ram(stack).create_login_profile_with_options(request, runtime()).body.login_profile


def get_profile(stack: KmsStack, user: str) -> Any:
    request = ram_models.GetLoginProfileRequest(user_name=user)
    return ram(stack).get_login_profile_with_options(request, runtime()).body.login_profile


def test_login_profile_lifecycle(kms_stack: KmsStack) -> None:
    name = unique("console")
    create_user(kms_stack, name)

    created = create_profile(kms_stack, name, password_reset_required=True)
    assert created.user_name == name
    assert created.password_reset_required is True
    assert created.mfabind_required is False
    assert created.create_date.endswith("Z")
    assert PASSWORD not in str(created.to_map())

    fetched = get_profile(kms_stack, name)
    assert fetched.to_map() == created.to_map()

    service = LoginProfileService(kms_stack.store)
    assert service.sign_in(f"{name}@{ACCOUNT_ID}", Secret(PASSWORD)) == RamIdentity(
        ACCOUNT_ID, CallerKind.USER, name
    )

    request = ram_models.UpdateLoginProfileRequest(
        user_name=name, password=NEW_PASSWORD, password_reset_required=False
    )
    body = ram(kms_stack).update_login_profile_with_options(request, runtime()).body
    assert body.request_id
    assert get_profile(kms_stack, name).password_reset_required is False
    with pytest.raises(ConsoleSignInError):
        service.sign_in(f"{name}@{ACCOUNT_ID}", Secret(PASSWORD))
    assert service.sign_in(f"{name}@{ACCOUNT_ID}", Secret(NEW_PASSWORD)).name == name

    # Without Password, UpdateLoginProfile keeps the password.
    request = ram_models.UpdateLoginProfileRequest(user_name=name, password_reset_required=True)
    ram(kms_stack).update_login_profile_with_options(request, runtime())
    assert get_profile(kms_stack, name).password_reset_required is True
    assert service.sign_in(f"{name}@{ACCOUNT_ID}", Secret(NEW_PASSWORD)).name == name

    request = ram_models.DeleteLoginProfileRequest(user_name=name)
    ram(kms_stack).delete_login_profile_with_options(request, runtime())
    error = client_error(lambda: get_profile(kms_stack, name))
    check_error(error, "EntityNotExist.User.LoginProfile", 404, repr(name), "CreateLoginProfile")
    with pytest.raises(ConsoleSignInError):
        service.sign_in(f"{name}@{ACCOUNT_ID}", Secret(NEW_PASSWORD))
    ram(kms_stack).delete_user_with_options(ram_models.DeleteUserRequest(user_name=name), runtime())


def test_login_profile_errors(kms_stack: KmsStack) -> None:
    name = unique("console-err")
    error = client_error(lambda: create_profile(kms_stack, name))
    check_error(error, "EntityNotExist.User", 404, repr(name))
    create_user(kms_stack, name)

    for password, code, fragment in (
        ("short1", "InvalidParameter.Password.Length", "use 8 to 128"),
        (WEAK_PASSWORD, "InvalidParameter.Password.Weak", "one digit"),
        ("pässwort-12345", "InvalidParameter.Password.InvalidChars", "printable ASCII"),
    ):
        error = client_error(lambda value=password: create_profile(kms_stack, name, value))  # type: ignore[misc]
        check_error(error, code, 400, fragment)
        assert password not in error.data["Message"]
    error = client_error(lambda: create_profile(kms_stack, name, mfabind_required=True))
    check_error(error, "InvalidParameter.MFABindRequired", 400, "pass false")
    error = client_error(lambda: get_profile(kms_stack, name))
    check_error(error, "EntityNotExist.User.LoginProfile", 404)
    error = client_error(
        lambda: ram(kms_stack).update_login_profile_with_options(
            ram_models.UpdateLoginProfileRequest(user_name=name, password=PASSWORD), runtime()
        )
    )
    check_error(error, "EntityNotExist.User.LoginProfile", 404)

    create_profile(kms_stack, name)
    error = client_error(lambda: create_profile(kms_stack, name))
    check_error(error, "EntityAlreadyExists.User.LoginProfile", 409, "UpdateLoginProfile")
    error = client_error(
        lambda: ram(kms_stack).update_login_profile_with_options(
            ram_models.UpdateLoginProfileRequest(user_name=name, password=WEAK_PASSWORD),
            runtime(),
        )
    )
    check_error(error, "InvalidParameter.Password.Weak", 400)

    # DeleteUser rejects a user with a login profile, as it does for AccessKeys.
    error = client_error(
        lambda: ram(kms_stack).delete_user_with_options(
            ram_models.DeleteUserRequest(user_name=name), runtime()
        )
    )
    check_error(error, "DeleteConflict.User.LoginProfile", 409, "DeleteLoginProfile")
    ram(kms_stack).delete_login_profile_with_options(
        ram_models.DeleteLoginProfileRequest(user_name=name), runtime()
    )
    ram(kms_stack).delete_user_with_options(ram_models.DeleteUserRequest(user_name=name), runtime())

    audit = kms_stack.audit_path.read_text(encoding="utf-8")
    for password in (PASSWORD, WEAK_PASSWORD):
        assert password not in audit


def test_login_profile_root_only(kms_stack: KmsStack) -> None:
    name = unique("console-user")
    create_user(kms_stack, name)
    key_id, secret = create_access_key(kms_stack, name)
    request = ram_models.CreateLoginProfileRequest(user_name=name, password=PASSWORD)
    error = client_error(
        lambda: ram(kms_stack, key_id, secret).create_login_profile_with_options(request, runtime())
    )
    check_error(error, "NoPermission", 403, "ram:CreateLoginProfile", "account root")
    request = ram_models.GetLoginProfileRequest(user_name=name)
    error = client_error(
        lambda: ram(kms_stack, key_id, secret).get_login_profile_with_options(request, runtime())
    )
    check_error(error, "NoPermission", 403, "ram:GetLoginProfile")


def test_login_profiles_stay_in_account(kms_stack: KmsStack) -> None:
    name = unique("console-acct")
    create_user(kms_stack, name)
    create_profile(kms_stack, name)
    other = ram(kms_stack, kms_stack.other_access_key_id, kms_stack.other_secret)
    error = client_error(
        lambda: other.get_login_profile_with_options(
            ram_models.GetLoginProfileRequest(user_name=name), runtime()
        )
    )
    check_error(error, "EntityNotExist.User", 404)


def test_change_own_password(kms_stack: KmsStack) -> None:
    name = unique("changer")
    create_user(kms_stack, name)
    create_profile(kms_stack, name, password_reset_required=True)
    service = LoginProfileService(kms_stack.store)
    user = RamIdentity(ACCOUNT_ID, CallerKind.USER, name)
    assert service.password_reset_required(user)

    with pytest.raises(ConsoleSignInError):
        service.change_password(user, Secret(NEW_PASSWORD), Secret(NEW_PASSWORD))
    for new, code in ((PASSWORD, "Unchanged"), (WEAK_PASSWORD, "Weak")):
        with pytest.raises(RamError) as raised:
            service.change_password(user, Secret(PASSWORD), Secret(new))
        assert raised.value.code == f"InvalidParameter.Password.{code}"
    assert service.password_reset_required(user)

    service.change_password(user, Secret(PASSWORD), Secret(NEW_PASSWORD))
    assert not service.password_reset_required(user)
    assert get_profile(kms_stack, name).password_reset_required is False
    assert service.sign_in(f"{name}@{ACCOUNT_ID}", Secret(NEW_PASSWORD)) == user
    with pytest.raises(ConsoleSignInError):
        service.sign_in(f"{name}@{ACCOUNT_ID}", Secret(PASSWORD))


def test_root_and_role_password_change(kms_stack: KmsStack) -> None:
    service = LoginProfileService(kms_stack.store)
    root = RamIdentity(ACCOUNT_ID, CallerKind.ROOT)
    assert not service.password_reset_required(root)
    service.set_root_console_password(ACCOUNT_ID, Secret(PASSWORD))
    service.change_password(root, Secret(PASSWORD), Secret(NEW_PASSWORD))
    assert service.sign_in(ACCOUNT_ID, Secret(NEW_PASSWORD)) == root
    role = RamIdentity(ACCOUNT_ID, CallerKind.ROLE, "auditor")
    assert not service.password_reset_required(role)
    with pytest.raises(ValueError, match="role session has no console password"):
        service.change_password(role, Secret(PASSWORD), Secret(NEW_PASSWORD))
