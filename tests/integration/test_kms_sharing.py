"""Shared instances and the access management quota, through the official KMS SDK.

Each test that counts the quota or shares an instance makes its own
instance, bound to the stack's proxy, so that the tests do not share usage.
The quota's 5-minute release is tested with an injected clock
(``Services.clock``). The concurrency test sends CreateKey requests from
several threads at once and checks that exactly the quota's worth succeed.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from alibabacloud_kms20160120 import models as kms_models  # type: ignore[import-untyped]
from alibabacloud_tea_openapi.exceptions import ClientException  # type: ignore[import-untyped]
from sqlalchemy import select

from hyok.kms.domain import (
    AccessKey,
    Account,
    Key,
    KeyOrigin,
    KeyVersion,
    ProtectionLevel,
    new_access_key_id,
    new_access_key_secret,
    new_key_id,
    new_key_version_id,
)
from hyok.kms.domain.key_policy import KeyPolicyRoles, build_role_policy
from hyok.kms.store import KmsStore, SecretBox, open_database, upgrade
from hyok.kms.store.tables import key_grant_accounts
from hyok.kms.sweeper import KeyDeletionSweeper
from tests.conftest import register_sensitive
from tests.integration._kms import (
    ACCOUNT_ID,
    OTHER_ACCOUNT_ID,
    REGION,
    KmsStack,
    add_instance,
    kms_stack,
    postgres_server,
)
from tests.integration._postgres import PostgresServer, fresh_schema
from tests.integration._ram import kms
from tests.integration._sdk import call, client_error, runtime

__all__ = ["kms_stack", "postgres_server"]  # pytest fixtures, found by name

pytestmark = pytest.mark.integration

# Accounts that key policies name as cross-account users; they need not exist.
FOREIGN = ("111111111111", "222222222222", "333333333333", "444444444444")


# --- Helpers --------------------------------------------------------------------------


def new_instance(stack: KmsStack) -> str:
    """Store a new Connected instance of ACCOUNT_ID bound to the stack's proxy."""
    credential = stack.data.credentials["default"].credential
    return add_instance(
        stack.store,
        endpoint=f"https://localhost:{urlsplit(stack.proxy.url).port}",
        access_key_id=credential.access_key_id,
        secret=credential.secret.reveal(),
    )


def cross_account_policy(owner: str, *accounts: str) -> str:
    users = tuple(f"acs:ram::{account}:user/alice" for account in accounts)
    return build_role_policy(owner, KeyPolicyRoles(cross_account_users=users))


def local_policy(owner: str) -> str:
    return build_role_policy(owner, KeyPolicyRoles(users=(f"acs:ram::{owner}:user/bob",)))


def create_key(client: Any, instance_id: str, policy: str | None = None) -> dict[str, Any]:
    query = {"DKMSInstanceId": instance_id, "ExternalKeyId": "app-1"}
    if policy is not None:
        query["Policy"] = policy
    metadata: dict[str, Any] = call(client, "CreateKey", query)["KeyMetadata"]
    return metadata


def usage(client: Any, instance_id: str) -> tuple[int, int]:
    """Return (quota, used) of the access management quota, through the typed SDK method."""
    request = kms_models.GetKmsInstanceQuotaInfosRequest(
        kms_instance_id=instance_id, resource_type="share"
    )
    body = client.get_kms_instance_quota_infos_with_options(request, runtime()).body
    assert body.kms_instance_id == instance_id
    [info] = body.kms_instance_quota_infos
    assert info.resource_type == "share"
    return info.resource_quota, info.used_quantity


def set_quota(client: Any, instance_id: str, quota: int) -> None:
    call(
        client,
        "UpdateKmsInstanceShareQuota",
        {"KmsInstanceId": instance_id, "ShareQuota": str(quota)},
    )


def key_count(stack: KmsStack, instance_id: str) -> int:
    query = {"KmsInstanceId": instance_id}
    count: int = call(stack.sdk(), "GetKmsInstance", query)["KmsInstance"]["KeyNum"]
    return count


def quota_exceeded(action: Any) -> ClientException:
    error = client_error(action)
    assert error.code == "Rejected.ShareQuotaExceedLimit", error.data
    assert error.status_code == 400
    return error


def share(stack: KmsStack, instance_id: str, account: str = OTHER_ACCOUNT_ID) -> None:
    call(stack.sdk(), "ShareKmsInstance", {"KmsInstanceId": instance_id, "AccountId": account})


def listed(client: Any) -> dict[str, dict[str, Any]]:
    query = {"PageSize": "100"}
    items = call(client, "ListKmsInstances", query)["KmsInstances"]["KmsInstance"]
    return {item["KmsInstanceId"]: item for item in items}


@pytest.fixture
def clock(kms_stack: KmsStack) -> Iterator[list[timedelta]]:
    """Shift the KMS's clock by the timedelta in the list's only item; restored afterwards."""
    offset = [timedelta(0)]
    original = kms_stack.services.clock
    kms_stack.services.clock = lambda: datetime.now(UTC) + offset[0]
    try:
        yield offset
    finally:
        kms_stack.services.clock = original


# --- The quota ------------------------------------------------------------------------


def test_quota_defaults_to_ten_and_counts_foreign_accounts(kms_stack: KmsStack) -> None:
    instance_id = new_instance(kms_stack)
    root = kms_stack.sdk()
    assert usage(root, instance_id) == (10, 0)

    # Administrators and users of the key's own account cost nothing.
    create_key(root, instance_id, local_policy(ACCOUNT_ID))
    create_key(root, instance_id)
    assert usage(root, instance_id) == (10, 0)

    create_key(root, instance_id, cross_account_policy(ACCOUNT_ID, FOREIGN[0], FOREIGN[1]))
    create_key(root, instance_id, cross_account_policy(ACCOUNT_ID, FOREIGN[1]))
    assert usage(root, instance_id) == (10, 2)


def test_quota_refuses_the_grant_that_exceeds_it(kms_stack: KmsStack) -> None:
    instance_id = new_instance(kms_stack)
    root = kms_stack.sdk()
    set_quota(root, instance_id, 2)
    first = create_key(root, instance_id, cross_account_policy(ACCOUNT_ID, FOREIGN[0]))
    create_key(root, instance_id, cross_account_policy(ACCOUNT_ID, FOREIGN[1]))
    assert usage(root, instance_id) == (2, 2)
    keys_before = key_count(kms_stack, instance_id)

    error = quota_exceeded(
        lambda: create_key(root, instance_id, cross_account_policy(ACCOUNT_ID, FOREIGN[2]))
    )
    assert FOREIGN[2] in error.data["Message"]
    assert "UpdateKmsInstanceShareQuota" in error.data["Message"]
    assert key_count(kms_stack, instance_id) == keys_before

    # A dry run checks the quota too, and an account the instance counts already passes.
    dry_run = {
        "DKMSInstanceId": instance_id,
        "ExternalKeyId": "app-1",
        "Policy": cross_account_policy(ACCOUNT_ID, FOREIGN[2]),
        "DryRun": "true",
    }
    quota_exceeded(lambda: call(root, "CreateKey", dry_run))
    counted = {**dry_run, "Policy": cross_account_policy(ACCOUNT_ID, FOREIGN[1])}
    assert client_error(lambda: call(root, "CreateKey", counted)).code == "DryRunOperationError"
    assert key_count(kms_stack, instance_id) == keys_before

    # SetKeyPolicy is refused the same way, and the stored policy stays.
    policy_before = call(root, "GetKeyPolicy", {"KeyId": first["KeyId"]})["Policy"]
    wider = cross_account_policy(ACCOUNT_ID, FOREIGN[0], FOREIGN[2])
    quota_exceeded(lambda: call(root, "SetKeyPolicy", {"KeyId": first["KeyId"], "Policy": wider}))
    assert call(root, "GetKeyPolicy", {"KeyId": first["KeyId"]})["Policy"] == policy_before
    assert usage(root, instance_id) == (2, 2)

    # A grant to an account that already counts needs no new unit.
    create_key(root, instance_id, cross_account_policy(ACCOUNT_ID, FOREIGN[0], FOREIGN[1]))
    assert usage(root, instance_id) == (2, 2)

    # Raising the quota lets the grant through.
    set_quota(root, instance_id, 3)
    create_key(root, instance_id, cross_account_policy(ACCOUNT_ID, FOREIGN[2]))
    assert usage(root, instance_id) == (3, 3)


def revoked_grant(stack: KmsStack) -> tuple[str, str]:
    """Make an instance with a quota of 1, grant FOREIGN[0] in a key, then revoke it.

    Returns the instance ID and the key ID.
    """
    instance_id = new_instance(stack)
    root = stack.sdk()
    set_quota(root, instance_id, 1)
    key = create_key(root, instance_id, cross_account_policy(ACCOUNT_ID, FOREIGN[0]))["KeyId"]
    call(root, "SetKeyPolicy", {"KeyId": key, "Policy": local_policy(ACCOUNT_ID)})
    return instance_id, key


def test_revoked_account_returns_its_unit_after_five_minutes(
    kms_stack: KmsStack, clock: list[timedelta]
) -> None:
    instance_id, _ = revoked_grant(kms_stack)
    root = kms_stack.sdk()
    assert usage(root, instance_id) == (1, 1)
    other = cross_account_policy(ACCOUNT_ID, FOREIGN[1])
    quota_exceeded(lambda: create_key(root, instance_id, other))

    clock[0] = timedelta(minutes=4, seconds=50)
    assert usage(root, instance_id) == (1, 1)
    quota_exceeded(lambda: create_key(root, instance_id, other))

    clock[0] = timedelta(minutes=5, seconds=10)
    assert usage(root, instance_id) == (1, 0)
    create_key(root, instance_id, other)
    assert usage(root, instance_id) == (1, 1)


def test_regranting_a_revoked_account_takes_no_new_unit(
    kms_stack: KmsStack, clock: list[timedelta]
) -> None:
    instance_id, key = revoked_grant(kms_stack)
    root = kms_stack.sdk()

    # Within the 5 minutes the account still counts, so granting it again fits.
    regrant = cross_account_policy(ACCOUNT_ID, FOREIGN[0])
    call(root, "SetKeyPolicy", {"KeyId": key, "Policy": regrant})
    clock[0] = timedelta(minutes=10)
    assert usage(root, instance_id) == (1, 1)


def test_revocation_skips_accounts_other_keys_grant(kms_stack: KmsStack) -> None:
    instance_id = new_instance(kms_stack)
    root = kms_stack.sdk()
    policy = cross_account_policy(ACCOUNT_ID, FOREIGN[0])
    first = create_key(root, instance_id, policy)["KeyId"]
    create_key(root, instance_id, policy)
    call(root, "SetKeyPolicy", {"KeyId": first, "Policy": local_policy(ACCOUNT_ID)})
    with kms_stack.store.session(read_only=True) as session:
        assert session.sharing.counted_accounts(
            instance_id, datetime.now(UTC) + timedelta(hours=1)
        ) == frozenset({FOREIGN[0]})


def test_concurrent_grants_never_pass_the_quota(kms_stack: KmsStack) -> None:
    instance_id = new_instance(kms_stack)
    set_quota(kms_stack.sdk(), instance_id, 2)
    accounts = [f"5555555555{index:02d}" for index in range(8)]
    start = threading.Barrier(len(accounts))

    def attempt(account: str) -> str:
        client = kms_stack.sdk()
        policy = cross_account_policy(ACCOUNT_ID, account)
        start.wait()
        try:
            create_key(client, instance_id, policy)
        except ClientException as exc:
            return str(exc.code)
        return "created"

    with ThreadPoolExecutor(max_workers=len(accounts)) as pool:
        outcomes = list(pool.map(attempt, accounts))

    assert outcomes.count("created") == 2, outcomes
    assert outcomes.count("Rejected.ShareQuotaExceedLimit") == len(accounts) - 2, outcomes
    assert usage(kms_stack.sdk(), instance_id) == (2, 2)
    assert key_count(kms_stack, instance_id) == 2


def test_quota_parameters_are_checked(kms_stack: KmsStack) -> None:
    root = kms_stack.sdk()
    created = call(root, "CreateKmsInstance", {"ShareQuota": "3"})["KmsInstanceId"]
    assert usage(root, created) == (3, 0)
    for value in ("-1", "1001", "many"):
        error = client_error(lambda: call(root, "CreateKmsInstance", {"ShareQuota": value}))  # noqa: B023
        assert error.code == "InvalidParameter", value
        assert "ShareQuota" in error.data["Message"]
    error = client_error(
        lambda: call(root, "UpdateKmsInstanceShareQuota", {"KmsInstanceId": created})
    )
    assert error.code == "MissingParameter"
    error = client_error(
        lambda: call(
            root, "GetKmsInstanceQuotaInfos", {"KmsInstanceId": created, "ResourceType": "key"}
        )
    )
    assert error.code == "InvalidParameter"
    assert "share" in error.data["Message"]
    # Without ResourceType the report lists the same quota.
    body = call(root, "GetKmsInstanceQuotaInfos", {"KmsInstanceId": created})
    assert body["KmsInstanceQuotaInfos"] == [
        {"ResourceType": "share", "ResourceQuota": 3, "UsedQuantity": 0}
    ]


# --- Shared instances -----------------------------------------------------------------


def test_members_see_and_use_a_shared_instance(kms_stack: KmsStack) -> None:
    instance_id = new_instance(kms_stack)
    owner, member = kms_stack.sdk(), kms_stack.sdk(other_account=True)
    assert instance_id not in listed(member)
    error = client_error(lambda: create_key(member, instance_id))
    assert error.code == "Forbidden.DKMSInstanceNotFound"

    share(kms_stack, instance_id)
    share(kms_stack, instance_id)  # sharing again changes nothing

    item = listed(member)[instance_id]
    assert item["Shared"] is True
    assert item["OwnerAccountId"] == ACCOUNT_ID
    assert item["KmsInstanceArn"] == f"acs:kms:{REGION}:{ACCOUNT_ID}:keystore/{instance_id}"
    assert listed(owner)[instance_id]["Shared"] is False
    described = call(member, "GetKmsInstance", {"KmsInstanceId": instance_id})["KmsInstance"]
    assert described["Status"] == "Connected"
    assert described["OwnerAccountId"] == ACCOUNT_ID
    assert "XkiProxy" not in described
    assert (
        "XkiProxy" in call(owner, "GetKmsInstance", {"KmsInstanceId": instance_id})["KmsInstance"]
    )

    shares = call(owner, "ListKmsInstanceShares", {"KmsInstanceId": instance_id})
    assert [entry["AccountId"] for entry in shares["Shares"]["Share"]] == [OTHER_ACCOUNT_ID]
    assert shares["TotalCount"] == 1

    # The member's key belongs to the member, and its default policy names both accounts.
    key = create_key(member, instance_id)
    assert key["Creator"] == OTHER_ACCOUNT_ID
    assert key["Arn"].startswith(f"acs:kms:{REGION}:{OTHER_ACCOUNT_ID}:key/")
    policy = json.loads(call(member, "GetKeyPolicy", {"KeyId": key["KeyId"]})["Policy"])
    assert policy["Statement"][0]["Principal"]["RAM"] == [
        f"acs:ram::{OTHER_ACCOUNT_ID}:*",
        f"acs:ram::{ACCOUNT_ID}:*",
    ]
    blob = call(member, "Encrypt", {"KeyId": key["KeyId"], "Plaintext": "c2hhcmVk"})
    plaintext = call(member, "Decrypt", {"CiphertextBlob": blob["CiphertextBlob"]})["Plaintext"]
    assert base64.b64decode(plaintext) == b"shared"
    # The owner's account may use the member's key by its ARN.
    assert (
        call(owner, "Encrypt", {"KeyId": key["Arn"], "Plaintext": "c2hhcmVk"})["KeyId"]
        == (key["KeyId"])
    )

    # The owner's own keys name only the owner.
    own = create_key(owner, instance_id)
    own_policy = json.loads(call(owner, "GetKeyPolicy", {"KeyId": own["KeyId"]})["Policy"])
    assert own_policy["Statement"][0]["Principal"]["RAM"] == [f"acs:ram::{ACCOUNT_ID}:*"]
    # Neither default policy takes a unit of the quota.
    assert usage(owner, instance_id) == (10, 0)
    assert usage(member, instance_id) == (10, 0)


def test_member_grants_count_against_the_instance_quota(kms_stack: KmsStack) -> None:
    instance_id = new_instance(kms_stack)
    share(kms_stack, instance_id)
    owner, member = kms_stack.sdk(), kms_stack.sdk(other_account=True)
    set_quota(owner, instance_id, 1)
    # The instance owner is not foreign to the member's key.
    create_key(member, instance_id, cross_account_policy(OTHER_ACCOUNT_ID, ACCOUNT_ID))
    assert usage(owner, instance_id) == (1, 0)
    create_key(member, instance_id, cross_account_policy(OTHER_ACCOUNT_ID, FOREIGN[0]))
    assert usage(owner, instance_id) == (1, 1)
    quota_exceeded(
        lambda: create_key(owner, instance_id, cross_account_policy(ACCOUNT_ID, FOREIGN[1]))
    )


def test_members_cannot_change_a_shared_instance(kms_stack: KmsStack) -> None:
    instance_id = new_instance(kms_stack)
    share(kms_stack, instance_id)
    member = kms_stack.sdk(other_account=True)
    target = {"KmsInstanceId": instance_id}
    proxy = {
        "Connectivity": "PUBLIC_ENDPOINT",
        "XkiProxyUriEndpoint": "https://proxy.example.com",
        "XkiProxyUriPath": "/kms/xks/v1",
        "XkiProxyAccessKeyId": "A" * 20,
        "XkiProxySecretAccessKey": "s" * 43,
    }
    attempts = {
        "ConnectKmsInstance": target,
        "DisconnectKmsInstance": target,
        "UpdateXkiProxyConfiguration": {**target, **proxy},
        "ShareKmsInstance": {**target, "AccountId": FOREIGN[0]},
        "UnshareKmsInstance": {**target, "AccountId": OTHER_ACCOUNT_ID},
        "ListKmsInstanceShares": target,
        "UpdateKmsInstanceShareQuota": {**target, "ShareQuota": "100"},
    }
    for action, query in attempts.items():
        error = client_error(lambda: call(member, action, query))  # noqa: B023
        assert error.code == "Forbidden.NoPermission", (action, error.data)
        assert error.status_code == 403
        assert ACCOUNT_ID in error.data["Message"]

    described = call(kms_stack.sdk(), "GetKmsInstance", target)["KmsInstance"]
    assert described["Status"] == "Connected"
    assert usage(kms_stack.sdk(), instance_id) == (10, 0)


def test_other_accounts_do_not_see_an_unshared_instance(kms_stack: KmsStack) -> None:
    instance_id = new_instance(kms_stack)
    other = kms_stack.sdk(other_account=True)
    for action in ("GetKmsInstance", "GetKmsInstanceQuotaInfos", "ShareKmsInstance"):
        query = {"KmsInstanceId": instance_id, "AccountId": ACCOUNT_ID}
        error = client_error(lambda: call(other, action, query))  # noqa: B023
        assert error.code == "Forbidden.DKMSInstanceNotFound", action


def test_unshare_rules(kms_stack: KmsStack) -> None:
    instance_id = new_instance(kms_stack)
    owner, member = kms_stack.sdk(), kms_stack.sdk(other_account=True)
    query = {"KmsInstanceId": instance_id, "AccountId": OTHER_ACCOUNT_ID}

    error = client_error(lambda: call(owner, "UnshareKmsInstance", query))
    assert error.code == "Forbidden.ResourceNotFound"
    assert error.status_code == 404

    share(kms_stack, instance_id)
    call(owner, "UnshareKmsInstance", query)
    assert instance_id not in listed(member)
    assert call(owner, "ListKmsInstanceShares", {"KmsInstanceId": instance_id})["TotalCount"] == 0
    error = client_error(lambda: create_key(member, instance_id))
    assert error.code == "Forbidden.DKMSInstanceNotFound"

    # While the member has keys in the instance, the share cannot end.
    share(kms_stack, instance_id)
    key = create_key(member, instance_id)
    error = client_error(lambda: call(owner, "UnshareKmsInstance", query))
    assert error.code == "DeleteConflict.KmsInstanceShare.Key"
    assert error.status_code == 409
    assert "1 key(s)" in error.data["Message"]
    assert instance_id in listed(member)
    assert (
        call(member, "DescribeKey", {"KeyId": key["KeyId"]})["KeyMetadata"]["KeyId"]
        == (key["KeyId"])
    )


def test_share_parameters_are_checked(kms_stack: KmsStack) -> None:
    instance_id = new_instance(kms_stack)
    owner = kms_stack.sdk()
    cases = {
        ACCOUNT_ID: "owner's own account",
        "12345": "not an account ID",
        "99999999999999": "not an account of this KMS",
    }
    for account, fragment in cases.items():
        query = {"KmsInstanceId": instance_id, "AccountId": account}
        error = client_error(lambda: call(owner, "ShareKmsInstance", query))  # noqa: B023
        assert error.code == "InvalidParameter", account
        assert fragment in error.data["Message"]
    error = client_error(lambda: call(owner, "ShareKmsInstance", {"KmsInstanceId": instance_id}))
    assert error.code == "MissingParameter"


def test_each_member_is_shared_with_on_its_own(kms_stack: KmsStack) -> None:
    instance_id = new_instance(kms_stack)
    share(kms_stack, instance_id)
    root_key = new_access_key_id()
    secret = new_access_key_secret()
    register_sensitive(secret.reveal())
    third = "777777777777"
    with kms_stack.store.session() as session:
        session.accounts.create(Account(account_id=third, created_at=datetime.now(UTC)))
        session.access_keys.create(
            AccessKey(
                access_key_id=root_key,
                account_id=third,
                secret=secret,
                created_at=datetime.now(UTC),
            )
        )
    client = kms(kms_stack, root_key, secret.reveal())
    # The third account is not a member, so the instance is hidden from it.
    assert instance_id not in listed(client)
    error = client_error(lambda: create_key(client, instance_id))
    assert error.code == "Forbidden.DKMSInstanceNotFound"
    share(kms_stack, instance_id, third)
    assert listed(client)[instance_id]["Shared"] is True
    assert create_key(client, instance_id)["Creator"] == third


# --- Migration ------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_upgrade_to_0004_records_existing_grants(
    dialect: str, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    with ExitStack() as stack:
        if dialect == "sqlite":
            database = open_database(f"sqlite:///{tmp_path / 'kms.db'}")
        else:
            url, schema = stack.enter_context(fresh_schema(postgres_server))
            database = open_database(url, schema=schema)
        stack.callback(database.dispose)
        upgrade(database, "0003")
        store = KmsStore(database, SecretBox(bytes(32)))
        now = datetime.now(UTC)
        with store.session() as session:
            session.accounts.create(Account(account_id=ACCOUNT_ID, created_at=now))
        instance_id = add_instance(
            store, endpoint="https://localhost:1", access_key_id="A" * 20, secret="s" * 43
        )
        policy = cross_account_policy(ACCOUNT_ID, FOREIGN[0], FOREIGN[1])
        with store.session() as session:
            key_id = _insert_key(session, instance_id, policy, now)
            _insert_key(session, instance_id, local_policy(ACCOUNT_ID), now)

        upgrade(database)

        with store.session(read_only=True) as session:
            rows = session.connection.execute(
                select(key_grant_accounts.c.key_id, key_grant_accounts.c.account_id).order_by(
                    key_grant_accounts.c.account_id
                )
            ).all()
            assert [tuple(row) for row in rows] == [(key_id, FOREIGN[0]), (key_id, FOREIGN[1])]
            assert session.sharing.usage(instance_id, now).used == 2


def _insert_key(session: Any, instance_id: str, policy: str, now: datetime) -> str:
    key_id, version_id = new_key_id(), new_key_version_id()
    key = Key(
        key_id=key_id,
        account_id=ACCOUNT_ID,
        region=REGION,
        instance_id=instance_id,
        external_key_id="app-1",
        description="",
        origin=KeyOrigin.EXTERNAL,
        protection_level=ProtectionLevel.SOFTWARE,
        creator=ACCOUNT_ID,
        created_at=now,
        primary_key_version_id=version_id,
        policy=policy,
    )
    session.keys.create(key, KeyVersion(key_id=key_id, key_version_id=version_id, created_at=now))
    return key_id


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_deleted_key_keeps_its_units_five_minutes(kms_stack: KmsStack) -> None:
    instance_id = new_instance(kms_stack)
    root = kms_stack.sdk()
    set_quota(root, instance_id, 1)
    key = create_key(root, instance_id, cross_account_policy(ACCOUNT_ID, FOREIGN[0]))["KeyId"]
    call(root, "ScheduleKeyDeletion", {"KeyId": key, "PendingWindowInDays": "7"})
    deleted_at = datetime.now(UTC) + timedelta(days=8)
    sweeper = KeyDeletionSweeper(dataclasses.replace(kms_stack.services, clock=lambda: deleted_at))
    assert (await sweeper.run_once() or 0) >= 1

    with kms_stack.store.session(read_only=True) as session:
        assert session.keys.get(key) is None
        within = session.sharing.usage(instance_id, deleted_at + timedelta(minutes=4))
        after = session.sharing.usage(instance_id, deleted_at + timedelta(minutes=5, seconds=1))
    assert within.accounts == {FOREIGN[0]}
    assert after.used == 0
